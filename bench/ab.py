"""A/B: this tree's flows against other trees' (patched copies), interleaved in one run.

    python -m bench.ab /tmp/patched [/tmp/patched2 ...] [--workload short] [--repeat 3]

Starts one stack per tree (bench/stack.py; each its own Prefect server and served
deployments, the tree's ``flows`` first on ``PYTHONPATH``), and one shared media server.
Each repetition submits the same workload to every tree in turn (order rotated), so a
noisy machine hurts all of them alike. Prints medians [min-max] of submit -> Completed,
submit -> Running, the flow run, the CPU time of the flow-run process (user + system,
sampled every 50 ms: steadier than wall time on a busy machine) and the Prefect
server's CPU during the run (it processes every event, log line and artifact the run
sends); for playlists also the same work without Prefect once per repetition, and so
each tree's per-item orchestration overhead. Writes ``bench/results/ab-<workload>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from bench import cases
from bench.stack import PROJECT_ROOT, BenchStack
from flows.settings import cpu_count

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("trees", nargs="+", type=Path, help="patched copies of the project")
    parser.add_argument("--workload", choices=("short", "long", "single"), default="short")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--items", type=int, default=None)
    args = parser.parse_args(argv)
    trees = [PROJECT_ROOT, *(tree.resolve() for tree in args.trees)]
    labels = ["this tree", *(str(tree) for tree in args.trees)]
    rows: dict[str, dict[str, list[float]]] = {
        label: {
            "submit_to_completed": [],
            "submit_to_running": [],
            "flow": [],
            "flow_cpu": [],
            "server_cpu": [],
        }
        for label in labels
    }
    work: list[float] = []
    with contextlib.ExitStack() as exit_stack:
        stacks = [exit_stack.enter_context(BenchStack(project_root=tree)) for tree in trees]
        host = stacks[0]  # its media server serves every stack
        media = cases.make_media(host)
        names = cases.Counter()
        for stack in stacks:
            cases.submit_and_wait(stack, _url(host, media, names, "single", 1))  # warm-up
        for repetition in range(args.repeat):
            order = list(range(len(stacks)))
            order = order[repetition % len(order) :] + order[: repetition % len(order)]
            for index in order:
                url = _url(host, media, names, args.workload, args.items)
                with cases.TreeSampler(stacks[index].serve_pid, interval=0.05) as sampler:
                    timing = cases.submit_and_wait(stacks[index], url)
                flow_cpu = sampler.cpu_of("flow-run process")
                row = rows[labels[index]]
                row["flow_cpu"].append(flow_cpu)
                row["server_cpu"].append(timing.server_cpu)
                row["submit_to_completed"].append(timing.submit_to_completed)
                row["submit_to_running"].append(timing.submit_to_running)
                row["flow"].append(timing.flow)
                print(
                    f"{labels[index]}: {timing.submit_to_completed:.2f} s "
                    f"(running {timing.submit_to_running:.2f}, flow {timing.flow:.2f}, "
                    f"flow-run process CPU {flow_cpu:.2f} s, Prefect server CPU "
                    f"{timing.server_cpu:.2f} s)",
                    flush=True,
                )
            if args.workload != "single":  # the same work without Prefect, for the overhead
                with cases.temp_dir("ytmp3-ab-work-") as data_dir:
                    url = _url(host, media, names, args.workload, args.items)
                    work.append(cases.work_only(url, data_dir, cpu_count()))
    print(f"\n{args.workload}, {args.repeat} repetitions, medians [min-max]:")
    items = args.items or {"short": 20, "long": 8}.get(args.workload, 1)
    for label, row in rows.items():
        cells = ", ".join(f"{name} {_cell(values)}" for name, values in row.items())
        if work:
            overhead = (statistics.median(row["flow"]) - statistics.median(work)) / items
            cells += f"; per-item overhead (flow - work-only) / {items}: {overhead:.3f} s"
        print(f"  {label}: {cells}")
    if work:
        print(f"  work-only (no Prefect): {_cell(work)}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"ab-{args.workload}.json"
    data = {"workload": args.workload, "rows": rows, "work_only": work}
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"written: {out}")
    return 0


def _url(stack: BenchStack, media: cases.Media, names: cases.Counter, kind: str, items: Any) -> str:
    n = names.next()
    if kind == "short":
        return stack.media.add_feed(
            f"/ab/short-{n}.xml", items or 20, file=media.short_30s, item_prefix=f"/ab/s{n}"
        )
    if kind == "long":
        return stack.media.add_feed(
            f"/ab/long-{n}.xml", items or 8, file=media.long_5min, item_prefix=f"/ab/l{n}"
        )
    return stack.media.alias(f"/ab/v{n}/video-3min.mp4", media.video_3min)


def _cell(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


if __name__ == "__main__":
    sys.exit(main())
