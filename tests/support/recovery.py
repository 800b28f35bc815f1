"""Helpers of the crash-and-recovery tests (tests/flows, tests/stack, tests/docker).

They talk to whichever Prefect server ``PREFECT_API_URL`` names when called, and read the
library from disk, so the same checks hold for the test harness, `make run` and Docker.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit
from uuid import UUID

import psutil
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterName,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType, TaskRun
from prefect.exceptions import ObjectNotFound

from flows.recovery import RERUN_OF_PREFIX, UNFINISHED

T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout: float, what: str, every: float = 0.25) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(every)


def wait_for_deployment(name: str, timeout: float = 60) -> None:
    """Wait until the server knows deployment ``name`` (``flow/deployment``)."""

    def known() -> bool:
        with get_client(sync_client=True) as client:
            try:
                return bool(client.read_deployment_by_name(name))
            except ObjectNotFound:
                return False

    wait_for(known, timeout, f"deployment {name}", every=0.5)


def read_run(run_id: UUID) -> FlowRun:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def wait_state(run_id: UUID, state: StateType, timeout: float) -> FlowRun:
    def reached() -> FlowRun | None:
        run = read_run(run_id)
        return run if run.state_type == state else None

    return wait_for(reached, timeout, f"flow run {run_id} {state.value}")


def wait_final(run_id: UUID, timeout: float) -> FlowRun:
    def final() -> FlowRun | None:
        run = read_run(run_id)
        return run if run.state is not None and run.state.is_final() else None

    return wait_for(final, timeout, f"flow run {run_id} in a final state")


def reruns_of(run_id: UUID) -> list[FlowRun]:
    """The runs tagged as re-runs of ``run_id``."""
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[f"{RERUN_OF_PREFIX}{run_id}"])
            )
        )


def recover_runs_for(run_id: UUID) -> list[FlowRun]:
    """The ``recover/after-crash`` runs started for ``run_id``."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["after-crash"])),
            limit=200,
        )
    return [run for run in runs if str(run.parameters.get("flow_run_id")) == str(run_id)]


def wait_recovered(run_id: UUID, timeout: float) -> list[FlowRun]:
    """Wait until every recover run started for ``run_id`` (at least one) is final."""

    def done() -> list[FlowRun] | None:
        runs = recover_runs_for(run_id)
        return runs if runs and all(run.state and run.state.is_final() for run in runs) else None

    return wait_for(done, timeout, f"the recovery of {run_id}", every=0.5)


def unfinished_task_runs(run_id: UUID) -> list[TaskRun]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])), limit=200
        )
    return [run for run in runs if run.state_type in UNFINISHED]


def task_run_states(run_id: UUID) -> dict[str, StateType | None]:
    """Task run name -> state type, for one flow run."""
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])), limit=200
        )
    return {run.name: run.state_type for run in runs}


def flow_run_processes(parent: int) -> list[psutil.Process]:
    """The flow-run processes a serving process (``python -m flows.deployments``) started.

    Each is forked from the serving process's forkserver (flows/warmstart.py), which is
    not one itself; a runner without it starts ``python -m prefect.engine`` or a spawned
    multiprocessing child. Their own children (ffmpeg, ffprobe) are not counted.
    """
    try:
        children = psutil.Process(parent).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    info: dict[int, tuple[str, int]] = {}  # pid: (command line, parent pid)
    for child in children:
        try:
            info[child.pid] = (" ".join(child.cmdline()), child.ppid())
        except psutil.Error:
            continue

    def command(pid: int) -> str:
        return info[pid][0] if pid in info else ""

    def started_a_run(text: str) -> bool:
        return "prefect.engine" in text or "spawn_main" in text

    # A run's own child (ffmpeg, say) shows the run's command line between its fork and
    # its exec, so it is told apart by its parent: the forkserver, or not a run itself.
    forkservers = {
        pid for pid, (text, ppid) in info.items()
        if "forkserver" in text and "forkserver" not in command(ppid)
    }  # fmt: skip

    def is_run(pid: int) -> bool:
        text, ppid = info[pid]
        return ppid in forkservers or (started_a_run(text) and not started_a_run(command(ppid)))

    return [child for child in children if child.pid in info and is_run(child.pid)]


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those of ``processes`` still running (zombies, i.e. exited but not reaped, are not)."""
    running = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                running.append(process)
        except psutil.NoSuchProcess:
            continue
    return running


@dataclass(frozen=True)
class Published:
    """One library entry: its key and the path of the item it was converted from."""

    key: str
    item_path: str


def published(data_dir: Path) -> list[Published]:
    """Every committed entry (sidecar) in the library."""
    entries = []
    for sidecar in sorted(data_dir.glob("*.json")):
        fields = json.loads(sidecar.read_text())
        entries.append(Published(sidecar.stem, urlsplit(fields["requested_url"]).path))
    return entries


def assert_each_item_once(data_dir: Path, items: list[str]) -> None:
    """Every item of ``items`` is in the library exactly once, as a whole MP3+sidecar pair.

    Entries of other playlists (other directories of the media server) are left aside.
    """
    folders = {path.rsplit("/", 1)[0] for path in items}
    entries = [e for e in published(data_dir) if e.item_path.rsplit("/", 1)[0] in folders]
    assert sorted(entry.item_path for entry in entries) == sorted(items), entries
    # Whole pairs only: every MP3 has its sidecar and every sidecar its MP3.
    assert {path.stem for path in data_dir.glob("*.mp3")} == {e.key for e in published(data_dir)}
