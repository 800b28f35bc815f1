"""The MP3 library on disk: names, sidecars, atomic publish, expiry.

Layout of the data dir::

    <key>.mp3        the audio
    <key>.json       its sidecar (:class:`Sidecar`); the sidecar is the commit marker
    .tmp/<key>.<hex12>/  private scratch space of one conversion (same filesystem)
    .locks/<key>.lock    held (flock) by the run that is producing <key>
    .archive/            the playlist batch's records (flows/archive.py)

A key is ``<extractor>.<media id>.<quality>`` (see :func:`make_key`); file names never
come from titles. An entry is *published* when its sidecar exists: :func:`publish`
moves the finished MP3 into place first and the sidecar last, both by ``os.replace``
from the scratch dir, so readers that go by sidecars (the page, dedupe, cleanup) see
the pair appear together, and nothing half-written ever carries a library name.

The sidecar's ``expires_at`` is the one lifetime of a file: the page's "expires in" and
the cleanup flow both read it. The cleanup works through :class:`DataDir`, which
touches only names of this scheme and never follows a symbolic link.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import shutil
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, TypeVar

from pydantic import AwareDatetime, BaseModel, TypeAdapter
from typing_extensions import TypedDict

from flows.errors import TransientError
from flows.settings import QUALITIES, Quality, Settings

TMP_DIRNAME = ".tmp"
LOCKS_DIRNAME = ".locks"
ARCHIVE_DIRNAME = ".archive"

_EXTRACTOR_RE = re.compile(r"[^a-z0-9]+")
_SAFE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_KEY_PATTERN = rf"[a-z0-9]+\.[A-Za-z0-9_-]{{1,80}}\.(?:{'|'.join(QUALITIES)})"
KEY_RE = re.compile(f"^{_KEY_PATTERN}$")
"""What a library key looks like; cleanup removes nothing whose name does not match."""
WORKSPACE_RE = re.compile(rf"^(?P<key>{_KEY_PATTERN})\.[0-9a-f]{{12}}$")
"""The name of a conversion's scratch dir in ``.tmp`` (see :meth:`Library.workspace`)."""
MAX_SIDECAR_BYTES = 1 << 16
"""A sidecar is about 0.5 kB (URLs are at most 2 kB); a bigger file is not one."""
_OWN_DIRS = (TMP_DIRNAME, LOCKS_DIRNAME, ARCHIVE_DIRNAME)
SYMLINK = "symlink (never followed)"
ODD = "not a regular file"
FOREIGN = "name outside the library's scheme"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_LOCK_FLAGS = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


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

    def has_mp3(self) -> bool:
        """Whether its MP3 is still there as a regular file of the sidecar's size (cleanup
        may have removed it)."""
        found = _lstat(self.mp3)
        return (
            found is not None
            and stat.S_ISREG(found.st_mode)
            and found.st_size == self.sidecar.bytes
        )

    def open_mp3(self) -> BinaryIO:
        """The MP3 opened for reading; FileNotFoundError unless it is a regular file (a link
        is not followed) of the size its sidecar gives."""
        handle = _open_file(self.mp3)
        if os.fstat(handle.fileno()).st_size != self.sidecar.bytes:
            handle.close()
            raise FileNotFoundError(errno.ENOENT, "not the size its sidecar gives", str(self.mp3))
        return handle

    def read_mp3(self) -> bytes:
        """The MP3's bytes (see :meth:`open_mp3`)."""
        with self.open_mp3() as handle:
            return handle.read()


class Lifetime(TypedDict):
    """What cleanup reads of a sidecar: when its entry was made and when it goes, and the
    MP3's size; validated as :class:`Sidecar` validates these fields."""

    created_at: AwareDatetime
    expires_at: AwareDatetime
    bytes: int


_LIFETIME = TypeAdapter(Lifetime)
_T = TypeVar("_T")


@dataclass(frozen=True)
class Stored:
    """What is under one key's names in the data dir (stat results; None when absent)."""

    key: str
    mp3: os.stat_result | None
    json: os.stat_result | None
    lifetime: Lifetime | None
    """From the JSON; None when it is missing or has no readable lifetime."""

    @property
    def odd_names(self) -> list[str]:
        """Its names that hold a symlink or anything but a regular file."""
        found = (("mp3", self.mp3), ("json", self.json))
        return [f"{self.key}.{ext}" for ext, st in found if st and not stat.S_ISREG(st.st_mode)]

    @property
    def bytes(self) -> int:
        """The MP3's size (what an entry weighs; its sidecar is under a kB)."""
        return 0 if self.mp3 is None else self.mp3.st_size


@dataclass
class Survey:
    """One listing of the data dir, ``.tmp`` and ``.locks``, by key."""

    keys: set[str] = field(default_factory=set)
    """Keys with a regular file under ``<key>.mp3`` or ``<key>.json`` (and nothing odd)."""
    pairs: set[str] = field(default_factory=set)
    """Keys with both, as regular files: entries by the look of their names."""
    workspaces: dict[str, list[str]] = field(default_factory=dict)
    """Key -> its scratch dirs in ``.tmp``."""
    locks: set[str] = field(default_factory=set)
    """Keys with a lock file."""
    left_alone: list[tuple[str, str]] = field(default_factory=list)
    """(path, why) of what is outside the scheme or a symlink."""


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

    def mp3_bytes(self) -> int:
        """What the library's MP3s weigh now (regular files under library names only)."""
        total = 0
        with suppress(FileNotFoundError), os.scandir(self.root) as found:
            for item in found:
                stem, _, ext = item.name.rpartition(".")
                if ext == "mp3" and is_key(stem) and item.is_file(follow_symlinks=False):
                    with suppress(FileNotFoundError):
                        total += item.stat(follow_symlinks=False).st_size
        return total

    def free_bytes(self) -> int:
        """Bytes an unprivileged writer may still put on the data dir's filesystem (that of
        its nearest existing parent, before the data dir is made)."""
        path = self.root
        while not path.exists() and path != path.parent:
            path = path.parent
        found = os.statvfs(path)
        return found.f_bavail * found.f_frsize

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
            fd = os.open(path, _LOCK_FLAGS | os.O_CREAT, 0o644)
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
        scratch dir and fsync'ed, then renamed: it is never visible half-written. If that
        rename fails, the MP3 is taken out again: no MP3 is left without its sidecar.
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
        try:
            os.replace(staged_json, self.sidecar_path(key))
        except OSError:  # a full disk can refuse a new directory entry: no MP3 without sidecar
            with suppress(OSError):
                os.unlink(self.mp3_path(key))
            raise
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

    @contextlib.contextmanager
    def opened(self) -> Iterator[DataDir | None]:
        """The data dir held open for a cleanup; None if there is none."""
        try:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            yield None
            return
        data = DataDir(fd, self.retention)
        try:
            yield data
        finally:
            data.close()


class DataDir:
    """A data dir held open for one cleanup: every name is looked up relative to it, and
    to ``.tmp`` and ``.locks`` only if they are real directories, so no symbolic link is
    followed and nothing outside is touched. Files vanishing meanwhile are no error."""

    def __init__(self, root_fd: int, retention: timedelta) -> None:
        self.retention = retention
        self._root = root_fd
        self._tmp = _open_dir(TMP_DIRNAME, root_fd)
        self._locks = _open_dir(LOCKS_DIRNAME, root_fd)

    def close(self) -> None:
        for fd in (self._root, self._tmp, self._locks):
            if fd is not None:
                os.close(fd)

    def survey(self) -> Survey:
        """List the data dir, ``.tmp`` and ``.locks`` (names and file types, no stat)."""
        found, odd = Survey(), set()
        for item in _listing(self._root):
            stem, _, ext = item.name.rpartition(".")
            if ext in ("mp3", "json") and (stem in found.keys or is_key(stem)):
                if item.is_file(follow_symlinks=False):
                    (found.pairs if stem in found.keys else found.keys).add(stem)
                else:  # the whole key is left alone
                    odd.add(stem)
                    found.left_alone.append((item.name, SYMLINK if item.is_symlink() else ODD))
            elif not (item.name in _OWN_DIRS and item.is_dir(follow_symlinks=False)):
                found.left_alone.append((item.name, _why_left(item)))
        for item in _listing(self._tmp):
            match = WORKSPACE_RE.match(item.name)
            if match and item.is_dir(follow_symlinks=False):
                found.workspaces.setdefault(match["key"], []).append(item.name)
            else:
                found.left_alone.append((f"{TMP_DIRNAME}/{item.name}", _why_left(item)))
        for item in _listing(self._locks):
            stem, _, ext = item.name.rpartition(".")
            if ext == "lock" and is_key(stem) and item.is_file(follow_symlinks=False):
                found.locks.add(stem)
            else:
                found.left_alone.append((f"{LOCKS_DIRNAME}/{item.name}", _why_left(item)))
        found.keys -= odd
        for key in odd:  # its scratch dirs and lock file stay with it
            found.workspaces.pop(key, None)
            found.locks.discard(key)
        return found

    def read_lifetime(self, key: str) -> Lifetime | None:
        return _read_json(f"{_checked(key)}.json", self._root, _LIFETIME.validate_json)

    def stored(self, key: str) -> Stored:
        """What is under ``key``'s names now."""
        mp3, json = _lstat(f"{_checked(key)}.mp3", self._root), _lstat(f"{key}.json", self._root)
        lifetime = None
        if json is not None and stat.S_ISREG(json.st_mode):
            lifetime = _read_json(f"{key}.json", self._root, _LIFETIME.validate_json)
        return Stored(key, mp3, json, lifetime)

    def lifetime(self, stored: Stored) -> tuple[datetime, datetime]:
        """(created, expires) of an entry with an MP3: its sidecar's, or without a
        readable one, the MP3's mtime and that plus the retention."""
        if stored.lifetime is not None:
            return stored.lifetime["created_at"], stored.lifetime["expires_at"]
        assert stored.mp3 is not None
        created = datetime.fromtimestamp(stored.mp3.st_mtime, UTC)
        return created, created + self.retention

    @contextlib.contextmanager
    def try_lock(self, key: str, *, create: bool = True) -> Iterator[bool]:
        """Hold ``key``'s lock if no one does, without waiting; yields whether we do.

        With ``create=False`` (a dry run) no lock file is made: a key without one is free.
        """
        name = f"{_checked(key)}.lock"
        if self._locks is None and create:
            with suppress(FileExistsError):
                os.mkdir(LOCKS_DIRNAME, dir_fd=self._root)
            self._locks = _open_dir(LOCKS_DIRNAME, self._root)
        if self._locks is None:
            if create or _lstat(LOCKS_DIRNAME, self._root) is not None:
                raise OSError(errno.ENOTDIR, "not a usable directory", LOCKS_DIRNAME)
            yield True  # no lock dir: no one holds a lock
            return
        flags = _LOCK_FLAGS | (os.O_CREAT if create else 0)
        try:
            fd = os.open(name, flags, 0o644, dir_fd=self._locks)
        except FileNotFoundError:
            if create:
                raise
            yield True
            return
        try:
            yield try_flock(fd) and _same_file(fd, name, self._locks)
        finally:
            os.close(fd)

    def remove_entry(self, key: str) -> None:
        """Unlink ``key``'s sidecar, then its MP3 (links are unlinked, never followed)."""
        for name in (f"{_checked(key)}.json", f"{key}.mp3"):
            with suppress(FileNotFoundError):
                os.unlink(name, dir_fd=self._root)

    def remove_workspace(self, name: str) -> bool:
        """Remove the scratch dir ``.tmp/<name>`` with all in it; False if it was gone."""
        if not WORKSPACE_RE.match(name) or self._tmp is None:
            raise ValueError(f"not a scratch dir: {name!r}")
        try:
            shutil.rmtree(name, dir_fd=self._tmp)
        except FileNotFoundError:
            return False
        return True

    def remove_lock(self, key: str) -> None:
        """Unlink ``key``'s lock file: only while holding it (:meth:`Library.lock` copes)."""
        if self._locks is not None:
            with suppress(FileNotFoundError):
                os.unlink(f"{_checked(key)}.lock", dir_fd=self._locks)


def read_sidecar_file(path: Path | str) -> Sidecar | None:
    """Parse a sidecar file; None when it is missing, vanished, unreadable, invalid, over
    :data:`MAX_SIDECAR_BYTES` or not a regular file (a link is not followed)."""
    return _read_json(path, None, Sidecar.model_validate_json)


def _read_json(path: Path | str, dir_fd: int | None, parse: Callable[[bytes], _T]) -> _T | None:
    try:
        fd = os.open(path, _READ_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        data = os.read(fd, MAX_SIDECAR_BYTES + 1)  # EISDIR for a dir; a FIFO gives b""
        return parse(data) if len(data) <= MAX_SIDECAR_BYTES else None
    except (OSError, ValueError):  # pydantic's ValidationError is a ValueError
        return None
    finally:
        os.close(fd)


def _open_file(path: Path) -> BinaryIO:
    """``path`` opened for reading if it is a regular file, else FileNotFoundError."""
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise FileNotFoundError(errno.ENOENT, "a link, not a library file", str(path)) from None
    handle = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        handle.close()
        raise FileNotFoundError(errno.ENOENT, "not a regular file", str(path))
    return handle


def _listing(dir_fd: int | None) -> Iterator[os.DirEntry[str]]:
    if dir_fd is not None:
        with os.scandir(dir_fd) as entries:
            yield from entries


def _open_dir(name: str, dir_fd: int) -> int | None:
    """``name`` in ``dir_fd`` opened as a directory; None if missing, a link or no dir."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None


def _why_left(item: os.DirEntry[str]) -> str:
    return SYMLINK if item.is_symlink() else FOREIGN


def _lstat(path: Path | str, dir_fd: int | None = None) -> os.stat_result | None:
    try:
        return os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
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


def _same_file(fd: int, name: Path | str, dir_fd: int | None = None) -> bool:
    try:
        on_disk = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
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
