"""MeTube (github.com/alexta69/metube) as a baseline: the service ytmp3's users would pick.

Optional: ``BENCH_METUBE_DIR`` (or ``python -m bench --metube DIR``) names a MeTube
checkout with its own venv in ``DIR/.venv`` (made there with ``pip install aiohttp
"python-socketio>=5,<6" yt-dlp mutagen watchfiles``; nothing of MeTube is part of this
repo). Without it the report says "MeTube not measured".

MeTube runs as its README's defaults say, except: bound to 127.0.0.1 on a free port,
its folders in a temp dir, ``MAX_CONCURRENT_DOWNLOADS=2`` as ytmp3's issue 13 sets it,
``ALLOW_PRIVATE_ADDRESSES=true`` (the media server is on 127.0.0.1) and an empty
``BASE_DIR/ui/dist/metube/browser`` (the page's build is not needed). A job is
``POST /add`` (audio, mp3, 192) into a folder of its own, done when ``/history`` lists
every expected item as finished and its MP3 is on disk.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from bench.stack import free_port

POLL_SECONDS = 0.05


class MeTube:
    """A MeTube server of the checkout at ``checkout``, in a temp dir, until exit."""

    def __init__(self, checkout: Path, concurrency: int = 2) -> None:
        self.checkout = checkout.resolve()
        self.python = self.checkout / ".venv" / "bin" / "python"
        self.concurrency = concurrency
        self.root = Path(tempfile.mkdtemp(prefix="ytmp3-bench-metube-"))
        self.downloads = self.root / "downloads"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.process: subprocess.Popen[bytes] | None = None
        self._jobs = 0

    def __enter__(self) -> MeTube:
        if not self.python.exists():
            raise RuntimeError(f"no MeTube venv at {self.python}")
        (self.root / "base" / "ui" / "dist" / "metube" / "browser").mkdir(parents=True)
        for folder in ("downloads", "state"):
            (self.root / folder).mkdir()
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.root / "state"),
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "DOWNLOAD_DIR": str(self.downloads),
            "STATE_DIR": str(self.root / "state"),
            "BASE_DIR": str(self.root / "base"),
            "MAX_CONCURRENT_DOWNLOADS": str(self.concurrency),
            "ALLOW_PRIVATE_ADDRESSES": "true",
        }
        with open(self.root / "metube.log", "wb") as log:
            self.process = subprocess.Popen(
                [str(self.python), "main.py"],
                cwd=self.checkout / "app",
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                self._get("history")
                return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    tail = (self.root / "metube.log").read_text(errors="replace")[-2000:]
                    self.__exit__(None, None, None)
                    raise RuntimeError(f"MeTube did not start:\n{tail}") from None
                time.sleep(0.2)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def convert(self, url: str, expect: int, marker: str, timeout: float = 300.0) -> float:
        """Submit ``url``; seconds until ``expect`` items whose URL contains ``marker``
        are finished in ``/history`` and as many MP3s are in the job's folder."""
        self._jobs += 1
        folder = f"job-{self._jobs}"
        job = {
            "url": url,
            "download_type": "audio",
            "format": "mp3",
            "quality": "192",
            "folder": folder,
        }
        started = time.monotonic()
        answer = self._post("add", job)
        if answer.get("status") != "ok":
            raise RuntimeError(f"MeTube refused {url}: {answer}")
        while True:
            done = [item for item in self._get("history")["done"] if marker in item["url"]]
            failed = [item for item in done if item["status"] != "finished"]
            if failed:
                raise RuntimeError(f"MeTube failed: {failed[0].get('msg') or failed[0]}")
            mp3s = list((self.downloads / folder).rglob("*.mp3"))
            if len(done) >= expect and len(mp3s) >= expect:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"MeTube: {len(done)} of {expect} done after {timeout:.0f} s")
            time.sleep(POLL_SECONDS)

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return json.loads(response.read())

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())
