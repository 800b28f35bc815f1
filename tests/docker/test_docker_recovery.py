"""Crashed runs recover by themselves in production too: through the real Docker worker.

The package's fixtures (conftest.py) deploy prefect.yaml on the Docker pool and apply the
automations as `make deploy` does (zombie window 45 s; flow containers send heartbeats
every 30 s, from the pool's template). Here a flow container is killed with
`docker kill` mid-playlist, the worker is restarted mid-run, and a container dies while
no worker is up. Each test prints the measured time to recover.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import run_deployment

from tests.support.docker_engine import ZOMBIE_AFTER, Child, docker, start
from tests.support.media_server import MediaServer
from tests.support.recovery import (
    read_run,
    recover_runs_for,
    reruns_of,
    unfinished_task_runs,
    wait_final,
    wait_for,
    wait_recovered,
    wait_state,
)

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]

HEARTBEAT = 30


@pytest.fixture
def volume(library_volume: str) -> str:
    """The pool's library volume (the locked pool fixes it; runs cannot pick their own).
    Each test's feed has its own item paths, so its entries are told apart by them."""
    return library_volume


def slow_feed(media_server: MediaServer, name: str, items: int = 6) -> list[str]:
    media_server.add_feed(f"/{name}.xml", items)
    paths = media_server.feed_item_paths(f"/{name}.xml")
    for path in paths:
        media_server.slow(path, 40_000)
    return paths


def start_playlist(media_server: MediaServer, name: str, volume: str) -> FlowRun:
    return run_deployment(
        "convert/on-demand",
        parameters={"url": media_server.url(f"/{name}.xml"), "quality": "128"},
        timeout=0,
    )


def library(image: str, volume: str) -> dict[str, str]:
    """Published entries in the volume: key -> path of the item it was converted from."""
    script = (
        "import json, pathlib, urllib.parse\n"
        "print(json.dumps({p.stem: urllib.parse.urlsplit(json.loads(p.read_text())"
        "['requested_url']).path for p in pathlib.Path('/data').glob('*.json')}))\n"
    )
    output = docker("run", "--rm", "--network", "none", "-v", f"{volume}:/data:ro",
                    image, "python", "-c", script)  # fmt: skip
    return json.loads(output.strip().splitlines()[-1])


def assert_each_item_once(image: str, volume: str, items: list[str]) -> None:
    entries = {key: path for key, path in library(image, volume).items() if path in items}
    assert sorted(entries.values()) == sorted(items), entries
    mp3s = docker("run", "--rm", "--network", "none", "-v", f"{volume}:/data:ro", image,
                  "sh", "-c", "cd /data && ls *.mp3").split()  # fmt: skip
    assert set(entries) <= {name.removesuffix(".mp3") for name in mp3s}


def mid_playlist(image: str, volume: str, media_server: MediaServer, items: list[str]) -> set[str]:
    """Wait until two items are published and another is downloading; the published ones."""

    def ready() -> set[str] | None:
        if sum(media_server.bytes_served_for(p) > 90_000 for p in items) < 2:
            return None  # not worth a container yet
        done = set(library(image, volume).values()) & set(items)
        downloading = [p for p in items if p not in done and media_server.bytes_served_for(p)]
        return done if len(done) >= 2 and downloading else None

    return wait_for(ready, 300, "two items published and a third one downloading", every=1)


def flow_container(run_id) -> str:
    def found() -> str | None:
        ids = docker("ps", "-q", "--filter", f"label=io.prefect.flow-run-id={run_id}").split()
        return ids[0] if ids else None

    return wait_for(found, 120, f"the container of flow run {run_id}", every=0.5)


def stop_worker(worker: Child) -> None:
    """kill -9: what a crashed worker machine or an OOM kill does."""
    worker.process.kill()
    worker.process.wait(10)


def start_worker(worker: Child, prefect_api, logs) -> None:
    """A new worker process with the same name, in place of ``worker`` (the fixture stops it)."""
    argv = list(worker.process.args)  # the same locked worker, pool options and name
    env = prefect_api.env | {"PREFECT_WORKER_QUERY_SECONDS": "1"}
    new = start(f"docker-worker-{uuid.uuid4().hex[:6]}", argv, env, logs)
    worker.process, worker.log = new.process, new.log


def since(start: float, moment) -> float:
    return moment.timestamp() - start


def test_docker_kill_of_a_flow_container_is_re_run_through_the_pool(
    deployed, docker_worker, volume, media_server: MediaServer
):
    items = slow_feed(media_server, "docker-killed")
    run = start_playlist(media_server, "docker-killed", volume)
    done_before = mid_playlist(deployed.image, volume, media_server, items)
    requests_before = {path: media_server.request_count(path) for path in done_before}

    docker("kill", flow_container(run.id))
    killed_at = time.time()
    crashed = wait_state(run.id, StateType.CRASHED, 60)
    rerun = wait_for(lambda: (reruns_of(run.id) or [None])[0], 180, "the re-run")
    finished = wait_final(rerun.id, 400)

    assert finished.state_type == StateType.COMPLETED, finished.state.message
    assert_each_item_once(deployed.image, volume, items)
    assert {path: media_server.request_count(path) for path in done_before} == requests_before
    wait_recovered(run.id, 120)
    assert unfinished_task_runs(run.id) == []
    print(
        f"\ndocker kill: {crashed.state.message!r} after "
        f"{since(killed_at, crashed.state.timestamp):.1f} s; the re-run started after "
        f"{since(killed_at, finished.start_time):.1f} s (recover and re-run each a container)"
    )


def test_a_worker_restarted_mid_run_leaves_the_run_to_finish(
    deployed, docker_worker, prefect_api, logs, volume, media_server: MediaServer
):
    items = slow_feed(media_server, "worker-restarted")
    run = start_playlist(media_server, "worker-restarted", volume)
    flow_container(run.id)
    wait_for(lambda: media_server.bytes_served_for(items[0]), 120, "the first download")

    stop_worker(docker_worker)
    start_worker(docker_worker, prefect_api, logs)
    finished = wait_final(run.id, 400)
    assert finished.state_type == StateType.COMPLETED, finished.state.message
    assert reruns_of(run.id) == [] and recover_runs_for(run.id) == []
    assert_each_item_once(deployed.image, volume, items)


def test_a_container_killed_while_no_worker_is_up_is_crashed_by_its_missing_heartbeats(
    deployed, docker_worker, prefect_api, logs, volume, media_server: MediaServer
):
    """Nobody sees the container exit: only the heartbeats it no longer sends tell."""
    items = slow_feed(media_server, "no-worker")
    run = start_playlist(media_server, "no-worker", volume)
    container = flow_container(run.id)
    wait_for(lambda: media_server.bytes_served_for(items[0]), 120, "the first download")

    stop_worker(docker_worker)
    docker("kill", container)
    killed_at = time.time()
    assert read_run(run.id).state_type == StateType.RUNNING
    crashed = wait_state(run.id, StateType.CRASHED, HEARTBEAT + ZOMBIE_AFTER + 30)
    assert crashed.state.message.startswith(f"No heartbeat for {ZOMBIE_AFTER:g} s")
    start_worker(docker_worker, prefect_api, logs)
    rerun = wait_for(lambda: (reruns_of(run.id) or [None])[0], 180, "the re-run")
    finished = wait_final(rerun.id, 400)
    assert finished.state_type == StateType.COMPLETED, finished.state.message
    assert_each_item_once(deployed.image, volume, items)
    print(
        f"\ncontainer killed, no worker: Crashed by the zombie automation after "
        f"{since(killed_at, crashed.state.timestamp):.1f} s; re-run started after "
        f"{since(killed_at, finished.start_time):.1f} s (worker started again at once)"
    )
