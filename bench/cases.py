"""The benchmark cases of issue 7 (and issue 3's playlist numbers), run against a BenchStack.

Every ytmp3 conversion is submitted exactly as the page does it:
``run_deployment("convert/on-demand", parameters=..., timeout=0)``, then the flow run is
polled. Its times come from the Prefect API (state timestamps, written by the engine in
the flow-run process on this machine, so on the same clock as the submit time):

* ``submit_to_running``: submit -> the ``Running`` state (runner poll, process start,
  imports, flow-run setup);
* ``submit_to_completed``: submit -> the ``Completed`` state; the MP3s are published just
  before it. This is "submit to MP3 on disk".
* ``flow``: the run's own ``start_time`` -> ``end_time`` (inside the flow-run process).

Baselines run in the same session, interleaved with the ytmp3 runs (ytmp3, then the
baseline, then the next repetition), each into a fresh directory.
"""

from __future__ import annotations

import contextlib
import inspect
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import psutil

from bench.stack import BIN_DIR, BenchStack, generate_media

YT_DLP = str(BIN_DIR / "yt-dlp")
CLI_ARGS = ["-x", "--audio-format", "mp3", "--audio-quality", "192K"]
"""The baseline command, as issue 7 gives it (plus ``-q -P <fresh dir>``)."""
QUALITY = "192"
POLL_SECONDS = 0.05


# -- results ---------------------------------------------------------------------------


def summary(values: list[float]) -> dict[str, float]:
    """Median, min and max (and n) of a list of measurements."""
    if not values:
        return {}
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


@dataclass
class CaseResult:
    """One row of the results table, plus everything measured on the way."""

    case: str
    title: str
    unit: str
    ytmp3: list[float]
    ytmp3_label: str
    baseline: list[float] = field(default_factory=list)
    baseline_label: str = ""
    goal: str = ""
    met: bool | None = None
    ratio: float | None = None
    ratio_label: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "title": self.title,
            "unit": self.unit,
            "ytmp3_label": self.ytmp3_label,
            "ytmp3": self.ytmp3,
            "ytmp3_summary": summary(self.ytmp3),
            "baseline_label": self.baseline_label,
            "baseline": self.baseline,
            "baseline_summary": summary(self.baseline),
            "goal": self.goal,
            "met": self.met,
            "ratio": self.ratio,
            "ratio_label": self.ratio_label,
            "details": self.details,
        }


# -- driving ytmp3 ---------------------------------------------------------------------


@dataclass
class RunTiming:
    """One ``convert/on-demand`` run, timed from the submit."""

    flow_run_id: UUID
    state: str
    message: str | None
    submit_to_pending: float
    """The runner's poll picking the run up (``PREFECT_RUNNER_POLL_FREQUENCY``)."""
    submit_to_running: float
    submit_to_completed: float
    flow: float
    observed_done: float
    mp3_seen: float | None
    task_runs: list[dict[str, Any]] = field(default_factory=list)


def submit_and_wait(
    stack: BenchStack,
    url: str,
    *,
    watch: Path | None = None,
    timeout: float = 300.0,
    task_runs: bool = False,
) -> RunTiming:
    """Submit ``url`` to the served deployment, poll it to a final state, and time it.

    ``watch`` is a file whose appearance is timed too (the single video's MP3).
    """
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    with stack.client_settings():
        submitted = time.time()
        flow_run = run_deployment(
            "convert/on-demand", parameters={"url": url, "quality": QUALITY}, timeout=0
        )
    mp3_seen = None
    with stack.client_settings(), get_client(sync_client=True) as client:
        deadline = time.monotonic() + timeout
        while True:
            if watch is not None and mp3_seen is None and watch.exists():
                mp3_seen = time.time() - submitted
            run = client.read_flow_run(flow_run.id)
            if run.state is not None and run.state.is_final():
                observed = time.time() - submitted
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"flow run {flow_run.id} not done after {timeout:.0f} s")
            time.sleep(POLL_SECONDS)
        if watch is not None and mp3_seen is None and watch.exists():
            mp3_seen = observed
        states = client.read_flow_run_states(flow_run.id)
        tasks = _settled_task_runs(client, flow_run.id) if task_runs else []
    times = {state.type.value: _ts(state.timestamp) for state in states}
    by_name = {state.name: _ts(state.timestamp) for state in states}
    if run.state is None or not run.state.is_completed():
        message = run.state.message if run.state else None
        raise RuntimeError(f"flow run {flow_run.id} ended {run.state}: {message}")
    return RunTiming(
        flow_run_id=flow_run.id,
        state=run.state.name,
        message=run.state.message,
        submit_to_pending=by_name.get("Pending", times["RUNNING"]) - submitted,
        submit_to_running=times["RUNNING"] - submitted,
        submit_to_completed=times["COMPLETED"] - submitted,
        flow=(run.end_time - run.start_time).total_seconds(),  # type: ignore[operator]
        observed_done=observed,
        mp3_seen=mp3_seen,
        task_runs=tasks,
    )


def _ts(value: datetime) -> float:
    return value.timestamp()


def _settled_task_runs(client: Any, flow_run_id: UUID) -> list[dict[str, Any]]:
    """The finished task runs, once the server has them all.

    Task-run states reach the server as events, so the last few land a moment after
    the flow run's own final state: read until two reads agree (at most ~3 s).
    """
    rows = _task_runs(client, flow_run_id)
    for _ in range(6):
        time.sleep(0.5)
        again = _task_runs(client, flow_run_id)
        if len(again) == len(rows):
            break
        rows = again
    return rows


def _task_runs(client: Any, flow_run_id: UUID) -> list[dict[str, Any]]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs: list[Any] = []
    while True:
        page = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            limit=200,
            offset=len(runs),
        )
        runs.extend(page)
        if len(page) < 200:
            break
    rows = []
    for run in runs:
        if run.start_time is None or run.end_time is None:
            continue
        rows.append(
            {
                "name": run.name,
                "task": _task_name(run.name),
                "start": _ts(run.start_time),
                "end": _ts(run.end_time),
                "seconds": (run.end_time - run.start_time).total_seconds(),
            }
        )
    return rows


def _task_name(run_name: str) -> str:
    """``download-a1b`` -> ``download``; ``item 3: Title`` -> ``item``."""
    return run_name.split(" ", 1)[0].rsplit("-", 1)[0]


def expected_mp3(url: str) -> Path:
    """Where a single video URL's MP3 lands in the library (generic extractor keys)."""
    from flows.library import make_key
    from flows.media import identify

    identity = identify(url)
    return Path(make_key(identity.extractor, identity.media_id, QUALITY) + ".mp3")


# -- baselines -------------------------------------------------------------------------


def run_cli(url: str, *, expect: int = 1) -> float:
    """``yt-dlp -x --audio-format mp3 --audio-quality 192K`` into a fresh dir; seconds."""
    out = Path(tempfile.mkdtemp(prefix="ytmp3-bench-cli-"))
    try:
        started = time.monotonic()
        subprocess.run(
            [YT_DLP, "-q", "--no-progress", *CLI_ARGS, "-P", str(out), url],
            check=True,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=600,
        )
        elapsed = time.monotonic() - started
        made = list(out.glob("*.mp3"))
        if len(made) != expect:
            raise RuntimeError(f"yt-dlp made {len(made)} MP3s from {url}, expected {expect}")
        return elapsed
    finally:
        shutil.rmtree(out, ignore_errors=True)


def lame_speed(source: Path, seconds: float) -> float:
    """Real-time factor of ffmpeg alone encoding ``source`` to 192k MP3 on one core."""
    out = Path(tempfile.mkdtemp(prefix="ytmp3-bench-lame-"))
    try:
        started = time.monotonic()
        subprocess.run(
            [
                "ffmpeg",
                "-nostdin",
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-i",
                str(source),
                "-vn",
                "-c:a",
                "libmp3lame",
                "-b:a",
                "192k",
                "-f",
                "mp3",
                str(out / "out.mp3"),
            ],
            check=True,
            capture_output=True,
            timeout=600,
        )
        return seconds / (time.monotonic() - started)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def encode_pairs(source: Path, seconds: float, items: int) -> float:
    """ffmpeg alone encoding ``items`` copies of ``source``, two at a time; seconds.

    The two-core limit as this machine delivers it right now (it is shared).
    """
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda _: lame_speed(source, seconds), range(items)))
    return time.monotonic() - started


def work_only(url: str, data_dir: Path, concurrency: int = 2) -> float:
    """The same work as ``convert`` on a playlist, with no Prefect at all; seconds.

    The very functions the flow's tasks call (list, lock, probe, download, duration
    check, transcode, tag, publish), ``concurrency`` items at a time in a thread pool,
    in this process. What ytmp3 takes beyond this is orchestration.
    """
    from flows import media, sources
    from flows.library import Library, make_key
    from flows.settings import load_settings

    settings = load_settings(
        data_dir=data_dir,
        allowed_hosts=("127.0.0.1",),
        allow_private_networks=True,
        concurrency=concurrency,
    )
    library = Library.from_settings(settings)
    # Follows the flow if check_duration's stats are handed on to transcode (proposed).
    reuses_stats = "source_stats" in inspect.signature(media.transcode).parameters

    def one(item: media.Item) -> None:
        identity = item.identity
        key = make_key(identity.extractor, identity.media_id, QUALITY)
        if library.lookup(key) is not None:
            return
        if item.info is None:
            sources.check_request(item.url, settings)
        with library.lock(key, timeout=settings.lock_timeout_seconds):
            media.check_limits(item.info or item.entry, settings)
            info = item.info
            if info is None:
                info = media.probe(item.url, settings)
                media.check_limits(info, settings)
            with library.workspace(key) as workdir:
                fetched = media.download(info, workdir, settings, None)
                source_stats = media.check_duration(fetched.audio, settings)
                target = fetched.audio.with_name("audio.mp3")
                extra = {"source_stats": source_stats} if reuses_stats else {}
                stats = media.transcode(fetched.audio, target, QUALITY, settings, **extra)
                tags = media.Tags.from_info(
                    fetched.info, album=listing.title, track=item.index, title=item.title
                )
                media.write_tags(target, tags, fetched.thumbnail)
                sidecar = library.new_sidecar(
                    key,
                    target,
                    title=tags.title,
                    source_url=tags.source_url or item.url,
                    requested_url=item.url,
                    extractor=identity.extractor,
                    media_id=identity.media_id,
                    duration=stats.duration,
                    quality=QUALITY,
                    bitrate_kbps=stats.bitrate_kbps,
                )
                library.publish(key, target, sidecar)

    started = time.monotonic()
    listing = media.list_items(url, settings, limit=settings.max_playlist_items)
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, listing.items))
    elapsed = time.monotonic() - started
    made = len(list(data_dir.glob("*.mp3")))
    if made != len(listing.items):
        raise RuntimeError(f"work-only made {made} MP3s of {len(listing.items)}")
    return elapsed


# -- memory ----------------------------------------------------------------------------


class MemorySampler:
    """Samples the RSS of a process tree every ``interval`` s in a thread.

    Keeps the peak of the tree's total and the peak per role: the serving process, the
    flow-run processes (``python -m prefect.engine``), and ffmpeg/ffprobe children.
    RSS counts shared pages in every process, so the total is an upper bound.
    """

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak_total = 0
        self.peak_by_role: dict[str, int] = {}
        self.peak_single: dict[str, int] = {}
        self.samples = 0
        try:
            self.existing = {child.pid for child in self.root.children(recursive=True)}
        except psutil.NoSuchProcess:
            self.existing = set()
        self.cpu_seconds: dict[int, tuple[str, float]] = {}
        """Last seen user+system CPU time of each process of the tree, by pid."""
        self.cpu_with_children: dict[int, tuple[str, float]] = {}
        """The same plus the CPU of the children each has waited for (ffmpeg, ffprobe)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="rss-sampler")

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        by_role: dict[str, int] = {}
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for proc in procs:
            try:
                rss = proc.memory_info().rss
                role = self._role(proc)
                # CPU: only processes started since sampling began (the previous run's
                # process may outlive its run by ~1 s: the sync flow's heartbeat join)
                if proc.pid == self.root.pid or proc.pid not in self.existing:
                    times = proc.cpu_times()
                    own = times.user + times.system
                    reaped = times.children_user + times.children_system  # ffmpeg, ffprobe
                    self.cpu_seconds[proc.pid] = (role, own)
                    self.cpu_with_children[proc.pid] = (role, own + reaped)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            by_role[role] = by_role.get(role, 0) + rss
            self.peak_single[role] = max(self.peak_single.get(role, 0), rss)
        self.samples += 1
        self.peak_total = max(self.peak_total, sum(by_role.values()))
        for role, rss in by_role.items():
            self.peak_by_role[role] = max(self.peak_by_role.get(role, 0), rss)

    def cpu_by_role(self, children: bool = False) -> dict[str, float]:
        """CPU seconds per role, as last sampled; ``children``: with reaped children's."""
        totals: dict[str, float] = {}
        source = self.cpu_with_children if children else self.cpu_seconds
        for role, seconds in source.values():
            totals[role] = totals.get(role, 0.0) + seconds
        return totals

    def _role(self, proc: psutil.Process) -> str:
        if proc.pid == self.root.pid:
            return "serving process"
        name = proc.name()
        if name in ("ffmpeg", "ffprobe"):
            return "ffmpeg/ffprobe"
        cmdline = " ".join(proc.cmdline())
        if "prefect.engine" in cmdline:
            return "flow-run process"
        return name


# -- media -----------------------------------------------------------------------------


@dataclass
class Media:
    video_3min: Path
    short_30s: Path
    long_5min: Path
    warmup: Path


def make_media(stack: BenchStack) -> Media:
    """The sources, generated with ffmpeg (in parallel: ~2 s)."""
    jobs = {
        "video_3min": ("video-3min", "mp4", 180.0),
        "short_30s": ("short-30s", "m4a", 30.0),
        "long_5min": ("long-5min", "m4a", 300.0),
        "warmup": ("warmup", "m4a", 5.0),
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            name: pool.submit(generate_media, stack.media_dir, *args) for name, args in jobs.items()
        }
        return Media(**{name: future.result() for name, future in futures.items()})


# -- the cases -------------------------------------------------------------------------


class Counter:
    """Fresh URL names, so no two ytmp3 runs share a library key (no dedupe hit)."""

    def __init__(self) -> None:
        self._n = 0

    def next(self) -> int:
        self._n += 1
        return self._n


def warm_up(stack: BenchStack, media: Media, names: Counter) -> dict[str, float]:
    """One conversion each way before measuring (cold page cache, first imports)."""
    url = stack.media.alias(f"/warmup/{names.next()}/warmup.m4a", media.warmup)
    timing = submit_and_wait(stack, url)
    cli = run_cli(stack.media.alias(f"/warmup/{names.next()}/warmup.m4a", media.warmup))
    return {"ytmp3_s": timing.submit_to_completed, "cli_s": cli}


def case_single(
    stack: BenchStack, media: Media, names: Counter, repeat: int
) -> tuple[CaseResult, str]:
    """Case 1: one 3-minute video through the deployment vs the yt-dlp CLI."""
    ytmp3: list[float] = []
    cli: list[float] = []
    running: list[float] = []
    pending: list[float] = []
    flow: list[float] = []
    mp3: list[float] = []
    url = ""
    for _ in range(repeat):
        url = stack.media.alias(f"/videos/{names.next()}/video-3min.mp4", media.video_3min)
        timing = submit_and_wait(stack, url, watch=stack.data_dir / expected_mp3(url))
        ytmp3.append(timing.submit_to_completed)
        running.append(timing.submit_to_running)
        pending.append(timing.submit_to_pending)
        flow.append(timing.flow)
        if timing.mp3_seen is not None:
            mp3.append(timing.mp3_seen)
        cli_url = stack.media.alias(f"/videos/{names.next()}/video-3min.mp4", media.video_3min)
        cli.append(run_cli(cli_url))
    overhead = statistics.median(ytmp3) - statistics.median(cli)
    result = CaseResult(
        case="1",
        title="Single video (3 min mp4), submit to MP3",
        unit="s",
        ytmp3=ytmp3,
        ytmp3_label="convert/on-demand, submit -> Completed",
        baseline=cli,
        baseline_label="yt-dlp CLI",
        goal="overhead beyond the CLI <= 3 s (median)",
        met=overhead <= 3.0,
        ratio=statistics.median(ytmp3) / statistics.median(cli),
        ratio_label="ytmp3 / CLI",
        details={
            "overhead_s": overhead,
            "submit_to_pending": pending,
            "pending_to_running": [r - p for r, p in zip(running, pending, strict=True)],
            "submit_to_running": running,
            "flow_run_s": flow,
            "mp3_seen_s": mp3,
            "running_to_completed": [y - r for y, r in zip(ytmp3, running, strict=True)],
        },
    )
    return result, url


def case_short_playlist(
    stack: BenchStack, media: Media, names: Counter, repeat: int, items: int = 20
) -> CaseResult:
    """Case 2: a feed of ``items`` x 30 s through ``convert`` vs the CLI, and pure work."""
    ytmp3: list[float] = []
    cli: list[float] = []
    work: list[float] = []
    flow: list[float] = []
    running: list[float] = []
    step_seconds: dict[str, list[float]] = {}
    task_counts: list[int] = []
    for _ in range(repeat):
        n = names.next()
        feed = stack.media.add_feed(
            f"/feeds/short-{n}.xml",
            items,
            file=media.short_30s,
            title=f"Short {n}",
            item_prefix=f"/items/short-{n}",
        )
        timing = submit_and_wait(stack, feed, task_runs=True)
        if timing.message and "of" in timing.message and "converted" in timing.message:
            raise RuntimeError(f"the playlist run was partial: {timing.message}")
        _check_converted(stack.data_dir, f"short-{n}", items)
        ytmp3.append(timing.submit_to_completed)
        flow.append(timing.flow)
        running.append(timing.submit_to_running)
        task_counts.append(len(timing.task_runs))
        for run in timing.task_runs:
            step_seconds.setdefault(run["task"], []).append(run["seconds"])
        cli.append(run_cli(feed, expect=items))
        with _temp_dir("ytmp3-bench-work-") as data_dir:
            work.append(work_only(feed, data_dir))
    ytmp3_m, cli_m, work_m = (statistics.median(v) for v in (ytmp3, cli, work))
    flow_m = statistics.median(flow)
    return CaseResult(
        case="2",
        title=f"Short-item playlist ({items} x 30 s m4a feed)",
        unit="s",
        ytmp3=ytmp3,
        ytmp3_label="convert/on-demand, submit -> Completed",
        baseline=cli,
        baseline_label="yt-dlp CLI",
        goal=">= 1.7x faster than the CLI",
        met=cli_m / ytmp3_m >= 1.7,
        ratio=cli_m / ytmp3_m,
        ratio_label="CLI / ytmp3 (speed-up)",
        details={
            "items": items,
            "work_only_s": work,
            "flow_run_s": flow,
            "submit_to_running": running,
            "per_item_overhead_s": (flow_m - work_m) / items,
            "per_item_overhead_end_to_end_s": (ytmp3_m - work_m) / items,
            "fixed_overhead_s": ytmp3_m - flow_m,
            "task_runs_per_run": task_counts,
            "task_run_seconds_median": {
                name: statistics.median(values) for name, values in step_seconds.items()
            },
            "speedup_work_only_vs_cli": cli_m / work_m,
        },
    )


def case_long_playlist(
    stack: BenchStack, media: Media, names: Counter, repeat: int, items: int = 8
) -> tuple[CaseResult, CaseResult]:
    """Case 3 (and 7): a feed of ``items`` x 5 min vs the two-core encoding limit.

    The limit is measured each repetition, right before the ytmp3 run, with ffmpeg alone.
    The worker processes' RSS is sampled while ytmp3 runs (case 7).
    """
    source_seconds = 300.0
    ytmp3: list[float] = []
    flow: list[float] = []
    limits: list[float] = []
    speeds: list[float] = []
    pairs: list[float] = []
    peaks: list[float] = []
    by_role: dict[str, list[float]] = {}
    single: dict[str, list[float]] = {}
    samples = 0
    for _ in range(repeat):
        speed = lame_speed(media.long_5min, source_seconds)
        speeds.append(speed)
        limits.append(items * source_seconds / (2 * speed))
        if not pairs:  # once: ~1.2x the limit itself, and only a reality check
            pairs.append(encode_pairs(media.long_5min, source_seconds, items))
        n = names.next()
        feed = stack.media.add_feed(
            f"/feeds/long-{n}.xml",
            items,
            file=media.long_5min,
            title=f"Long {n}",
            item_prefix=f"/items/long-{n}",
        )
        with MemorySampler(stack.serve_pid) as sampler:
            timing = submit_and_wait(stack, feed)
        _check_converted(stack.data_dir, f"long-{n}", items)
        ytmp3.append(timing.submit_to_completed)
        flow.append(timing.flow)
        peaks.append(sampler.peak_total / 2**20)
        samples += sampler.samples
        for role, rss in sampler.peak_by_role.items():
            by_role.setdefault(role, []).append(rss / 2**20)
        for role, rss in sampler.peak_single.items():
            single.setdefault(role, []).append(rss / 2**20)
    limit_m = statistics.median(limits)
    ratio = statistics.median(ytmp3) / limit_m
    long_result = CaseResult(
        case="3",
        title=f"Long-item playlist ({items} x 5 min m4a feed)",
        unit="s",
        ytmp3=ytmp3,
        ytmp3_label="convert/on-demand, submit -> Completed",
        baseline=limits,
        baseline_label="two-core libmp3lame limit",
        goal="<= 1.3x the limit",
        met=ratio <= 1.3,
        ratio=ratio,
        ratio_label="ytmp3 / limit",
        details={
            "items": items,
            "audio_seconds": items * source_seconds,
            "lame_speed_x": speeds,
            "parallel_pair_s": pairs,
            "flow_run_s": flow,
            "flow_run_ratio": statistics.median(flow) / limit_m,
        },
    )
    memory = CaseResult(
        case="7",
        title="Memory: peak RSS of the worker processes during case 3",
        unit="MB",
        ytmp3=peaks,
        ytmp3_label="serving process + flow-run process + ffmpeg (sum of RSS)",
        goal="report",
        details={
            "peak_by_role_mb": {role: summary(v) for role, v in by_role.items()},
            "peak_single_process_mb": {role: summary(v) for role, v in single.items()},
            "samples": samples,
            "interval_s": 0.1,
        },
    )
    return long_result, memory


def case_dedupe(stack: BenchStack, url: str, repeat: int) -> CaseResult:
    """Case 4: a repeat request for a URL already in the library."""
    flow: list[float] = []
    end_to_end: list[float] = []
    served: list[int] = []
    requests: list[int] = []
    for _ in range(repeat):
        stack.media.wait_idle()
        stack.media.reset_counters()
        timing = submit_and_wait(stack, url)
        flow.append(timing.flow)
        end_to_end.append(timing.submit_to_completed)
        served.append(stack.media.bytes_served)
        requests.append(stack.media.request_count())
    return CaseResult(
        case="4",
        title="Dedupe hit (repeat of case 1's URL)",
        unit="s",
        ytmp3=flow,
        ytmp3_label="flow run start -> end (API)",
        goal="<= 1 s flow time, 0 media bytes",
        met=statistics.median(flow) <= 1.0 and not any(served),
        details={
            "media_bytes_served": served,
            "requests_to_media_server": requests,
            "submit_to_completed": end_to_end,
        },
    )


def _check_converted(data_dir: Path, prefix: str, items: int) -> None:
    from flows.library import read_sidecar_file

    made = [
        sidecar
        for path in data_dir.glob("*.json")
        if (sidecar := read_sidecar_file(path)) is not None
        and f"/items/{prefix}/" in (sidecar.requested_url or "")
    ]
    if len(made) != items:
        raise RuntimeError(f"{prefix}: {len(made)} of {items} items are in the library")


@contextlib.contextmanager
def _temp_dir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    value = fn()
    return value, time.monotonic() - started
