"""Crashed runs recover by themselves: the automations of flows/automations.py for real.

A real Prefect server (the harness, with its triggers and actions services), prefect.yaml's
deployments served from a local process, real processes killed with SIGKILL. The zombie
window is shortened to 45 s (heartbeats every 30 s, Prefect's minimum); everything else is
as in production.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import run_deployment
from prefect.states import Cancelling, Crashed, Running, Scheduled

from flows import automations
from flows.recovery import CRASHED_TWICE_TAG, RERUN_TAG
from flows.settings import Settings, get_settings
from tests.support.media_server import MediaServer
from tests.support.recovery import (
    assert_each_item_once,
    flow_run_processes,
    published,
    read_run,
    recover_runs_for,
    reruns_of,
    task_run_states,
    unfinished_task_runs,
    wait_final,
    wait_for,
    wait_for_deployment,
    wait_recovered,
    wait_state,
)

pytestmark = [pytest.mark.flow, pytest.mark.timeout(600)]

ZOMBIE_AFTER = 45.0


@pytest.fixture
def recovery(
    settings_env: Settings, served_deployments, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """The declared automations on the harness (zombie window shortened), removed after;
    prefect.yaml's deployments (recover/after-crash among them) are served first.

    Runs the test left unfinished are deleted too, so no later test serves them.
    """
    monkeypatch.setenv("YTMP3_ZOMBIE_AFTER_SECONDS", str(ZOMBIE_AFTER))
    get_settings.cache_clear()
    settings = get_settings()
    wait_for_deployment(automations.RECOVER_DEPLOYMENT)
    ids = automations.apply(settings)
    try:
        yield settings
    finally:
        with get_client(sync_client=True) as client:
            for automation_id in ids.values():
                client.delete_automation(automation_id)
            unfinished = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(
                        type=FlowRunFilterStateType(
                            any_=[StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING]
                        )
                    )
                )
            )
            for run in unfinished:
                client.delete_flow_run(run.id)


def slow_feed(media_server: MediaServer, name: str, items: int, rate: int = 40_000) -> list[str]:
    media_server.add_feed(f"/{name}.xml", items)
    paths = media_server.feed_item_paths(f"/{name}.xml")
    for path in paths:
        media_server.slow(path, rate)
    return paths


def start(media_server: MediaServer, name: str) -> FlowRun:
    return run_deployment(
        "convert/on-demand",
        parameters={"url": media_server.url(f"/{name}.xml"), "quality": "128"},
        timeout=0,
    )


def mid_playlist(settings: Settings, media_server: MediaServer, items: list[str]) -> set[str]:
    """Wait until two items are published and another one is downloading."""

    def ready() -> set[str] | None:
        done = {entry.item_path for entry in published(settings.data_dir)}
        downloading = [p for p in items if p not in done and media_server.bytes_served_for(p)]
        return done if len(done) >= 2 and downloading else None

    return wait_for(ready, 90, "two items published and a third one downloading")


def kill_flow_run_process(serving_pid: int) -> float:
    """Kill the newest flow-run process: a re-run's, not the ``recover`` run's that
    started it (which may still be alive)."""
    processes = wait_for(lambda: flow_run_processes(serving_pid), 30, "the flow-run process")
    max(processes, key=lambda process: process.create_time()).send_signal(signal.SIGKILL)
    return time.monotonic()


def the_rerun(run_id, timeout: float) -> FlowRun:
    return wait_for(lambda: (reruns_of(run_id) or [None])[0], timeout, f"a re-run of {run_id}")


def test_a_killed_flow_run_is_re_run_once_and_nothing_is_fetched_twice(
    media_server, recovery, served_deployments
):
    items = slow_feed(media_server, "killed", 6)
    run = start(media_server, "killed")
    done_before = mid_playlist(recovery, media_server, items)
    requests_before = {path: media_server.request_count(path) for path in done_before}

    killed_at = kill_flow_run_process(served_deployments.pid)
    crashed = wait_state(run.id, StateType.CRASHED, 30)
    crashed_after = time.monotonic() - killed_at
    rerun = the_rerun(run.id, 60)
    wait_for(lambda: read_run(rerun.id).start_time, 60, "the re-run starting")
    started_after = time.monotonic() - killed_at
    finished = wait_final(rerun.id, 120)

    assert finished.state_type == StateType.COMPLETED, finished.state.message
    assert finished.parameters == crashed.parameters
    assert {RERUN_TAG, "ytmp3"} <= set(finished.tags)
    assert_each_item_once(recovery.data_dir, items)
    # What the crashed run published was reused: not one request more for those items.
    assert {path: media_server.request_count(path) for path in done_before} == requests_before
    # Its task runs are not left "Running".
    wait_recovered(run.id, 60)
    assert unfinished_task_runs(run.id) == []
    states = task_run_states(run.id)
    item_tasks = [name for name, state in states.items() if name.startswith("item ")]
    assert sum(states[name] == StateType.COMPLETED for name in item_tasks) >= len(done_before)
    assert StateType.CRASHED in states.values()
    assert read_run(run.id).state_type == StateType.CRASHED
    assert len(reruns_of(run.id)) == 1
    print(f"\nkill -9 of the flow-run process: Crashed after {crashed_after:.1f} s, "
          f"re-run started after {started_after:.1f} s")  # fmt: skip
    assert started_after < 30


def test_a_run_that_crashes_twice_stays_crashed_and_is_counted(
    media_server, recovery, served_deployments
):
    items = slow_feed(media_server, "twice", 4, rate=20_000)
    run = start(media_server, "twice")
    wait_for(lambda: media_server.bytes_served_for(items[0]), 60, "the first download")
    kill_flow_run_process(served_deployments.pid)
    rerun = the_rerun(run.id, 60)
    wait_state(rerun.id, StateType.RUNNING, 60)
    kill_flow_run_process(served_deployments.pid)

    wait_recovered(rerun.id, 60)
    twice = read_run(rerun.id)
    assert twice.state_type == StateType.CRASHED
    assert CRASHED_TWICE_TAG in twice.tags
    assert "crashed again after ytmp3 re-ran crashed run" in twice.state.message
    assert "stays Crashed" in twice.state.message
    assert reruns_of(rerun.id) == []  # and no third run
    with get_client(sync_client=True) as client:
        count = client.count_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[CRASHED_TWICE_TAG]))
        )
    assert count >= 1


def test_a_cancelled_run_is_not_re_run(media_server, recovery, served_deployments):
    items = slow_feed(media_server, "cancelled", 3, rate=20_000)
    run = start(media_server, "cancelled")
    wait_for(lambda: media_server.bytes_served_for(items[0]), 60, "the first download")
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run.id, Cancelling(), force=True)
    wait_state(run.id, StateType.CANCELLED, 45)
    time.sleep(5)  # what an automation would have started by now
    assert recover_runs_for(run.id) == [] and reruns_of(run.id) == []


def test_a_run_whose_cancellation_ended_in_a_crash_is_not_re_run(recovery, served_deployments):
    """A person's cancel, then the process vanished before it confirmed: still a cancel."""
    later = Scheduled(scheduled_time=datetime.now(UTC) + timedelta(hours=1))  # never picked up
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("convert/on-demand")
        run = client.create_flow_run_from_deployment(
            deployment.id, parameters={"url": "http://127.0.0.1:9/x.xml"}, state=later
        )
        for state in (Running(), Cancelling(), Crashed(message="the process vanished")):
            client.set_flow_run_state(run.id, state, force=True)
    (recovering,) = wait_recovered(run.id, 60)
    assert recovering.state_type == StateType.COMPLETED
    assert read_run(run.id).state_type == StateType.CANCELLED
    assert reruns_of(run.id) == []


def test_a_run_whose_heartbeats_stop_is_crashed_by_the_automation_and_re_run(
    media_server, recovery, served_deployments, serve_file
):
    """The serving process and its flow-run process die together (say, the machine):
    nothing is left to report the crash but the missing heartbeats."""
    items = slow_feed(media_server, "zombie", 6)
    run = start(media_server, "zombie")
    done_before = mid_playlist(recovery, media_server, items)
    requests_before = {path: media_server.request_count(path) for path in done_before}

    os.killpg(served_deployments.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    assert read_run(run.id).state_type == StateType.RUNNING
    crashed = wait_state(run.id, StateType.CRASHED, recovery.heartbeat_seconds + ZOMBIE_AFTER + 30)
    crashed_after = time.monotonic() - killed_at
    assert crashed.state.message.startswith(f"No heartbeat for {ZOMBIE_AFTER:g} s")
    with serve_file(recovery):  # prefect.yaml's deployments served again
        rerun = the_rerun(run.id, 60)
        wait_for(lambda: read_run(rerun.id).start_time, 60, "the re-run starting")
        started_after = time.monotonic() - killed_at
        finished = wait_final(rerun.id, 120)
        wait_recovered(run.id, 30)
    assert finished.state_type == StateType.COMPLETED, finished.state.message
    assert_each_item_once(recovery.data_dir, items)
    assert {path: media_server.request_count(path) for path in done_before} == requests_before
    assert unfinished_task_runs(run.id) == []
    print(f"\nkill -9 of serving and flow-run process: Crashed after {crashed_after:.1f} s, "
          f"re-run started after {started_after:.1f} s")  # fmt: skip
    assert crashed_after <= recovery.heartbeat_seconds + ZOMBIE_AFTER + 10
