"""infrastructure/compose.yml for real: one `docker-compose up` of the whole stack.

The stack runs from a copy of infrastructure/ (so the copy's .env is generated on first
start, as on a fresh checkout, and the worktree's own .env is never touched), with the
image the other Docker tests built, the page's image built from the same cache, and the
stand-in Postgres (docker/make-postgres-image.sh). Every name is unique to the run: the
compose project, its volumes and networks, the flows network and the library volume. The
stack, volumes included, is removed afterwards.

Shown here: a call without the auth string gets 401; the worker, the page and a flow run
work with it; no secret appears in the compose config, container settings or logs; a
flow container reaches the server but not Postgres.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.error
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
    PROJECT_ROOT,
    clean_env,
    docker,
    free_port,
    require,
    run_logged,
)
from ui.passwords import hash_password

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]

SECRET_FILES = "/run/secrets/ytmp3"
WITH_SECRETS = "/opt/ytmp3/infrastructure/docker/with-secrets.sh"


@dataclass
class Stack:
    project: str
    directory: Path
    env: dict[str, str]
    api: str
    auth: str
    flows_network: str
    logs: Path

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        result = subprocess.run(
            ["docker-compose", "-f", str(self.directory / "compose.yml"), *args],
            capture_output=True, text=True, timeout=timeout, env=self.env, check=False,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"docker-compose {' '.join(args)}:\n{result.stderr[-3000:]}")
        return result.stdout

    def container(self, service: str) -> str:
        return self.compose("ps", "-q", service).strip()

    def request(self, path: str, auth: str | None) -> int:
        request = urllib.request.Request(f"{self.api}{path}", data=b"{}", method="POST")
        request.add_header("Content-Type", "application/json")
        if auth is not None:
            request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code


@pytest.fixture(scope="module")
def postgres_image(base_image: str, logs: Path) -> str:
    name = f"{IMAGE_NAMESPACE}/postgres:stand-in"
    run_logged("make-postgres-image", [str(DOCKER_DIR / "make-postgres-image.sh"), name,
                                       base_image], clean_env(), logs, timeout=900)  # fmt: skip
    return name


@pytest.fixture(scope="module")
def ui_image(deployed, logs: Path) -> str:
    """The page's image, from the layers `prefect deploy` built (same build args)."""
    name = f"{IMAGE_NAMESPACE}/ytmp3-ui:latest"
    names = ("BASE_IMAGE", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS",
             "PIP_NO_INDEX", "PIP_TRUSTED_HOST")  # fmt: skip
    args = [f"--build-arg={arg}={deployed.build_env.get(arg, '')}" for arg in names]
    run_logged("build-ui-image", ["docker", "build", "--rm", "--force-rm", *args,
                                  "--target", "ui", "-t", name, "."],
               clean_env(), logs, timeout=1800)  # fmt: skip
    return name


@pytest.fixture(scope="module")
def stack(
    deployed, ui_image: str, postgres_image: str, tmp_path_factory: pytest.TempPathFactory,
    logs: Path,
) -> Iterator[Stack]:  # fmt: skip
    require(shutil.which("docker-compose") is not None, "docker-compose is not installed")
    project = f"ytmp3test{uuid.uuid4().hex[:8]}"
    directory = tmp_path_factory.mktemp("compose") / "infrastructure"
    shutil.copytree(PROJECT_ROOT / "infrastructure", directory,
                    ignore=shutil.ignore_patterns(".env", "__pycache__"))  # fmt: skip
    port = free_port()
    env = clean_env() | {
        "COMPOSE_PROJECT_NAME": project,
        "YTMP3_IMAGE": deployed.image,
        "YTMP3_UI_IMAGE": ui_image,
        "POSTGRES_IMAGE": postgres_image,
        "PREFECT_PORT": str(port),
        "UI_PORT": str(free_port()),
        "YTMP3_FLOWS_NETWORK": f"{project}-flows",
        "YTMP3_LIBRARY_VOLUME": f"{project}-library",
        # The page starts only with sign-in set up (README, "Sign-in and users").
        "YTMP3_USERS": f"tester:{hash_password(uuid.uuid4().hex)}",
    }
    stack = Stack(project, directory, env, f"http://127.0.0.1:{port}/api", "",
                  f"{project}-flows", logs)  # fmt: skip
    try:
        started = time.monotonic()
        stack.compose("up", "-d", timeout=900)
        wait_healthy(stack, ("prefect-server", "worker", "ui"), timeout=300)
        print(f"\ncompose up: healthy after {time.monotonic() - started:.0f} s")
        values = dict(
            line.split("=", 1) for line in (directory / ".env").read_text().splitlines() if line
        )
        stack.auth = values["PREFECT_API_AUTH_STRING"]
        yield stack
    finally:
        (logs / "compose.log").write_text(stack.compose("logs", "--no-color", check=False))
        leftovers = docker("ps", "-aq", "--filter", f"network={stack.flows_network}",
                           check=False).split()  # fmt: skip
        if leftovers:
            docker("rm", "-f", *leftovers, check=False)
        stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "10",
                      timeout=300, check=False)  # fmt: skip


def wait_healthy(stack: Stack, services: tuple[str, ...], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        states = {}
        for service in services:
            cid = stack.container(service)
            states[service] = (
                docker("inspect", "-f", "{{.State.Health.Status}}", cid, check=False).strip()
                if cid
                else "missing"
            )
        if all(state == "healthy" for state in states.values()):
            return
        if time.monotonic() > deadline:
            logs = stack.compose("logs", "--no-color", "--tail=40", check=False)
            raise AssertionError(f"not healthy: {states}\n{logs[-6000:]}")
        time.sleep(2)


@dataclass
class FlowRunThroughCompose:
    state: str
    container: dict


@pytest.fixture(scope="module")
def compose_flow_run(stack: Stack, deployed) -> FlowRunThroughCompose:
    """prefect.yaml deployed on the compose server, one cleanup (dry run) through its pool."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    env = deployed.build_env | {"PREFECT_API_URL": stack.api, "PREFECT_API_AUTH_STRING": stack.auth}
    run_logged("compose-deploy", [str(BIN / "prefect"), "--no-prompt", "deploy", "--all"],
               env, stack.logs, timeout=1800)  # fmt: skip
    with temporary_settings({PREFECT_API_URL: stack.api, PREFECT_API_AUTH_STRING: stack.auth}):
        flow_run = run_deployment(
            "cleanup/every-5-minutes", parameters={"dry_run": True},
            job_variables={"auto_remove": False}, timeout=300, poll_interval=1,
        )  # fmt: skip
    ids = docker("ps", "-aq", "--filter", f"label=io.prefect.flow-run-id={flow_run.id}").split()
    assert len(ids) == 1, ids
    container = json.loads(docker("inspect", ids[0]))[0]
    return FlowRunThroughCompose(state=flow_run.state.type.value, container=container)


def test_the_api_asks_for_the_auth_string(stack: Stack):
    assert stack.auth.startswith("ytmp3:") and len(stack.auth) > 40
    assert stack.request("/flows/filter", auth=None) == 401
    assert stack.request("/flows/filter", auth="ytmp3:wrong") == 401
    assert stack.request("/flows/filter", auth=stack.auth) == 200
    with urllib.request.urlopen(f"{stack.api}/health", timeout=10) as response:
        assert response.status == 200  # health checks need none
    # The Prefect UI is served (its bundles go to the read-only server's HOME tmpfs) and
    # asks the operator for the string.
    root = stack.api.removesuffix("/api")
    with urllib.request.urlopen(f"{root}/ui-settings", timeout=10) as response:
        assert json.load(response)["auth"] == "BASIC"
    with urllib.request.urlopen(f"{root}/", timeout=10) as response:
        assert response.status == 200


def test_no_secret_is_in_the_config_the_containers_or_the_logs(stack: Stack):
    env_file = stack.directory / ".env"
    assert env_file.stat().st_mode & 0o777 == 0o600
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if line)
    secrets = [values["PREFECT_API_AUTH_STRING"], values["POSTGRES_PASSWORD"]]
    exposed = stack.compose("config") + stack.compose("logs", "--no-color")
    for service in ("postgres", "prefect-server", "worker", "ui"):
        exposed += docker("inspect", "-f", "{{json .Config.Env}}", stack.container(service))
    for secret in secrets:
        assert secret.split(":")[-1] not in exposed


def test_the_worker_page_and_a_flow_run_work_with_it(
    stack: Stack, compose_flow_run: FlowRunThroughCompose, deployed
):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    with (
        temporary_settings({PREFECT_API_URL: stack.api, PREFECT_API_AUTH_STRING: stack.auth}),
        get_client(sync_client=True) as client,
    ):
        assert client.read_workers_for_work_pool("docker-pool")
    assert compose_flow_run.state == "COMPLETED"
    container = compose_flow_run.container
    assert container["Config"]["Image"] == deployed.image
    assert set(container["NetworkSettings"]["Networks"]) == {stack.flows_network}
    assert container["HostConfig"]["ReadonlyRootfs"] is True
    assert container["HostConfig"]["CapDrop"] == ["ALL"]
    # The page's own client, in its container, with the secret files and without them.
    check = "from ui import runs; print(len(runs.overview().runs))"
    ui = stack.container("ui")
    docker("exec", ui, WITH_SECRETS, SECRET_FILES, "python", "-c", check)
    refused = subprocess.run(["docker", "exec", ui, "python", "-c", check],
                             capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert refused.returncode != 0 and "refused this page's credentials (401)" in refused.stderr


def test_postgres_is_not_reachable_from_a_flow_container(
    stack: Stack, compose_flow_run: FlowRunThroughCompose, deployed
):
    """A container attached as the flow container was (its network, from its inspect)
    reaches the server, but neither Postgres's name nor its address."""
    (network,) = compose_flow_run.container["NetworkSettings"]["Networks"]
    postgres = json.loads(docker("inspect", stack.container("postgres")))[0]
    addresses = [net["IPAddress"] for net in postgres["NetworkSettings"]["Networks"].values()]
    probe = """
import json, socket, sys
out = {}
for host, port in json.loads(sys.argv[1]):
    try:
        socket.create_connection((host, port), timeout=3).close()
        out[f"{host}:{port}"] = "connected"
    except OSError as exc:
        out[f"{host}:{port}"] = type(exc).__name__
print(json.dumps(out))
"""
    targets = [["prefect-server", 4200], ["postgres", 5432], *([ip, 5432] for ip in addresses)]
    output = docker("run", "--rm", "--network", network, "--cap-drop", "ALL", "--read-only",
                    deployed.image, "python", "-c", probe, json.dumps(targets))  # fmt: skip
    reached = json.loads(output.strip().splitlines()[-1])
    print(f"\nfrom the flows network: {reached}")
    assert reached.pop("prefect-server:4200") == "connected"
    assert reached and all(outcome != "connected" for outcome in reached.values()), reached
