"""Page tests: Streamlit's AppTest drives ``ui/app.py`` against a real Prefect server.

The server is Prefect's test harness (one per session, only for tests that ask for
``prefect_api``), with the ``convert/on-demand`` deployment registered from prefect.yaml.
Nothing serves that deployment here, so submitted runs stay Scheduled: these tests are
about what the page submits and shows. The browser test (tests/browser) runs the flows.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import prefect.context
import pytest
from prefect.settings import (
    PREFECT_LOCAL_STORAGE_PATH,
    get_current_settings,
    temporary_settings,
)
from prefect.testing.utilities import prefect_test_harness
from streamlit import config as streamlit_config
from streamlit.testing.v1 import AppTest

from tests.support.page import APP, register_on_demand


def pytest_configure(config: pytest.Config) -> None:
    # A fresh SQLite database and the telemetry writer race harmlessly but noisily.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prefect server for the session, with the deployment the page submits to.

    The harness replaces Prefect's process-wide settings, so the page (which AppTest runs
    in another thread) talks to it too. Yields the API URL.
    """
    storage = tmp_path_factory.mktemp("prefect-results")
    with (
        temporary_settings({PREFECT_LOCAL_STORAGE_PATH: str(storage)}),
        prefect_test_harness(server_startup_timeout=90),
    ):
        register_on_demand()
        url = get_current_settings().api.url
        assert url
        yield url


@pytest.fixture
def prefect_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Change Prefect's settings for every thread until the test ends.

    ``temporary_settings`` alone only changes the calling thread's context; AppTest runs
    the page in a thread of its own, which reads the process-wide context.
    """
    stack: list[Any] = []

    def apply(
        updates: dict[Any, Any] | None = None, restore_defaults: set[Any] | None = None
    ) -> None:
        manager = temporary_settings(updates=updates, restore_defaults=restore_defaults)
        manager.__enter__()
        stack.append(manager)
        monkeypatch.setattr(
            prefect.context, "GLOBAL_SETTINGS_CONTEXT", prefect.context.SettingsContext.get()
        )

    yield apply
    monkeypatch.undo()
    for manager in reversed(stack):
        manager.__exit__(None, None, None)


@pytest.fixture
def app(settings_env: Any) -> Iterator[AppTest]:
    """The page, not yet run, with this test's ytmp3 settings (fresh data dir), served
    on 127.0.0.1 as ``make run`` does (so with no sign-in configured it is open)."""
    before = streamlit_config.get_option("server.address")
    streamlit_config.set_option("server.address", "127.0.0.1")
    try:
        yield AppTest.from_file(str(APP), default_timeout=60)
    finally:
        streamlit_config.set_option("server.address", before)
