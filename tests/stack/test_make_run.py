"""`make run`'s launcher: the whole stack on one machine, driven like a person would.

It starts infrastructure/local.py (Prefect server on SQLite, prefect.yaml's deployments
served from local processes, the web page), converts a file with
`prefect deployment run` from "another shell", then presses Ctrl-C (SIGINT) and
checks that everything stopped.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def stack_env(settings_env, tmp_path):
    prefect_port, ui_port = free_port(), free_port()
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PREFECT_", "YTMP3_"))
    }
    env |= {
        "YTMP3_DATA_DIR": str(settings_env.data_dir),
        "YTMP3_ALLOWED_HOSTS": "127.0.0.1",
        "YTMP3_ALLOW_PRIVATE_NETWORKS": "true",
        "YTMP3_STATE_DIR": str(tmp_path / "state"),
        "YTMP3_PREFECT_PORT": str(prefect_port),
        "YTMP3_UI_PORT": str(ui_port),
    }
    return env, prefect_port, ui_port


def test_make_run_serves_the_deployments_and_stops_on_ctrl_c(media_server, stack_env):
    env, prefect_port, ui_port = stack_env
    launcher = subprocess.Popen(
        [sys.executable, "infrastructure/local.py"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    try:
        deadline = time.monotonic() + 150
        while not any("Press Ctrl-C" in line for line in output):
            assert time.monotonic() < deadline, "".join(output)
            line = launcher.stdout.readline()
            assert line or launcher.poll() is None, "".join(output)
            output.append(line)
        assert f"http://127.0.0.1:{ui_port}" in "".join(output)

        url = media_server.url("clip.m4a")
        run = subprocess.run(
            [
                str(BIN / "prefect"),
                "deployment",
                "run",
                "convert/on-demand",
                "--param",
                f"url={url}",
                "--watch",
                "--watch-timeout",
                "120",
            ],
            env=env | {"PREFECT_API_URL": f"http://127.0.0.1:{prefect_port}/api"},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        data_dir = Path(env["YTMP3_DATA_DIR"])
        assert len(list(data_dir.glob("*.mp3"))) == 1
        assert len(list(data_dir.glob("*.json"))) == 1
    finally:
        launcher.send_signal(signal.SIGINT)
        try:
            code = launcher.wait(timeout=90)
        except subprocess.TimeoutExpired:
            launcher.kill()
            raise
    assert code == 0
    assert not port_open(prefect_port) and not port_open(ui_port)
