"""YTMP3_PROXY and YTMP3_PRIVATE_SERVICE: validated at start-up, the bad ones named."""

from __future__ import annotations

import pytest

from flows.settings import SettingsError, load_settings


@pytest.fixture(autouse=True)
def _no_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("YTMP3_PROXY", raising=False)
    monkeypatch.delenv("YTMP3_PRIVATE_SERVICE", raising=False)


def test_both_are_unset_by_default() -> None:
    settings = load_settings()
    assert settings.proxy is None
    assert settings.private_service is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://proxy.example:3128", "http://proxy.example:3128"),
        (" https://proxy.example/ ", "https://proxy.example/"),
        ("socks5h://user:secret@10.0.0.2:1080", "socks5h://user:secret@10.0.0.2:1080"),
        ("socks4://[fd00::2]:1080", "socks4://[fd00::2]:1080"),
        ("", None),
        ("  ", None),
    ],
)
def test_proxy_accepted(monkeypatch: pytest.MonkeyPatch, value: str, expected: str | None) -> None:
    monkeypatch.setenv("YTMP3_PROXY", value)
    assert load_settings().proxy == expected


@pytest.mark.parametrize(
    "value",
    [
        "proxy.example:3128",  # no scheme
        "ftp://proxy.example:21",
        "file:///tmp/socket",
        "http://",
        "http://proxy.example:0",
        "http://proxy.example:99999",
        "http://proxy.example:31x8",
        "http://proxy.example/some/path",
        "http://proxy.example/?x=1",
        "http://[fd00::zz]:3128",
    ],
)
def test_proxy_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("YTMP3_PROXY", value)
    with pytest.raises(SettingsError, match=r"YTMP3_PROXY=.*proxy URL"):
        load_settings()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:4416", "127.0.0.1:4416"),
        ("POT-Provider:4416", "pot-provider:4416"),
        ("bgutil_provider:4416", "bgutil_provider:4416"),  # Docker service names may have _
        ("tokens.internal.example:443", "tokens.internal.example:443"),
        ("[::1]:4416", "[::1]:4416"),
        (" 10.0.0.5:8080 ", "10.0.0.5:8080"),
        ("", None),
    ],
)
def test_private_service_accepted(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: str | None
) -> None:
    monkeypatch.setenv("YTMP3_PRIVATE_SERVICE", value)
    assert load_settings().private_service == expected


@pytest.mark.parametrize(
    "value",
    [
        "127.0.0.1",  # no port
        "pot-provider",
        "pot-provider:",
        ":4416",
        "pot-provider:0",
        "pot-provider:65536",
        "pot-provider:44x6",
        "http://127.0.0.1:4416",  # host:port, not a URL
        "127.0.0.1:4416/get_pot",
        "user@127.0.0.1:4416",
        "*:4416",
        "127.0.0.*:4416",
        "a..b:4416",
        "-pot:4416",
        "pot provider:4416",
        "127.0.0.1:4416,10.0.0.1:4416",  # one service only
        "1.2.3.999:4416",
        "127.1:4416",  # addresses in dotted-quad form only
        "[::zz]:4416",
        "::1:4416",
    ],
)
def test_private_service_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("YTMP3_PRIVATE_SERVICE", value)
    with pytest.raises(SettingsError, match=r"YTMP3_PRIVATE_SERVICE=.*host:port"):
        load_settings()
