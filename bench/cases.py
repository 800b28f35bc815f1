"""The conversion cases, run against a BenchStack (and MeTube, when given one).

Every ytmp3 conversion is submitted exactly as the page does it:
``run_deployment("convert/on-demand", parameters=..., timeout=0)``, then the flow run is
polled. Its times come from the Prefect API (state timestamps, written on this machine,
so on the same clock as the submit time):

* ``submit_to_running``: submit -> the ``Running`` state (runner poll, process start,
  flow-run setup);
* ``submit_to_completed``: submit -> the ``Completed`` state; the MP3s are published just
  before it. This is "submit to MP3 on disk and the system saying done".
* ``flow``: the run's own ``start_time`` -> ``end_time``.

The baselines (MeTube, the yt-dlp CLI) run in the same session, interleaved with ytmp3
repetition by repetition (the order rotates), each on new URLs.
"""

from __future__ import annotations

import contextlib
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import psutil

from bench.metube import MeTube
from bench.stack import BIN_DIR, BenchStack, generate_media
from flows.settings import get_settings

YT_DLP = str(BIN_DIR / "yt-dlp")
CLI_ARGS = ["-x", "--audio-format", "mp3", "--audio-quality", "192K"]
"""The CLI baseline (plus ``-q -P <fresh dir>``)."""
QUALITY = "192"
POLL_SECONDS = 0.05
"""How often the MP3 on disk is looked for."""
API_POLL_SECONDS = 0.5
"""How often a run's state is read while it runs (the page: every 2 s). The times come
from the run's state history, so this only bounds how late the bench notices the end;
reading 20 times a second loaded the SQLite server it measures."""
SETTLE_SECONDS = 1.0
"""After a run ends, how long the Prefect server's CPU is still counted as the run's."""
METUBE = "MeTube"
CLI = "yt-dlp CLI"
LIMIT = "two-core libmp3lame limit"


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


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


@dataclass
class CaseResult:
    """One row of the results table, plus everything measured on the way."""

    case: str
    title: str
    unit: str
    ytmp3: list[float]
    ytmp3_label: str
    baselines: dict[str, list[float]] = field(default_factory=dict)
    """MeTube, the yt-dlp CLI, a limit: whatever the row compares ytmp3 with."""
    goal: str = ""
    met: bool | None = None
    ratios: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "title": self.title,
            "unit": self.unit,
            "ytmp3_label": self.ytmp3_label,
            "ytmp3": self.ytmp3,
            "ytmp3_summary": summary(self.ytmp3),
            "baselines": self.baselines,
            "goal": self.goal,
            "met": self.met,
            "ratios": self.ratios,
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
    """The runner's poll picking the run up (``YTMP3_RUNNER_POLL_SECONDS``)."""
    submit_to_running: float
    submit_to_completed: float
    flow: float
    mp3_seen: float | None
    server_cpu: float
    """CPU seconds of the Prefect server from the submit to ``SETTLE_SECONDS`` after."""
    task_runs: int = 0


def submit_and_wait(
    stack: BenchStack, url: str, *, watch: Path | None = None, timeout: float = 300.0
) -> RunTiming:
    """Submit ``url`` to the served deployment, poll it to a final state, and time it.

    ``watch`` is a file whose appearance is timed too (the single video's MP3).
    """
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    server = psutil.Process(stack.server_pid)
    server_before = cpu_seconds(server)
    with stack.client_settings():
        submitted = time.time()
        flow_run = run_deployment(
            "convert/on-demand", parameters={"url": url, "quality": QUALITY}, timeout=0
        )
    mp3_seen = None
    with stack.client_settings(), get_client(sync_client=True) as client:
        next_read = time.monotonic()
        deadline = next_read + timeout
        while True:
            if watch is not None and mp3_seen is None and watch.exists():
                mp3_seen = time.time() - submitted
            if time.monotonic() >= next_read:
                run = client.read_flow_run(flow_run.id)
                if run.state is not None and run.state.is_final():
                    break
                next_read = time.monotonic() + API_POLL_SECONDS
            if time.monotonic() > deadline:
                raise TimeoutError(f"flow run {flow_run.id} not done after {timeout:.0f} s")
            time.sleep(POLL_SECONDS)
        time.sleep(SETTLE_SECONDS)
        server_cpu = cpu_seconds(server) - server_before
        states = client.read_flow_run_states(flow_run.id)
        task_runs = _count_task_runs(client, flow_run.id)
    times = {state.type.value: state.timestamp.timestamp() for state in states}
    by_name = {state.name: state.timestamp.timestamp() for state in states}
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
        mp3_seen=mp3_seen,
        server_cpu=server_cpu,
        task_runs=task_runs,
    )


def _count_task_runs(client: Any, flow_run_id: UUID) -> int:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    counted = 0
    while True:
        page = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            limit=200,
            offset=counted,
        )
        counted += len(page)
        if len(page) < 200:
            return counted


def expected_mp3(url: str) -> Path:
    """Where a single video URL's MP3 lands in the library (generic extractor keys)."""
    from flows.library import make_key
    from flows.media import identify

    identity = identify(url)
    return Path(make_key(identity.extractor, identity.media_id, QUALITY) + ".mp3")


def cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU seconds of a process and of the children it has waited for."""
    times = process.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def idle_cpu(pid: int, seconds: float = 10.0) -> float:
    """CPU seconds per second a process uses while nothing is submitted (the Prefect
    server's own loops, the runner's polls and heartbeats)."""
    process = psutil.Process(pid)
    before = cpu_seconds(process)
    time.sleep(seconds)
    return (cpu_seconds(process) - before) / seconds


# -- baselines -------------------------------------------------------------------------


def run_cli(url: str, *, expect: int = 1) -> float:
    """``yt-dlp -x --audio-format mp3 --audio-quality 192K`` into a fresh dir; seconds."""
    with temp_dir("ytmp3-bench-cli-") as out:
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


def lame_speed(source: Path, seconds: float) -> float:
    """Real-time factor of ffmpeg alone encoding ``source`` to 192k MP3 on one core."""
    with temp_dir("ytmp3-bench-lame-") as out:
        started = time.monotonic()
        subprocess.run(
            ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(source),
             "-vn", "-c:a", "libmp3lame", "-b:a", "192k", "-f", "mp3", str(out / "out.mp3")],
            check=True, capture_output=True, timeout=600,
        )  # fmt: skip
        return seconds / (time.monotonic() - started)


def work_only(url: str, data_dir: Path, concurrency: int) -> float:
    """The same work as ``convert`` on a playlist, with no Prefect at all; seconds.

    The listing and the very item pipeline the ``item`` task runs
    (:func:`flows.pipeline.convert_item`), ``concurrency`` items at a time in a thread
    pool, in this process. What ytmp3 takes beyond this is orchestration.
    """
    from flows import media, pipeline
    from flows.settings import load_settings

    settings = load_settings(
        data_dir=data_dir,
        allowed_hosts=("127.0.0.1",),
        allow_private_networks=True,
        concurrency=concurrency,
    )
    started = time.monotonic()
    listing = media.list_items(url, settings, limit=settings.max_playlist_items)
    job = pipeline.Job(quality=QUALITY, album=listing.title, playlist_url=listing.url)
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(
            pool.map(
                lambda p: pipeline.convert_item(p[1], p[0], job, settings), enumerate(listing.items)
            )
        )
    elapsed = time.monotonic() - started
    made = len(list(data_dir.glob("*.mp3")))
    if made != len(listing.items):
        raise RuntimeError(f"work-only made {made} MP3s of {len(listing.items)}")
    return elapsed


# -- memory and CPU --------------------------------------------------------------------


class TreeSampler:
    """Samples a process tree every ``interval`` s in a thread: RSS and PSS (peak of the
    sum, and per role) and the CPU seconds of the ffmpeg processes (the encoders).

    RSS counts shared pages once per process (an upper bound); PSS shares them out.
    The encoders' CPU is read while they run, so the last sample's interval is lost.
    """

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak_rss = 0
        self.peak_pss = 0
        self.peak_rss_by_role: dict[str, int] = {}
        self.encoder_cpu: dict[int, float] = {}
        self.cpu: dict[int, tuple[str, float]] = {}
        """Last seen user + system CPU seconds of each process, and its role."""
        self.samples = 0
        self.started = self.ended = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="tree-sampler")

    def __enter__(self) -> TreeSampler:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.ended = time.monotonic()

    def cpu_of(self, role: str) -> float:
        """CPU seconds of the processes of ``role`` (as last sampled)."""
        return sum(seconds for name, seconds in self.cpu.values() if name == role)

    def encoder_utilisation(self, seconds: float, cores: int) -> float:
        """ffmpeg CPU over ``seconds`` of wall time on ``cores`` cores (1.0: all busy)."""
        return sum(self.encoder_cpu.values()) / (seconds * cores)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def _sample(self) -> None:
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        rss = pss = 0
        by_role: dict[str, int] = {}
        for proc in procs:
            try:
                memory = proc.memory_full_info()
                role = role_of(proc, self.root.pid)
                times = proc.cpu_times()
                self.cpu[proc.pid] = (role, times.user + times.system)
                if role == "ffmpeg":
                    self.encoder_cpu[proc.pid] = times.user + times.system
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            rss += memory.rss
            pss += getattr(memory, "pss", 0)
            by_role[role] = by_role.get(role, 0) + memory.rss
        self.samples += 1
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_pss = max(self.peak_pss, pss)
        for role, value in by_role.items():
            self.peak_rss_by_role[role] = max(self.peak_rss_by_role.get(role, 0), value)


def role_of(proc: psutil.Process, root: int) -> str:
    """What a process of a sampled tree is (ytmp3's serving tree, or MeTube's)."""
    if proc.pid == root:
        return "main process"
    name = proc.name()
    if name in ("ffmpeg", "ffprobe"):
        return "ffmpeg" if name == "ffmpeg" else "ffprobe"
    command = " ".join(proc.cmdline())
    if "forkserver" in command:
        parent = psutil.Process(proc.ppid())
        return "flow-run process" if "forkserver" in " ".join(parent.cmdline()) else "forkserver"
    if "prefect.engine" in command or "spawn_main" in command:
        return "flow-run process"
    if proc.ppid() == root and "python" in name:
        return "child process"
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


class Counter:
    """Fresh URL names, so no two conversions share a library key (no dedupe hit)."""

    def __init__(self) -> None:
        self._n = 0

    def next(self) -> int:
        self._n += 1
        return self._n


# -- the cases -------------------------------------------------------------------------


@dataclass
class Session:
    """What every case works with: the stack, the media, fresh names, MeTube if any."""

    stack: BenchStack
    media: Media
    names: Counter
    metube: MeTube | None = None
    cores: int = 2


def interleaved(repetition: int, **runs: Callable[[], None]) -> None:
    """Run each of ``runs`` once, the order rotated by ``repetition``."""
    order = list(runs.values())
    shift = repetition % len(order)
    for run in order[shift:] + order[:shift]:
        run()


def warm_up(session: Session) -> dict[str, float]:
    """One conversion each way before measuring (cold page cache, first imports)."""
    stack, media, names = session.stack, session.media, session.names
    alias = lambda: stack.media.alias(f"/warmup/{names.next()}/warmup.m4a", media.warmup)  # noqa: E731
    warm = {"ytmp3_s": submit_and_wait(stack, alias()).submit_to_completed}
    warm["cli_s"] = run_cli(alias())
    if session.metube is not None:
        url = alias()
        warm["metube_s"] = session.metube.convert(url, 1, url)
    return warm


def case_single(session: Session, repeat: int) -> tuple[CaseResult, str]:
    """Case 1: one 3-minute video: ytmp3, MeTube, the CLI."""
    stack, media, names = session.stack, session.media, session.names
    ytmp3: list[float] = []
    timings: list[RunTiming] = []
    base: dict[str, list[float]] = {METUBE: [], CLI: []}
    url = ""

    def video() -> str:
        return stack.media.alias(f"/videos/{names.next()}/video-3min.mp4", media.video_3min)

    def ours() -> None:
        nonlocal url
        url = video()
        timing = submit_and_wait(stack, url, watch=stack.data_dir / expected_mp3(url))
        timings.append(timing)
        ytmp3.append(timing.submit_to_completed)

    def theirs() -> None:
        if session.metube is not None:
            target = video()
            base[METUBE].append(session.metube.convert(target, 1, target))

    for repetition in range(repeat):
        interleaved(
            repetition, ytmp3=ours, metube=theirs, cli=lambda: base[CLI].append(run_cli(video()))
        )
    result = CaseResult(
        case="1",
        title="one 3-min mp4 -> MP3 192k",
        unit="s",
        ytmp3=ytmp3,
        ytmp3_label="submit -> Completed",
        baselines=_measured(base),
        goal="at most 1.0 s slower than MeTube (medians)",
        details={
            "runner_poll_seconds": get_settings().runner_poll_seconds,
            "submit_to_pending": [t.submit_to_pending for t in timings],
            "pending_to_running": [t.submit_to_running - t.submit_to_pending for t in timings],
            "submit_to_running": [t.submit_to_running for t in timings],
            "flow_run_s": [t.flow for t in timings],
            "mp3_seen_s": [t.mp3_seen for t in timings if t.mp3_seen is not None],
            "server_cpu_s": [t.server_cpu for t in timings],
            "task_runs_per_run": [t.task_runs for t in timings],
        },
    )
    _judge(result, lambda ours, metube: ours - metube <= 1.0, "ytmp3 - MeTube", difference=True)
    return result, url


def case_short_playlist(session: Session, repeat: int, items: int = 20) -> CaseResult:
    """Case 2: a feed of ``items`` x 30 s, and the same work without Prefect."""
    stack, media, names = session.stack, session.media, session.names
    timings: list[RunTiming] = []
    base: dict[str, list[float]] = {METUBE: [], CLI: []}
    work: list[float] = []
    concurrency = session.cores

    def feed() -> tuple[str, str]:
        n = names.next()
        prefix = f"/items/short-{n}/"
        url = stack.media.add_feed(
            f"/feeds/short-{n}.xml", items, file=media.short_30s, title=f"Short {n}",
            item_prefix=prefix.rstrip("/"),
        )  # fmt: skip
        return url, prefix

    def ours() -> None:
        url, prefix = feed()
        timing = submit_and_wait(stack, url)
        if timing.message:
            raise RuntimeError(f"the playlist run was partial: {timing.message}")
        _check_converted(stack.data_dir, prefix, items)
        timings.append(timing)

    def theirs() -> None:
        if session.metube is not None:
            url, prefix = feed()
            base[METUBE].append(session.metube.convert(url, items, prefix))

    def bare() -> None:
        with temp_dir("ytmp3-bench-work-") as data_dir:
            work.append(work_only(feed()[0], data_dir, concurrency))

    for repetition in range(repeat):
        interleaved(
            repetition, ytmp3=ours, metube=theirs,
            cli=lambda: base[CLI].append(run_cli(feed()[0], expect=items)), work=bare,
        )  # fmt: skip
    flow = [t.flow for t in timings]
    result = CaseResult(
        case="2",
        title=f"{items} x 30-s m4a feed",
        unit="s",
        ytmp3=[t.submit_to_completed for t in timings],
        ytmp3_label="submit -> Completed",
        baselines=_measured(base),
        goal="no slower than MeTube (medians)",
        details={
            "items": items,
            "concurrency": concurrency,
            "work_only_s": work,
            "flow_run_s": flow,
            "submit_to_running": [t.submit_to_running for t in timings],
            "per_item_overhead_s": (statistics.median(flow) - statistics.median(work)) / items,
            "server_cpu_s": [t.server_cpu for t in timings],
            "task_runs_per_run": [t.task_runs for t in timings],
        },
    )
    _judge(result, lambda ours, metube: ours <= metube, "ytmp3 / MeTube")
    return result


def case_long_playlist(
    session: Session, repeat: int, items: int = 8
) -> tuple[CaseResult, CaseResult]:
    """Case 3 (and the memory row): a feed of ``items`` x 5 min vs MeTube and the two-core
    encoding limit, measured with ffmpeg alone before each repetition."""
    stack, media, names = session.stack, session.media, session.names
    audio = items * 300.0
    timings: list[RunTiming] = []
    base: dict[str, list[float]] = {METUBE: [], CLI: [], LIMIT: []}
    use: dict[str, list[float]] = {"ytmp3": [], METUBE: []}
    memory: dict[str, list[float]] = {}
    server = TreeSampler(stack.server_pid, interval=0.2)

    def feed() -> tuple[str, str]:
        n = names.next()
        prefix = f"/items/long-{n}/"
        url = stack.media.add_feed(
            f"/feeds/long-{n}.xml", items, file=media.long_5min, title=f"Long {n}",
            item_prefix=prefix.rstrip("/"),
        )  # fmt: skip
        return url, prefix

    def sample(name: str, sampler: TreeSampler, seconds: float) -> None:
        use[name].append(sampler.encoder_utilisation(seconds, session.cores))
        for what, value in (("rss", sampler.peak_rss), ("pss", sampler.peak_pss)):
            memory.setdefault(f"{name} {what}", []).append(value / 2**20)

    def ours() -> None:
        url, prefix = feed()
        with TreeSampler(stack.serve_pid) as sampler:
            timing = submit_and_wait(stack, url)
        _check_converted(stack.data_dir, prefix, items)
        timings.append(timing)
        sample("ytmp3", sampler, timing.submit_to_completed)
        for role, rss in sampler.peak_rss_by_role.items():
            memory.setdefault(f"ytmp3 rss: {role}", []).append(rss / 2**20)

    def theirs() -> None:
        if session.metube is not None:
            url, prefix = feed()
            with TreeSampler(session.metube.pid) as sampler:
                seconds = session.metube.convert(url, items, prefix)
            base[METUBE].append(seconds)
            sample(METUBE, sampler, seconds)

    def limit() -> None:
        speed = lame_speed(media.long_5min, 300.0)
        base[LIMIT].append(audio / (2 * speed))

    with server:
        for repetition in range(repeat):
            interleaved(
                repetition, ytmp3=ours, metube=theirs, limit=limit,
                cli=lambda: base[CLI].append(run_cli(feed()[0], expect=items)),
            )  # fmt: skip
    ytmp3 = [t.submit_to_completed for t in timings]
    result = CaseResult(
        case="3",
        title=f"{items} x 5-min m4a feed",
        unit="s",
        ytmp3=ytmp3,
        ytmp3_label="submit -> Completed",
        baselines=_measured(base),
        goal="no slower than MeTube, and within 1.15x the two-core limit (medians)",
        ratios={"ytmp3 / limit": statistics.median(ytmp3) / statistics.median(base[LIMIT])},
        details={
            "items": items,
            "audio_seconds": audio,
            "flow_run_s": [t.flow for t in timings],
            "encoder_utilisation": {name: values for name, values in use.items() if values},
            "server_cpu_s": [t.server_cpu for t in timings],
        },
    )
    within = result.ratios["ytmp3 / limit"] <= 1.15
    _judge(result, lambda ours, metube: ours <= metube and within, "ytmp3 / MeTube")
    memory["Prefect server rss"] = [server.peak_rss / 2**20]
    memory["Prefect server pss"] = [server.peak_pss / 2**20]
    memory_row = CaseResult(
        case="7",
        title="Memory during case 3 (peak, summed over a process tree)",
        unit="MB",
        ytmp3=memory.get("ytmp3 pss", []),
        ytmp3_label="PSS of the serving process and its children",
        baselines={METUBE: memory[f"{METUBE} pss"]} if f"{METUBE} pss" in memory else {},
        goal="report",
        details={"peak_mb": memory},
    )
    return result, memory_row


def case_dedupe(session: Session, url: str, repeat: int) -> CaseResult:
    """Case 4: a repeat request for a URL already in the library."""
    stack = session.stack
    timings: list[RunTiming] = []
    served: list[int] = []
    for _ in range(repeat):
        stack.media.wait_idle()
        stack.media.reset_counters()
        timings.append(submit_and_wait(stack, url))
        served.append(stack.media.bytes_served)
    flow = [t.flow for t in timings]
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
            "submit_to_completed": [t.submit_to_completed for t in timings],
        },
    )


def _measured(baselines: dict[str, list[float]]) -> dict[str, list[float]]:
    return {name: values for name, values in baselines.items() if values}


def _judge(
    result: CaseResult,
    goal: Callable[[float, float], bool],
    label: str,
    difference: bool = False,
) -> None:
    """Set ``met`` and the ratios against MeTube and the CLI (None without MeTube)."""
    ours = statistics.median(result.ytmp3)
    for name, values in result.baselines.items():
        if name in (METUBE, CLI):
            result.ratios[f"ytmp3 / {name}"] = ours / statistics.median(values)
    metube = median(result.baselines.get(METUBE, []))
    if metube is not None:
        if difference:
            result.ratios[label] = ours - metube
        result.met = goal(ours, metube)


def _check_converted(data_dir: Path, prefix: str, items: int) -> None:
    from flows.library import read_sidecar_file

    made = [
        sidecar
        for path in data_dir.glob("*.json")
        if (sidecar := read_sidecar_file(path)) is not None
        and prefix in (sidecar.requested_url or "")
    ]
    if len(made) != items:
        raise RuntimeError(f"{prefix}: {len(made)} of {items} items are in the library")


@contextlib.contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
