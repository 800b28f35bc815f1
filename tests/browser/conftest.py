"""The real stack for browser tests, and a headless Chromium to look at it.

``stack`` starts what ``make run`` starts, each as a child process with its own log:

1. ``prefect server start`` on a free port, with a throwaway ``PREFECT_HOME`` (SQLite);
2. ``python -m flows.deployments``: prefect.yaml's deployments served from local
   processes (its runner polls every ``YTMP3_RUNNER_POLL_SECONDS``, so a submitted run
   starts within a second);
3. ``streamlit run ui/server.py`` (the page with its sign-in routes) on a free port, with
   the ``page_args`` fixture's extra options (a test may override it).

The ``YTMP3_*`` variables are the ``settings_env`` fixture's, so the flows fetch from the
local media server. The page sees the library through a read-only bind mount of the data
dir when this process may mount (root), which is how production runs it (the flows write,
the page only reads); otherwise it sees the data dir itself.

Chromium is Debian's (``apt-get install chromium``), driven by Playwright from PyPI with
no browser download. Without it the tests skip, unless ``CI`` is set: then they fail,
because CI installs it (``infrastructure/install-system-deps.sh --test``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flows.settings import Settings
from tests.support.browser import (
    BIN,
    CHROMIUM,
    CHROMIUM_ARGS,
    Stack,
    free_port,
    read_only_view,
    start_child,
    wait_for,
    wait_for_deployment,
)


@pytest.fixture
def page_args() -> list[str]:
    """Extra ``streamlit run`` options for the page (e.g. ``--secrets.files``)."""
    return []


@pytest.fixture
def stack(settings_env: Settings, tmp_path: Path, page_args: list[str]) -> Iterator[Stack]:
    """The whole of ytmp3 on this machine, as ``make run`` starts it."""
    logs = tmp_path / "logs"
    logs.mkdir()
    data = settings_env.data_dir
    data.mkdir(parents=True)
    page_data = tmp_path / "library-read-only"
    mounted = read_only_view(data, page_data)
    if not mounted:
        page_data = data

    prefect_port, page_port = free_port(), free_port()
    api_url = f"http://127.0.0.1:{prefect_port}/api"
    # settings_env put this test's YTMP3_* into os.environ; Prefect's come from here only.
    env = {name: value for name, value in os.environ.items() if not name.startswith("PREFECT_")}
    env |= {
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOCAL_STORAGE_PATH": str(tmp_path / "prefect-results"),
        "PYTHONUNBUFFERED": "1",
    }
    running = Stack(
        api_url=api_url,
        page_url=f"http://127.0.0.1:{page_port}",
        data_dir=data,
        page_data_dir=page_data,
        page_view="read-only bind mount" if mounted else "the data dir itself",
    )
    try:
        server = start_child(
            "prefect-server",
            [
                str(BIN / "prefect"),
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(prefect_port),
            ],
            env,
            logs,
        )
        running.children.append(server)
        wait_for(f"{api_url}/health", 120, running.children)
        running.children.append(
            start_child("deployments", [sys.executable, "-m", "flows.deployments"], env, logs)
        )
        page_env = env | {"YTMP3_DATA_DIR": str(page_data)}
        running.children.append(
            start_child(
                "web-page",
                [
                    str(BIN / "streamlit"), "run", "ui/server.py",
                    "--server.address", "127.0.0.1", "--server.port", str(page_port),
                    "--server.headless", "true", "--browser.gatherUsageStats", "false",
                    *page_args,
                ],
                page_env,
                logs,
            )
        )  # fmt: skip
        wait_for(f"{running.page_url}/_stcore/health", 60, running.children)
        wait_for_deployment(api_url, running.children)
        yield running
    except Exception:
        print(running.logs(), file=sys.stderr)
        raise
    finally:
        for child in reversed(running.children):
            child.stop()
        if mounted:
            subprocess.run(["umount", page_data], capture_output=True)


@pytest.fixture
def chromium() -> Iterator[Any]:
    """Headless Debian Chromium under Playwright (skips without it, fails in CI)."""
    if not CHROMIUM.exists():
        reason = (
            f"{CHROMIUM} is missing: install it with `apt-get install chromium` "
            "(or infrastructure/install-system-deps.sh --test)"
        )
        if os.environ.get("CI"):
            pytest.fail(reason + "; CI must run the browser tests")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()
