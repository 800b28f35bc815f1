"""The operator section's gate: operators only; on the open loopback page (no sign-in
configured), a direct, local browser only."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ui import auth, operator_section


def gate(
    monkeypatch: pytest.MonkeyPatch,
    headers: dict[str, str],
    ip: str | None,
    user: auth.User | None = auth.LOCAL_USER,
) -> bool:
    context = SimpleNamespace(headers=headers, ip_address=ip)
    monkeypatch.setattr(operator_section, "st", SimpleNamespace(context=context))
    return operator_section.may_operate(user)


@pytest.mark.parametrize("host", ["127.0.0.1:8501", "localhost:8501", "[::1]:8501", "127.0.0.2"])
def test_a_local_browser_talking_to_the_page_directly_may_operate(monkeypatch, host):
    assert gate(monkeypatch, {"Host": host}, None)


@pytest.mark.parametrize(
    ("headers", "ip"),
    [
        ({"Host": "127.0.0.1:8501"}, "192.168.1.20"),  # another machine
        ({"Host": "ytmp3.example.org"}, None),  # DNS rebinding, or a name for this host
        ({"Host": "127.0.0.1:8501", "X-Forwarded-For": "203.0.113.9"}, None),  # a proxy
        ({"Host": "127.0.0.1:8501", "Forwarded": "for=203.0.113.9"}, None),
        ({}, None),  # no browser session at all
    ],
    ids=["remote", "other-host-name", "x-forwarded-for", "forwarded", "no-session"],
)
def test_anyone_else_may_not(monkeypatch, headers, ip):
    assert not gate(monkeypatch, headers, ip)


def test_a_signed_in_operator_may_from_anywhere(monkeypatch):
    operator = auth.User("olga", operator=True, via="password")
    assert gate(monkeypatch, {"Host": "ytmp3.example.org"}, "192.168.1.20", operator)


@pytest.mark.parametrize(
    "user", [auth.User("bob", via="password"), auth.User("eve", via="oidc"), None]
)
def test_other_users_may_not_even_locally(monkeypatch, user):
    assert not gate(monkeypatch, {"Host": "127.0.0.1:8501"}, None, user)
