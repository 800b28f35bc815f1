"""``make bench``: every benchmark case, written to docs/benchmarks.md and docs/benchmarks.png.

    python -m bench                      # everything (~10 min on 2 cores)
    python -m bench --cases 1 4          # some cases only (docs are not written)
    python -m bench --quick              # one repetition each (a smoke run)
    BENCH_METUBE_DIR=~/metube python -m bench   # with MeTube as a baseline (bench/metube.py)

Cases 1-4 and 7 run against one local stack in `make run`'s mode (bench/stack.py), and
against MeTube when one is given; 5 and 6 are the cleanup and page-render benchmarks
(bench/cleanup.py, bench/page_render.py), run afterwards as subprocesses, their JSON read
back. All raw numbers go to bench/results/bench.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
DOCS = ROOT / "docs"
ALL_CASES = ("1", "2", "3", "4", "5", "6", "7")
STACK_CASES = {"1", "2", "3", "4", "7"}

CASE_TITLES = {
    "1": ("one 3-min mp4 -> MP3 192k", "at most 1.0 s slower than MeTube"),
    "2": ("20 x 30-s m4a feed", "no slower than MeTube"),
    "3": ("8 x 5-min m4a feed", "no slower than MeTube, within 1.15x the limit"),
    "4": ("Dedupe hit (repeat of case 1's URL)", "<= 1 s flow time, 0 media bytes"),
    "5": ("Cleanup, 100,000 entries (half expired)", "< 5 s"),
    "6": ("Page render, 1,000 entries + 20 active runs", "< 1.5 s per rerun"),
    "7": ("Memory during case 3", "report"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", choices=ALL_CASES, default=list(ALL_CASES))
    parser.add_argument("--quick", action="store_true", help="one repetition of everything")
    parser.add_argument("--repeat-single", type=int, default=5, help="case 1 repetitions")
    parser.add_argument("--repeat", type=int, default=3, help="cases 2 and 3 repetitions")
    parser.add_argument("--repeat-dedupe", type=int, default=5, help="case 4 repetitions")
    parser.add_argument(
        "--cleanup-sizes",
        nargs="+",
        default=["10000", "100000"],
        help="entries for bench/cleanup.py (two sizes show the growth)",
    )
    parser.add_argument(
        "--tree",
        type=Path,
        default=None,
        help="serve the flows of another checkout (e.g. a `git worktree` of a commit)",
    )
    parser.add_argument(
        "--metube",
        type=Path,
        default=os.environ.get("BENCH_METUBE_DIR") or None,
        help="a MeTube checkout with its venv in .venv (default: $BENCH_METUBE_DIR)",
    )
    parser.add_argument("--results", type=Path, default=RESULTS_DIR / "bench.json")
    parser.add_argument("--docs", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument(
        "--render",
        action="store_true",
        help="only rewrite the docs from --results (after editing bench/analysis.md)",
    )
    args = parser.parse_args(argv)
    if args.render:
        run = json.loads(args.results.read_text(encoding="utf-8"))
        write_docs(run)
        return 0
    if args.quick:
        args.repeat_single = args.repeat = args.repeat_dedupe = 1
    wanted = set(args.cases)
    docs = args.docs if args.docs is not None else wanted == set(ALL_CASES)

    started = time.monotonic()
    run: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "code": code_info(args.tree or ROOT),
        "startup": {},
        "results": [],
        "repetitions": {
            "single": args.repeat_single,
            "playlists": args.repeat,
            "dedupe": args.repeat_dedupe,
        },
        "metube": _metube_info(args.metube),
    }
    results: dict[str, dict[str, Any]] = {}

    if wanted & STACK_CASES:
        results |= stack_cases(wanted, args, run)
    if "5" in wanted:
        results["5"] = guarded("5", lambda: cleanup_case(args.cleanup_sizes))
    if "6" in wanted:
        results["6"] = guarded("6", page_render_case)

    run["machine"]["load_after"] = os.getloadavg()[0]
    run["total_seconds"] = time.monotonic() - started
    run["results"] = [results[case] for case in ALL_CASES if case in results]
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(run, indent=2, default=str) + "\n", encoding="utf-8")

    print()
    print("\n".join(report.table(run["results"])))
    if docs:
        write_docs(run)
    print(f"raw results: {args.results}")
    print(f"make bench took {run['total_seconds']:.0f} s")
    return 1 if any(r.get("error") for r in run["results"]) else 0


def write_docs(run: dict[str, Any]) -> None:
    DOCS.mkdir(exist_ok=True)
    report.chart(run["results"], DOCS / "benchmarks.png")
    (DOCS / "benchmarks.md").write_text(report.markdown(run, "benchmarks.png"), "utf-8")
    print(f"\nwritten: {DOCS / 'benchmarks.md'}, {DOCS / 'benchmarks.png'}")


def stack_cases(
    wanted: set[str], args: argparse.Namespace, run: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    from bench import cases
    from bench.metube import MeTube
    from bench.stack import BenchStack
    from flows.settings import cpu_count

    results: dict[str, dict[str, Any]] = {}
    log("starting the stack (Prefect server, served deployments, media server) ...")
    with contextlib.ExitStack() as services:
        stack = services.enter_context(BenchStack(project_root=args.tree))
        metube = services.enter_context(MeTube(args.metube)) if args.metube else None
        run["startup"] = dict(stack.startup)
        log(f"stack up: {stack.startup}; MeTube: {'yes' if metube else 'not measured'}")
        session = cases.Session(stack, cases.make_media(stack), cases.Counter(), metube)
        session.cores = cpu_count()
        run["warm_up"] = cases.warm_up(session)
        run["server_idle_cpu"] = cases.idle_cpu(stack.server_pid)
        log(f"warm-up: {run['warm_up']}; server idle CPU {run['server_idle_cpu']:.3f} s/s")
        url = None
        if wanted & {"1", "4"}:

            def single() -> dict[str, Any]:
                nonlocal url
                result, url = cases.case_single(session, args.repeat_single)
                return result.to_dict()

            results["1"] = guarded("1", single)
        if "4" in wanted:
            if url is None:
                results["4"] = error_row("4", "case 1 did not produce a URL to repeat")
            else:
                dedupe_url = url
                results["4"] = guarded(
                    "4",
                    lambda: cases.case_dedupe(session, dedupe_url, args.repeat_dedupe).to_dict(),
                )
        if "2" in wanted:
            results["2"] = guarded(
                "2", lambda: cases.case_short_playlist(session, args.repeat).to_dict()
            )
        if wanted & {"3", "7"}:
            pair: list[Any] = []

            def long() -> dict[str, Any]:
                pair.extend(cases.case_long_playlist(session, args.repeat))
                return pair[0].to_dict()

            results["3"] = guarded("3", long)
            results["7"] = pair[1].to_dict() if pair else error_row("7", "case 3 failed")
        log("stopping the stack ...")
    return {case: result for case, result in results.items() if case in wanted}


def cleanup_case(sizes: list[str]) -> dict[str, Any]:
    """Case 5 from bench/cleanup.py (on tmpfs, its default file system)."""
    output = RESULTS_DIR / "cleanup-for-bench.json"
    run_module("bench.cleanup", "--sizes", *sizes, "--output", str(output))
    data = json.loads(output.read_text(encoding="utf-8"))
    latest = data.get("latest", data)
    rows = latest["rows"]
    big = max(rows, key=lambda row: row["entries"])
    title, goal = CASE_TITLES["5"]
    return {
        "case": "5",
        "title": title,
        "unit": "s",
        "ytmp3": [big["total_s"]],
        "ytmp3_label": f"a real run over {big['entries']:,} entries",
        "baselines": {"bare os.unlink of as many files": [big["floor_s"]]},
        "goal": goal,
        "met": big["total_s"] < 5.0,
        "ratios": {"cleanup / floor": big["total_s"] / big["floor_s"]} if big["floor_s"] else {},
        "details": {"rows": rows, "filesystem": latest.get("filesystem")},
    }


def page_render_case() -> dict[str, Any]:
    """Case 6 from bench/page_render.py (1,000 entries, 20 active runs)."""
    run_module("bench.page_render")
    data = json.loads((RESULTS_DIR / "page_render.json").read_text(encoding="utf-8"))
    reruns = data["rerun_seconds"]
    title, goal = CASE_TITLES["6"]
    values = reruns.get("all") or [reruns["median"]]
    goal_s = float(data.get("goal_seconds", 1.5))
    return {
        "case": "6",
        "title": title,
        "unit": "s",
        "ytmp3": values,
        "ytmp3_label": "one rerun of ui/app.py (AppTest, real Prefect server)",
        "baselines": {},
        "goal": goal,
        "met": reruns["median"] < goal_s,
        "ratios": {},
        "details": {
            "library_entries": data.get("library_entries"),
            "active_runs": data.get("active_runs"),
            "p95": reruns.get("p95"),
            "first_run_seconds": data.get("first_run_seconds"),
        },
    }


def run_module(module: str, *extra: str) -> None:
    log(f"running python -m {module} ...")
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", module, *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if completed.returncode != 0:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"python -m {module} exited {completed.returncode}: {tail}")
    log(f"python -m {module} took {time.monotonic() - started:.0f} s")


def guarded(case: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    log(f"case {case}: {CASE_TITLES[case][0]} ...")
    started = time.monotonic()
    try:
        result = fn()
    except Exception as exc:
        traceback.print_exc()
        return error_row(case, f"{type(exc).__name__}: {exc}")
    log(f"case {case} took {time.monotonic() - started:.0f} s")
    return result


def error_row(case: str, message: str) -> dict[str, Any]:
    title, goal = CASE_TITLES[case]
    return {
        "case": case,
        "title": title,
        "goal": goal,
        "error": message,
        "unit": "s",
        "ytmp3": [],
        "baselines": {},
        "met": None,
    }


def machine_info() -> dict[str, Any]:
    import yt_dlp.version

    ffmpeg = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True)
    from importlib.metadata import version

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "prefect": version("prefect"),
        "yt_dlp": yt_dlp.version.__version__,
        "ffmpeg": " ".join(ffmpeg.stdout.split()[:3]),
        "load_before": os.getloadavg()[0],
    }


def code_info(tree: Path) -> dict[str, Any]:
    """Which code was measured: the commit, and any uncommitted change under flows/."""

    def git(*argv: str) -> str:
        done = subprocess.run(["git", *argv], cwd=tree, capture_output=True, text=True)
        return done.stdout.rstrip() if done.returncode == 0 else ""

    return {
        "tree": str(tree),
        "commit": git("rev-parse", "--short", "HEAD") or "unknown",
        "subject": git("log", "-1", "--format=%s"),
        "uncommitted_flows": git("status", "--porcelain", "--", "flows").splitlines(),
    }


def _metube_info(checkout: Path | None) -> dict[str, Any] | None:
    """Which MeTube was measured: its commit, and the yt-dlp of its venv."""
    if checkout is None:
        return None
    python = Path(checkout) / ".venv" / "bin" / "python"
    ytdlp = subprocess.run(
        [str(python), "-c", "import yt_dlp.version as v; print(v.__version__)"],
        capture_output=True,
        text=True,
    )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=checkout, capture_output=True, text=True
    )
    return {
        "dir": str(checkout),
        "commit": commit.stdout.strip() or "not a git checkout",
        "yt_dlp": ytdlp.stdout.strip() or "unknown",
    }


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
