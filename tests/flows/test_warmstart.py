"""Served runs start in processes of their own, forked from one warm process
(flows/warmstart.py), and their items show in the run's item table."""

from __future__ import annotations

import os

import psutil
import pytest
from prefect.client.schemas.objects import StateType
from prefect.deployments import run_deployment

from tests.support.recovery import flow_run_processes, wait_final, wait_for

pytestmark = pytest.mark.flow


def test_each_served_run_is_a_process_forked_from_the_one_warm_process(
    media_server, settings_env, served_deployments
):
    """If Prefect stops asking for the "spawn" context (the private hook), the run's parent
    is the serving process itself and this fails."""
    parents = []
    for name in ("first", "second"):
        feed = media_server.add_feed(f"/warm-{name}.xml", 2)
        for path in media_server.feed_item_paths(f"/warm-{name}.xml"):
            media_server.slow(path, 100_000)
        flow_run = run_deployment(
            "convert/on-demand", parameters={"url": feed, "quality": "128"}, timeout=0
        )
        (process,) = wait_for(
            lambda: flow_run_processes(served_deployments.pid), 60, "the flow-run process"
        )
        forkserver = psutil.Process(process.ppid())
        assert "multiprocessing.forkserver" in " ".join(forkserver.cmdline())
        assert forkserver.ppid() == served_deployments.pid
        # One process group with the serving process: stop_all_on_hangup reaches the run.
        assert os.getpgid(process.pid) == os.getpgid(served_deployments.pid)
        parents.append(forkserver.pid)
        final = wait_final(flow_run.id, 120)
        assert final.state_type == StateType.COMPLETED, final.state.message
        wait_for(lambda p=process: not p.is_running(), 30, "the run's process to exit")
    assert parents[0] == parents[1], "each run must not start a warm process of its own"
    assert len(list(settings_env.data_dir.glob("*.mp3"))) == 4
