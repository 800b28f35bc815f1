"""yt-dlp finds Deno and solves a JS challenge with it, through its own machinery.

These tests also pin the three yt-dlp internals flows/jsc.py relies on: when a yt-dlp
release renames or reshapes one, they fail here with the name, not somewhere in a run.
"""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

import pytest
import yt_dlp
from yt_dlp.extractor.youtube import YoutubeIE

from flows import jsc, media
from flows.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", state_dir=tmp_path / "state")


def test_the_internals_jsc_uses_still_exist(settings):
    with media._ydl(settings, {}) as ydl:
        assert isinstance(getattr(ydl, "_js_runtimes", None), dict), (
            "yt-dlp changed YoutubeDL._js_runtimes: update flows/jsc.py's runtime()"
        )
        youtube = ydl.get_info_extractor("Youtube")
        youtube.initialize()
        assert isinstance(getattr(youtube, "_code_cache", None), dict), (
            "yt-dlp changed YoutubeIE._code_cache: update flows/jsc.py's solve_n()"
        )
        key = youtube._player_js_cache_key(jsc.TEST_PLAYER_URL)
        assert isinstance(key, str) and key, "yt-dlp changed YoutubeIE._player_js_cache_key"
        assert hasattr(youtube._jsc_director, "bulk_solve"), (
            "yt-dlp changed YoutubeIE._jsc_director: update flows/jsc.py's solve_n()"
        )
    assert issubclass(YoutubeIE, yt_dlp.extractor.common.InfoExtractor)


def test_yt_dlp_finds_the_venvs_deno_by_itself(settings):
    with media._ydl(settings, {}) as ydl:
        found = jsc.runtime(ydl)
    assert found is not None, "no JS runtime: is yt-dlp[deno] installed?"
    assert found.name == "deno" and found.supported
    assert Path(found.path) == Path(sysconfig.get_path("scripts")) / "deno"


def test_yt_dlp_solves_a_challenge_with_deno_and_the_installed_solver(settings):
    import yt_dlp_ejs

    assert yt_dlp_ejs.version
    with media._ydl(settings, {}) as ydl:
        assert jsc.solve_n(ydl, "abcdef") == "fedcba"
        assert "ejs:github" not in ydl.params["remote_components"]


def test_yt_dlp_downloads_a_player_through_the_url_policy_and_solves_it(media_server, settings_env):
    player_path = "/s/player/0ddba11e/player_ias.vflset/en_US/base.js"
    media_server.add_page(player_path, jsc.TEST_PLAYER, "text/javascript")
    with media._ydl(settings_env, {}) as ydl:
        solved = jsc.solve_n(ydl, "xyz-123", media_server.url(player_path), player_js=None)
    assert solved == "321-zyx"
    assert media_server.request_count(player_path) == 1


def test_without_a_runtime_nothing_is_found(settings, monkeypatch, tmp_path):
    """What the doctor reports as missing: no deno beside Python and none on PATH."""
    empty = tmp_path / "empty"
    empty.mkdir()
    real = sysconfig.get_path
    monkeypatch.setattr(
        sysconfig, "get_path", lambda name, *a, **k: str(empty) if name == "scripts" else real(name)
    )
    monkeypatch.setenv("PATH", str(empty))
    with media._ydl(settings, {}) as ydl:
        assert jsc.runtime(ydl) is None
        assert jsc.solve_n(ydl, "abc") is None
    assert os.environ["PATH"] == str(empty)
