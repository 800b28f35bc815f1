"""Benchmark of the cleanup: N entries, half of them expired, a dry run then a real run.

    python -m bench.cleanup                     # 10k and 100k entries on tmpfs (/dev/shm)
    python -m bench.cleanup --disk --sizes 1000  # on the disk (the system temp dir)

Each entry is what a conversion leaves (``<key>.mp3``, its sidecar, ``.locks/<key>.lock``);
one in a thousand also has a killed conversion's scratch dir. "floor" is a bare
``os.unlink`` loop over as many files on the same file system: what any cleanup pays.
Prints a table and writes ``bench/results/cleanup.json``; the best of ``--repeat`` counts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flows.cleanup import clean
from flows.library import Library, Sidecar

RESULTS = Path(__file__).resolve().parent / "results" / "cleanup.json"


def build(root: Path, entries: int, now: datetime) -> int:
    """Write ``entries`` entries (every other one expired); returns the number of files."""
    (root / ".locks").mkdir(parents=True)
    files = 0
    for index in range(entries):
        created = now - timedelta(hours=9 if index % 2 == 0 else 1)
        key = f"youtube.v{index:010d}.192"
        sidecar = Sidecar(
            key=key,
            title="A video title of a typical length - Official Audio",
            artist="Some Uploader",
            source_url=f"https://www.youtube.com/watch?v={index}",
            extractor="youtube",
            media_id=f"v{index:010d}",
            duration=215.3,
            bytes=64,
            quality="192",
            created_at=created,
            expires_at=created + timedelta(hours=8),
        )
        (root / f"{key}.mp3").write_bytes(b"ID3" + b"\0" * 61)
        (root / f"{key}.json").write_text(sidecar.model_dump_json(indent=2))
        (root / ".locks" / f"{key}.lock").touch()
        files += 3
        if index % 1000 == 1:
            (root / ".tmp" / f"{key}.{index:012x}").mkdir(parents=True)
            files += 1
    os.sync()  # the library's writeback must not bill the cleanup
    return files


def floor(base: Path, count: int) -> float:
    """Seconds a bare loop takes to unlink ``count`` small files (by name, as cleanup does)."""
    root = base / "floor"
    root.mkdir()
    for index in range(count):
        (root / str(index)).write_bytes(b"x" * 64)
    os.sync()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    started = time.perf_counter()
    for index in range(count):
        os.unlink(str(index), dir_fd=fd)
    elapsed = time.perf_counter() - started
    os.close(fd)
    root.rmdir()
    return elapsed


def measure(base: Path, entries: int) -> dict[str, float]:
    now = datetime.now(UTC)
    root = base / f"data-{entries}"
    files = build(root, entries, now)
    library = Library(root, retention_hours=8)
    started = time.perf_counter()
    dry = clean(library, now=now, dry_run=True)
    dry_s = time.perf_counter() - started
    cpu, started = time.process_time(), time.perf_counter()
    real = clean(library, now=now)
    real_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    assert sorted(real.removed) == sorted(dry.removed), "dry run and real run disagree"
    assert len(real.removed) == (entries + 1) // 2 and len(real.workspaces) == entries // 1000
    shutil.rmtree(root)
    unlinked = 3 * len(real.removed) + len(real.workspaces)
    return {
        "entries": entries,
        "files": files,
        "dry_run_s": round(dry_s, 3),
        "total_s": round(real_s, 3),
        "cpu_s": round(cpu_s, 3),
        "us_per_entry": round(real_s / entries * 1e6, 1),
        "floor_s": round(floor(base, unlinked), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--disk", action="store_true", help="the system temp dir, not tmpfs")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    shm = Path("/dev/shm")
    parent = shm if shm.is_dir() and not args.disk else Path(tempfile.gettempdir())
    base = Path(tempfile.mkdtemp(prefix="ytmp3-bench-", dir=parent))
    try:
        rows = [
            min((measure(base, size) for _ in range(args.repeat)), key=lambda r: r["total_s"])
            for size in args.sizes
        ]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    place = "tmpfs" if parent == shm else str(parent)
    print(f"cleanup on {place}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(" | ".join(f"{name:>10}" for name in rows[0]))
    for row in rows:
        print(" | ".join(f"{value:>10,}" for value in row.values()))
    document = {"when": datetime.now(UTC).isoformat(), "filesystem": place, "rows": rows}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"latest": document}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
