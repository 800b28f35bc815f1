"""ffmpeg stays local: a download that is an HLS playlist or an ffconcat list naming
``http://127.0.0.1:PORT/`` makes ffprobe and ffmpeg (through flows.media) fail without one
connection reaching that port, with Debian's ffmpeg on this host and with the image's
(whose build has no network code). The image's test shares the fixtures of the other
Docker tests (conftest.py).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.docker_engine import docker

pytestmark = [pytest.mark.timeout(900)]


class ConnectionCounter:
    """A TCP port on 127.0.0.1 that counts the connections made to it and answers none."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.count += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def counter() -> Iterator[ConnectionCounter]:
    listener = ConnectionCounter()
    try:
        yield listener
    finally:
        listener.close()


def crafted_downloads(directory: Path, url: str, media_dir: Path) -> Path:
    """Files a hostile site could serve as 'audio' (each name is what yt-dlp would save)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "clip.mp3").write_bytes((media_dir / "clip.mp3").read_bytes())
    files = {
        "hls-playlist.m4a": (
            f"#EXTM3U\n#EXT-X-TARGETDURATION:5\n#EXTINF:5,\n{url}/segment.ts\n#EXT-X-ENDLIST\n"
        ),
        "hls-playlist.m3u8": f"#EXTM3U\n#EXT-X-TARGETDURATION:5\n#EXTINF:5,\n{url}/a.ts\n",
        "ffconcat-url.webm": f"ffconcat version 1.0\nfile '{url}/part.mp3'\n",
        # Names a file next to it: ffmpeg's own defaults would read that one.
        "ffconcat-local.mp3": "ffconcat version 1.0\nfile 'clip.mp3'\n",
    }
    for name, text in files.items():
        (directory / f"crafted-{name}").write_text(text)
    return directory


# Runs flows.media's probe and transcode on every crafted file; prints what each step said.
MEDIA_STEPS = """
import json, sys
from pathlib import Path
from flows import media
from flows.errors import ConversionError
from flows.settings import get_settings

settings = get_settings()
out = {}
for path in sorted(Path(sys.argv[1]).glob("crafted-*")):
    s = media.AudioStats(codec="aac", bitrate_kbps=None, duration=5.0)
    steps = {
        "ffprobe": lambda: media.audio_stats(path, settings),
        "ffmpeg": lambda: media.transcode(path, Path(sys.argv[2]) / "o.mp3", "192", settings, s),
    }
    for step, call in steps.items():
        try:
            call()
            out[f"{path.name} {step}"] = "converted"
        except ConversionError as exc:
            out[f"{path.name} {step}"] = str(exc)
print(json.dumps(out))
"""


def assert_all_refused(results: dict[str, str], counter: ConnectionCounter) -> None:
    assert len(results) == 8, results
    converted = [name for name, said in results.items() if said == "converted"]
    assert not converted, results
    assert counter.count == 0, f"{counter.count} connections reached {counter.url}: {results}"


def test_a_crafted_download_makes_the_hosts_ffmpeg_fail_without_a_request(
    counter: ConnectionCounter, media_dir: Path, tmp_path: Path
):
    files = crafted_downloads(tmp_path / "downloads", counter.url, media_dir)
    env = {"PATH": "/usr/bin:/bin", "YTMP3_DATA_DIR": str(tmp_path / "data")}
    result = subprocess.run(
        [sys.executable, "-c", MEDIA_STEPS, str(files), str(tmp_path)],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert_all_refused(json.loads(result.stdout), counter)


@pytest.mark.docker
def test_a_crafted_download_makes_the_images_ffmpeg_fail_without_a_request(
    deployed, counter: ConnectionCounter, media_dir: Path, tmp_path: Path
):
    files = crafted_downloads(tmp_path / "downloads", counter.url, media_dir)
    files.chmod(0o755)
    output = docker(
        "run", "--rm", "--network", "host", "-v", f"{files}:/downloads:ro",
        "-e", "YTMP3_DATA_DIR=/tmp/data", deployed.image,
        "python", "-c", MEDIA_STEPS, "/downloads", "/tmp", timeout=120,
    )  # fmt: skip
    assert_all_refused(json.loads(output.strip().splitlines()[-1]), counter)
    # The binary itself has no network code: file and pipe are its only protocols, and
    # even without the whitelist a URL goes nowhere.
    protocols = docker("run", "--rm", deployed.image, "ffmpeg", "-hide_banner", "-protocols")
    assert set(protocols.split()) == {"Supported", "file", "protocols:", "Input:", "Output:",
                                      "pipe"}  # fmt: skip
    demuxers = docker("run", "--rm", deployed.image, "ffmpeg", "-hide_banner", "-demuxers")
    assert not {"hls", "concat"} & {line.split()[1] for line in demuxers.splitlines()[4:]}
    fetch = subprocess.run(
        ["docker", "run", "--rm", "--network", "host", deployed.image,
         "ffprobe", "-v", "error", f"{counter.url}/clip.mp3"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert fetch.returncode != 0 and "Protocol not found" in fetch.stderr, fetch.stderr
    assert counter.count == 0
