"""Where a served ``convert`` run spends its CPU: py-spy over the serving process tree.

    python -m bench.profile short     # 20 x 30 s feed (case 2)
    python -m bench.profile long      # 8 x 5 min feed (case 3)
    python -m bench.profile single    # one 3-min video (case 1)

Starts the same stack as ``python -m bench`` (bench/stack.py), converts one warm-up
file, then records ``py-spy record --subprocesses`` on the process that serves the
deployments (so the flow-run process it starts is sampled too, every thread) while one
run of the chosen workload goes through ``convert/on-demand``. The flame data is kept
in ``bench/results/profile-<kind>.txt`` (collapsed stacks, for speedscope or
flamegraph.pl) and summarised by cost: yt-dlp's per-instance set-up, ffmpeg/ffprobe
subprocesses, Prefect's engine and client, imports, the project's own code.
Waiting threads (select, condition and queue waits, sleeps) are left out.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench import cases
from bench.stack import BIN_DIR, BenchStack

RESULTS = Path(__file__).resolve().parent / "results"
RATE = 100

IDLE_LEAVES = (
    "select (selectors.py",
    "Condition.wait (threading.py",
    "Event.wait (threading.py",
    "Queue.get (queue.py",
    "sleep (",
    "_wait_for_tstate_lock",
    "Thread.join",
    "lock.acquire",
)

KEYWORDS = (
    ("yt-dlp: YoutubeDL() set-up (extractor list)", "add_default_info_extractors"),
    ("yt-dlp: TLS context per request handler", "make_ssl_context"),
    ("project: identify() (all extractor URL regexes)", "identify (flows/media.py"),
    ("project: ffmpeg/ffprobe subprocesses (spawn, wait)", "_run (flows/media.py"),
    ("imports", "_find_and_load"),
)
"""(bucket, keyword anywhere in the stack), first match wins."""

OWNERS = (
    ("yt-dlp: extraction and HTTP download", "yt_dlp/"),
    ("Prefect: engine, task runs, client, events, logs", "prefect/"),
    ("project: other code in flows/", "flows/"),
)
"""Otherwise the innermost frame of one of these packages owns the sample (a library
called by Prefect's logging, say, counts as Prefect's)."""


def bucket_of(frames: list[str]) -> str:
    text = ";".join(frames)
    for name, key in KEYWORDS:
        if key in text:
            return name
    for frame in reversed(frames):
        for name, key in OWNERS:
            if key in frame:
                return name
    return "other"


def summarise(raw: Path, engine_only: bool = True) -> dict[str, float]:
    """CPU seconds per bucket from py-spy's collapsed stacks."""
    buckets: Counter[str] = Counter()
    for line in raw.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        processes = [frame for frame in frames if frame.startswith("process ")]
        if engine_only and not (processes and _is_flow_run(processes[-1])):
            continue
        frames = [frame for frame in frames if not frame.startswith("process ")]
        if not frames or any(frames[-1].startswith(leaf) for leaf in IDLE_LEAVES):
            continue
        buckets[bucket_of(frames)] += int(count)
    return {name: samples / RATE for name, samples in buckets.most_common()}


def _is_flow_run(process: str) -> bool:
    """A flow-run process: forked from the forkserver, or spawned as before."""
    return any(mark in process for mark in ("forkserver", "prefect.engine", "spawn_main"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=("short", "long", "single"))
    parser.add_argument("--tree", type=Path, help="serve another checkout's flows (A/B)")
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy", path=str(BIN_DIR)) or shutil.which("py-spy")
    if spy is None:
        print("py-spy is not installed: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = f"-{args.tree.name}" if args.tree else ""
    raw = RESULTS / f"profile-{args.kind}{suffix}.txt"
    with BenchStack(project_root=args.tree) as stack:
        media = cases.make_media(stack)
        names = cases.Counter()
        cases.warm_up(cases.Session(stack, media, names))
        if args.kind == "short":
            url = stack.media.add_feed("/feeds/p.xml", 20, file=media.short_30s)
        elif args.kind == "long":
            url = stack.media.add_feed("/feeds/p.xml", 8, file=media.long_5min)
        else:
            url = stack.media.alias("/v/p/video-3min.mp4", media.video_3min)
        recorder = subprocess.Popen(
            [
                *(spy, "record", "--pid", str(stack.serve_pid), "--subprocesses"),
                *("--rate", str(RATE), "--format", "raw", "--nonblocking", "-o", str(raw)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)
        timing = cases.submit_and_wait(stack, url)
        time.sleep(1.5)  # the engine's teardown (heartbeat join, log and event flush)
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=30)
    summary = summarise(raw)
    total = sum(summary.values())
    print(
        f"{args.kind}: submit -> Completed {timing.submit_to_completed:.2f} s, "
        f"flow run {timing.flow:.2f} s, {timing.task_runs} task runs, Prefect server CPU "
        f"{timing.server_cpu:.2f} s "
        "(py-spy slows the sampled process)"
    )
    print(f"CPU seconds in the flow-run process, by cost ({total:.1f} s in all):")
    for name, seconds in summary.items():
        print(f"  {seconds:6.2f} s  {100 * seconds / total:4.1f}%  {name}")
    (RESULTS / f"profile-{args.kind}{suffix}.json").write_text(
        json.dumps(
            {
                "submit_to_completed": timing.submit_to_completed,
                "flow": timing.flow,
                "task_runs": timing.task_runs,
                "server_cpu": timing.server_cpu,
                "cpu_seconds": summary,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"collapsed stacks: {raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
