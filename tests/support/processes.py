"""Stopping the servers and runners that tests start as child process groups."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_group(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGINT the process group twice (Prefect's runner and worker ignore the first),
    then SIGKILL it; each step waits up to ``timeout / 2`` seconds for the exit."""
    for sig in (signal.SIGINT, signal.SIGINT, signal.SIGKILL):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=timeout / 2)
        except subprocess.TimeoutExpired:
            continue
