"""The production path for real: the project's Dockerfile, a Prefect server, a Docker worker.

Everything here is package-scoped (started once for the modules of tests/docker, stopped
after them) and real, nothing is mocked:

* ``docker_engine``: a Docker engine must answer. Without one the tests *fail* when ``CI`` is
  set and are skipped with the reason otherwise.
* ``base_image``: the stand-in for debian:bookworm-slim that
  infrastructure/docker/make-base-image.sh builds from Debian packages (no registry is
  reachable here; cached as an image). ``YTMP3_TEST_BASE_IMAGE`` names another one, e.g.
  ``debian:bookworm-slim`` where a registry is reachable.
* ``wheel_index``: infrastructure/docker/serve_wheels.py on the Docker bridge (containers
  cannot reach the package index here; wheels cached in .cache/wheels).
* ``prefect_api``: ``prefect server start`` on a free 127.0.0.1 port with its own
  PREFECT_HOME (SQLite), scheduler off so no scheduled run interferes. Containers reach it
  because the Docker worker starts flow containers with ``network_mode: host`` when the API
  URL is a localhost one (so they reach the 127.0.0.1 media server too).
* ``pool_args``: the pool's configuration, as an operator gives it to create_pool.py and
  worker.py: the test image, the test's library volume, and the 127.0.0.1 media server
  allowed (``--env``), since runs cannot widen the URL policy themselves.
* ``deployed``: the locked pool (create_pool.py), then what ``make deploy`` does:
  ``prefect deploy --all`` from prefect.yaml, whose build step builds the Dockerfile (only
  build args differ from production: BASE_IMAGE, PIP_*, passed through the environment as
  prefect.yaml reads them), and ``python -m flows.automations``.
  PREFECT_DEFAULT_DOCKER_BUILD_NAMESPACE makes the image ``ytmp3-test/ytmp3:latest``
  (``DOCKER_TESTS_IMAGE_NAMESPACE`` names another namespace), so a production
  ``ytmp3:latest`` on the same engine is left alone.
* ``docker_worker``: infrastructure/docker/worker.py (the locked worker) on that pool.
* ``library_volume``: a named volume unique to this run; it and the containers that used it
  are removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.docker_engine import (
    BIN,
    DOCKER_DIR,
    IMAGE_NAMESPACE,
    MEDIA_ENV,
    POOL,
    STAND_IN,
    WHEELS_PORT,
    ZOMBIE_AFTER,
    Child,
    clean_env,
    docker,
    engine_problem,
    free_port,
    port_is_free,
    require,
    run_logged,
    start,
    tail,
)

# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="package")
def docker_engine() -> None:
    problem = engine_problem()
    require(
        problem is None,
        f"Docker tests need a Docker engine: {problem}. "
        "Start one with infrastructure/docker/start-engine.sh (as root or with sudo).",
    )


@pytest.fixture(scope="package")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("docker-logs")


@pytest.fixture(scope="package")
def base_image(docker_engine: None, logs: Path) -> str:
    name = os.environ.get("YTMP3_TEST_BASE_IMAGE")
    if name:
        return name
    require(
        shutil.which("debootstrap") is not None
        or docker("image", "inspect", STAND_IN, check=False) != "",
        "the stand-in base image needs debootstrap (infrastructure/docker/start-engine.sh "
        "installs it), or set YTMP3_TEST_BASE_IMAGE=debian:bookworm-slim where a registry "
        "is reachable",
    )
    run_logged("make-base-image", [str(DOCKER_DIR / "make-base-image.sh"), STAND_IN],
               clean_env(), logs, timeout=600)  # fmt: skip
    return STAND_IN


@pytest.fixture(scope="package")
def wheel_index(docker_engine: None, logs: Path) -> Iterator[dict[str, str]]:
    """The PIP_* build args that point the image's pip at wheels served from this host."""
    found = subprocess.run(
        [sys.executable, str(DOCKER_DIR / "bridge.py")], capture_output=True, text=True, check=False
    )
    gateway = found.stdout.strip()
    assert found.returncode == 0 and gateway, f"no bridge address: {found.stderr}"
    # The URL is a build arg, and build args are part of the build cache's key: a fixed
    # port keeps the pip layers cached from one run to the next.
    port = WHEELS_PORT if port_is_free(gateway, WHEELS_PORT) else free_port(gateway)
    child = start(
        "serve-wheels",
        [sys.executable, str(DOCKER_DIR / "serve_wheels.py"), "--host", gateway,
         "--port", str(port)],
        clean_env(), logs,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 900  # a first run downloads ~150 MB of wheels
        while True:
            child.check_alive()
            with socket.socket() as sock:
                sock.settimeout(1)
                if sock.connect_ex((gateway, port)) == 0:
                    break
            assert time.monotonic() < deadline, f"wheels not served\n{tail(child.log)}"
            time.sleep(0.5)
        yield {
            "PIP_NO_INDEX": "1",
            "PIP_FIND_LINKS": f"http://{gateway}:{port}/",
            "PIP_TRUSTED_HOST": gateway,
        }
    finally:
        child.stop()


@dataclass
class PrefectApi:
    url: str
    env: dict[str, str]
    """Environment for Prefect CLI processes that talk to this server."""


@pytest.fixture(scope="package")
def prefect_api(
    docker_engine: None, tmp_path_factory: pytest.TempPathFactory, logs: Path
) -> Iterator[PrefectApi]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = clean_env() | {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    server_env = env | {
        # No scheduled runs (cleanup every 5 minutes, the playlists) during the test.
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
    }
    server = start(
        "prefect-server",
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        server_env, logs,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            server.check_alive()
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"Prefect server not up\n{tail(server.log)}"
            time.sleep(0.5)
        with temporary_settings({PREFECT_API_URL: url}):
            yield PrefectApi(url=url, env=env | {"PREFECT_API_URL": url})
    finally:
        server.stop()


@dataclass
class Deployed:
    image: str
    build_seconds: float
    build_env: dict[str, str]
    """The environment `prefect deploy` built with (BASE_IMAGE, PIP_*, the namespace)."""


@pytest.fixture(scope="package")
def pool_args(library_volume: str) -> list[str]:
    """create_pool.py's (and worker.py's) options for the tests' pool."""
    return [
        "--pool", POOL, "--image", f"{IMAGE_NAMESPACE}/ytmp3:latest",
        "--volume", f"{library_volume}:/data",
        *(arg for name, value in MEDIA_ENV.items() for arg in ("--env", f"{name}={value}")),
    ]  # fmt: skip


@pytest.fixture(scope="package")
def deployed(
    prefect_api: PrefectApi,
    base_image: str,
    wheel_index: dict[str, str],
    pool_args: list[str],
    logs: Path,
) -> Deployed:
    """The locked pool, every deployment of prefect.yaml, the image built."""
    run_logged("create-pool", [sys.executable, str(DOCKER_DIR / "create_pool.py"), *pool_args],
               prefect_api.env, logs, timeout=120)  # fmt: skip
    build_env = (
        prefect_api.env
        | wheel_index
        | {
            "BASE_IMAGE": base_image,
            "PREFECT_DEFAULT_DOCKER_BUILD_NAMESPACE": IMAGE_NAMESPACE,
        }
    )
    started = time.monotonic()
    run_logged("prefect-deploy", [str(BIN / "prefect"), "--no-prompt", "deploy", "--all"],
               build_env, logs, timeout=1800)  # fmt: skip
    build_seconds = time.monotonic() - started
    automations_env = prefect_api.env | {"YTMP3_ZOMBIE_AFTER_SECONDS": str(ZOMBIE_AFTER)}
    run_logged("automations", [sys.executable, "-m", "flows.automations"], automations_env,
               logs, timeout=120)  # fmt: skip
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("convert/on-demand")
    image = deployment.job_variables["image"]
    assert image == f"{IMAGE_NAMESPACE}/ytmp3:latest", deployment.job_variables
    return Deployed(image=image, build_seconds=build_seconds, build_env=build_env)


@pytest.fixture(scope="package")
def docker_worker(
    deployed: Deployed, prefect_api: PrefectApi, pool_args: list[str], logs: Path
) -> Iterator[Child]:
    from prefect.client.orchestration import get_client

    name = f"docker-test-{uuid.uuid4().hex[:8]}"
    env = prefect_api.env | {"PREFECT_WORKER_QUERY_SECONDS": "1"}
    worker = start(
        "docker-worker",
        [sys.executable, str(DOCKER_DIR / "worker.py"), *pool_args, "--name", name],
        env, logs,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        with get_client(sync_client=True) as client:
            while name not in {w.name for w in client.read_workers_for_work_pool(POOL)}:
                worker.check_alive()
                assert time.monotonic() < deadline, f"worker not registered\n{tail(worker.log)}"
                time.sleep(0.5)
        yield worker
    finally:
        worker.stop()


@pytest.fixture(scope="package")
def library_volume(docker_engine: None) -> Iterator[str]:
    """A fresh named volume for the library; it and its containers are removed afterwards."""
    name = f"ytmp3-test-library-{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        containers = docker("ps", "-aq", "--filter", f"volume={name}", check=False).split()
        if containers:
            docker("rm", "-f", *containers, check=False)
        docker("volume", "rm", "-f", name, check=False)
