"""Flow ``cleanup``: remove what has outlived its lifetime, and nothing else.

For each key with something to remove, :func:`clean` takes the key's lock without
waiting (a conversion holding it owns the key: it is left alone), reads the key's files
again under the lock and removes what still has to go. A dry run is the same loop
without the removals. The names and the rules of the data dir are :mod:`flows.library`'s.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.states import Failed, State

from flows.library import ODD, DataDir, Library, Stored, utcnow
from flows.settings import get_settings

MIN_MAX_AGE_HOURS = 0.5
"""A smaller ``max_age_hours`` empties nearly the whole library: it needs ``force``."""
MAX_ROWS = 50
"""Rows of removed entries in the report artifact (the counts are always complete)."""

EXPIRED = "expired"
TOO_OLD = "older than max_age_hours"
NO_SIDECAR = "no readable sidecar, MP3 older than its lifetime"
ORPHAN = "sidecar without MP3"
IN_USE = "in use by a conversion (its lock is held)"


@dataclass
class Report:
    """What one cleanup removed (a dry run: would remove) and what it left alone."""

    data_dir: str
    now: datetime
    dry_run: bool
    removed: list[tuple[str, str, int]] = field(default_factory=list)
    """(key, why, bytes) of each entry removed."""
    workspaces: list[str] = field(default_factory=list)
    locks: list[str] = field(default_factory=list)
    left_alone: list[tuple[str, str]] = field(default_factory=list)
    """(path, why) of each name left alone."""
    remaining: list[tuple[datetime, str, int]] = field(default_factory=list)
    """(expires, key, bytes) of each entry that stays."""

    def summary(self) -> str:
        """One line a person reads at a glance."""
        freed = sum(size for *_, size in self.removed)
        kept = sum(size for *_, size in self.remaining)
        return (
            f"{'would remove' if self.dry_run else 'removed'} {len(self.removed)} entries "
            f"({freed / 1e6:.1f} MB), {len(self.workspaces)} scratch dirs, {len(self.locks)} "
            f"lock files; {len(self.remaining)} entries remain ({kept / 1e6:.1f} MB); "
            f"{len(self.left_alone)} left alone"
        )


def refusal(max_age_hours: float | None, force: bool) -> str | None:
    """Why a run with these parameters must not start, or None if it may."""
    if max_age_hours is not None and max_age_hours <= 0:
        return "max_age_hours must be a positive number of hours (or empty: each file's expiry)."
    if max_age_hours is not None and max_age_hours < MIN_MAX_AGE_HOURS and not force:
        return (
            f"max_age_hours={max_age_hours:g} is below the floor of {MIN_MAX_AGE_HOURS:g} hours "
            "and would remove nearly every file. Nothing was removed; run again with "
            "force=true if that is what you want."
        )
    return None


def clean(
    library: Library,
    *,
    now: datetime | None = None,
    max_age_hours: float | None = None,
    max_bytes: int = 0,
    incoming: int = 0,
    dry_run: bool = False,
) -> Report:
    """Remove from ``library`` (or with ``dry_run`` only list) what has to go at ``now``.

    That is: entries past their expiry (with ``max_age_hours``: created longer ago),
    sidecars without MP3, scratch dirs and lock files of keys no conversion holds, then
    while the entries left weigh over ``max_bytes`` (0: no cap), with ``incoming`` bytes
    about to be published counted in, the oldest of them.
    """
    now = now or utcnow()
    max_age = None if max_age_hours is None else timedelta(hours=max_age_hours)
    if max_age is not None and max_age <= timedelta(0):
        raise ValueError("max_age_hours must be positive")
    report = Report(str(library.root), now, dry_run)
    with library.opened() as data:
        if data is not None:
            _clean(data, report, max_age, max_bytes, incoming)
    return report


def make_room(library: Library, incoming: int, max_bytes: int) -> Report | None:
    """Before ``incoming`` bytes are published into a library capped at ``max_bytes``: a
    sweep (:func:`clean`) that also evicts the oldest entries until the new file fits.
    None when it fits already (or there is no cap); else the sweep's report."""
    if not max_bytes or library.mp3_bytes() + incoming <= max_bytes:
        return None
    return clean(library, max_bytes=max_bytes, incoming=incoming)


def _clean(
    data: DataDir, report: Report, max_age: timedelta | None, max_bytes: int, incoming: int
) -> None:
    now = report.now
    survey = data.survey()
    report.left_alone += survey.left_alone

    def lifetime(created: datetime, expires: datetime) -> tuple[datetime, datetime]:
        return created, expires if max_age is None else created + max_age

    def why_remove(stored: Stored) -> str | None:
        if stored.mp3 is None:
            return ORPHAN if stored.json is not None else None
        if lifetime(*data.lifetime(stored))[1] > now:
            return None
        if stored.lifetime is None:
            return NO_SIDECAR
        return EXPIRED if max_age is None else TOO_OLD

    kept: list[tuple[datetime, datetime, str, int]] = []  # (created, expires, key, bytes)
    for key in survey.keys | survey.workspaces.keys() | survey.locks:
        if key in survey.pairs and key not in survey.workspaces:  # the common case:
            read = data.read_lifetime(key)  # an entry that stays needs no lock
            if read is not None:
                created, expires = lifetime(read["created_at"], read["expires_at"])
                if expires > now:
                    kept.append((created, expires, key, read["bytes"]))
                    continue
        scratch = survey.workspaces.get(key, [])
        left = _clean_key(data, key, why_remove, scratch, key in survey.locks, report)
        if left is not None:
            kept.append((*lifetime(*data.lifetime(left)), key, left.bytes))

    evicted = (
        _evict(data, sorted(kept), max_bytes, incoming, survey.locks, report)
        if max_bytes
        else set()
    )
    report.remaining = [(end, key, size) for _, end, key, size in kept if key not in evicted]


def _evict(
    data: DataDir,
    oldest_first: list[tuple[datetime, datetime, str, int]],
    max_bytes: int,
    incoming: int,
    locks: set[str],
    report: Report,
) -> set[str]:
    """Remove the oldest entries until the rest (and ``incoming`` new bytes) fit in
    ``max_bytes``; returns their keys."""
    why = f"library over its size cap of {max_bytes / 1e6:g} MB"
    if incoming:
        why += f" with a new file of {incoming / 1e6:.1f} MB"
    total = sum(size for *_, size in oldest_first) + incoming
    evicted: set[str] = set()
    for created, _, key, size in oldest_first:
        if total <= max_bytes:
            break
        if (key, IN_USE) in report.left_alone:
            continue

        def same_entry(stored: Stored, created: datetime = created) -> str | None:
            return why if stored.mp3 and data.lifetime(stored)[0] == created else None

        if not _clean_key(data, key, same_entry, [], key in locks, report):
            evicted.add(key)  # else in use, or published again meanwhile: it stays
            total -= size
    return evicted


def _clean_key(
    data: DataDir,
    key: str,
    why_remove: Callable[[Stored], str | None],
    workspaces: list[str],
    has_lock_file: bool,
    report: Report,
) -> Stored | None:
    """Under ``key``'s lock, not waited for, remove what must go (read again under the
    lock: a conversion may have published meanwhile). Returns the entry that stays."""
    try:
        with data.try_lock(key, create=not report.dry_run) as held:
            stored = data.stored(key)
            if not held:
                report.left_alone.append((key, IN_USE))
                return stored if stored.mp3 and not stored.odd_names else None
            if stored.odd_names:
                report.left_alone += [(name, ODD) for name in stored.odd_names]
                return None
            if (why := why_remove(stored)) is not None:
                report.removed.append((key, why, stored.bytes))
                if not report.dry_run:
                    data.remove_entry(key)
            for name in workspaces:
                if report.dry_run or data.remove_workspace(name):
                    report.workspaces.append(name)
            if why is None and stored.mp3 is not None:
                return stored
            report.locks += [key] if has_lock_file else []
            if not report.dry_run:
                data.remove_lock(key)  # nothing is left of the key, and we hold the lock
            return None
    except OSError as exc:  # one key's trouble never stops the others
        report.left_alone.append((key, f"could not clean ({exc.strerror or exc})"))
        return None


def _run_name() -> str:
    from prefect.runtime import flow_run

    return "cleanup (dry run)" if flow_run.parameters.get("dry_run") else "cleanup"


@flow(name="cleanup", flow_run_name=_run_name, log_prints=False)
def cleanup(
    max_age_hours: float | None = None, dry_run: bool = False, force: bool = False
) -> Report | State:
    """Remove what has to go (see :func:`clean`) and leave one report artifact.

    ``max_age_hours`` replaces each entry's expiry by its creation plus that age; below
    0.5 h the run is refused (Failed) unless ``force``. ``dry_run`` removes nothing. The
    size cap is ``YTMP3_MAX_LIBRARY_MB``.
    """
    if (message := refusal(max_age_hours, force)) is not None:
        return Failed(message=message)
    settings = get_settings()
    report = clean(
        Library.from_settings(settings),
        max_age_hours=max_age_hours,
        max_bytes=settings.max_library_bytes,
        dry_run=dry_run,
    )
    get_run_logger().info("cleanup of %s: %s", report.data_dir, report.summary())
    create_markdown_artifact(
        render_markdown(report),
        key="cleanup-dry-run" if dry_run else "cleanup-report",
        description=report.summary(),
    )
    return report


def render_markdown(report: Report) -> str:
    """The artifact: the summary, the entries removed and why, what was left alone."""
    when = report.now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [
        f"### Cleanup{' (dry run: nothing removed)' if report.dry_run else ''}",
        "",
        f"`{_md(report.data_dir)}` at {when}: {report.summary()}.",
        "",
    ]
    if report.removed:
        lines += ["| entry | why | bytes |", "|---|---|---:|"]
        lines += [f"| `{key}` | {why} | {n:,} |" for key, why, n in report.removed[:MAX_ROWS]]
        if len(report.removed) > MAX_ROWS:
            lines.append(f"| … and {len(report.removed) - MAX_ROWS} more | | |")
        lines.append("")
    if report.remaining:
        expires, key, _ = min(report.remaining)
        lines += [f"Next to go: `{key}`, at {expires.astimezone(UTC):%Y-%m-%d %H:%M UTC}.", ""]
    for why, count in Counter(why for _, why in report.left_alone).most_common():
        examples = [f"`{_md(path)}`" for path, reason in report.left_alone if reason == why]
        lines.append(f"- left alone, {why}: {count} ({', '.join(examples[:5])})")
    return "\n".join(lines)


def _md(text: str) -> str:
    """Text safe inside a markdown code span and table cell."""
    return text.replace("|", "\\|").replace("`", "'")
