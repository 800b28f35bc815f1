"""The real stack for browser tests: processes, ports, logs (used by ``conftest.py``).

A module of its own because ``conftest`` is not importable by name when several test
folders have one.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.processes import stop_group

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, timeout: float, processes: list[Child]) -> None:
    """Until ``url`` answers 200; fails early (with the log) if a child exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in processes:
            child.raise_if_exited()
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


@dataclass
class Child:
    """A child process in its own process group, logging to a file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def raise_if_exited(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        stop_group(self.process, timeout)


@dataclass
class Stack:
    """Addresses of the running stack, and its processes (for logs on failure)."""

    api_url: str
    page_url: str
    data_dir: Path
    page_data_dir: Path
    page_view: str
    children: list[Child] = field(default_factory=list)

    def logs(self) -> str:
        return "\n\n".join(f"--- {child.name} ---\n{child.tail()}" for child in self.children)


def start_child(name: str, argv: list[str], env: dict[str, str], logs: Path) -> Child:
    log = logs / f"{name}.log"
    handle = open(log, "ab")  # noqa: SIM115 - the child keeps writing to it
    process = subprocess.Popen(
        argv,
        cwd=PROJECT_ROOT,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    handle.close()
    return Child(name, process, log)


def read_only_view(source: Path, target: Path) -> bool:
    """Bind-mount ``source`` read-only at ``target``; False if this process may not."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    target.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "--bind", source, target], capture_output=True).returncode:
        return False
    remount = ["mount", "-o", "remount,bind,ro", target, target]
    if subprocess.run(remount, capture_output=True).returncode:
        subprocess.run(["umount", target], capture_output=True)
        return False
    return True


def wait_for_deployment(api_url: str, children: list[Child], timeout: float = 90) -> None:
    """Until the served deployment is registered (the runner does it on start-up)."""
    url = f"{api_url}/deployments/name/convert/on-demand"
    wait_for(url, timeout, children)
