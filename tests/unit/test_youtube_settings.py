"""The settings for the real YouTube: cookies, extractor args, pacing, cache, index."""

from __future__ import annotations

import pytest

from flows.settings import SettingsError, load_settings


@pytest.fixture(autouse=True)
def _clean(monkeypatch, tmp_path):
    import os

    for name in list(os.environ):
        if name.startswith("YTMP3_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults(tmp_path):
    settings = load_settings()
    assert settings.cookies_file is None
    assert settings.ytdlp_extractor_args == {}
    assert settings.sleep_requests_seconds == 0
    assert settings.ytdlp_cache_dir == tmp_path / ".run" / "cache" / "yt-dlp"
    assert settings.package_index_url == "https://pypi.org/pypi"
    assert settings.rate_limit_cooldown_seconds >= 60  # minutes, not seconds


def test_values(monkeypatch, tmp_path):
    (tmp_path / "c.txt").write_text("")
    monkeypatch.setenv("YTMP3_COOKIES_FILE", "c.txt")
    monkeypatch.setenv(
        "YTMP3_YTDLP_EXTRACTOR_ARGS",
        '{"YouTube": {"player_client": "web", "po_token": ["web.gvs+TOKEN"]}}',
    )
    monkeypatch.setenv("YTMP3_SLEEP_REQUESTS_SECONDS", "1.5")
    monkeypatch.setenv("YTMP3_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("YTMP3_PACKAGE_INDEX_URL", "http://127.0.0.1:3141/pypi/")
    settings = load_settings()
    assert settings.cookies_file == tmp_path / "c.txt"
    assert settings.ytdlp_extractor_args == {
        "youtube": {"player_client": ["web"], "po_token": ["web.gvs+TOKEN"]}
    }
    assert settings.sleep_requests_seconds == 1.5
    assert settings.ytdlp_cache_dir == tmp_path / "cache"
    assert settings.package_index_url == "http://127.0.0.1:3141/pypi"


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("YTMP3_COOKIES_FILE", "missing.txt", "is not a file"),
        ("YTMP3_YTDLP_EXTRACTOR_ARGS", "{po_token: SECRET}", "YTMP3_YTDLP_EXTRACTOR_ARGS=(hidden)"),
        ("YTMP3_YTDLP_EXTRACTOR_ARGS", '["SECRET"]', "YTMP3_YTDLP_EXTRACTOR_ARGS=(hidden)"),
        ("YTMP3_SLEEP_REQUESTS_SECONDS", "-1", "YTMP3_SLEEP_REQUESTS_SECONDS"),
        ("YTMP3_PACKAGE_INDEX_URL", "file:///etc", "must be an http(s) URL"),
        ("YTMP3_CACHE_DIR", "data/.cache", "must not be inside YTMP3_DATA_DIR"),
        ("YTMP3_COOKIE_FILE", "x", "did you mean YTMP3_COOKIES_FILE?"),
    ],
)
def test_bad_values_are_named_and_secrets_never_repeated(monkeypatch, variable, value, words):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert words in str(error.value)
    assert "SECRET" not in str(error.value)
