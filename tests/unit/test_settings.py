"""Settings come from YTMP3_* variables; a bad one stops start-up and is named."""

from __future__ import annotations

import os

import pytest

from flows.settings import DEFAULT_ALLOWED_HOSTS, SettingsError, load_settings


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.retention_hours == 8
    assert settings.default_quality == "192"
    assert settings.allowed_hosts == DEFAULT_ALLOWED_HOSTS
    assert settings.allow_private_networks is False
    assert settings.data_dir.is_absolute()


def test_environment_and_comma_separated_hosts(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("YTMP3_ALLOWED_HOSTS", "Example.com, media.example.com ,")
    monkeypatch.setenv("YTMP3_RETENTION_HOURS", "1.5")
    monkeypatch.setenv("YTMP3_DEFAULT_QUALITY", "V0")
    monkeypatch.setenv("YTMP3_ALLOW_PRIVATE_NETWORKS", "true")
    settings = load_settings()
    assert settings.allowed_hosts == ("example.com", "media.example.com")
    assert settings.retention_seconds == 5400
    assert settings.default_quality == "V0"
    assert settings.allow_private_networks


def test_dotenv_file(monkeypatch: pytest.MonkeyPatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("YTMP3_CONCURRENCY=3\n")
    assert load_settings().concurrency == 3


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("YTMP3_RETENTION_HOURS", "-1"),
        ("YTMP3_RETENTION_HOURS", "eight"),
        ("YTMP3_DEFAULT_QUALITY", "999"),
        ("YTMP3_CONCURRENCY", "0"),
        ("YTMP3_ALLOW_PRIVATE_NETWORKS", "perhaps"),
        ("YTMP3_STALL_TIMEOUT_SECONDS", "0"),
        ("YTMP3_STALL_TIMEOUT_SECONDS", "soon"),
        ("YTMP3_MIN_DOWNLOAD_KB_PER_SECOND", "-1"),
    ],
)
def test_a_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings()


def test_a_misspelt_variable_stops_start_up_with_the_closest_name(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("YTMP3_RETENTON_HOURS", "2")
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert "YTMP3_RETENTON_HOURS is not a ytmp3 setting (did you mean YTMP3_RETENTION_HOURS?)" in (
        str(error.value)
    )


def test_a_misspelt_line_in_dotenv_is_named_too(monkeypatch: pytest.MonkeyPatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("YTMP3_CONCURENCY=3\nOTHER_TOOL=1\n")
    with pytest.raises(SettingsError, match=r"YTMP3_CONCURENCY .*YTMP3_CONCURRENCY"):
        load_settings()


def test_names_the_tools_use_are_not_settings_but_allowed(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("YTMP3_IMAGE", "ytmp3:latest")
    assert load_settings().retention_hours == 8


def test_a_bad_proxy_is_named_but_never_repeated(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("YTMP3_PROXY", "ftp://user:hunter2@proxy.example:21")
    with pytest.raises(SettingsError, match="YTMP3_PROXY") as error:
        load_settings()
    assert "hunter2" not in str(error.value)


def test_concurrency_defaults_to_the_cpus_this_process_may_use(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    assert load_settings().concurrency == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    assert load_settings().concurrency == 8  # one flow container's memory holds about 8
    monkeypatch.setenv("YTMP3_CONCURRENCY", "2")
    assert load_settings().concurrency == 2
