"""Helpers of the Docker tests (processes, the docker CLI, fail-in-CI-or-skip)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import stop_group

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DOCKER_DIR = PROJECT_ROOT / "infrastructure" / "docker"
BIN = Path(sys.executable).parent
POOL = "docker-pool"  # the pool prefect.yaml's deployments name
# Docker tests of another checkout on the same engine can pick their own (no YTMP3_ prefix:
# that would be a setting).
IMAGE_NAMESPACE = os.environ.get("DOCKER_TESTS_IMAGE_NAMESPACE", "ytmp3-test")
ZOMBIE_AFTER = 45
"""The zombie window of the automations the Docker tests apply (production: 90 s)."""
MEDIA_ENV = {"YTMP3_ALLOWED_HOSTS": "127.0.0.1", "YTMP3_ALLOW_PRIVATE_NETWORKS": "true"}
"""The pool's env in the tests: flow runs may fetch from the 127.0.0.1 media server."""
STAND_IN = "ytmp3-stand-in:bookworm"
WHEELS_PORT = 3141  # serve_wheels.py's default


def require(ok: bool, reason: str) -> None:
    """Fail in CI, skip elsewhere, when something the Docker tests need is missing."""
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: the Docker tests must run, not skip)", pytrace=False)
    pytest.skip(reason)


def docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def engine_problem() -> str | None:
    """Why no Docker engine can be used, or None when one answers."""
    if shutil.which("docker") is None:
        return "no docker CLI on PATH"
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return "the Docker engine did not answer `docker info` within 30 s"
    if result.returncode != 0 or not result.stdout.strip():
        return f"no Docker engine answers ({result.stderr.strip()[-300:]})"
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return f"--- last lines of {path} ---\n" + "\n".join(text.splitlines()[-lines:])


@dataclass
class Child:
    """A background process with its output in a log file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(
                f"{self.name} exited with {self.process.returncode}\n{tail(self.log)}"
            )

    def stop(self, timeout: float = 15) -> None:
        stop_group(self.process, timeout)


def start(name: str, argv: list[str], env: dict[str, str], logs: Path, **kwargs: object) -> Child:
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            **kwargs,  # type: ignore[arg-type]
        )  # fmt: skip
    return Child(name, process, log)


def run_logged(name: str, argv: list[str], env: dict[str, str], logs: Path, timeout: float) -> None:
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        result = subprocess.run(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
            cwd=PROJECT_ROOT, check=False,
        )  # fmt: skip
    if result.returncode != 0:
        raise AssertionError(f"{name} failed with {result.returncode}\n{tail(log, 80)}")


def clean_env() -> dict[str, str]:
    """The caller's environment without Prefect or ytmp3 settings that could leak in."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PREFECT_", "YTMP3_", "PIP_")) and name != "BASE_IMAGE"
    }


def volume_listing(image: str, volume: str) -> dict[str, dict[str, object]]:
    """Every file and directory in the volume: relative path -> uid, gid, size, is_dir."""
    script = (
        "import json, os\n"
        "out = {}\n"
        "for root, dirs, files in os.walk('/data'):\n"
        "    for name in dirs + files:\n"
        "        path = os.path.join(root, name)\n"
        "        st = os.lstat(path)\n"
        "        out[os.path.relpath(path, '/data')] = dict(uid=st.st_uid, gid=st.st_gid,\n"
        "            size=st.st_size, is_dir=os.path.isdir(path))\n"
        "st = os.stat('/data')\n"
        "out['.'] = dict(uid=st.st_uid, gid=st.st_gid, size=0, is_dir=True)\n"
        "print(json.dumps(out))\n"
    )
    output = docker("run", "--rm", "--network", "none", "-v", f"{volume}:/data:ro",
                    image, "python", "-c", script)  # fmt: skip
    return json.loads(output)


def read_volume_file(image: str, volume: str, relative: str) -> str:
    return docker("run", "--rm", "--network", "none", "-v", f"{volume}:/data:ro",
                  image, "cat", f"/data/{relative}")  # fmt: skip
