"""Flow ``cleanup``: enforce the retention limit, deleting only what the library owns.

How it decides, and why:

* **One lifetime.** An entry goes when its sidecar's ``expires_at`` has passed: that is
  the value the page shows as "expires in", fixed at publish time from the retention
  setting. Only an MP3 whose sidecar is missing or unreadable falls back to its mtime
  plus the *current* retention. ``max_age_hours`` (an operator's explicit override)
  replaces the sidecar expiry with ``created_at + max_age`` (mtime when no sidecar).
  A sidecar whose MP3 is gone is removed: it describes nothing.
* **Plan, then sweep.** :func:`plan` only reads; :func:`sweep` deletes what a plan lists
  and nothing else. A dry run is a plan on its own (probing the locks the sweep would
  take), so it reports exactly what a real run then deletes.
* **Never a file in use.** A conversion holds the flock on ``.locks/<key>.lock`` while
  it owns ``.tmp/<key>.<hex12>/`` and while it publishes ``<key>.mp3``/``<key>.json``.
  The sweep takes that lock without blocking before touching anything of a key and
  skips the key if it cannot. Under the lock it re-checks that the sidecar is still the
  very file (inode, mtime, size) the decision was made on: a re-publish renames a new
  one in, and with the lock held no publish can be half done. Idle lock files are
  removed only while held, which :meth:`flows.library.Library.lock` tolerates (it
  re-checks the inode after locking). Two sweeps of one data dir never overlap (a flock
  on the data dir itself), whatever started them.
* **Never outside, never through a symlink, never a foreign name.** Everything is
  addressed relative to directory file descriptors opened with ``O_NOFOLLOW``; nothing
  is resolved. Symlinks are neither followed nor deleted (one inside an abandoned
  scratch dir goes with the dir, unfollowed); names outside the scheme (``<key>.mp3``,
  ``<key>.json``, ``.tmp/<key>.<hex12>[...]``, ``.locks/<key>.lock``) are reported and
  left alone. Only the configured data dir itself is opened by path.
* **Files vanish.** Every stat, open and unlink tolerates ``FileNotFoundError``; a key
  that changed between plan and sweep is skipped and left for the next run.
* **Speed.** Syscalls are the cost (a few µs each on these VMs), so they are counted:
  one ``scandir`` per directory, no ``stat`` for entries that stay (``scandir`` gives
  the file type), three syscalls to read a sidecar, of which only the lifetime
  (``created_at``, ``expires_at``, ``bytes``) is validated, by pydantic-core in one call
  (see :class:`Lifetime`); seven per deleted entry in the sweep, three of them the
  unlinks. ``python -m bench.cleanup``: 100k entries, half expired, in ~2.7 s on tmpfs.
"""

from __future__ import annotations

import errno
import gc
import os
import re
import shutil
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, NamedTuple

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import AwareDatetime, BaseModel, TypeAdapter
from typing_extensions import TypedDict

from flows.library import (
    ARCHIVE_DIRNAME,
    KEY_RE,
    LOCKS_DIRNAME,
    TMP_DIRNAME,
    is_key,
    try_flock,
    utcnow,
)
from flows.settings import Settings, get_settings

# -- names the cleanup may delete --------------------------------------------------------

_KEY_PATTERN = KEY_RE.pattern.removeprefix("^").removesuffix("$")
TEMP_RE = re.compile(rf"^(?P<key>{_KEY_PATTERN})\.[0-9a-f]{{12}}(?P<suffix>(?:\.[A-Za-z0-9_-]+)*)$")
"""A scratch dir ``.tmp/<key>.<hex12>`` (no suffix), or a partial file named after one."""

_KNOWN_DIRS = frozenset({TMP_DIRNAME, LOCKS_DIRNAME, ARCHIVE_DIRNAME})
"""Top-level dirs the library owns; ``.archive`` belongs to the batch flow and is kept."""

MAX_SIDECAR_BYTES = 1 << 20
"""A sidecar is about 0.5 kB; anything over a MiB is not one of ours (counts unreadable)."""

_READ_CHUNK = 1 << 16

MAX_TEMP_DEPTH = 32
"""A scratch tree deeper than this is not what a conversion makes; it is left alone."""

MAX_EXAMPLES = 20
"""Paths kept per skip reason (the counts are always complete)."""

_MP3, _JSON = 1, 2
_ODD = (_MP3 | _JSON) << 2
"""Bits of a key in the root scan: which files it has, and which are not regular files."""

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_LOCK_FLAGS = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC


class Lifetime(TypedDict):
    """What the cleanup reads from a sidecar: the fields its decision and report need.

    Each is validated as :class:`flows.library.Sidecar` validates it (same types, same
    pydantic-core validators; a unit test keeps the two in step); the other fields are
    not looked at. So "unreadable" here means "its lifetime cannot be read", not "its
    title is missing": such a file still carries the one lifetime it was published with,
    and that, rather than a guess from its mtime, is what decides.
    """

    created_at: AwareDatetime
    expires_at: AwareDatetime
    bytes: int


_LIFETIME = TypeAdapter(Lifetime)
_PARSED_UTC = (
    _LIFETIME.validate_json(
        b'{"created_at": "2000-01-01T00:00:00Z", "expires_at": "2000-01-01T00:00:00Z", "bytes": 0}'
    )["created_at"].tzinfo
    or UTC
)
"""The tzinfo pydantic gives a time ending in Z: one shared instance (see _Scanner)."""


# -- why something was left alone ---------------------------------------------------------

SYMLINK = "symlink (never followed or deleted)"
FOREIGN = "name outside the library's scheme"
NOT_REGULAR = "not a regular file or scratch dir"
IN_USE = "in use by a running conversion (its lock is held)"
LOCK_UNUSABLE = "its lock file is unusable (symlink or not a file)"
RECENT_TEMP = "temp younger than the grace period"
TOO_DEEP = "scratch tree deeper than a conversion makes"
CHANGED = "changed during cleanup (re-published or replaced)"
PAIR_ODD = "the other file of its entry is a symlink or not a file"
VANISHED = "vanished during cleanup"
OTHER_SWEEP = "another cleanup is sweeping this data dir"

# -- why something goes --------------------------------------------------------------------

EXPIRED = "expired (sidecar's expires_at)"
TOO_OLD = "older than max_age_hours"
ORPHAN = "sidecar without MP3"
ABANDONED = "abandoned temp, older than the grace period"
IDLE_LOCK = "idle lock file of a key with nothing left"

Kind = Literal["mp3", "sidecar", "temp-dir", "temp-file", "lock"]
FileId = tuple[int, int, int]
"""(inode, mtime in ns, size): enough to tell a re-published or rewritten file."""
ANY_FILE: FileId = (-2, -2, -2)
"""In ``KeyWork.expect``: whatever is at that name (it is not re-checked)."""


# -- results ------------------------------------------------------------------------------


class Doomed(NamedTuple):
    """One file or scratch tree to delete, by its path relative to the data dir.

    A named tuple, not a frozen dataclass: a plan makes one per file, and a frozen
    dataclass's ``__init__`` (``object.__setattr__`` per field) cost ~0.2 s at 100k.
    """

    path: str
    kind: Kind
    bytes: int
    why: str


@dataclass(frozen=True, slots=True)
class Remaining:
    """The oldest entry left in the library, and when it goes."""

    key: str
    created_at: datetime
    expires_at: datetime


@dataclass(slots=True)
class SkipGroup:
    """How many paths were left alone for one reason, with a few of them as examples."""

    count: int = 0
    examples: list[str] = field(default_factory=list)


@dataclass(slots=True)
class KeyWork:
    """Everything a plan deletes for one key, done under that key's lock.

    ``expect`` is the (sidecar, MP3) identity the entry must still have when the sweep
    holds the lock: (inode, mtime, size) of each, None when absent. Anything else means
    it changed since the plan (a re-publish renames new inodes in), and it stays.
    """

    key: str
    entry: tuple[Doomed, ...] = ()
    expect: tuple[FileId | None, FileId | None] = (None, None)
    created: datetime | None = None
    expires: datetime | None = None
    temps: tuple[Doomed, ...] = ()
    drop_lock: bool = False
    lock: Doomed | None = None
    """The existing lock file removed at the end (None when there was none to count)."""

    def paths(self) -> Iterator[Doomed]:
        yield from self.entry
        yield from self.temps
        if self.lock is not None and self.drop_lock:
            yield self.lock


class _Tally:
    """Accumulates skips, the entries that stay and the oldest of them."""

    def __init__(self) -> None:
        self.skipped: dict[str, SkipGroup] = {}
        self.remaining = 0
        self._oldest: tuple[datetime, str, datetime] | None = None

    def skip(self, path: str, reason: str) -> None:
        group = self.skipped.get(reason)
        if group is None:
            group = self.skipped[reason] = SkipGroup()
        group.count += 1
        if len(group.examples) < MAX_EXAMPLES:
            group.examples.append(path)

    def stays(self, key: str, created: datetime, expires: datetime) -> None:
        self.remaining += 1
        oldest = self._oldest
        if oldest is None or created < oldest[0] or (created == oldest[0] and key < oldest[1]):
            self._oldest = (created, key, expires)

    def abandon(self, work: KeyWork, reason: str) -> None:
        """``work`` cannot be done now: everything it would delete stays."""
        for doomed in work.paths():
            self.skip(doomed.path, reason)
        if any(doomed.kind == "mp3" for doomed in work.entry):
            assert work.created is not None and work.expires is not None
            self.stays(work.key, work.created, work.expires)

    @property
    def oldest(self) -> Remaining | None:
        if self._oldest is None:
            return None
        created, key, expires = self._oldest
        return Remaining(key, created.astimezone(UTC), expires.astimezone(UTC))

    def copy(self) -> _Tally:
        other = _Tally()
        other.skipped = {
            reason: SkipGroup(group.count, list(group.examples))
            for reason, group in self.skipped.items()
        }
        other.remaining = self.remaining
        other._oldest = self._oldest
        return other


@dataclass
class CleanupReport:
    """What a cleanup deleted (or, in a dry run, would delete) and what it left alone."""

    data_dir: str
    now: datetime
    dry_run: bool
    max_age_hours: float | None
    deleted: list[Doomed]
    skipped: dict[str, SkipGroup]
    remaining: int
    oldest: Remaining | None
    seconds: float = 0.0

    @property
    def entries_deleted(self) -> int:
        return sum(1 for doomed in self.deleted if doomed.kind == "mp3")

    @property
    def sidecars_removed(self) -> int:
        """Sidecars deleted, with their MP3 or alone (orphans)."""
        return sum(1 for doomed in self.deleted if doomed.kind == "sidecar")

    @property
    def temp_removed(self) -> int:
        return sum(1 for doomed in self.deleted if doomed.kind in ("temp-dir", "temp-file"))

    @property
    def locks_removed(self) -> int:
        return sum(1 for doomed in self.deleted if doomed.kind == "lock")

    @property
    def bytes_freed(self) -> int:
        return sum(doomed.bytes for doomed in self.deleted)

    @property
    def skipped_count(self) -> int:
        return sum(group.count for group in self.skipped.values())

    def deleted_paths(self) -> set[str]:
        return {doomed.path for doomed in self.deleted}

    def summary(self) -> str:
        """One line a person reads at a glance."""
        verb = "would delete" if self.dry_run else "deleted"
        text = (
            f"{verb} {self.entries_deleted} entries, {self.temp_removed} temp leftovers, "
            f"{self.locks_removed} lock files ({_human_bytes(self.bytes_freed)}); "
            f"{self.remaining} entries remain"
        )
        if self.skipped:
            text += f"; {self.skipped_count} left alone"
        return text


class CleanupSummary(BaseModel):
    """The flow's return value: the report's numbers (the paths are in the artifact)."""

    dry_run: bool
    entries_deleted: int
    sidecars_removed: int
    temp_removed: int
    locks_removed: int
    bytes_freed: int
    remaining: int
    oldest_key: str | None
    oldest_expires_at: datetime | None
    skipped: dict[str, int]
    seconds: float

    @classmethod
    def of(cls, report: CleanupReport) -> CleanupSummary:
        return cls(
            dry_run=report.dry_run,
            entries_deleted=report.entries_deleted,
            sidecars_removed=report.sidecars_removed,
            temp_removed=report.temp_removed,
            locks_removed=report.locks_removed,
            bytes_freed=report.bytes_freed,
            remaining=report.remaining,
            oldest_key=report.oldest.key if report.oldest else None,
            oldest_expires_at=report.oldest.expires_at if report.oldest else None,
            skipped={reason: group.count for reason, group in report.skipped.items()},
            seconds=round(report.seconds, 3),
        )


@dataclass
class Plan:
    """What a sweep of ``data_dir`` at ``now`` deletes, key by key, and what stays."""

    data_dir: Path
    root_id: tuple[int, int] | None
    """(st_dev, st_ino) of the data dir; the sweep refuses a different directory."""
    now: datetime
    max_age_hours: float | None
    work: list[KeyWork]
    tally: _Tally
    seconds: float = 0.0

    def report(self) -> CleanupReport:
        """The plan as a dry run's report: what a sweep would delete."""
        return CleanupReport(
            data_dir=str(self.data_dir),
            now=self.now,
            dry_run=True,
            max_age_hours=self.max_age_hours,
            deleted=[doomed for work in self.work for doomed in work.paths()],
            skipped=self.tally.skipped,
            remaining=self.tally.remaining,
            oldest=self.tally.oldest,
            seconds=self.seconds,
        )


# -- plan -----------------------------------------------------------------------------------


def plan(
    data_dir: Path,
    *,
    retention_hours: float,
    temp_grace_hours: float,
    max_age_hours: float | None = None,
    now: datetime | None = None,
    probe_locks: bool = True,
) -> Plan:
    """Decide what a cleanup of ``data_dir`` at ``now`` deletes; reads only.

    With ``probe_locks`` (a dry run), keys whose lock a conversion holds right now are
    left out, as the sweep would leave them out; a real run skips the probe because the
    sweep takes each lock anyway.
    """
    started = time.perf_counter()
    if max_age_hours is not None and max_age_hours <= 0:
        raise ValueError("max_age_hours must be positive (or None for each sidecar's expiry)")
    now = now or utcnow()
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    tally = _Tally()
    result = Plan(data_dir, None, now, max_age_hours, [], tally)
    with _cyclic_gc_paused(), _open_root(data_dir) as root_fd:
        if root_fd is None:
            return result
        root = os.fstat(root_fd)
        result.root_id = (root.st_dev, root.st_ino)
        scan = _Scanner(root_fd, now, tally, retention_hours, temp_grace_hours, max_age_hours)
        result.work = scan.run()
        if probe_locks and result.work:
            result.work = _probe_locks(root_fd, result.work, tally)
    result.seconds = time.perf_counter() - started
    return result


class _Scanner:
    """One pass over the data dir, ``.tmp`` and ``.locks``; builds the per-key work."""

    def __init__(
        self,
        root_fd: int,
        now: datetime,
        tally: _Tally,
        retention_hours: float,
        temp_grace_hours: float,
        max_age_hours: float | None,
    ) -> None:
        self.root_fd = root_fd
        # In pydantic's own UTC tzinfo (a singleton), so comparing it with parsed sidecar
        # times takes datetime's same-tzinfo fast path (~10x cheaper than utcoffset calls).
        self.now = now.astimezone(_PARSED_UTC)
        self.now_ts = now.timestamp()
        self.tally = tally
        self.max_age = None if max_age_hours is None else timedelta(hours=max_age_hours)
        self.odd: dict[str, str] = {}
        self.fallback_life = timedelta(hours=max_age_hours or retention_hours)
        self.grace = temp_grace_hours * 3600.0

    def run(self) -> list[KeyWork]:
        found = self._scan_root()
        temps, busy = self._scan_temp()
        locks = self._scan_locks(found)
        work: dict[str, KeyWork] = {}
        decide = self._decide
        for key, bits in found.items():
            item = decide(key, bits)
            if item is not None:
                work[key] = item  # it deletes every library file of the key
        for key, items in temps.items():
            item = work.get(key)
            if item is None:
                item = work[key] = KeyWork(key)
            item.temps = tuple(items)
        for key in locks.difference(work, found, busy):
            work[key] = KeyWork(key)  # an idle lock of a key with nothing left
        for key, item in work.items():
            # A key with nothing left needs no lock file (dropped while held: safe). An
            # entry that stays is one that was found and got no entry work.
            entry_stays = key in found and not item.entry
            if not entry_stays and key not in busy:
                item.drop_lock = True
                if key in locks:
                    item.lock = Doomed(f"{LOCKS_DIRNAME}/{key}.lock", "lock", 0, IDLE_LOCK)
        return list(work.values())

    def _scan_root(self) -> dict[str, int]:
        """``<key>.mp3``/``<key>.json`` in the data dir, as key -> bits (_MP3, _JSON, odd).

        Only names and file types (free from ``readdir``) are kept: no stat, and no
        ``DirEntry`` objects held for 100k keys.
        """
        found: dict[str, int] = {}
        get = found.get
        with os.scandir(self.root_fd) as entries:
            for entry in entries:
                name = entry.name
                if name.endswith(".json"):
                    stem, bit = name[:-5], _JSON
                elif name.endswith(".mp3"):
                    stem, bit = name[:-4], _MP3
                else:
                    stem, bit = "", 0
                if bit and (stem in found or is_key(stem)):  # the pair's second file: known
                    if not entry.is_file(follow_symlinks=False):
                        self.odd[name] = SYMLINK if entry.is_symlink() else NOT_REGULAR
                        bit <<= 2
                    found[stem] = get(stem, 0) | bit
                elif entry.is_symlink():
                    self.tally.skip(name, SYMLINK)
                elif name not in _KNOWN_DIRS:
                    self.tally.skip(name, FOREIGN)
        return found

    def _decide(self, key: str, bits: int) -> KeyWork | None:
        """The deletion of one entry, or None when it stays (or is left alone).

        The common case costs open, read, close and one JSON validation; only an entry
        that goes is ``fstat``-ed (on the fd it was read from, so the identity the sweep
        re-checks is that of the very sidecar the decision was made on).
        """
        if bits & _ODD:
            self._leave_odd_pair(key, bits)
            return None
        sidecar_name = f"{key}.json"
        if not bits & _JSON:
            return self._by_mtime(key, None)
        try:
            fd = os.open(sidecar_name, _READ_FLAGS, dir_fd=self.root_fd)
        except FileNotFoundError:
            return self._by_mtime(key, None) if bits & _MP3 else None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
                return self._changed(key, bits)  # a symlink or special file now
            sidecar_st = _lstat(self.root_fd, sidecar_name)  # unreadable (say EACCES)
            if not bits & _MP3:
                return self._orphan(key, sidecar_st)
            return self._by_mtime(key, sidecar_st)
        try:
            meta = _parse_sidecar(fd)
            if meta is not None and bits & _MP3:
                created, expires = meta["created_at"], meta["expires_at"]
                if self.max_age is not None:
                    expires = created + self.max_age
                if expires > self.now:
                    self.tally.stays(key, created, expires)
                    return None
            sidecar_st = os.fstat(fd)
        finally:
            os.close(fd)
        if not stat.S_ISREG(sidecar_st.st_mode):
            return self._changed(key, bits)
        if not bits & _MP3:
            return self._orphan(key, sidecar_st)
        if meta is None:
            return self._by_mtime(key, sidecar_st)
        why = EXPIRED if self.max_age is None else TOO_OLD
        doomed = (
            Doomed(sidecar_name, "sidecar", sidecar_st.st_size, why),
            Doomed(f"{key}.mp3", "mp3", meta["bytes"], why),
        )
        # The MP3 is not re-checked: under the key's lock nothing is being published,
        # so an unchanged sidecar means no re-publish happened since this plan. (Its
        # type was checked by the scan; anything put in its place since then is
        # unlinked, never followed.)
        return KeyWork(key, doomed, (_file_id(sidecar_st), ANY_FILE), created, expires)

    def _by_mtime(self, key: str, sidecar_st: os.stat_result | None) -> KeyWork | None:
        """An MP3 without a readable sidecar: its mtime plus the retention (or max age)."""
        mp3_name = f"{key}.mp3"
        mp3_st = _lstat(self.root_fd, mp3_name)
        if mp3_st is None:  # the MP3 vanished while we looked
            return self._orphan(key, sidecar_st)
        if not stat.S_ISREG(mp3_st.st_mode):
            self.tally.skip(mp3_name, CHANGED)
            return None
        created = datetime.fromtimestamp(mp3_st.st_mtime, _PARSED_UTC)
        expires = created + self.fallback_life
        if expires > self.now:
            self.tally.stays(key, created, expires)
            return None
        why = "sidecar " + ("unreadable" if sidecar_st is not None else "missing")
        why += ", MP3 mtime past " + ("max age" if self.max_age is not None else "retention")
        doomed: tuple[Doomed, ...] = (Doomed(mp3_name, "mp3", mp3_st.st_size, why),)
        if sidecar_st is not None:
            doomed = (Doomed(f"{key}.json", "sidecar", sidecar_st.st_size, why), *doomed)
        expect = (_file_id(sidecar_st), _file_id(mp3_st))
        return KeyWork(key, doomed, expect, created, expires)

    def _changed(self, key: str, bits: int) -> None:
        """The sidecar stopped being a regular file since the scan: leave the key alone."""
        self.tally.skip(f"{key}.json", CHANGED)
        if bits & _MP3:
            self.tally.skip(f"{key}.mp3", PAIR_ODD)

    def _leave_odd_pair(self, key: str, bits: int) -> None:
        """A symlink or dir under a library name: the whole key is left alone."""
        for name, present in (
            (f"{key}.mp3", _MP3 | _MP3 << 2),
            (f"{key}.json", _JSON | _JSON << 2),
        ):
            if bits & present:
                self.tally.skip(name, self.odd.get(name, PAIR_ODD))

    @staticmethod
    def _orphan(key: str, sidecar_st: os.stat_result | None) -> KeyWork | None:
        """A sidecar whose MP3 is gone describes nothing: it goes, whatever its age."""
        if sidecar_st is None:
            return None
        doomed = Doomed(f"{key}.json", "sidecar", sidecar_st.st_size, ORPHAN)
        return KeyWork(key, (doomed,), (_file_id(sidecar_st), None))

    # `.tmp/<key>.<hex12>` scratch dirs and partial files.
    def _scan_temp(self) -> tuple[dict[str, list[Doomed]], set[str]]:
        """Abandoned temp items by key, and the keys that keep a (recent) temp item."""
        abandoned: dict[str, list[Doomed]] = {}
        busy: set[str] = set()
        with _open_subdir(self.root_fd, TMP_DIRNAME, self.tally) as tmp_fd:
            if tmp_fd is None:
                return abandoned, busy
            with os.scandir(tmp_fd) as entries:
                for entry in entries:
                    path = f"{TMP_DIRNAME}/{entry.name}"
                    match = TEMP_RE.match(entry.name)
                    if entry.is_symlink():
                        self.tally.skip(path, SYMLINK)
                        continue
                    if match is None:
                        self.tally.skip(path, FOREIGN)
                        continue
                    key = match["key"]
                    try:
                        if entry.is_dir(follow_symlinks=False) and not match["suffix"]:
                            kind: Kind = "temp-dir"
                            newest, size = _tree_stats(tmp_fd, entry.name)
                        elif entry.is_file(follow_symlinks=False):
                            kind = "temp-file"
                            st = entry.stat(follow_symlinks=False)
                            newest, size = st.st_mtime, st.st_size
                        else:
                            self.tally.skip(path, NOT_REGULAR)
                            busy.add(key)
                            continue
                    except FileNotFoundError:
                        continue  # removed by its owner while we looked
                    except _TooDeep:
                        self.tally.skip(path, TOO_DEEP)
                        busy.add(key)
                        continue
                    except OSError as exc:
                        self.tally.skip(path, f"unreadable ({exc.strerror})")
                        busy.add(key)
                        continue
                    if newest + self.grace > self.now_ts:
                        self.tally.skip(path, RECENT_TEMP)
                        busy.add(key)
                        continue
                    abandoned.setdefault(key, []).append(Doomed(path, kind, size, ABANDONED))
        return abandoned, busy

    # `.locks/<key>.lock`: which keys have a lock file.
    def _scan_locks(self, keys: dict[str, int]) -> set[str]:
        found: set[str] = set()
        with _open_subdir(self.root_fd, LOCKS_DIRNAME, self.tally) as locks_fd:
            if locks_fd is None:
                return found
            with os.scandir(locks_fd) as entries:
                for entry in entries:
                    stem, _, ext = entry.name.rpartition(".")
                    path = f"{LOCKS_DIRNAME}/{entry.name}"
                    if entry.is_symlink():
                        self.tally.skip(path, SYMLINK)
                    elif ext != "lock" or (stem not in keys and not is_key(stem)):
                        self.tally.skip(path, FOREIGN)
                    elif entry.is_file(follow_symlinks=False):
                        found.add(stem)
                    else:
                        self.tally.skip(path, NOT_REGULAR)
        return found


# -- sweep ----------------------------------------------------------------------------------


def sweep(planned: Plan) -> CleanupReport:
    """Delete what ``planned`` lists, key by key under the key's lock; nothing else.

    A key whose lock is held, or whose entry changed since the plan, is left as it is
    and reported as skipped; errors deleting one key never stop the others. Sweeps of
    one data dir exclude each other (a flock on the data dir itself): the deployment's
    concurrency limit does not cover a run started by hand.
    """
    started = time.perf_counter()
    tally = planned.tally.copy()
    deleted: list[Doomed] = []
    report = CleanupReport(
        data_dir=str(planned.data_dir),
        now=planned.now,
        dry_run=False,
        max_age_hours=planned.max_age_hours,
        deleted=deleted,
        skipped=tally.skipped,
        remaining=0,
        oldest=None,
    )
    if planned.work:
        with _cyclic_gc_paused(), _open_root(planned.data_dir) as root_fd:
            if root_fd is None:
                for work in planned.work:
                    tally.abandon(work, VANISHED)
            else:
                root = os.fstat(root_fd)
                if (root.st_dev, root.st_ino) != planned.root_id:
                    raise RuntimeError(f"{planned.data_dir} is not the directory planned on")
                if try_flock(root_fd):  # one sweep at a time per data dir (closing frees it)
                    _sweep(root_fd, planned.work, tally, deleted)
                else:
                    for work in planned.work:
                        tally.abandon(work, OTHER_SWEEP)
    report.remaining = tally.remaining
    report.oldest = tally.oldest
    report.seconds = planned.seconds + time.perf_counter() - started
    return report


def _sweep(root_fd: int, work: list[KeyWork], tally: _Tally, deleted: list[Doomed]) -> None:
    locks_fd = _ensure_locks_dir(root_fd)
    if locks_fd is None:
        for item in work:
            tally.abandon(item, LOCK_UNUSABLE)
        return
    try:
        with _open_subdir(root_fd, TMP_DIRNAME) as tmp_fd:
            for item in work:
                held = _acquire(locks_fd, item.key)
                if isinstance(held, str):
                    tally.abandon(item, held)
                    continue
                try:
                    _sweep_key(root_fd, tmp_fd, locks_fd, item, tally, deleted)
                finally:
                    os.close(held)  # releases the flock (after the lock file is unlinked)
    finally:
        os.close(locks_fd)


def _sweep_key(
    root_fd: int,
    tmp_fd: int | None,
    locks_fd: int,
    item: KeyWork,
    tally: _Tally,
    deleted: list[Doomed],
) -> None:
    """Delete one key's planned files; the caller holds the key's lock."""
    complete = True
    if item.entry:
        expect_sidecar, expect_mp3 = item.expect
        sidecar_id = _file_id(_lstat(root_fd, f"{item.key}.json"))
        mp3_id = expect_mp3
        if expect_mp3 is not ANY_FILE:
            mp3_id = _file_id(_lstat(root_fd, f"{item.key}.mp3"))
        if sidecar_id == expect_sidecar and mp3_id == expect_mp3:
            # The sidecar first: it is the commit marker, so the entry disappears from
            # the page at once; a crash before the MP3 goes leaves a lone, old MP3 that
            # the next run removes by its mtime.
            for doomed in item.entry:
                done = _unlink(root_fd, doomed.path, tally)
                complete &= _record(done, doomed, tally, deleted)
        else:
            mp3_there = _lstat(root_fd, f"{item.key}.mp3") is not None
            for doomed in item.entry:
                there = sidecar_id is not None if doomed.kind == "sidecar" else mp3_there
                tally.skip(doomed.path, CHANGED if there else VANISHED)
            if mp3_there:
                # Still an entry, but not the one planned on (its times are unknown
                # without reading it again): counted, not a candidate for the oldest.
                tally.remaining += 1
            complete = sidecar_id is None and not mp3_there
    for doomed in item.temps:
        if tmp_fd is None:
            tally.skip(doomed.path, VANISHED)
            continue
        name = doomed.path.removeprefix(f"{TMP_DIRNAME}/")
        if doomed.kind == "temp-dir":
            done = _rmtree(tmp_fd, name, doomed.path, tally)
        else:
            done = _unlink(tmp_fd, name, tally, display=doomed.path)
        complete &= _record(done, doomed, tally, deleted)
    if item.drop_lock and complete:
        # Safe only because we hold its flock: Library.lock re-checks the inode it locked.
        removed = _unlink(locks_fd, f"{item.key}.lock", tally, display=None)
        if removed and item.lock is not None:
            deleted.append(item.lock)


def _record(done: bool | None, doomed: Doomed, tally: _Tally, deleted: list[Doomed]) -> bool:
    """Book one deletion's outcome; False if the file is still there."""
    if done:
        deleted.append(doomed)
    elif done is None:
        tally.skip(doomed.path, VANISHED)  # someone else deleted it: not ours to count
    return done is not False


# -- the flow ---------------------------------------------------------------------------------


def run(
    settings: Settings,
    *,
    max_age_hours: float | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> CleanupReport:
    """Plan a cleanup of the library ``settings`` describe and, unless ``dry_run``, do it."""
    planned = plan(
        settings.data_dir,
        retention_hours=settings.retention_hours,
        temp_grace_hours=settings.temp_grace_hours,
        max_age_hours=max_age_hours,
        now=now,
        probe_locks=dry_run,
    )
    return planned.report() if dry_run else sweep(planned)


def _flow_run_name() -> str:
    from prefect.runtime import flow_run

    return "cleanup (dry run)" if flow_run.parameters.get("dry_run") else "cleanup"


@flow(name="cleanup", flow_run_name=_flow_run_name, log_prints=False)
def cleanup(max_age_hours: float | None = None, dry_run: bool = False) -> CleanupSummary:
    """Delete expired MP3s, orphan sidecars and abandoned temp files from the library.

    ``max_age_hours`` overrides each sidecar's expiry (anything created longer ago goes);
    ``dry_run`` deletes nothing and reports what a real run would delete. No tasks: the
    work is one scan and its deletions, and a run is cheap to repeat (every 5 minutes).
    """
    report = run(get_settings(), max_age_hours=max_age_hours, dry_run=dry_run)
    get_run_logger().info("cleanup of %s: %s", report.data_dir, report.summary())
    create_markdown_artifact(
        render_markdown(report),
        key="cleanup-dry-run" if dry_run else "cleanup-report",
        description=report.summary(),
    )
    return CleanupSummary.of(report)


def render_markdown(report: CleanupReport, max_rows: int = 50) -> str:
    """The artifact: the numbers, the oldest remaining entry, what was skipped and why."""
    title = "Cleanup (dry run: nothing deleted)" if report.dry_run else "Cleanup"
    verb = "would be deleted" if report.dry_run else "deleted"
    basis = (
        f"older than {report.max_age_hours:g} h (max_age_hours)"
        if report.max_age_hours is not None
        else "past each sidecar's expires_at"
    )
    oldest = "none"
    if report.oldest is not None:
        left = report.oldest.expires_at - report.now
        oldest = (
            f"`{report.oldest.key}`, created {_iso(report.oldest.created_at)}, "
            f"goes {_iso(report.oldest.expires_at)} ({_human_delta(left)})"
        )
    lines = [
        f"### {title}",
        "",
        f"`{report.data_dir}` at {_iso(report.now)}; entries go when {basis}.",
        "",
        "| | |",
        "|---|---|",
        f"| entries {verb} | {report.entries_deleted} |",
        f"| sidecars {verb} (with their MP3 or orphaned) | {report.sidecars_removed} |",
        f"| temp leftovers {verb} | {report.temp_removed} |",
        f"| idle lock files {verb} | {report.locks_removed} |",
        f"| bytes freed | {_human_bytes(report.bytes_freed)} ({report.bytes_freed:,} bytes) |",
        f"| entries remaining | {report.remaining} |",
        f"| oldest remaining entry | {oldest} |",
        f"| time | {report.seconds:.2f} s |",
        "",
    ]
    if report.skipped:
        lines += ["#### Left alone", "", "| why | how many | e.g. |", "|---|---:|---|"]
        for reason, group in sorted(report.skipped.items(), key=lambda item: -item[1].count):
            examples = ", ".join(f"`{_md(path)}`" for path in group.examples[:5])
            lines.append(f"| {reason} | {group.count} | {examples} |")
        lines.append("")
    if report.deleted:
        shown = report.deleted[:max_rows]
        lines += [
            f"#### {verb.capitalize()}",
            "",
            "| path | kind | bytes | why |",
            "|---|---|---:|---|",
        ]
        lines += [f"| `{_md(d.path)}` | {d.kind} | {d.bytes:,} | {d.why} |" for d in shown]
        if len(report.deleted) > len(shown):
            lines.append(f"| … and {len(report.deleted) - len(shown)} more | | | |")
    return "\n".join(lines)


# -- file system helpers ----------------------------------------------------------------------


class _TooDeep(Exception):
    pass


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a plan or sweep allocates.

    Why: a plan of 100k entries keeps ~150k small objects (work items, paths) alive and
    discards 100k parsed sidecars; the collections that triggers re-scan the growing
    heap, about 8 % of the CPU time of a 100k-entry cleanup (measured). Nothing here
    makes reference cycles, so reference counting frees all of it anyway.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextmanager
def _open_root(data_dir: Path) -> Iterator[int | None]:
    """The data dir (the one path opened by name, symlinks allowed: it is configuration)."""
    try:
        fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        yield None
        return
    try:
        yield fd
    finally:
        os.close(fd)


@contextmanager
def _open_subdir(root_fd: int, name: str, tally: _Tally | None = None) -> Iterator[int | None]:
    """``.tmp`` or ``.locks`` as a dir fd; None if missing or not a real directory."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=root_fd)
    except FileNotFoundError:
        yield None
        return
    except OSError as exc:  # ELOOP: a symlink (the root scan reported it); ENOTDIR: a file
        if tally is not None and exc.errno != errno.ELOOP:
            tally.skip(name, NOT_REGULAR)
        yield None
        return
    try:
        yield fd
    finally:
        os.close(fd)


def _ensure_locks_dir(root_fd: int) -> int | None:
    """``.locks`` as a dir fd, made if missing (as Library.lock would); None if unusable."""
    with suppress(OSError):  # exists already, or cannot be made: the open below tells
        os.mkdir(LOCKS_DIRNAME, 0o755, dir_fd=root_fd)
    try:
        return os.open(LOCKS_DIRNAME, _DIR_FLAGS, dir_fd=root_fd)
    except OSError:
        return None


def _parse_sidecar(fd: int) -> Lifetime | None:
    """The lifetime read from the sidecar at ``fd``; None when unreadable, too big or invalid.

    ``validate_json`` is pydantic-core's own parser: a sidecar takes ~2 µs this way,
    ~3.5 µs as a whole ``Sidecar`` and ~8 µs through ``json.loads`` alone (measured on
    100k sidecars), so at 100k entries this saves 0.15-0.6 s of a 3 s budget.
    """
    try:
        data = os.read(fd, _READ_CHUNK)
        if len(data) == _READ_CHUNK:  # a short read of a regular file is its end
            while len(data) <= MAX_SIDECAR_BYTES and (chunk := os.read(fd, _READ_CHUNK)):
                data += chunk
    except OSError:  # EISDIR: a dir was swapped in; the caller's fstat tells
        return None
    if len(data) > MAX_SIDECAR_BYTES:
        return None
    try:
        return _LIFETIME.validate_json(data)
    except ValueError:
        return None


def _tree_stats(dir_fd: int, name: str, depth: int = 0) -> tuple[float, int]:
    """(newest mtime, total bytes) of a scratch tree, walked without following symlinks.

    The newest mtime, not the dir's own, is the tree's age: a download appending to a
    file in it does not touch the directory.
    """
    if depth > MAX_TEMP_DEPTH:
        raise _TooDeep
    fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    try:
        newest = os.fstat(fd).st_mtime
        total = 0
        with os.scandir(fd) as entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        mtime, size = _tree_stats(fd, entry.name, depth + 1)
                    else:
                        st = entry.stat(follow_symlinks=False)
                        mtime, size = st.st_mtime, st.st_size
                except FileNotFoundError:
                    continue
                newest = max(newest, mtime)
                total += size
        return newest, total
    finally:
        os.close(fd)


def _probe_locks(root_fd: int, work: list[KeyWork], tally: _Tally) -> list[KeyWork]:
    """The work a sweep could do right now: keys whose lock is free (a dry run's view)."""
    try:
        locks_fd: int | None = os.open(LOCKS_DIRNAME, _DIR_FLAGS, dir_fd=root_fd)
    except FileNotFoundError:
        locks_fd = None  # no lock is held; the sweep makes the dir
    except OSError:
        for item in work:
            tally.abandon(item, LOCK_UNUSABLE)
        return []
    try:
        free = []
        for item in work:
            problem = None if locks_fd is None else _probe_lock(locks_fd, item.key)
            if problem is None:
                free.append(item)
            else:
                tally.abandon(item, problem)
        return free
    finally:
        if locks_fd is not None:
            os.close(locks_fd)


def _probe_lock(locks_fd: int, key: str) -> str | None:
    """Why ``key`` cannot be swept now, or None if its lock is free (or has no file)."""
    try:
        fd = os.open(f"{key}.lock", _LOCK_FLAGS, dir_fd=locks_fd)
    except FileNotFoundError:
        return None
    except OSError:
        return LOCK_UNUSABLE
    try:
        return None if try_flock(fd) else IN_USE
    finally:
        os.close(fd)


def _acquire(locks_fd: int, key: str) -> int | str:
    """Take ``key``'s lock without waiting: the locked fd, or why it cannot be had.

    The lock file is created if missing (as :meth:`Library.lock` does), so a conversion
    starting meanwhile waits for us instead of racing us.
    """
    name = f"{key}.lock"
    try:
        fd = os.open(name, _LOCK_FLAGS | os.O_CREAT, 0o644, dir_fd=locks_fd)
    except OSError:
        return LOCK_UNUSABLE
    try:
        if not try_flock(fd):
            os.close(fd)
            return IN_USE
        # No same-inode check (Library.lock's) is needed: only a sweep unlinks lock files,
        # and this one holds the data dir's flock, so no other sweep can have unlinked
        # this file between our open and our flock. (It saves a syscall per key.)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _file_id(st: os.stat_result | None) -> FileId | None:
    """A regular file's identity; (-1, -1, -1) for anything else there; None when absent."""
    if st is None:
        return None
    if not stat.S_ISREG(st.st_mode):
        return (-1, -1, -1)
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _unlink(dir_fd: int, name: str, tally: _Tally, display: str | None = "") -> bool | None:
    """Unlink ``name`` (never following it): True if we did, None if it was already gone,
    False if it cannot be (reported under ``display``, unless that is None)."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if display is not None:
            tally.skip(display or name, f"could not delete ({exc.strerror})")
        return False
    return True


def _rmtree(dir_fd: int, name: str, display: str, tally: _Tally) -> bool | None:
    """Remove a scratch tree: True if we did, None if it was already gone, False if not.

    ``shutil.rmtree`` with ``dir_fd`` is the fd-based, symlink-safe walk: links inside
    are unlinked, never followed, and a dir swapped for a link is refused.
    """
    st = _lstat(dir_fd, name)
    if st is None:
        return None
    if not stat.S_ISDIR(st.st_mode):
        tally.skip(display, CHANGED)
        return False
    problems: list[str] = []

    def onerror(_function: Any, _path: str, exc_info: Any) -> None:
        exc = exc_info[1]
        if not isinstance(exc, FileNotFoundError):
            problems.append(getattr(exc, "strerror", None) or str(exc))

    shutil.rmtree(name, onerror=onerror, dir_fd=dir_fd)
    if problems:
        tally.skip(display, f"could not delete ({problems[0]})")
        return False
    return True


# -- small formatting helpers ---------------------------------------------------------------


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def _human_delta(delta: timedelta) -> str:
    """``in 2 h 5 min``, or ``overdue by 0 h 3 min`` (an expired entry left in use)."""
    seconds = int(delta.total_seconds())
    hours, rest = divmod(abs(seconds), 3600)
    text = f"{hours} h {rest // 60} min"
    return f"in {text}" if seconds >= 0 else f"overdue by {text}"


def _md(text: str) -> str:
    """A path safe inside a markdown table cell and a code span."""
    return text.replace("|", "\\|").replace("`", "'")
