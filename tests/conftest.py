"""Fixtures shared by every kind of test: generated media, the media server, settings.

Nothing Prefect-specific belongs here (the Prefect harness is in ``tests/flows/conftest.py``),
so unit tests pay for neither a Prefect server nor media they do not ask for.

* ``media_dir`` (session): the standard media set, generated once
  (see ``tests/support/media_server.py``).
* ``media_server`` (session): a started :class:`MediaServer` over ``media_dir``. After every
  test that (directly or not) used it, it is ``reset()``: fault rules, counters, the request
  log and routes added during the test are gone.
* ``settings_env`` (function): ytmp3 settings with a fresh data dir that allow 127.0.0.1.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.settings import ENV_PREFIX, Settings, get_settings
from tests.support.media_server import MediaServer, generate_media_set

_active_servers: list[MediaServer] = []


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The standard generated media set (clip.mp4/.webm/.m4a/.mp3, clip-192k.mp3,
    hls/clip.m3u8, poster.jpg, page.html, multi.html)."""
    root = tmp_path_factory.mktemp("media")
    generate_media_set(root)
    return root


@pytest.fixture(scope="session")
def media_server(media_dir: Path) -> Iterator[MediaServer]:
    """The local media server over ``media_dir``, on http://127.0.0.1:<random port>."""
    server = MediaServer(media_dir)
    with server:
        _active_servers.append(server)
        try:
            yield server
        finally:
            _active_servers.remove(server)


@pytest.fixture(autouse=True)
def _reset_media_server() -> Iterator[None]:
    """Reset the session media server after each test, if any test has started it.

    It does not request ``media_server`` itself, so tests that don't use it stay free.
    """
    yield
    for server in _active_servers:
        server.reset()


@pytest.fixture
def settings_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings for one test: a fresh data dir, and the local media server allowed.

    Other ``YTMP3_*`` variables of the calling environment are removed so they cannot leak
    in. ``get_settings()`` is cleared before and after, so code under test that calls it
    sees these values.
    """
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    monkeypatch.setenv("YTMP3_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("YTMP3_ALLOWED_HOSTS", "127.0.0.1")
    monkeypatch.setenv("YTMP3_ALLOW_PRIVATE_NETWORKS", "true")
    monkeypatch.setenv("YTMP3_RETRY_DELAY_SECONDS", "0.2")
    get_settings.cache_clear()
    try:
        yield get_settings()
    finally:
        get_settings.cache_clear()
