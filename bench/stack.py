"""The local stack the benchmarks run against: exactly `make run`'s mode, in a temp dir.

* a Prefect server on SQLite (``prefect server start``) on a free port, with its own
  ``PREFECT_HOME`` in a temporary directory;
* prefect.yaml's deployments served from a local process (``python -m flows.deployments``);
* the test suite's media server (``tests/support/media_server.py``) on 127.0.0.1, in this process.

The two children are started by ``infrastructure/local.py``'s own ``Stack`` class, so they
get the very environment `make run` gives them (``PREFECT_HOME``, ``PREFECT_API_URL``,
``PREFECT_SERVER_ANALYTICS_ENABLED=false``,
``YTMP3_DATA_DIR``); the bench only adds the settings that allow 127.0.0.1 as a media host.
The web page is not started: no case needs it (the page render case has its own bench).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from tests.support.media_server import MediaServer, generate_media

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BIN_DIR = Path(sys.executable).parent


__all__ = ["BenchStack", "MediaServer", "free_port", "generate_media"]

BENCH_ENV = {
    "YTMP3_ALLOWED_HOSTS": "127.0.0.1",
    "YTMP3_ALLOW_PRIVATE_NETWORKS": "true",
}
"""What the bench adds to `make run`'s environment: the media server is on 127.0.0.1."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _load_launcher(project_root: Path) -> ModuleType:
    """``infrastructure/local.py`` (not a package), loaded by path."""
    path = project_root / "infrastructure" / "local.py"
    name = f"ytmp3_local_launcher_{abs(hash(str(project_root)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


class BenchStack:
    """Prefect server + served deployments + media server, torn down on exit.

    ``media_dir`` holds the generated media; ``data_dir`` is the library the served flows
    write to; ``api_url`` is the Prefect API. Timings of start-up are kept in
    ``startup`` (seconds to a healthy server, to the deployment being served).
    """

    def __init__(
        self, root: Path | None = None, keep: bool = False, project_root: Path | None = None
    ) -> None:
        self.project_root = (project_root or PROJECT_ROOT).resolve()
        """The tree whose flows are served (another checkout for A/B runs: bench/ab.py)."""
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="ytmp3-bench-")) if root is None else root
        self.keep = keep
        self.media_dir = self.root / "media"
        self.data_dir = self.root / "data"
        self.state_dir = self.root / "state"
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.startup: dict[str, float] = {}
        self.media = MediaServer(self.media_dir, standard_routes=False)
        self._exit = contextlib.ExitStack()
        self._launcher: Any = None

    # -- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> BenchStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        self.media_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.media.start()
        self._exit.callback(self.media.stop)

        # This process talks to the same server: set it before anything reads Prefect's
        # settings (without it a client would silently start an ephemeral server).
        os.environ.update(self._prefect_env())
        from prefect.settings import (
            PREFECT_API_URL,
            PREFECT_HOME,
            PREFECT_SERVER_ANALYTICS_ENABLED,
            temporary_settings,
        )

        self._exit.enter_context(
            temporary_settings(
                {
                    PREFECT_API_URL: self.api_url,
                    PREFECT_HOME: str(self.state_dir / "client"),
                    PREFECT_SERVER_ANALYTICS_ENABLED: False,
                }
            )
        )

        launcher = _load_launcher(self.project_root)
        settings = launcher.load_settings(
            data_dir=self.data_dir,
            state_dir=self.state_dir,
            prefect_port=self.port,
            local_host="127.0.0.1",
        )
        stack = launcher.Stack(settings)
        stack.env = {k: v for k, v in stack.env.items() if not k.startswith("YTMP3_")} | {
            "YTMP3_DATA_DIR": str(self.data_dir),
            **BENCH_ENV,
        }
        if self.project_root != PROJECT_ROOT:  # serve that tree's flows, not the installed ones
            stack.env["PYTHONPATH"] = str(self.project_root)
        self._launcher = stack
        self._exit.callback(stack.stop)

        started = time.monotonic()
        stack.start(
            "prefect-server",
            [
                str(BIN_DIR / "prefect"),
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            signal.SIGTERM,
        )
        stack.wait_healthy(f"http://127.0.0.1:{self.port}/api/health")
        self.startup["server_healthy_s"] = time.monotonic() - started

        started = time.monotonic()
        stack.start("deployments", [sys.executable, "-m", "flows.deployments"], signal.SIGHUP)
        self._wait_for_deployment("convert/on-demand", stack)
        stack.apply_automations()  # as make run does (the server evaluates them per run)
        self.startup["deployments_served_s"] = time.monotonic() - started

    def stop(self) -> None:
        self._exit.close()
        if self._own_root and not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- helpers -------------------------------------------------------------------------

    @property
    def serve_pid(self) -> int:
        """The process that serves the deployments (flow runs are its children)."""
        return self._child_pid("deployments")

    @property
    def server_pid(self) -> int:
        """The Prefect server (``prefect server start``)."""
        return self._child_pid("prefect-server")

    def _child_pid(self, name: str) -> int:
        for child in self._launcher.children:
            if child.name == name and child.process is not None:
                return int(child.process.pid)
        raise RuntimeError(f"{name} is not running")

    @contextlib.contextmanager
    def client_settings(self) -> Iterator[None]:
        """Prefect clients made inside talk to this stack's server (several may run)."""
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: self.api_url}):
            yield

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    def _prefect_env(self) -> dict[str, str]:
        return {
            "PREFECT_API_URL": self.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }

    def _wait_for_deployment(self, name: str, stack: Any, timeout: float = 120.0) -> None:
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        deadline = time.monotonic() + timeout
        with get_client(sync_client=True) as client:
            while True:
                stack.raise_if_exited()
                try:
                    client.read_deployment_by_name(name)
                    return
                except ObjectNotFound:
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"{name} was not served within {timeout:.0f} s"
                        ) from None
                    time.sleep(0.2)
