"""Benchmark of the cleanup: N library entries, half of them expired, planned and swept.

    python -m bench.cleanup                     # 10k, 50k, 100k on tmpfs (/dev/shm)
    python -m bench.cleanup --disk              # the same on the disk (the system temp dir)
    python -m bench.cleanup --sizes 1000 20000  # other sizes

Each entry is what a conversion leaves: ``<key>.mp3``, ``<key>.json`` (a real sidecar, as
``Sidecar.model_dump_json(indent=2)`` writes it) and ``.locks/<key>.lock``. Half were
created 9 h ago (expired under 8 h retention), half 1 h ago. One entry in a thousand
also has an abandoned scratch dir. The data dir is written directly (not through the
flow), so building it costs seconds, not hours.

Why two file systems: the cleanup's own cost (scanning, parsing 100k sidecars, taking
50k locks) is what the code controls, and tmpfs shows it alone. The disk adds what the
kernel charges per unlink; the "floor" column is a bare ``os.unlink`` loop over as many
files of the same sizes on the same file system, so the two can be told apart.

Results go to the terminal as a table and to ``bench/results/cleanup.json``.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flows.cleanup import plan, sweep
from flows.library import Sidecar

RESULTS = Path(__file__).resolve().parent / "results" / "cleanup.json"
DEFAULT_SIZES = (10_000, 50_000, 100_000)
RETENTION_HOURS = 8.0
GRACE_HOURS = 1.0
MP3_BYTES = 64
"""Small stand-ins: the cost measured is per file, not per byte (see the report)."""


@dataclass
class Row:
    """One measured size."""

    entries: int
    files: int
    build_s: float
    dry_run_s: float
    plan_s: float
    sweep_s: float
    total_s: float
    total_cpu_s: float
    floor_s: float
    us_per_entry: float
    cpu_us_per_entry: float
    deleted_entries: int
    temp_removed: int
    locks_removed: int
    remaining: int


def build(root: Path, entries: int, now: datetime) -> int:
    """Write ``entries`` entries (half expired) plus a few abandoned scratch dirs; file count."""
    (root / ".locks").mkdir(parents=True)
    (root / ".tmp").mkdir()
    templates = {
        expired: _template(now - timedelta(hours=9 if expired else 1)) for expired in (True, False)
    }
    payload = b"ID3" + b"\0" * (MP3_BYTES - 3)
    old = (now - timedelta(hours=9)).timestamp()
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    locks_fd = os.open(root / ".locks", os.O_RDONLY | os.O_DIRECTORY)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    files = 0
    try:
        for index in range(entries):
            media_id = f"v{index:010d}"
            key = f"youtube.{media_id}.192"
            expired = index % 2 == 0
            fd = os.open(f"{key}.mp3", flags, 0o644, dir_fd=root_fd)
            os.write(fd, payload)
            if expired:
                os.utime(fd, (old, old))
            os.close(fd)
            fd = os.open(f"{key}.json", flags, 0o644, dir_fd=root_fd)
            os.write(fd, templates[expired].replace("@ID@", media_id).encode())
            os.close(fd)
            os.close(os.open(f"{key}.lock", flags, 0o644, dir_fd=locks_fd))
            files += 3
            if index % 1000 == 1:
                scratch = root / ".tmp" / f"{key}.{index:012x}"
                scratch.mkdir()
                (scratch / "source.webm.part").write_bytes(payload)
                os.utime(scratch / "source.webm.part", (old, old))
                os.utime(scratch, (old, old))
                files += 2
    finally:
        os.close(root_fd)
        os.close(locks_fd)
    return files


def _template(created: datetime) -> str:
    sidecar = Sidecar(
        key="youtube.@ID@.192",
        title="A video title of a typical length - Official Audio",
        artist="Some Uploader",
        source_url="https://www.youtube.com/watch?v=@ID@",
        requested_url="https://www.youtube.com/watch?v=@ID@",
        extractor="youtube",
        media_id="@ID@",
        duration=215.3,
        bytes=MP3_BYTES,
        quality="192",
        bitrate_kbps=192,
        thumbnail=True,
        created_at=created,
        expires_at=created + timedelta(hours=RETENTION_HOURS),
    )
    return sidecar.model_dump_json(indent=2)


def floor(base: Path, count: int) -> float:
    """Seconds a bare loop takes to unlink ``count`` files like the ones cleanup deletes."""
    root = base / "floor"
    root.mkdir()
    payload = b"x" * MP3_BYTES
    json_payload = b"x" * len(_template(datetime.now(UTC)))
    names = []
    for index in range(count):
        name = f"f{index}"
        third = index % 3
        with open(root / name, "wb") as handle:
            handle.write(payload if third == 0 else json_payload if third == 1 else b"")
        names.append(name)
    os.sync()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        started = time.perf_counter()
        for name in names:
            os.unlink(name, dir_fd=fd)
        return time.perf_counter() - started
    finally:
        os.close(fd)
        shutil.rmtree(root)


def measure(base: Path, entries: int, repeat: int) -> Row:
    """The best of ``repeat`` runs (each on a freshly built data dir).

    The minimum is the usual estimate of what the code costs: on a shared machine, other
    processes only ever add time.
    """
    rows = [_measure_once(base, entries) for _ in range(repeat)]
    return min(rows, key=lambda row: row.total_s)


def _measure_once(base: Path, entries: int) -> Row:
    now = datetime.now(UTC)
    root = base / f"data-{entries}"
    started = time.perf_counter()
    files = build(root, entries, now)
    os.sync()  # a library is not freshly written: its writeback must not bill the cleanup
    build_s = time.perf_counter() - started
    options = {"retention_hours": RETENTION_HOURS, "temp_grace_hours": GRACE_HOURS, "now": now}

    gc.collect()
    started = time.perf_counter()
    dry = plan(root, probe_locks=True, **options).report()  # type: ignore[arg-type]
    dry_run_s = time.perf_counter() - started

    gc.collect()
    cpu = time.process_time()
    started = time.perf_counter()
    planned = plan(root, probe_locks=False, **options)  # type: ignore[arg-type]
    plan_s = time.perf_counter() - started
    report = sweep(planned)
    total_s = time.perf_counter() - started
    total_cpu_s = time.process_time() - cpu
    assert report.deleted_paths() == dry.deleted_paths(), "dry run and real run disagree"
    assert report.entries_deleted == entries // 2 + entries % 2
    floor_s = floor(base, len(report.deleted))
    shutil.rmtree(root)
    return Row(
        entries=entries,
        files=files,
        build_s=round(build_s, 2),
        dry_run_s=round(dry_run_s, 3),
        plan_s=round(plan_s, 3),
        sweep_s=round(total_s - plan_s, 3),
        total_s=round(total_s, 3),
        total_cpu_s=round(total_cpu_s, 3),
        floor_s=round(floor_s, 3),
        us_per_entry=round(total_s / entries * 1e6, 2),
        cpu_us_per_entry=round(total_cpu_s / entries * 1e6, 2),
        deleted_entries=report.entries_deleted,
        temp_removed=report.temp_removed,
        locks_removed=report.locks_removed,
        remaining=report.remaining,
    )


def filesystem_of(path: Path) -> str:
    """The file system type holding ``path`` (from /proc/mounts; "?" elsewhere)."""
    best, kind = "", "?"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    resolved = str(path.resolve())
    for line in mounts:
        fields = line.split()
        if len(fields) > 2 and resolved.startswith(fields[1]) and len(fields[1]) > len(best):
            best, kind = fields[1], fields[2]
    return kind


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--disk", action="store_true", help="use the system temp dir, not tmpfs")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size; the best counts")
    parser.add_argument("--dir", type=Path, help="make the data dirs under this directory")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.dir is not None:
        parent = args.dir
    elif not args.disk and Path("/dev/shm").is_dir():  # tmpfs, on purpose
        parent = Path("/dev/shm")
    else:
        parent = Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="ytmp3-bench-", dir=parent))
    fs = filesystem_of(base)
    rows: list[Row] = []
    try:
        for entries in args.sizes:
            rows.append(measure(base, entries, args.repeat))
            print(f"  measured {entries:,} entries", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"\ncleanup benchmark on {fs} ({base.parent}), {os.cpu_count()} cores, "
        f"load {load:.1f}, best of {args.repeat}\n"
    )
    header = (
        f"{'entries':>8} {'files':>8} {'build s':>8} {'dry run s':>9} {'plan s':>7} "
        f"{'sweep s':>8} {'total s':>8} {'cpu s':>6} {'µs/entry':>9} {'floor s':>8} "
        f"{'deleted':>8}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row.entries:>8,} {row.files:>8,} {row.build_s:>8.2f} {row.dry_run_s:>9.3f} "
            f"{row.plan_s:>7.3f} {row.sweep_s:>8.3f} {row.total_s:>8.3f} "
            f"{row.total_cpu_s:>6.2f} {row.us_per_entry:>9.2f} {row.floor_s:>8.3f} "
            f"{row.deleted_entries:>8,}"
        )
    print()
    for smaller, larger in itertools.pairwise(rows):
        scale = larger.entries / smaller.entries
        print(
            f"{larger.entries:,} / {smaller.entries:,} entries = {scale:.1f}x: "
            f"wall {larger.total_s / smaller.total_s:.2f}x, "
            f"cpu {larger.total_cpu_s / smaller.total_cpu_s:.2f}x (linear: {scale:.1f}x)"
        )
    print("total = plan + sweep of a real run (wall clock); cpu = its process CPU time")
    print("floor: a bare os.unlink loop over as many files, same sizes, same file system")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": "cleanup",
        "when": datetime.now(UTC).isoformat(),
        "filesystem": fs,
        "directory": str(base.parent),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": load,
        "repeat": args.repeat,
        "retention_hours": RETENTION_HOURS,
        "rows": [asdict(row) for row in rows],
    }
    previous: dict[str, object] = {}
    if args.output.exists():
        try:
            previous = json.loads(args.output.read_text())
        except ValueError:
            previous = {}
    runs = previous.get("runs") if isinstance(previous.get("runs"), dict) else {}
    assert isinstance(runs, dict)
    runs[fs] = document
    args.output.write_text(json.dumps({"runs": runs, "latest": document}, indent=2) + "\n")
    print(f"results: {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
