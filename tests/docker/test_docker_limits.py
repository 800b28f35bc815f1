"""The Docker pool's concurrency limit, for real: a burst through the locked Docker worker
never runs more flow containers at once than the pool allows, and every run completes.

The pool is made by infrastructure/docker/create_pool.py (as `make pool` and the compose
worker make it) with YTMP3_MAX_FLOW_RUNS=2 for the burst, below convert/on-demand's own
limit of 4, so the pool's limit is the one that holds; then made again as it was.
"""

from __future__ import annotations

import json
import sys
import time

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.deployments import run_deployment

from flows.settings import Settings
from tests.support.docker_engine import DOCKER_DIR, docker, run_logged
from tests.support.media_server import MediaServer

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]

POOL_LIMIT = 2
BURST = 5
DEFAULT_FLOW_RUNS = Settings.model_fields["max_flow_runs"].default
"""The limit the worker made the pool with (its environment has no YTMP3_MAX_FLOW_RUNS)."""


def make_pool(prefect_api, pool_args: list[str], logs, **env: str) -> None:
    run_logged("create-pool-limits", [sys.executable, str(DOCKER_DIR / "create_pool.py"),
               *pool_args], prefect_api.env | env, logs, timeout=120)  # fmt: skip


def our_containers(run_ids: set[str]) -> dict[str, str]:
    """Running containers of the given flow runs, by container id: their flow run's id
    (other tests' containers are left out)."""
    label = "io.prefect.flow-run-id"
    listing = docker(
        "ps", "--filter", f"label={label}", "--format", f'{{{{.ID}}}} {{{{.Label "{label}"}}}}'
    )
    rows = [line.split() for line in listing.splitlines()]
    return {row[0]: row[1] for row in rows if len(row) == 2 and row[1] in run_ids}


def test_the_worker_makes_the_pool_with_the_flow_runs_limit(docker_worker):
    with get_client(sync_client=True) as client:
        pool = client.read_work_pool("docker-pool")
    assert pool.concurrency_limit == DEFAULT_FLOW_RUNS


def test_a_burst_never_runs_more_flow_containers_than_the_pool_allows(
    docker_worker, prefect_api, pool_args, logs, media_server: MediaServer
):
    make_pool(prefect_api, pool_args, logs, YTMP3_MAX_FLOW_RUNS=str(POOL_LIMIT))
    try:
        urls = [media_server.alias(f"/pool-burst/{n}.m4a", "clip.m4a") for n in range(BURST)]
        runs = [
            run_deployment("convert/on-demand", parameters={"url": url}, timeout=0) for url in urls
        ]
        ids = {str(run.id) for run in runs}
        peak, log_configs = 0, []
        deadline = time.monotonic() + 1200
        while True:
            running = our_containers(ids)
            if running and not log_configs:
                first = next(iter(running))
                inspected = json.loads(docker("inspect", first, check=False) or "[{}]")
                log_configs.append(inspected[0].get("HostConfig", {}).get("LogConfig"))
            with get_client(sync_client=True) as client:
                states = [client.read_flow_run(run.id).state for run in runs]
            # A container whose run has ended may still be exiting: it holds no slot, so
            # only runs still unfinished after the listing count.
            unfinished = {str(run.id) for run, state in zip(runs, states, strict=True)
                          if state is None or not state.is_final()}  # fmt: skip
            peak = max(peak, len(set(running.values()) & unfinished))
            if all(state is not None and state.is_final() for state in states):
                break
            assert time.monotonic() < deadline, states
            time.sleep(0.5)
        assert [state.type for state in states] == [StateType.COMPLETED] * BURST, [
            (state.type, state.message) for state in states
        ]
        assert 1 <= peak <= POOL_LIMIT
        # Flow containers' own logs are rotated (the pool's template).
        assert log_configs in ([], [{"Type": "json-file",
                                     "Config": {"max-file": "3", "max-size": "10m"}}])  # fmt: skip
    finally:
        make_pool(prefect_api, pool_args, logs)
    with get_client(sync_client=True) as client:
        assert client.read_work_pool("docker-pool").concurrency_limit == DEFAULT_FLOW_RUNS
