"""Fair limits through a real Prefect server: a burst of runs queues instead of piling up.

prefect.yaml's deployments are served from a local process as `make run` serves them, a
burst of `convert/on-demand` runs is submitted at once, and the process tree is sampled
with psutil while it drains: never more runs between their start and end than the
deployment's limit (ENQUEUE: the others wait, AwaitingConcurrencySlot), never more
flow-run processes than the runner's limit, never more ffmpeg encoders than
YTMP3_MAX_ENCODERS (the global concurrency limit ytmp3-encoders), and every run ends
Completed. A second burst, of a deployment without a limit of its own, is held to the
runner's process limit (YTMP3_MAX_FLOW_RUNS).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import ConcurrencyLimitStrategy, FlowRun, StateType
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

from flows import encoders
from flows.deployments import PREFECT_YAML, load_specs
from flows.settings import Settings
from tests.support.media_server import MediaServer, generate_media
from tests.support.recovery import flow_run_processes, wait_final

pytestmark = [pytest.mark.flow, pytest.mark.timeout(900)]

BURST = 12


@dataclass
class Sample:
    """One look at the serving process's tree."""

    at: datetime
    commands: list[str]
    """Their command lines, for a failure's message."""
    encoders: int
    rss: int
    """Resident memory of the serving process and everything under it, in bytes."""


class TreeSampler(threading.Thread):
    """Samples the process tree of a serving process every 50 ms until stopped."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.samples: list[Sample] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.05):
            try:
                tree = [psutil.Process(self.root), *psutil.Process(self.root).children(True)]
            except psutil.NoSuchProcess:
                return
            rss, encoding, commands = 0, 0, []
            flow_runs = {process.pid for process in flow_run_processes(self.root)}
            for process in tree:
                try:
                    rss += process.memory_info().rss
                    command = process.cmdline()
                    if command and command[0].endswith("ffmpeg") and "libmp3lame" in command:
                        encoding += 1
                    if process.pid in flow_runs:
                        commands.append(" ".join(command)[:120])
                except psutil.Error:
                    continue
            self.samples.append(Sample(datetime.now(UTC), commands, encoding, rss))

    def stop(self) -> list[Sample]:
        self._halt.set()
        self.join(timeout=10)
        return self.samples


@dataclass
class Peaks:
    processes: int
    """Flow-run processes alive at once (one whose run has ended may still be exiting)."""
    running: int
    """Runs at once between their start and end times (what holds a deployment slot). A
    forked process's /proc environ is its forkserver's, so processes cannot name their run."""
    encoders: int
    rss: int
    busiest: Sample | None = None


def most_at_once(finals: list[FlowRun]) -> int:
    """The most runs between their start and end times at once (an end frees before a start)."""
    edges = sorted([(run.start_time, 1) for run in finals] + [(run.end_time, -1) for run in finals])
    at_once = most = 0
    for _, step in edges:
        at_once += step
        most = max(most, at_once)
    return most


def peaks(samples: list[Sample], finals: list[FlowRun]) -> Peaks:
    busiest = max(samples, key=lambda sample: len(sample.commands))
    return Peaks(
        processes=len(busiest.commands),
        running=most_at_once(finals),
        busiest=busiest,
        encoders=max(sample.encoders for sample in samples),
        rss=max(sample.rss for sample in samples),
    )


@pytest.fixture(scope="module")
def clip_60s(media_dir: Path) -> str:
    """A minute of audio: long enough to be seen encoding (~0.4 s of libmp3lame)."""
    generate_media(media_dir, "clip-60s", "m4a", 60)
    return "clip-60s.m4a"


@pytest.fixture
def fresh_encoder_limit() -> Iterator[None]:
    """No ytmp3-encoders limit on the server: the served runs create it from the setting."""

    def delete() -> None:
        with get_client(sync_client=True) as client, contextlib.suppress(ObjectNotFound):
            client.delete_global_concurrency_limit_by_name(encoders.LIMIT_NAME)
        encoders.forget_limit()

    delete()
    yield
    delete()


def burst(
    media_server: MediaServer, deployment: str, name: str, clip: str, n: int
) -> tuple[list[FlowRun], float]:
    """Submit ``n`` runs of distinct URLs at once, wait until every one is Completed;
    returns the runs and the seconds from the first submission to the last final state."""
    urls = [media_server.alias(f"/{name}/{i}.m4a", clip) for i in range(n)]
    started = time.monotonic()
    # The harness's SQLite answers 503 ("database is locked") for a while when this shared
    # machine is overloaded; the client retries those (5 times by default, seen too few).
    with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 8}):
        runs = [
            run_deployment(deployment, parameters={"url": url, "quality": "320"}, timeout=0)
            for url in urls
        ]
    finals = [wait_final(run.id, timeout=600) for run in runs]
    drained = time.monotonic() - started
    assert [run.state_type for run in finals] == [StateType.COMPLETED] * n, [
        (run.name, run.state_name, run.state and run.state.message) for run in finals
    ]
    return finals, drained


def state_names(run_id) -> set[str]:
    with get_client(sync_client=True) as client:
        return {state.name for state in client.read_flow_run_states(run_id)}


def test_a_burst_queues_behind_the_deployment_limit_and_the_encoder_limit(
    media_server: MediaServer, settings_env: Settings, serve_file, clip_60s, fresh_encoder_limit
):
    (spec,) = [spec for spec in load_specs() if spec.name == "on-demand"]
    limit = spec.concurrency_limit["limit"]
    assert spec.concurrency_limit["collision_strategy"] == "ENQUEUE"
    with serve_file(settings_env, PREFECT_YAML, extra_env={"YTMP3_MAX_ENCODERS": "1"}) as served:
        with get_client(sync_client=True) as client:  # what prefect.serve declared
            deployment = client.read_deployment_by_name("convert/on-demand")
        assert deployment.global_concurrency_limit.limit == limit
        strategy = deployment.concurrency_options.collision_strategy
        assert strategy == ConcurrencyLimitStrategy.ENQUEUE
        sampler = TreeSampler(served.pid)
        sampler.start()
        finals, drained = burst(media_server, "convert/on-demand", "burst", clip_60s, BURST)
        seen = peaks(sampler.stop(), finals)
    assert 1 <= seen.running <= limit, seen
    assert seen.processes <= settings_env.max_flow_runs, seen  # the runner's own limit
    assert 1 <= seen.encoders <= 1, seen  # YTMP3_MAX_ENCODERS=1, and encoders were seen
    with get_client(sync_client=True) as client:
        created = client.read_global_concurrency_limit_by_name(encoders.LIMIT_NAME)
        queued = client.read_flow_runs(limit=200)
    assert created.limit == 1  # made from the setting by the first transcode
    burst_runs = [run for run in queued if "/burst/" in str(run.parameters.get("url"))]
    assert any("AwaitingConcurrencySlot" in state_names(run.id) for run in burst_runs)
    pairs = {path.stem for path in settings_env.data_dir.glob("*.mp3")}
    assert pairs == {path.stem for path in settings_env.data_dir.glob("*.json")}
    assert len(pairs) == BURST
    assert list((settings_env.data_dir / ".tmp").iterdir()) == []
    print(  # for the closing note: peak RSS of the tree and the time to drain
        f"\nburst of {BURST}: drained in {drained:.1f} s; at most {seen.running} runs "
        f"({seen.processes} flow-run processes), {seen.encoders} encoders; "
        f"peak RSS {seen.rss / 1e6:.0f} MB"
    )


def test_the_runner_holds_runs_to_its_process_limit(
    media_server: MediaServer, settings_env: Settings, serve_file, clip_60s, tmp_path: Path
):
    # convert, served under another name and with no deployment limit: only the runner's.
    document = yaml.safe_load(PREFECT_YAML.read_text())
    (entry,) = [entry for entry in document["deployments"] if entry["name"] == "on-demand"]
    entry = {**entry, "name": "on-demand-unlimited"}
    entry.pop("concurrency_limit")
    path = tmp_path / "prefect.yaml"
    path.write_text(yaml.safe_dump({**document, "deployments": [entry]}))
    env = {"YTMP3_MAX_FLOW_RUNS": "2"}
    with serve_file(settings_env, path, "convert/on-demand-unlimited", extra_env=env) as served:
        sampler = TreeSampler(served.pid)
        sampler.start()
        finals, _ = burst(media_server, "convert/on-demand-unlimited", "runner", clip_60s, 6)
        seen = peaks(sampler.stop(), finals)
    assert 1 <= seen.processes <= 2, seen  # a process slot comes back when the process exits
