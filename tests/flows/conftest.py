"""Flow tests run against one real Prefect server per session (the test harness)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
from prefect.testing.utilities import prefect_test_harness


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
