"""Libraries on disk for page tests and the page benchmark, without converting anything.

Entries are written the way :func:`flows.library.Library.publish` leaves them (a key-named
MP3 and its sidecar JSON) so :meth:`Library.entries` reads them like real ones. The MP3s
are sparse files of the sidecar's size unless real bytes are given: rendering the page
must not read them anyway, and a 1,000-entry library then costs no disk space.

Imported (as ``tests.support.sample_library``) by ``tests/ui`` and by
``bench/page_render.py``.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

from flows.library import Entry, Library, Sidecar, make_key, utcnow
from flows.settings import QUALITIES, Quality


def sample_sidecar(
    index: int,
    now: datetime | None = None,
    *,
    album: str | None = None,
    track: int | None = None,
    quality: Quality = "192",
    size: int = 4_600_000,
    title: str | None = None,
    artist: str | None = None,
) -> Sidecar:
    """The sidecar of entry ``index``; higher indexes are older (created earlier)."""
    now = now or utcnow()
    created = now - timedelta(seconds=20 * index + 5)
    media_id = f"vid{index:08d}"
    return Sidecar(
        key=make_key("youtube", media_id, quality),
        title=title if title is not None else f"Song number {index}",
        artist=artist if artist is not None else f"Artist {index % 37}",
        album=album,
        track=track,
        source_url=f"https://www.youtube.com/watch?v={media_id}",
        requested_url=f"https://www.youtube.com/watch?v={media_id}",
        extractor="youtube",
        media_id=media_id,
        duration=120.0 + index % 300,
        bytes=size,
        quality=quality,
        bitrate_kbps=192,
        created_at=created,
        expires_at=created + timedelta(hours=8),
    )


def write_entry(root: Path, sidecar: Sidecar, data: bytes | None = None) -> Entry:
    """Put one published entry into ``root``: the MP3 (``data`` or a sparse file) first,
    the sidecar last, as ``publish`` does."""
    root.mkdir(parents=True, exist_ok=True)
    library = Library(root)
    mp3 = library.mp3_path(sidecar.key)
    if data is None:
        with open(mp3, "wb") as handle:
            handle.truncate(sidecar.bytes)
    else:
        mp3.write_bytes(data)
        sidecar = sidecar.model_copy(update={"bytes": len(data)})
    library.sidecar_path(sidecar.key).write_text(sidecar.model_dump_json(indent=2))
    return Entry(sidecar=sidecar, mp3=mp3, json=library.sidecar_path(sidecar.key))


def write_library(
    root: Path, count: int, *, playlist_every: int = 5, playlist_size: int = 10
) -> list[Entry]:
    """``count`` entries, newest first; every ``playlist_every``-th block of
    ``playlist_size`` entries shares an album (a converted playlist)."""
    now = utcnow()
    entries = []
    for index in range(count):
        block = index // playlist_size
        in_playlist = playlist_every > 0 and block % playlist_every == 0
        sidecar = sample_sidecar(
            index,
            now,
            album=f"Playlist {block}" if in_playlist else None,
            track=index % playlist_size + 1 if in_playlist else None,
            quality=QUALITIES[index % 2 + 1],
        )
        entries.append(write_entry(root, sidecar))
    return entries


def snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under ``root`` with (inode, size, mtime_ns): equal snapshots mean
    nothing was created, deleted, replaced or modified in between."""
    found: dict[str, tuple[int, int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            found[os.path.relpath(path, root)] = (info.st_ino, info.st_size, info.st_mtime_ns)
    info = os.lstat(root)
    found["."] = (info.st_ino, info.st_size, info.st_mtime_ns)
    return found
