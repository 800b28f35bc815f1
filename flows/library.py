"""The MP3 library on disk: names, sidecars, atomic publish, expiry.

Layout of the data dir::

    <key>.mp3        the audio
    <key>.json       its sidecar (:class:`Sidecar`); the sidecar is the commit marker
    .tmp/<key>.<id>/ private scratch space of one conversion (same filesystem)
    .locks/<key>.lock  held by the run that is producing <key>

A key is ``<extractor>.<media id>.<quality>`` (see :func:`make_key`); file names never
come from titles. An entry is *published* when its sidecar exists: :func:`publish`
moves the finished MP3 into place first and the sidecar last, both by ``os.replace``
from the scratch dir, so readers that go by sidecars (the page, dedupe, cleanup) see
the pair appear together, and nothing half-written ever carries a library name.

The sidecar's ``expires_at`` is the one lifetime of a file: the page's "expires in" and
the cleanup flow both read it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import AwareDatetime, BaseModel, ValidationError

from flows.errors import TransientError
from flows.settings import QUALITIES, Quality, Settings

TMP_DIRNAME = ".tmp"
LOCKS_DIRNAME = ".locks"
ARCHIVE_DIRNAME = ".archive"

_EXTRACTOR_RE = re.compile(r"[^a-z0-9]+")
_SAFE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_QUALITY_PATTERN = "|".join(QUALITIES)
KEY_RE = re.compile(
    rf"^(?P<extractor>[a-z0-9]+)\.(?P<id>[A-Za-z0-9_-]{{1,80}})\.(?P<quality>{_QUALITY_PATTERN})$"
)
"""What a library key looks like; cleanup deletes nothing whose stem does not match."""


class Sidecar(BaseModel):
    """What ytmp3 knows about one published MP3 (stored as ``<key>.json``)."""

    key: str
    title: str
    artist: str | None = None
    album: str | None = None
    track: int | None = None
    playlist_url: str | None = None
    """The playlist this file was converted from, if any (groups a playlist's files)."""
    source_url: str
    requested_url: str | None = None
    extractor: str
    media_id: str
    duration: float | None = None
    bytes: int
    quality: Quality
    bitrate_kbps: int | None = None
    thumbnail: bool = False
    created_at: AwareDatetime
    expires_at: AwareDatetime

    def expires_in(self, now: datetime | None = None) -> timedelta:
        return self.expires_at - (now or utcnow())

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.expires_at <= (now or utcnow())


@dataclass(frozen=True)
class Entry:
    """A published library entry: its sidecar and where its files are."""

    sidecar: Sidecar
    mp3: Path
    json: Path

    @property
    def key(self) -> str:
        return self.sidecar.key


def utcnow() -> datetime:
    return datetime.now(UTC)


def make_key(extractor: str, media_id: str, quality: Quality) -> str:
    """Name a library entry from where it came from and how it was encoded.

    Ids that are already file-name safe (YouTube's are) are used as they are, so keys
    stay readable; anything else is hashed, so a hostile id can never shape a path.
    """
    extractor_part = _EXTRACTOR_RE.sub("", extractor.lower()) or "unknown"
    if _SAFE_ID_RE.match(media_id):
        id_part = media_id
    else:
        id_part = "h" + hashlib.sha256(media_id.encode()).hexdigest()[:32]
    if quality not in QUALITIES:
        raise ValueError(f"unknown quality {quality!r}")
    return f"{extractor_part}.{id_part}.{quality}"


def is_key(name: str) -> bool:
    return KEY_RE.match(name) is not None


class Library:
    """The library in one data dir. Cheap to build; holds no open files."""

    def __init__(self, root: Path, retention_hours: float = 8.0) -> None:
        self.root = root
        self.retention = timedelta(hours=retention_hours)

    @classmethod
    def from_settings(cls, settings: Settings) -> Library:
        return cls(settings.data_dir, settings.retention_hours)

    # -- paths -------------------------------------------------------------------------

    def mp3_path(self, key: str) -> Path:
        return self.root / f"{_checked(key)}.mp3"

    def sidecar_path(self, key: str) -> Path:
        return self.root / f"{_checked(key)}.json"

    @property
    def tmp_root(self) -> Path:
        return self.root / TMP_DIRNAME

    @property
    def locks_root(self) -> Path:
        return self.root / LOCKS_DIRNAME

    # -- reading -----------------------------------------------------------------------

    def read_sidecar(self, key: str) -> Sidecar | None:
        """The sidecar of ``key``, or None if it is missing or unreadable."""
        return read_sidecar_file(self.sidecar_path(key))

    def lookup(self, key: str, now: datetime | None = None) -> Entry | None:
        """The published, unexpired entry for ``key`` whose MP3 is really there."""
        sidecar = self.read_sidecar(key)
        if sidecar is None or sidecar.is_expired(now):
            return None
        mp3 = self.mp3_path(key)
        try:
            if mp3.stat().st_size != sidecar.bytes:
                return None
        except FileNotFoundError:
            return None
        return Entry(sidecar=sidecar, mp3=mp3, json=self.sidecar_path(key))

    def entries(self) -> list[Entry]:
        """Every published entry, newest first. Tolerates files vanishing mid-scan."""
        found: list[Entry] = []
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        for name in names:
            stem, dot, ext = name.rpartition(".")
            if not dot or ext != "json" or not is_key(stem):
                continue
            sidecar = read_sidecar_file(self.root / name)
            if sidecar is not None:
                found.append(Entry(sidecar, self.root / f"{stem}.mp3", self.root / name))
        found.sort(key=lambda entry: entry.sidecar.created_at, reverse=True)
        return found

    # -- writing -----------------------------------------------------------------------

    @contextlib.contextmanager
    def workspace(self, key: str) -> Iterator[Path]:
        """A private scratch dir for producing ``key``; removed afterwards, whatever happens."""
        self.tmp_root.mkdir(parents=True, exist_ok=True)
        path = self.tmp_root / f"{_checked(key)}.{uuid.uuid4().hex[:12]}"
        path.mkdir()
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float = 3600.0, poll: float = 0.2) -> Iterator[None]:
        """Hold the per-key lock, so two runs racing for one key produce one file.

        ``flock`` is released by the kernel when the holder dies, so a worker killed
        mid-job never leaves a stuck lock. Cleanup may delete idle lock files, so after
        locking we check that the path still names the inode we locked, and retry if not.
        """
        self.locks_root.mkdir(parents=True, exist_ok=True)
        path = self.locks_root / f"{_checked(key)}.lock"
        deadline = time.monotonic() + timeout
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            try:
                if try_flock(fd) and _same_file(fd, path):
                    break
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
            if time.monotonic() > deadline:
                raise TransientError(f"another run has been producing {key} for too long")
            time.sleep(poll)
        try:
            yield
        finally:
            os.close(fd)

    def publish(self, key: str, mp3: Path, sidecar: Sidecar) -> Entry:
        """Move a finished MP3 and its sidecar into the library, sidecar last.

        ``mp3`` must live in this library's scratch space (same filesystem), so each
        move is an atomic rename. The sidecar is first written next to the MP3 in the
        scratch dir and fsync'ed, then renamed: it is never visible half-written.
        """
        if sidecar.key != key:
            raise ValueError("sidecar belongs to another key")
        staged_json = mp3.with_name(f"{key}.json.staged")
        with open(staged_json, "w", encoding="utf-8") as handle:
            handle.write(sidecar.model_dump_json(indent=2))
            handle.flush()
            os.fsync(handle.fileno())
        with open(mp3, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(mp3, self.mp3_path(key))
        os.replace(staged_json, self.sidecar_path(key))
        _fsync_dir(self.root)
        return Entry(sidecar=sidecar, mp3=self.mp3_path(key), json=self.sidecar_path(key))

    def new_sidecar(self, key: str, mp3: Path, **fields: object) -> Sidecar:
        """A sidecar for ``mp3`` whose lifetime starts now and lasts the retention time."""
        created = utcnow()
        return Sidecar(
            key=key,
            bytes=mp3.stat().st_size,
            created_at=created,
            expires_at=created + self.retention,
            **fields,  # type: ignore[arg-type]
        )


def read_sidecar_file(path: Path) -> Sidecar | None:
    """Parse a sidecar file; None when it is missing, vanished, unreadable or invalid."""
    try:
        with open(path, "rb") as handle:
            return Sidecar.model_validate_json(handle.read())
    except (OSError, ValueError, ValidationError):
        return None


def _checked(key: str) -> str:
    if not is_key(key):
        raise ValueError(f"not a library key: {key!r}")
    return key


def try_flock(fd: int) -> bool:
    """Take an exclusive flock on ``fd`` without waiting; False if someone holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
