"""The cleanup's plain function: what goes, what stays, and that nothing else is touched.

Time is passed in (``now=``) instead of slept through; files get old mtimes with
``os.utime``. Locks held by "a conversion" are real flocks taken through
:meth:`Library.lock`, from this process (flock conflicts between open files, not
processes) or from a child process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flows import library as library_module
from flows.cleanup import (
    EXPIRED,
    IN_USE,
    NO_SIDECAR,
    ORPHAN,
    TOO_OLD,
    Report,
    clean,
    refusal,
    render_markdown,
)
from flows.library import FOREIGN, SYMLINK, DataDir, Library, Sidecar, make_key

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
HEX = "0123456789ab"


def key_of(name: str, quality: str = "192") -> str:
    return make_key("youtube", name, quality)  # type: ignore[arg-type]


def add_entry(
    root: Path,
    key: str,
    created: datetime = T0,
    life: timedelta = timedelta(hours=8),
    *,
    sidecar: bool = True,
    mp3: bool = True,
    payload: bytes = b"ID3" + b"\0" * 97,
) -> None:
    """An entry written directly, as publish leaves it: MP3 mtime = created_at."""
    root.mkdir(parents=True, exist_ok=True)
    if mp3:
        path = root / f"{key}.mp3"
        path.write_bytes(payload)
        os.utime(path, (created.timestamp(), created.timestamp()))
    if sidecar:
        meta = Sidecar(
            key=key,
            title="t",
            source_url="https://example.invalid/v",
            extractor="youtube",
            media_id=key.split(".")[1],
            bytes=len(payload),
            quality=key.rsplit(".", 1)[1],  # type: ignore[arg-type]
            created_at=created,
            expires_at=created + life,
        )
        (root / f"{key}.json").write_text(meta.model_dump_json(indent=2))


def add_workspace(root: Path, key: str, hex12: str = HEX) -> Path:
    """A conversion's scratch dir, as Library.workspace makes it, with a partial download."""
    path = root / ".tmp" / f"{key}.{hex12}"
    path.mkdir(parents=True)
    (path / "source.webm.part").write_bytes(b"x" * 10)
    return path


def run(root: Path, now: datetime, *, retention: float = 8.0, **options: object) -> Report:
    return clean(Library(root, retention_hours=retention), now=now, **options)  # type: ignore[arg-type]


def removed(report: Report) -> set[str]:
    return {key for key, _, _ in report.removed}


def left_alone(report: Report, why: str) -> set[str]:
    return {path for path, reason in report.left_alone if reason == why}


def tree(root: Path) -> set[str]:
    """Every path under ``root`` (not following symlinks), relative to it."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            found.add(os.path.relpath(os.path.join(dirpath, name), root))
    return found


@contextmanager
def before_each_lock(monkeypatch: pytest.MonkeyPatch, action: object) -> Iterator[list[str]]:
    """Run ``action(key)`` each time the cleanup is about to take a key's lock: what
    another process might do between the cleanup's first look and its lock."""
    real = DataDir.try_lock
    seen: list[str] = []

    def try_lock(self: DataDir, key: str, **options: bool) -> object:
        seen.append(key)
        action(key)  # type: ignore[operator]
        return real(self, key, **options)

    monkeypatch.setattr(DataDir, "try_lock", try_lock)
    yield seen


# -- one lifetime ------------------------------------------------------------------------------


@pytest.mark.parametrize("retention", [8.0, 1.0])
def test_boundary_one_minute_either_side_of_expiry(tmp_path: Path, retention: float):
    root = tmp_path / "data"
    life = timedelta(hours=retention)
    key = key_of("boundary")
    add_entry(root, key, life=life)

    early = run(root, T0 + life - timedelta(minutes=1), retention=retention)
    assert early.removed == [] and [key for _, key, _ in early.remaining] == [key]
    assert early.remaining[0][0] == T0 + life
    assert {f"{key}.mp3", f"{key}.json"} <= tree(root)

    late = run(root, T0 + life + timedelta(minutes=1), retention=retention)
    assert late.removed == [(key, EXPIRED, 100)] and late.remaining == []
    assert tree(root) == {".locks"}  # made to lock the key, as Library.lock would


def test_an_entry_goes_at_exactly_its_expiry_as_the_page_says_expired(tmp_path: Path):
    root = tmp_path / "data"
    key = key_of("exact")
    add_entry(root, key, life=timedelta(hours=8))
    expiry = T0 + timedelta(hours=8)

    assert run(root, expiry - timedelta(microseconds=1)).removed == []
    assert Sidecar.model_validate_json((root / f"{key}.json").read_text()).is_expired(expiry)
    assert removed(run(root, expiry)) == {key}


@pytest.mark.parametrize("retention", [8.0, 1.0])
def test_boundary_for_an_mp3_without_sidecar_uses_mtime_plus_retention(
    tmp_path: Path, retention: float
):
    root = tmp_path / "data"
    life = timedelta(hours=retention)
    key = key_of("nosidecar")
    add_entry(root, key, sidecar=False)

    assert run(root, T0 + life - timedelta(minutes=1), retention=retention).removed == []
    late = run(root, T0 + life + timedelta(minutes=1), retention=retention)
    assert late.removed == [(key, NO_SIDECAR, 100)]
    assert not (root / f"{key}.mp3").exists()


def test_the_sidecar_expiry_wins_over_the_current_retention_and_the_mtime(tmp_path: Path):
    """Published under 8 h: still there at 7 h even if retention is now 1 h and the MP3 is old."""
    root = tmp_path / "data"
    key = key_of("keep")
    add_entry(root, key, life=timedelta(hours=8))
    old = (T0 - timedelta(days=30)).timestamp()
    os.utime(root / f"{key}.mp3", (old, old))

    report = run(root, T0 + timedelta(hours=7), retention=1.0)
    assert report.removed == []
    assert (root / f"{key}.mp3").exists()


def test_entries_published_by_the_library_follow_the_retention_setting(tmp_path: Path):
    root = tmp_path / "data"
    library = Library(root, retention_hours=1)
    key = key_of("published")
    with library.lock(key), library.workspace(key) as workdir:
        mp3 = workdir / "audio.mp3"
        mp3.write_bytes(b"ID3audio")
        fields = {"title": "T", "source_url": "u", "extractor": "youtube", "media_id": "m"}
        entry = library.publish(key, mp3, library.new_sidecar(key, mp3, quality="192", **fields))
    created = entry.sidecar.created_at

    assert run(root, created + timedelta(minutes=59), retention=1.0).removed == []
    report = run(root, created + timedelta(minutes=61), retention=1.0)
    assert report.removed == [(key, EXPIRED, len(b"ID3audio"))] and report.locks == [key]
    assert tree(root) == {".tmp", ".locks"}


def test_max_age_overrides_the_sidecar_expiry_both_ways(tmp_path: Path):
    root = tmp_path / "data"
    young, old, bare = key_of("young"), key_of("old"), key_of("bare")
    add_entry(root, young, created=T0 - timedelta(hours=3), life=timedelta(hours=8))
    add_entry(root, old, created=T0 - timedelta(hours=10), life=timedelta(hours=8))
    add_entry(root, bare, created=T0 - timedelta(hours=3), sidecar=False)

    two = run(root, T0, dry_run=True, max_age_hours=2)
    assert {(key, why) for key, why, _ in two.removed} == {
        (young, TOO_OLD),
        (old, TOO_OLD),
        (bare, NO_SIDECAR),
    }
    # A longer max age keeps what the sidecar alone would have let go.
    day = run(root, T0, dry_run=True, max_age_hours=24)
    assert day.removed == [] and len(day.remaining) == 3
    with pytest.raises(ValueError):
        run(root, T0, max_age_hours=0)


def test_a_max_age_below_the_floor_needs_force():
    assert refusal(None, force=False) is None
    assert refusal(0.5, force=False) is None
    message = refusal(0.001, force=False)
    assert message is not None and "force=true" in message and "0.5" in message
    assert refusal(0.001, force=True) is None
    for nonsense in (0, -1):
        assert refusal(nonsense, force=True) is not None


# -- what goes besides expired entries ---------------------------------------------------------


def test_orphan_sidecars_go_and_unreadable_sidecars_fall_back_to_mtime(tmp_path: Path):
    root = tmp_path / "data"
    orphan, broken_old, broken_new = key_of("orphan"), key_of("brokenold"), key_of("brokennew")
    add_entry(root, orphan, created=T0, mp3=False)  # not expired, but describes nothing
    add_entry(root, broken_old, created=T0 - timedelta(hours=9), sidecar=False)
    (root / f"{broken_old}.json").write_text("{not json")
    add_entry(root, broken_new, created=T0 - timedelta(hours=7), sidecar=False)
    (root / f"{broken_new}.json").write_text('{"key": "missing fields"}')

    report = run(root, T0)
    assert {(key, why) for key, why, _ in report.removed} == {
        (orphan, ORPHAN),
        (broken_old, NO_SIDECAR),
    }
    assert not {f"{orphan}.json", f"{broken_old}.json", f"{broken_old}.mp3"} & tree(root)
    assert {f"{broken_new}.mp3", f"{broken_new}.json"} <= tree(root)


def test_a_sidecar_with_a_lifetime_but_other_fields_broken_goes_by_its_lifetime(tmp_path: Path):
    """Not the page's to show (its title is missing), but it still has one lifetime."""
    root = tmp_path / "data"
    key = key_of("titleless")
    add_entry(root, key, created=T0, life=timedelta(hours=8))
    old = (T0 - timedelta(days=3)).timestamp()
    os.utime(root / f"{key}.mp3", (old, old))  # the mtime fallback would delete it
    document = json.loads((root / f"{key}.json").read_text())
    del document["title"]
    (root / f"{key}.json").write_text(json.dumps(document))

    assert run(root, T0 + timedelta(hours=7)).removed == []
    assert run(root, T0 + timedelta(hours=9)).removed == [(key, EXPIRED, 100)]


def test_scratch_dirs_go_once_no_conversion_holds_their_key_and_foreign_names_stay(
    tmp_path: Path,
):
    """A fresh scratch dir goes too: its conversion is gone when its lock is free."""
    root = tmp_path / "data"
    fresh = add_workspace(root, key_of("fresh"))
    second = add_workspace(root, key_of("fresh"), hex12="ba9876543210")
    with_entry = add_workspace(root, key_of("kept"))
    add_entry(root, key_of("kept"), created=T0)
    (root / ".tmp" / "notes.txt").write_text("foreign")
    (root / ".tmp" / f"{key_of('partial')}.{HEX}.part").write_bytes(b"not a scratch dir")

    report = run(root, T0)
    assert sorted(report.workspaces) == sorted([fresh.name, second.name, with_entry.name])
    assert not fresh.exists() and not second.exists() and not with_entry.exists()
    assert (root / f"{key_of('kept')}.mp3").exists() and report.removed == []
    assert left_alone(report, FOREIGN) == {".tmp/notes.txt", f".tmp/{key_of('partial')}.{HEX}.part"}
    assert {".tmp/notes.txt", f".tmp/{key_of('partial')}.{HEX}.part"} <= tree(root)


def test_idle_locks_go_while_held_and_the_library_lock_still_works(tmp_path: Path):
    root = tmp_path / "data"
    library = Library(root)
    idle, live = key_of("idle"), key_of("live")
    with library.lock(idle):
        pass
    with library.lock(live):
        pass
    add_entry(root, live, created=T0)

    report = run(root, T0)
    assert report.locks == [idle] and report.removed == []
    assert (root / ".locks" / f"{live}.lock").exists()
    assert not (root / ".locks" / f"{idle}.lock").exists()
    with library.lock(idle, timeout=1):  # recreated on demand
        assert (root / ".locks" / f"{idle}.lock").exists()


# -- the size cap -------------------------------------------------------------------------------


def test_over_the_size_cap_the_oldest_entries_go_first(tmp_path: Path):
    root = tmp_path / "data"
    keys = [key_of(f"cap{age}") for age in range(5)]  # cap0 newest, cap4 oldest
    for age, key in enumerate(keys):
        add_entry(root, key, created=T0 - timedelta(hours=age), payload=b"x" * 400_000)

    report = run(root, T0, max_bytes=1_000_000)  # room for two of the five
    why = "library over its size cap of 1 MB"
    assert report.removed == [
        (keys[4], why, 400_000),
        (keys[3], why, 400_000),
        (keys[2], why, 400_000),
    ]
    assert sorted(key for _, key, _ in report.remaining) == sorted(keys[:2])
    assert {path.name for path in root.glob("*.mp3")} == {f"{k}.mp3" for k in keys[:2]}
    assert why in render_markdown(report)
    assert run(root, T0, max_bytes=1_000_000).removed == []  # under the cap now
    assert run(root, T0).removed == []  # no cap, nothing expired


def test_the_size_cap_never_evicts_an_entry_a_conversion_holds(tmp_path: Path):
    root = tmp_path / "data"
    library = Library(root)
    oldest, older, newest = key_of("oldest"), key_of("older"), key_of("newest")
    for age, key in ((3, oldest), (2, older), (1, newest)):
        add_entry(root, key, created=T0 - timedelta(hours=age), payload=b"x" * 400_000)

    with library.lock(oldest):
        dry = run(root, T0, max_bytes=1_000_000, dry_run=True)
        real = run(root, T0, max_bytes=1_000_000)
    for report in (dry, real):
        assert removed(report) == {older}  # the next oldest instead
        assert left_alone(report, IN_USE) == {oldest}
    assert (root / f"{oldest}.mp3").exists() and not (root / f"{older}.mp3").exists()


# -- what stays ------------------------------------------------------------------------------


def test_symlinks_their_targets_and_foreign_files_stay(tmp_path: Path):
    root = tmp_path / "data"
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "precious.mp3"
    target.write_bytes(b"precious")
    old = (T0 - timedelta(days=3)).timestamp()
    os.utime(target, (old, old))
    outside_dir = outside / "dir"
    outside_dir.mkdir()
    (outside_dir / "keep.txt").write_text("keep")

    linked = key_of("linked")
    root.mkdir()
    (root / f"{linked}.mp3").symlink_to(target)  # a library name, but a link: never followed
    add_entry(root, linked, created=T0 - timedelta(days=3), mp3=False)
    (root / "elsewhere.mp3").symlink_to(target)
    (root / "notes.txt").write_text("mine")
    (root / "youtube.bad.999.mp3").write_bytes(b"not a key")  # quality outside the scheme
    (root / "README.json").write_text("{}")
    (root / ".tmp").mkdir()
    (root / ".tmp" / f"{key_of('tmplink')}.{HEX}").symlink_to(outside_dir)
    (root / ".archive").mkdir()
    (root / ".archive" / "abc.txt").write_text("youtube x\n")
    expired = key_of("expired-no-sidecar")
    add_entry(root, expired, created=T0 - timedelta(days=3), sidecar=False)
    before = tree(root)

    report = run(root, T0)
    assert removed(report) == {expired}
    assert tree(root) == before - {f"{expired}.mp3"} | {".locks"}
    assert target.read_bytes() == b"precious" and (outside_dir / "keep.txt").exists()
    assert left_alone(report, SYMLINK) == {
        f"{linked}.mp3",
        "elsewhere.mp3",
        f".tmp/{key_of('tmplink')}.{HEX}",
    }
    assert left_alone(report, FOREIGN) == {"notes.txt", "youtube.bad.999.mp3", "README.json"}


def test_a_symlinked_tmp_or_locks_dir_is_never_entered(tmp_path: Path):
    root = tmp_path / "data"
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / f"{key_of('victim')}.{HEX}"
    victim.mkdir()
    lock = outside / f"{key_of('victim')}.lock"
    lock.write_text("")
    add_entry(root, key_of("expired"), created=T0 - timedelta(hours=9))
    (root / ".tmp").symlink_to(outside)
    (root / ".locks").symlink_to(outside)
    before = tree(outside)

    for dry_run in (True, False):
        report = run(root, T0, dry_run=dry_run)
        assert report.removed == [] and report.workspaces == [] and report.locks == []
        assert left_alone(report, SYMLINK) == {".tmp", ".locks"}
    assert tree(outside) == before
    assert (root / f"{key_of('expired')}.mp3").exists()  # it cannot be locked: it stays


def test_a_symlinked_lock_file_is_never_opened_through_and_its_key_stays(tmp_path: Path):
    root = tmp_path / "data"
    key = key_of("lockedout")
    add_entry(root, key, created=T0 - timedelta(hours=9))
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    (root / ".locks").mkdir()
    (root / ".locks" / f"{key}.lock").symlink_to(outside)
    (root / ".locks" / f"{key_of('dangling')}.lock").symlink_to(tmp_path / "nothing")

    for dry_run in (True, False):
        report = run(root, T0, dry_run=dry_run)
        assert report.removed == [] and report.locks == []
        assert any(path == key and "could not clean" in why for path, why in report.left_alone)
    assert outside.read_text() == "keep" and not (tmp_path / "nothing").exists()
    assert {f"{key}.mp3", f"{key}.json", f".locks/{key_of('dangling')}.lock"} <= tree(root)


def test_a_symlink_inside_an_abandoned_scratch_dir_is_removed_not_followed(tmp_path: Path):
    root = tmp_path / "data"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.mp3").write_bytes(b"keep")
    scratch = add_workspace(root, key_of("scratch"))
    (scratch / "link").symlink_to(outside)

    report = run(root, T0)
    assert report.workspaces == [scratch.name] and not scratch.exists()
    assert (outside / "keep.mp3").read_bytes() == b"keep"


def test_a_conversion_in_progress_keeps_its_scratch_dir_and_its_expired_entry(tmp_path: Path):
    """A run re-producing an expired key holds its lock: neither its files nor the old
    entry are touched; the dry run says the same."""
    root = tmp_path / "data"
    library = Library(root)
    key = key_of("busy")
    add_entry(root, key, created=T0 - timedelta(hours=20))
    with library.lock(key), library.workspace(key) as workdir:
        (workdir / "source.webm.part").write_bytes(b"downloading")
        before = tree(root)
        dry = run(root, T0, dry_run=True)
        real = run(root, T0)
        assert tree(root) == before
        for report in (dry, real):
            assert report.removed == [] and report.workspaces == []
            assert left_alone(report, IN_USE) == {key}
            assert [k for _, k, _ in report.remaining] == [key]
    # Once the conversion is over (here: it failed and cleaned up), the entry goes.
    report = run(root, T0)
    assert removed(report) == {key} and report.locks == [key]


_HOLDER = """
import sys, time
from pathlib import Path
from flows.library import Library
library = Library(Path(sys.argv[1]))
with library.lock(sys.argv[2]), library.workspace(sys.argv[2]) as workdir:
    (workdir / "audio.mp3").write_bytes(b"half")
    print(workdir.name, flush=True)
    time.sleep(120)
"""


def test_a_scratch_dir_goes_once_its_conversion_is_killed_not_before(tmp_path: Path):
    """A real child process converts (holds the key's lock in its workspace): its scratch
    dir stays while it lives, and goes with the first sweep after a ``kill -9``."""
    root = tmp_path / "data"
    key = key_of("otherprocess")
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(root), key], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        workspace = holder.stdout.readline().strip()
        assert workspace.startswith(key)
        for dry_run in (True, False):
            report = run(root, datetime.now(UTC), dry_run=dry_run)
            assert report.workspaces == [] and left_alone(report, IN_USE) == {key}
        assert (root / ".tmp" / workspace / "audio.mp3").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    report = run(root, datetime.now(UTC))
    assert report.workspaces == [workspace] and report.locks == [key]
    assert tree(root) == {".tmp", ".locks"}


# -- files that change or vanish -------------------------------------------------------------


def test_files_deleted_by_another_process_mid_scan_cause_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    root = tmp_path / "data"
    keys = [key_of(f"v{i}") for i in range(6)]
    for key in keys:
        add_entry(root, key, created=T0 - timedelta(hours=9))
    add_workspace(root, key_of("t"))
    real_read = library_module._read_json
    calls = []

    def read_and_meanwhile_delete(*args: object) -> object:
        calls.append(args)
        if len(calls) == 1:  # while the scan is under way, another process deletes things
            for key in keys:
                for suffix in (".mp3", ".json"):
                    (root / f"{key}{suffix}").unlink(missing_ok=True)
        return real_read(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(library_module, "_read_json", read_and_meanwhile_delete)
    report = run(root, T0)
    assert report.removed == [] and report.workspaces == [f"{key_of('t')}.{HEX}"]
    assert tree(root) == {".tmp", ".locks"}


def test_an_entry_deleted_or_re_published_before_the_lock_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Between the cleanup's first look and its lock, another cleanup removes one entry,
    something removes an MP3, and a conversion publishes a key again: the cleanup counts
    only what it removed and leaves the re-published entry whole."""
    root = tmp_path / "data"
    library = Library(root, retention_hours=8)
    now = datetime.now(UTC)
    gone, half, again = key_of("gone"), key_of("half"), key_of("again")
    for key in (gone, half, again):
        add_entry(root, key, created=now - timedelta(hours=9))

    def meanwhile(key: str) -> None:
        if key == gone:
            library.mp3_path(key).unlink()
            library.sidecar_path(key).unlink()
        elif key == half:
            library.mp3_path(key).unlink()
        elif key == again:  # what convert does
            with library.lock(key), library.workspace(key) as workdir:
                mp3 = workdir / "audio.mp3"
                mp3.write_bytes(b"ID3 fresh")
                fields = {"title": "T", "source_url": "u", "extractor": "youtube"}
                sidecar = library.new_sidecar(key, mp3, quality="192", media_id="a", **fields)
                library.publish(key, mp3, sidecar)

    with before_each_lock(monkeypatch, meanwhile) as locked:
        report = run(root, now)
    assert set(locked) == {gone, half, again}
    assert {(key, why) for key, why, _ in report.removed} == {(half, ORPHAN)}
    assert library.lookup(again) is not None
    assert [key for _, key, _ in report.remaining] == [again]


def test_the_run_stays_in_the_data_dir_it_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The data dir swapped for another mid-run: the other one is never touched."""
    root = tmp_path / "data"
    first, second = key_of("first"), key_of("second")
    add_entry(root, first, created=T0 - timedelta(hours=9))
    add_entry(root, second, created=T0 - timedelta(hours=9))
    swapped: list[Path] = []

    def swap(_key: str) -> None:
        if not swapped:
            swapped.append(root.rename(tmp_path / "moved"))
            add_entry(root, first, created=T0 - timedelta(hours=9))
            add_entry(root, second, created=T0 - timedelta(hours=9))

    with before_each_lock(monkeypatch, swap):
        report = run(root, T0)
    assert removed(report) == {first, second}
    assert tree(swapped[0]) == {".locks"}
    assert {f"{first}.mp3", f"{first}.json", f"{second}.mp3", f"{second}.json"} == tree(root)


def test_overlapping_sweeps_remove_each_entry_exactly_once(tmp_path: Path):
    root = tmp_path / "data"
    keys = {key_of(f"o{i}") for i in range(300)}
    for key in keys:
        add_entry(root, key, created=T0 - timedelta(hours=9))
        add_workspace(root, key)
    reports: list[Report] = []
    start = threading.Barrier(3)

    def sweep() -> None:
        start.wait()
        reports.append(run(root, T0))

    threads = [threading.Thread(target=sweep) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    removed_by = [removed(report) for report in reports]
    assert sum(len(keys) for keys in removed_by) == len(keys)  # nobody counted twice
    assert set().union(*removed_by) == keys
    assert sum(len(report.workspaces) for report in reports) == len(keys)
    assert tree(root) == {".tmp", ".locks"}


# -- dry run ----------------------------------------------------------------------------------


def test_dry_run_deletes_nothing_and_names_exactly_what_the_real_run_deletes(tmp_path: Path):
    root = tmp_path / "data"
    library = Library(root)
    for i in range(5):
        add_entry(root, key_of(f"e{i}"), created=T0 - timedelta(hours=9))  # expired
        add_entry(root, key_of(f"f{i}"), created=T0 - timedelta(hours=1))  # fresh
        with library.lock(key_of(f"e{i}")), library.lock(key_of(f"f{i}")):
            pass
    add_entry(root, key_of("orphan"), mp3=False)
    add_entry(root, key_of("lone"), created=T0 - timedelta(hours=10), sidecar=False)
    add_workspace(root, key_of("abandoned"))
    with library.lock(key_of("idle")):
        pass
    (root / "foreign.txt").write_text("x")
    held = key_of("e0")
    before = tree(root)

    with library.lock(held):
        dry = run(root, T0, dry_run=True)
        assert tree(root) == before
        real = run(root, T0)

    assert sorted(dry.removed) == sorted(real.removed)
    assert (sorted(dry.workspaces), sorted(dry.locks)) == (
        sorted(real.workspaces),
        sorted(real.locks),
    )
    assert sorted(dry.remaining) == sorted(real.remaining) and len(real.remaining) == 6
    assert sorted(dry.left_alone) == sorted(real.left_alone)
    assert len(dry.removed) == 6 and len(dry.locks) == 5  # e1-e4, orphan, lone; their locks + idle
    gone = before - tree(root)
    assert {path for path in gone if path.endswith((".mp3", ".json"))} == {
        f"{key}.{ext}" for key, _, _ in real.removed for ext in ("mp3", "json")
    } - {f"{key_of('orphan')}.mp3", f"{key_of('lone')}.json"}
    assert f".tmp/{key_of('abandoned')}.{HEX}" in gone


# -- the report ----------------------------------------------------------------------------------


def test_the_markdown_report_has_the_numbers_the_next_entry_to_go_and_what_was_left(
    tmp_path: Path,
):
    root = tmp_path / "data"
    add_entry(root, key_of("gone"), created=T0 - timedelta(hours=9), payload=b"x" * 2000)
    add_entry(root, key_of("older"), created=T0 - timedelta(hours=3))
    add_entry(root, key_of("newer"), created=T0 - timedelta(hours=1))
    (root / "odd|name`.txt").write_text("x")
    text = render_markdown(run(root, T0))
    assert "removed 1 entries (0.0 MB), 0 scratch dirs, 0 lock files; 2 entries remain" in text
    assert f"| `{key_of('gone')}` | expired | 2,000 |" in text
    assert f"Next to go: `{key_of('older')}`, at 2026-11-01 17:00 UTC" in text
    assert "name outside the library's scheme: 1 (`odd\\|name'.txt`)" in text
    assert "dry run: nothing removed" in render_markdown(run(root, T0, dry_run=True))


def test_an_empty_or_missing_data_dir_is_fine(tmp_path: Path):
    assert run(tmp_path / "missing", T0).removed == []
    assert not (tmp_path / "missing").exists()
    (tmp_path / "empty").mkdir()
    report = run(tmp_path / "empty", T0)
    assert report.removed == [] and report.remaining == [] and report.left_alone == []
    assert tree(tmp_path / "empty") == set()
