"""The batch archive: which media each scheduled playlist has already delivered.

``playlist-batch`` with ``only_new`` skips what an earlier run converted, even after
cleanup deleted those files, so the archive must outlive the library's entries. It is
kept in the data dir (``.archive/<playlist hash>.txt``), beside the library it
describes: every worker that sees the library sees it, it needs no server round-trip
per item, and cleanup leaves it alone (its names are not library keys). A Prefect
Variable would also survive, but is a size-limited JSON value shared by every run,
which a long playlist outgrows. Lines use yt-dlp's download-archive format
(``<extractor> <media id>``), so an operator can hand one to ``yt-dlp
--download-archive`` and back.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from flows.library import ARCHIVE_DIRNAME
from flows.settings import Settings


class Archive:
    """Seen media, one file per playlist URL; appends are serialised with ``flock``."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / ARCHIVE_DIRNAME

    @classmethod
    def from_settings(cls, settings: Settings) -> Archive:
        return cls(settings.data_dir)

    def path(self, playlist_url: str) -> Path:
        digest = hashlib.sha256(playlist_url.encode()).hexdigest()[:32]
        return self.root / f"{digest}.txt"

    def seen(self, playlist_url: str) -> set[str]:
        """Every media id recorded for ``playlist_url``."""
        try:
            text = self.path(playlist_url).read_text(encoding="utf-8")
        except FileNotFoundError:
            return set()
        return {line.strip() for line in text.splitlines() if line.strip()}

    def record(self, playlist_url: str, media: Iterable[str]) -> None:
        """Append ``media`` ids not yet recorded for ``playlist_url``."""
        new = [entry for entry in dict.fromkeys(media) if entry]
        if not new:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path(playlist_url), os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        with os.fdopen(fd, "r+", encoding="utf-8") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            handle.seek(0)
            present = {line.strip() for line in handle}
            missing = [entry for entry in new if entry not in present]
            if missing:
                handle.write("".join(f"{entry}\n" for entry in missing))
                handle.flush()
                os.fsync(handle.fileno())
