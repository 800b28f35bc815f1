"""Flow tests run against one real Prefect server per session (the test harness)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL, PREFECT_LOCAL_STORAGE_PATH, temporary_settings
from prefect.testing.utilities import prefect_test_harness

from flows.settings import Settings
from tests.support.processes import stop_group


@pytest.fixture(scope="session", autouse=True)
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A real Prefect server on a throwaway SQLite database, with results kept apart."""
    storage = tmp_path_factory.mktemp("prefect-results")
    with (
        temporary_settings({PREFECT_LOCAL_STORAGE_PATH: str(storage)}),
        prefect_test_harness(server_startup_timeout=90),
    ):
        yield


def pytest_configure(config: pytest.Config) -> None:
    # A fresh SQLite database and the telemetry writer race harmlessly but noisily.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Links in notifications (flows/notifications.py) name the UI; the harness has none.
    os.environ.setdefault("PREFECT_UI_URL", "http://prefect-ui.test")
    # As `make run` sets it (infrastructure/local.py): how often a queued run asks again.
    os.environ.setdefault("PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS", "5")


@pytest.fixture
def served_deployments(settings_env: Settings) -> Iterator[subprocess.Popen[bytes]]:
    """prefect.yaml's deployments served from a local process, as `make run` does.

    Function-scoped because the served flows read this test's settings (its data dir).
    """
    with serving(settings_env) as process:
        yield process


@pytest.fixture
def serve_file() -> Callable[..., AbstractContextManager[subprocess.Popen[bytes]]]:
    """``serve_file(settings, path)``: serve the deployments of another YAML file."""
    return serving


@contextmanager
def serving(
    settings: Settings,
    path: Path | None = None,
    wait_for: str = "convert/on-demand",
    extra_env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Serve the deployments of ``path`` (default prefect.yaml) with ``settings``, plus
    the ``YTMP3_*`` variables of ``extra_env``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("YTMP3_")}
    env |= {
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "YTMP3_DATA_DIR": str(settings.data_dir),
        "YTMP3_ALLOWED_HOSTS": ",".join(settings.allowed_hosts),
        "YTMP3_ALLOW_PRIVATE_NETWORKS": "true",
        "YTMP3_RETRY_DELAY_SECONDS": str(settings.retry_delay_seconds),
        **(extra_env or {}),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "flows.deployments", *([str(path)] if path else [])],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for_deployment(wait_for, process)
        yield process
    finally:
        stop_group(process, timeout=20)


def _wait_for_deployment(name: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            assert process.poll() is None, "serving the deployments failed"
            try:
                client.read_deployment_by_name(name)
                return
            except ObjectNotFound:
                assert time.monotonic() < deadline, f"{name} was not served in {timeout} s"
                time.sleep(0.5)
