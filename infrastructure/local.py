"""Start the whole of ytmp3 on one machine, and stop it cleanly on Ctrl-C.

What runs (each as a child process, logs in ``<state dir>/logs/``):

1. a Prefect server on SQLite (its database in ``<state dir>/prefect/``);
2. every deployment of ``prefect.yaml``, served from local processes
   (``python -m flows.deployments``);
3. the Streamlit page.

This is ``make run``. Configuration comes from the ``YTMP3_*`` settings; the children
inherit this process's environment plus the Prefect variables set here.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from prefect.settings import get_current_settings

from flows.deployments import load_specs
from flows.settings import Settings, SettingsError, load_settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent

BIN_DIR = Path(sys.executable).parent


class Stack:
    """The child processes of the local stack, started in order and stopped in reverse."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.logs = settings.state_dir / "logs"
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        api_url = f"http://{settings.local_host}:{settings.prefect_port}/api"
        self.env = os.environ | {
            "PREFECT_HOME": str(settings.state_dir / "prefect"),
            "PREFECT_API_URL": api_url,
            "PREFECT_UI_URL": f"http://{settings.local_host}:{settings.prefect_port}",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
            "YTMP3_DATA_DIR": str(settings.data_dir),
        }
        # With Prefect's API auth string set (environment or profile), the server asks
        # for it and every child sends it; without it, the API is open on local_host.
        auth = get_current_settings().api.auth_string
        self.auth = auth.get_secret_value() if auth is not None else None
        if self.auth:
            self.env |= {
                "PREFECT_API_AUTH_STRING": self.auth,
                "PREFECT_SERVER_API_AUTH_STRING": self.auth,
            }

    def start(self, name: str, argv: list[str]) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - kept open for the child
        process = subprocess.Popen(
            argv,
            cwd=PROJECT_ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.children.append((name, process))

    def wait_healthy(self, url: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.raise_if_exited()
            try:
                with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.5)
        raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")

    def wait_for_deployments(self, api_url: str, expected: int, timeout: float = 90.0) -> None:
        """Wait until the server knows every deployment of prefect.yaml (served = usable)."""
        deadline = time.monotonic() + timeout
        request = urllib.request.Request(  # noqa: S310 - http URL built here
            f"{api_url}/deployments/count",
            data=b"{}",
            method="POST",
            headers={"Content-Type": "application/json", **basic_auth(self.auth)},
        )
        while time.monotonic() < deadline:
            self.raise_if_exited()
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                if int(response.read()) >= expected:
                    return
            time.sleep(0.5)
        raise RuntimeError(f"the deployments were not served within {timeout:.0f} s")

    def raise_if_exited(self) -> None:
        for name, process in self.children:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with code {process.returncode}; "
                    f"see {self.logs / (name + '.log')}"
                )

    def stop(self) -> None:
        """Stop the children in reverse order: the page, the deployments, then the server.

        Each gets SIGINT, a second SIGINT if it is still up after a few seconds (Prefect's
        runner ignores the first), and SIGKILL for its whole process group last. The server
        goes last, so the runner can still report its runs' states while it shuts down.
        """
        for _, process in reversed(self.children):
            for sig, grace in ((signal.SIGINT, 10.0), (signal.SIGINT, 5.0), (signal.SIGKILL, 5.0)):
                _signal_group(process, sig)
                try:
                    process.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue


def basic_auth(auth: str | None) -> dict[str, str]:
    """The header a Prefect client sends for ``auth`` (none without one)."""
    if not auth:
        return {}
    return {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"ytmp3: {exc}", file=sys.stderr)
        return 2
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(settings)
    host, port = settings.local_host, settings.prefect_port
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        print(f"ytmp3: starting the Prefect server on http://{host}:{port} ...", flush=True)
        stack.start(
            "prefect-server",
            [str(BIN_DIR / "prefect"), "server", "start", "--host", host, "--port", str(port)],
        )
        stack.wait_healthy(f"http://{host}:{port}/api/health")
        print("ytmp3: serving the deployments of prefect.yaml ...", flush=True)
        stack.start("deployments", [sys.executable, "-m", "flows.deployments"])
        stack.start(
            "web-page",
            [
                str(BIN_DIR / "streamlit"),
                "run",
                "ui/app.py",
                "--server.address",
                host,
                "--server.port",
                str(settings.ui_port),
                "--server.headless",
                "true",
                "--browser.gatherUsageStats",
                "false",
            ],
        )
        stack.wait_healthy(f"http://{host}:{settings.ui_port}/_stcore/health")
        stack.wait_for_deployments(f"http://{host}:{port}/api", len(load_specs()))
        print(
            f"\nytmp3 is running.\n"
            f"  web page:      http://{host}:{settings.ui_port}\n"
            f"  Prefect UI:    http://{host}:{port}\n"
            f"  library:       {settings.data_dir}\n"
            f"  logs:          {stack.logs}\n"
            f"From another shell: PREFECT_API_URL=http://{host}:{port}/api "
            f"prefect deployment run convert/on-demand --param url=...\n"
            f"Press Ctrl-C to stop.",
            flush=True,
        )
        while True:
            stack.raise_if_exited()
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nytmp3: stopping ...", flush=True)
        return 0
    except RuntimeError as exc:
        print(f"ytmp3: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
