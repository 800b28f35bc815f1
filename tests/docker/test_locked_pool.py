"""The attack on the pool: what a run submitted through the Prefect API cannot do.

A run asking for a privileged container with the host's root mounted, another image and
command, and env that widens the URL policy is refused by the server; after the pool
itself is rewritten to prefect-docker's permissive default (as anyone holding the API's
password could), the same run gets exactly the configured container, because the worker
(infrastructure/docker/worker.py) runs only its own locked template. The fixtures
(conftest.py) are the ones test_docker_pool.py uses.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.deployments import run_deployment
from prefect.exceptions import PrefectHTTPStatusError

from tests.support.docker_engine import (
    DOCKER_DIR,
    MEDIA_ENV,
    POOL,
    STAND_IN,
    docker,
    run_logged,
    tail,
)

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

UID = 1000
MEMORY_BYTES = 1024 * 2**20  # YTMP3_CONTAINER_MEMORY_MB's default
PIDS_LIMIT = 512  # YTMP3_CONTAINER_PIDS_LIMIT's default


ATTACK = {
    "privileged": True,
    "volumes": ["/:/host"],
    "command": "sh -c 'cat /host/etc/shadow'",
    "image": STAND_IN,
    "network_mode": "host",
    "container_create_kwargs": {"cap_add": ["ALL"], "read_only": False, "user": "0:0"},
    "auto_remove": False,  # a run may ask for that: the container stays for `docker inspect`
    "env": {
        "YTMP3_ALLOWED_HOSTS": "*",
        "YTMP3_MEDIA_HOSTS": "169.254.169.254",
        "YTMP3_PRIVATE_SERVICE": "postgres:5432",
        "YTMP3_PROXY": "http://attacker.example:3128",
        "YTMP3_DATA_DIR": "/host",
        "PREFECT_API_URL": "http://attacker.example/api",
    },
}


def test_the_server_refuses_a_run_that_tries_to_steer_the_container(deployed):
    for variables in (ATTACK, {"env": ATTACK["env"]}, {"env": {"YTMP3_ALLOWED_HOSTS": "*"}}):
        with pytest.raises(PrefectHTTPStatusError) as refused:
            run_deployment(
                "cleanup/every-5-minutes", parameters={"dry_run": True},
                job_variables=variables, timeout=0,
            )  # fmt: skip
        assert refused.value.response.status_code == 422, refused.value
        assert "Validation failed" in refused.value.response.text


@pytest.fixture
def permissive_pool(deployed, prefect_api, pool_args, logs) -> Iterator[None]:
    """The pool rewritten to prefect-docker's default template, then restored."""
    from prefect_docker.worker import DockerWorker

    with get_client(sync_client=True) as client:
        client.create_work_pool(
            WorkPoolCreate(
                name=POOL, type="docker",
                base_job_template=DockerWorker.get_default_base_job_template(),
            ),
            overwrite=True,
        )  # fmt: skip
    try:
        yield
    finally:
        run_logged("restore-pool", [sys.executable, str(DOCKER_DIR / "create_pool.py"),
                                    *pool_args], prefect_api.env, logs, timeout=120)  # fmt: skip


def test_past_the_servers_check_the_worker_runs_exactly_the_configured_container(
    deployed, docker_worker, permissive_pool, library_volume, prefect_api
):
    flow_run = run_deployment(
        "cleanup/every-5-minutes", parameters={"dry_run": True}, job_variables=ATTACK,
        timeout=300, poll_interval=1,
    )  # fmt: skip
    assert flow_run.state is not None and flow_run.state.is_completed(), (
        f"{flow_run.state}\n{tail(docker_worker.log)}"
    )
    ids = docker("ps", "-aq", "--filter", f"label=io.prefect.flow-run-id={flow_run.id}").split()
    assert len(ids) == 1, ids
    container = json.loads(docker("inspect", ids[0]))[0]
    config, host = container["Config"], container["HostConfig"]
    env = dict(item.split("=", 1) for item in config["Env"])
    seen = {
        "Privileged": host["Privileged"],
        "Mounts": sorted(
            f"{m['Type']}:{m.get('Name') or m['Source']}->{m['Destination']}"
            + ("" if m["RW"] else ":ro")
            for m in container["Mounts"]
        ),
        "Tmpfs": sorted(host["Tmpfs"] or {}),
        "CapDrop": host["CapDrop"],
        "CapAdd": host["CapAdd"],
        "ReadonlyRootfs": host["ReadonlyRootfs"],
        "SecurityOpt": host["SecurityOpt"],
        "Memory": host["Memory"],
        "MemorySwap": host["MemorySwap"],
        "PidsLimit": host["PidsLimit"],
        "Image": config["Image"],
        "Cmd": config["Cmd"],
        "Entrypoint": config["Entrypoint"],
        "User": config["User"],
        "NetworkMode": host["NetworkMode"],
        "url-policy env": {k: v for k, v in env.items() if k in ATTACK["env"]},
        "ExitCode": container["State"]["ExitCode"],
    }
    print("\nattack run, docker inspect:", json.dumps(seen, indent=1))
    assert seen["Privileged"] is False
    # The pool's three volumes (pool_template.PoolConfig's defaults for the other two),
    # none of the run's.
    assert seen["Mounts"] == [
        "volume:ytmp3-cookies->/run/ytmp3-cookies:ro",
        f"volume:{library_volume}->/data",
        "volume:ytmp3-ytdlp-cache->/var/cache/ytmp3",
    ]
    assert seen["Tmpfs"] == ["/home/ytmp3", "/tmp"]
    assert seen["CapDrop"] == ["ALL"] and not seen["CapAdd"]
    assert seen["ReadonlyRootfs"] is True
    assert seen["SecurityOpt"] == ["no-new-privileges:true"]
    assert (seen["Memory"], seen["MemorySwap"], seen["PidsLimit"]) == (
        MEMORY_BYTES, MEMORY_BYTES, PIDS_LIMIT,
    )  # fmt: skip
    assert seen["Image"] == deployed.image
    assert seen["Cmd"] == ["prefect", "flow-run", "execute"] and not seen["Entrypoint"]
    assert seen["User"] == f"{UID}:{UID}"
    # The pool's network choice (host, for the tests' localhost API URL), not the run's.
    assert seen["NetworkMode"] == "host"
    assert seen["url-policy env"] == {
        "YTMP3_ALLOWED_HOSTS": MEDIA_ENV["YTMP3_ALLOWED_HOSTS"],
        "YTMP3_DATA_DIR": "/data",
        "PREFECT_API_URL": prefect_api.url,
    }
    assert seen["ExitCode"] == 0
    assert "ignored job variables" in docker_worker.log.read_text()
