"""ytmp3: video and playlist URLs to tagged MP3 files, orchestrated by Prefect."""
