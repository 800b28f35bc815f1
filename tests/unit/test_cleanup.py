"""The cleanup's plain functions: what goes, what stays, and that nothing else is touched.

Time is passed in (``now=``) instead of slept through; files get old mtimes with
``os.utime``. Locks held by "a conversion" are real flocks taken through
:meth:`Library.lock`, from this process (flock conflicts between open files, not
processes) or a child process.
"""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import re
import shutil
import threading
import typing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flows import cleanup
from flows.cleanup import (
    CHANGED,
    FOREIGN,
    IN_USE,
    LOCK_UNUSABLE,
    OTHER_SWEEP,
    PAIR_ODD,
    RECENT_TEMP,
    SYMLINK,
    VANISHED,
    CleanupReport,
    Lifetime,
    plan,
    render_markdown,
    sweep,
)
from flows.library import Library, Sidecar, make_key
from flows.settings import Settings

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
        path = root / f"{key}.json"
        path.write_text(meta.model_dump_json(indent=2))
        os.utime(path, (created.timestamp(), created.timestamp()))


def add_temp(root: Path, key: str, age: timedelta, now: datetime = T0, suffix: str = "") -> Path:
    """A scratch dir (or, with a suffix, a partial file) last touched ``age`` before ``now``."""
    tmp = root / ".tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / f"{key}.{HEX}{suffix}"
    stamp = (now - age).timestamp()
    if suffix:
        path.write_bytes(b"partial")
    else:
        path.mkdir()
        (path / "source.webm.part").write_bytes(b"x" * 10)
        os.utime(path / "source.webm.part", (stamp, stamp))
    os.utime(path, (stamp, stamp))
    return path


def run(root: Path, now: datetime, *, dry_run: bool = False, **options: float) -> CleanupReport:
    options.setdefault("retention_hours", 8.0)
    options.setdefault("temp_grace_hours", 1.0)
    planned = plan(root, now=now, probe_locks=dry_run, **options)  # type: ignore[arg-type]
    return planned.report() if dry_run else sweep(planned)


def tree(root: Path) -> set[str]:
    """Every path under ``root`` (not following symlinks), relative to it."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            found.add(os.path.relpath(os.path.join(dirpath, name), root))
    return found


# -- one lifetime ------------------------------------------------------------------------------


@pytest.mark.parametrize("retention", [8.0, 1.0])
def test_boundary_one_minute_either_side_of_expiry(tmp_path: Path, retention: float):
    root = tmp_path / "data"
    life = timedelta(hours=retention)
    key = key_of("boundary")
    add_entry(root, key, life=life)

    early = run(root, T0 + life - timedelta(minutes=1), retention_hours=retention)
    assert early.deleted == [] and early.remaining == 1
    assert {f"{key}.mp3", f"{key}.json"} <= tree(root)
    assert early.oldest is not None and early.oldest.key == key
    assert early.oldest.expires_at == T0 + life

    late = run(root, T0 + life + timedelta(minutes=1), retention_hours=retention)
    assert late.deleted_paths() == {f"{key}.mp3", f"{key}.json"}
    assert late.entries_deleted == 1 and late.remaining == 0 and late.oldest is None
    assert tree(root) == {".locks"}  # made to lock the key, as Library.lock would


@pytest.mark.parametrize("retention", [8.0, 1.0])
def test_boundary_for_an_mp3_without_sidecar_uses_mtime_plus_retention(
    tmp_path: Path, retention: float
):
    root = tmp_path / "data"
    life = timedelta(hours=retention)
    key = key_of("nosidecar")
    add_entry(root, key, sidecar=False)

    assert run(root, T0 + life - timedelta(minutes=1), retention_hours=retention).deleted == []
    late = run(root, T0 + life + timedelta(minutes=1), retention_hours=retention)
    assert late.deleted_paths() == {f"{key}.mp3"} and late.entries_deleted == 1


def test_the_sidecar_expiry_wins_over_the_current_retention_and_the_mtime(tmp_path: Path):
    """Published under 8 h: still there at 7 h even if retention is now 1 h and the MP3 is old."""
    root = tmp_path / "data"
    key = key_of("keep")
    add_entry(root, key, life=timedelta(hours=8))
    old = (T0 - timedelta(days=30)).timestamp()
    os.utime(root / f"{key}.mp3", (old, old))

    report = run(root, T0 + timedelta(hours=7), retention_hours=1.0)
    assert report.deleted == []
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

    assert run(root, created + timedelta(minutes=59), retention_hours=1.0).deleted == []
    report = run(root, created + timedelta(minutes=61), retention_hours=1.0)
    assert report.deleted_paths() == {f"{key}.mp3", f"{key}.json", f".locks/{key}.lock"}
    assert tree(root) == {".tmp", ".locks"}


def test_bytes_freed_counts_both_files(tmp_path: Path):
    root = tmp_path / "data"
    key = key_of("bytes")
    add_entry(root, key, payload=b"x" * 1234)
    sizes = (root / f"{key}.mp3").stat().st_size + (root / f"{key}.json").stat().st_size
    report = run(root, T0 + timedelta(hours=9))
    assert report.bytes_freed == sizes


def test_max_age_overrides_the_sidecar_expiry_both_ways(tmp_path: Path):
    root = tmp_path / "data"
    young, old = key_of("young"), key_of("old")
    add_entry(root, young, created=T0 - timedelta(hours=3), life=timedelta(hours=8))
    add_entry(root, old, created=T0 - timedelta(hours=10), life=timedelta(hours=8))
    add_entry(root, key_of("bare"), created=T0 - timedelta(hours=3), sidecar=False)

    two = run(root, T0, dry_run=True, max_age_hours=2)
    assert {d.path for d in two.deleted if d.kind == "mp3"} == {
        f"{young}.mp3",
        f"{old}.mp3",
        f"{key_of('bare')}.mp3",
    }
    # A longer max age keeps what the sidecar alone would have let go.
    day = run(root, T0, dry_run=True, max_age_hours=24)
    assert day.deleted == [] and day.remaining == 3
    with pytest.raises(ValueError):
        run(root, T0, max_age_hours=0)


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
    assert report.deleted_paths() == {
        f"{orphan}.json",
        f"{broken_old}.json",
        f"{broken_old}.mp3",
    }
    assert report.entries_deleted == 1 and report.sidecars_removed == 2
    assert {f"{broken_new}.mp3", f"{broken_new}.json"} <= tree(root)


def test_abandoned_temp_goes_after_the_grace_period_and_recent_temp_stays(tmp_path: Path):
    root = tmp_path / "data"
    old_dir = add_temp(root, key_of("olddir"), timedelta(hours=2))
    old_part = add_temp(root, key_of("oldpart"), timedelta(hours=2), suffix=".part")
    new_dir = add_temp(root, key_of("newdir"), timedelta(minutes=30))
    # An old dir whose download is still growing: its file is recent, so it stays.
    busy_dir = add_temp(root, key_of("busydir"), timedelta(hours=5))
    os.utime(busy_dir / "source.webm.part", (T0.timestamp(), T0.timestamp()))
    (root / ".tmp" / "notes.txt").write_text("foreign")

    report = run(root, T0)
    assert report.deleted_paths() == {
        f".tmp/{old_dir.name}",
        f".tmp/{old_part.name}",
    }
    assert report.temp_removed == 2 and report.bytes_freed == 10 + len(b"partial")
    assert not old_dir.exists() and not old_part.exists()
    assert new_dir.exists() and busy_dir.exists() and (root / ".tmp" / "notes.txt").exists()
    assert report.skipped[RECENT_TEMP].count == 2
    assert report.skipped[FOREIGN].examples == [".tmp/notes.txt"]


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
    assert report.deleted_paths() == {f".locks/{idle}.lock"} and report.locks_removed == 1
    assert (root / ".locks" / f"{live}.lock").exists()
    with library.lock(idle, timeout=1):  # recreated on demand
        assert (root / ".locks" / f"{idle}.lock").exists()


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
    os.utime(outside_dir, (old, old))

    linked = key_of("linked")
    root.mkdir()
    (root / f"{linked}.mp3").symlink_to(target)  # a library name, but a link: never followed
    add_entry(root, linked, created=T0 - timedelta(days=3), mp3=False)
    (root / "elsewhere.mp3").symlink_to(target)
    (root / "notes.txt").write_text("mine")
    (root / "youtube.bad.999.mp3").write_bytes(b"not a key")  # quality outside the scheme
    (root / "README.json").write_text("{}")
    for path in (root / "notes.txt", root / "youtube.bad.999.mp3", root / "README.json"):
        os.utime(path, (old, old))
    (root / ".tmp").mkdir()
    (root / ".tmp" / f"{key_of('tmplink')}.{HEX}").symlink_to(outside_dir)
    (root / ".archive").mkdir()
    (root / ".archive" / "abc.txt").write_text("youtube x\n")
    expired = key_of("expired-no-sidecar")
    add_entry(root, expired, created=T0 - timedelta(days=3), sidecar=False)
    before = tree(root)

    report = run(root, T0)
    assert report.deleted_paths() == {f"{expired}.mp3"}
    assert tree(root) == before - {f"{expired}.mp3"} | {".locks"}
    assert target.read_bytes() == b"precious" and (outside_dir / "keep.txt").exists()
    assert set(report.skipped[SYMLINK].examples) == {
        f"{linked}.mp3",
        "elsewhere.mp3",
        f".tmp/{key_of('tmplink')}.{HEX}",
    }
    assert report.skipped[PAIR_ODD].examples == [f"{linked}.json"]
    assert set(report.skipped[FOREIGN].examples) == {
        "notes.txt",
        "youtube.bad.999.mp3",
        "README.json",
    }


def test_a_symlinked_tmp_or_locks_dir_is_never_entered(tmp_path: Path):
    root = tmp_path / "data"
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / f"{key_of('victim')}.{HEX}"
    victim.mkdir()
    old = (T0 - timedelta(days=3)).timestamp()
    os.utime(victim, (old, old))
    lock = outside / f"{key_of('victim')}.lock"
    lock.write_text("")
    root.mkdir()
    (root / ".tmp").symlink_to(outside)
    (root / ".locks").symlink_to(outside)

    report = run(root, T0)
    assert report.deleted == []
    assert victim.exists() and lock.exists()
    assert set(report.skipped[SYMLINK].examples) == {".tmp", ".locks"}


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
        assert report.deleted == []
        assert report.skipped[LOCK_UNUSABLE].count == 2  # the sidecar and the MP3
    assert outside.read_text() == "keep" and not (tmp_path / "nothing").exists()
    assert {f"{key}.mp3", f"{key}.json"} <= tree(root)


def test_a_symlink_inside_an_abandoned_scratch_dir_is_removed_not_followed(tmp_path: Path):
    root = tmp_path / "data"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.mp3").write_bytes(b"keep")
    scratch = add_temp(root, key_of("scratch"), timedelta(hours=3))
    (scratch / "link").symlink_to(outside)
    stamp = (T0 - timedelta(hours=3)).timestamp()
    os.utime(scratch / "link", (stamp, stamp), follow_symlinks=False)
    os.utime(scratch, (stamp, stamp))

    report = run(root, T0)
    assert report.deleted_paths() == {f".tmp/{scratch.name}"}
    assert (outside / "keep.mp3").read_bytes() == b"keep"


def test_a_conversion_in_progress_keeps_its_scratch_dir_and_its_expired_entry(tmp_path: Path):
    """A run re-producing an expired key holds its lock: neither its files nor the old
    entry are touched, however old they look; the dry run says the same."""
    root = tmp_path / "data"
    library = Library(root)
    key = key_of("busy")
    add_entry(root, key, created=T0 - timedelta(hours=20))
    with library.lock(key), library.workspace(key) as workdir:
        (workdir / "source.webm.part").write_bytes(b"downloading")
        stamp = (T0 - timedelta(hours=5)).timestamp()
        os.utime(workdir / "source.webm.part", (stamp, stamp))
        os.utime(workdir, (stamp, stamp))
        before = tree(root)

        dry = run(root, T0, dry_run=True)
        real = run(root, T0)

        assert dry.deleted == [] and real.deleted == []
        assert tree(root) == before
        for report in (dry, real):
            assert set(report.skipped[IN_USE].examples) == {
                f"{key}.json",
                f"{key}.mp3",
                f".tmp/{workdir.name}",
                f".locks/{key}.lock",
            }
            assert report.remaining == 1 and report.oldest is not None
    # Once the conversion is over (here: it failed and cleaned up), the entry goes.
    assert run(root, T0).deleted_paths() == {f"{key}.json", f"{key}.mp3", f".locks/{key}.lock"}


def _hold_lock(root: str, key: str, ready: multiprocessing.synchronize.Event) -> None:
    library = Library(Path(root))
    with library.lock(key), library.workspace(key) as workdir:
        (workdir / "audio.mp3").write_bytes(b"half")
        stamp = (datetime.now(UTC) - timedelta(hours=5)).timestamp()
        os.utime(workdir / "audio.mp3", (stamp, stamp))
        os.utime(workdir, (stamp, stamp))
        ready.set()
        threading.Event().wait(60)


def test_a_scratch_dir_held_by_another_process_stays(tmp_path: Path):
    root = tmp_path / "data"
    key = key_of("otherprocess")
    ready = multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_lock, args=(str(root), key, ready))
    holder.start()
    try:
        assert ready.wait(10)
        report = run(root, datetime.now(UTC))
        assert report.deleted == []
        assert [p.name.split(".")[1] for p in (root / ".tmp").iterdir()] == ["otherprocess"]
    finally:
        holder.kill()
        holder.join()
    # The holder died without cleaning up: its scratch dir is now abandoned.
    report = run(root, datetime.now(UTC))
    assert report.temp_removed == 1 and list((root / ".tmp").iterdir()) == []


# -- files that change or vanish -------------------------------------------------------------


def test_files_deleted_by_another_process_mid_scan_cause_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    root = tmp_path / "data"
    keys = [key_of(f"v{i}") for i in range(6)]
    for key in keys:
        add_entry(root, key, created=T0 - timedelta(hours=9))
    add_temp(root, key_of("t"), timedelta(hours=2))
    real_parse = cleanup._parse_sidecar
    calls = []

    def parse_and_meanwhile_delete(fd: int) -> object:
        calls.append(fd)
        if len(calls) == 1:  # while the scan is under way, another process deletes things
            for key in keys:
                for suffix in (".mp3", ".json"):
                    (root / f"{key}{suffix}").unlink(missing_ok=True)
        return real_parse(fd)

    monkeypatch.setattr(cleanup, "_parse_sidecar", parse_and_meanwhile_delete)
    report = run(root, T0)
    assert report.deleted_paths() == {f".tmp/{key_of('t')}.{HEX}"}
    assert tree(root) == {".tmp", ".locks"}


def test_files_deleted_or_replaced_between_plan_and_sweep(tmp_path: Path):
    root = tmp_path / "data"
    gone, half, republished, temp = key_of("gone"), key_of("half"), key_of("repub"), key_of("t")
    for key in (gone, half, republished):
        add_entry(root, key, created=T0 - timedelta(hours=9))
    scratch = add_temp(root, temp, timedelta(hours=2))
    planned = plan(root, retention_hours=8, temp_grace_hours=1, now=T0, probe_locks=False)
    assert len(planned.report().deleted) == 7

    for suffix in (".mp3", ".json"):
        (root / f"{gone}{suffix}").unlink()
    (root / f"{half}.mp3").unlink()
    add_entry(root, republished, created=T0)  # published again meanwhile (in place, even)
    shutil.rmtree(scratch)

    report = sweep(planned)
    # What is still there as planned goes; what others removed is reported, not counted.
    assert report.deleted_paths() == {f"{half}.json"}
    assert set(report.skipped[VANISHED].examples) == {
        f"{gone}.json",
        f"{gone}.mp3",
        f"{half}.mp3",
        f".tmp/{scratch.name}",
    }
    # The re-published entry is not the one planned on: it stays, whole.
    assert set(report.skipped[CHANGED].examples) == {f"{republished}.json", f"{republished}.mp3"}
    assert report.remaining == 1
    assert {f"{republished}.mp3", f"{republished}.json"} <= tree(root)
    assert run(root, T0).deleted == []


def test_an_entry_re_published_through_the_library_after_the_plan_stays(tmp_path: Path):
    root = tmp_path / "data"
    library = Library(root, retention_hours=8)
    key = key_of("again")
    add_entry(root, key, created=datetime.now(UTC) - timedelta(hours=9))
    planned = plan(root, retention_hours=8, temp_grace_hours=1, probe_locks=False)
    assert planned.report().entries_deleted == 1

    with library.lock(key), library.workspace(key) as workdir:  # what convert does
        mp3 = workdir / "audio.mp3"
        mp3.write_bytes(b"ID3 fresh")
        fields = {"title": "T", "source_url": "u", "extractor": "youtube", "media_id": "again"}
        library.publish(key, mp3, library.new_sidecar(key, mp3, quality="192", **fields))

    report = sweep(planned)
    assert report.deleted == [] and report.skipped[CHANGED].count == 2
    assert library.lookup(key) is not None


def test_the_sweep_refuses_a_data_dir_swapped_since_the_plan(tmp_path: Path):
    root = tmp_path / "data"
    add_entry(root, key_of("swap"), created=T0 - timedelta(hours=9))
    planned = plan(root, retention_hours=8, temp_grace_hours=1, now=T0, probe_locks=False)
    root.rename(tmp_path / "elsewhere")
    add_entry(root, key_of("swap"), created=T0 - timedelta(hours=9))
    with pytest.raises(RuntimeError, match="not the directory planned on"):
        sweep(planned)
    assert (root / f"{key_of('swap')}.mp3").exists()


def test_two_sweeps_of_one_data_dir_never_overlap(tmp_path: Path):
    root = tmp_path / "data"
    key = key_of("twice")
    add_entry(root, key, created=T0 - timedelta(hours=9))
    planned = plan(root, retention_hours=8, temp_grace_hours=1, now=T0, probe_locks=False)
    fd = os.open(root, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another cleanup, mid-sweep
        report = sweep(planned)
    finally:
        os.close(fd)
    assert report.deleted == [] and report.skipped[OTHER_SWEEP].count == 2
    assert report.remaining == 1
    assert sweep(planned).deleted_paths() == {f"{key}.mp3", f"{key}.json"}


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
    add_temp(root, key_of("abandoned"), timedelta(hours=2))
    add_temp(root, key_of("recent"), timedelta(minutes=5))
    add_temp(root, key_of("partial"), timedelta(hours=2), suffix=".part")
    with library.lock(key_of("idle")):
        pass
    (root / "foreign.txt").write_text("x")
    held = key_of("e0")
    before = tree(root)

    with library.lock(held):
        dry = run(root, T0, dry_run=True)
        assert tree(root) == before
        real = run(root, T0)

    assert dry.deleted_paths() == real.deleted_paths()
    gone = before - tree(root)
    assert {path for path in gone if path.count("/") < 2} == real.deleted_paths()
    assert gone - real.deleted_paths() == {f".tmp/{key_of('abandoned')}.{HEX}/source.webm.part"}
    assert dry.bytes_freed == real.bytes_freed
    assert (dry.entries_deleted, dry.temp_removed, dry.locks_removed) == (5, 2, 5)
    assert dry.remaining == real.remaining == 6
    assert {reason: g.count for reason, g in dry.skipped.items()} == {
        reason: g.count for reason, g in real.skipped.items()
    }
    assert dry.skipped[IN_USE].count == 3  # e0: sidecar, MP3 and lock file


# -- the report ----------------------------------------------------------------------------------


def test_the_markdown_report_has_the_numbers_oldest_entry_and_skips(tmp_path: Path):
    root = tmp_path / "data"
    add_entry(root, key_of("gone"), created=T0 - timedelta(hours=9), payload=b"x" * 2000)
    add_entry(root, key_of("older"), created=T0 - timedelta(hours=3))
    add_entry(root, key_of("newer"), created=T0 - timedelta(hours=1))
    (root / "odd|name`.txt").write_text("x")
    report = run(root, T0)
    text = render_markdown(report)
    assert "| entries deleted | 1 |" in text
    assert "| entries remaining | 2 |" in text
    assert f"`{key_of('older')}`" in text and "in 5 h 0 min" in text
    assert "name outside the library's scheme | 1 | `odd\\|name'.txt`" in text
    assert report.oldest is not None and report.oldest.key == key_of("older")
    assert "would be deleted" in render_markdown(run(root, T0, dry_run=True))
    for key in ("cleanup-report", "cleanup-dry-run"):
        assert re.fullmatch(r"[a-z0-9-]*", key)


def test_the_lifetime_fields_are_validated_as_the_sidecar_validates_them():
    hints = typing.get_type_hints(Lifetime)
    assert set(hints) == {"created_at", "expires_at", "bytes"}
    for name, annotation in hints.items():
        assert Sidecar.model_fields[name].annotation is annotation, name


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

    assert run(root, T0 + timedelta(hours=7)).deleted == []
    assert run(root, T0 + timedelta(hours=9)).entries_deleted == 1


def test_an_empty_or_missing_data_dir_is_fine(tmp_path: Path):
    assert run(tmp_path / "missing", T0).deleted == []
    (tmp_path / "empty").mkdir()
    report = run(tmp_path / "empty", T0)
    assert report.deleted == [] and report.remaining == 0 and report.oldest is None
    assert tree(tmp_path / "empty") == set()


def test_run_reads_the_settings(settings_env: Settings):
    root = settings_env.data_dir
    add_entry(root, key_of("s"), created=datetime.now(UTC) - timedelta(hours=9))
    report = cleanup.run(settings_env, dry_run=True)
    assert report.dry_run and report.entries_deleted == 1 and tree(root) != set()
    assert cleanup.run(settings_env).entries_deleted == 1
