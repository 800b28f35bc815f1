"""Sign-in without a browser: password hashes and their helper, session tokens (forged,
expired, revoked), roles, who may sign in through a provider, the failed-sign-in throttle,
and the refusal to start an open page on a non-loopback address (the page and make run)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.settings import Settings, SettingsError, load_settings
from ui import auth, passwords

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def hashes() -> dict[str, str]:
    return {name: passwords.hash_password(f"{name} secret") for name in ("alice", "bob", "*")}


def settings_with(hashes: dict[str, str], *names: str, **more: object) -> Settings:
    users = tuple(f"{name}:{hashes[name]}" for name in names)
    return Settings(users=users, session_secret="k" * 40, **more)  # type: ignore[arg-type]


# -- passwords ---------------------------------------------------------------------------


def test_a_hash_verifies_its_password_only(hashes):
    assert passwords.verify_password("alice secret", hashes["alice"])
    assert not passwords.verify_password("alice secreT", hashes["alice"])
    assert not passwords.verify_password("bob secret", hashes["alice"])
    assert not passwords.verify_password("alice secret", "scrypt.15.8.1.abc.def")  # malformed
    assert not passwords.verify_password("alice secret", hashes["alice"][:-2] + "AA")
    assert "alice secret" not in hashes["alice"]
    assert hashes["alice"] != passwords.hash_password("alice secret")  # a fresh salt each time


def test_the_helper_prints_an_entry_that_the_settings_take():
    done = subprocess.run(
        [sys.executable, "-m", "ui.passwords", "carol", "--stdin"],
        input="a long password\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        timeout=60,
    )
    entry = done.stdout.strip()
    assert entry.startswith("carol:scrypt.") and "a long password" not in done.stdout
    settings = Settings(users=entry)  # type: ignore[arg-type]
    assert auth.check_password("carol", "a long password", settings) == auth.User("carol")
    refused = subprocess.run(
        [sys.executable, "-m", "ui.passwords", "../x", "--stdin"],
        input="a long password\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert refused.returncode != 0 and "a name is" in refused.stderr and not refused.stdout


def test_a_bad_users_entry_stops_start_up_without_repeating_it(monkeypatch, hashes):
    monkeypatch.setenv("YTMP3_USERS", f"alice:{hashes['alice']},bob:not-a-hash")
    with pytest.raises(SettingsError, match="YTMP3_USERS=\\(hidden\\)") as caught:
        load_settings()
    assert "python -m ui.passwords" in str(caught.value)
    assert hashes["alice"] not in str(caught.value)
    monkeypatch.setenv("YTMP3_USERS", f"alice:{hashes['alice']},alice:{hashes['bob']}")
    with pytest.raises(SettingsError, match="appears twice"):
        load_settings()


def test_names_and_passwords_are_checked(hashes):
    settings = settings_with(hashes, "alice", "bob", operators="Bob")
    assert auth.check_password("alice", "alice secret", settings) == auth.User("alice")
    assert auth.check_password("bob", "bob secret", settings) == auth.User("bob", operator=True)
    assert auth.check_password("alice", "bob secret", settings) is None
    assert auth.check_password("mallory", "alice secret", settings) is None
    assert auth.check_password("*", "alice secret", settings) is None
    assert auth.check_password("../alice", "alice secret", settings) is None


def test_a_shared_password_takes_any_name(hashes):
    settings = settings_with(hashes, "*", "alice")
    assert auth.check_password("dana", "* secret", settings) == auth.User("dana")
    assert auth.check_password("dana", "wrong", settings) is None
    # A name with a password of its own is not reachable through the shared one.
    assert auth.check_password("alice", "* secret", settings) is None
    assert auth.check_password("alice", "alice secret", settings) == auth.User("alice")


# -- sessions ----------------------------------------------------------------------------


def test_a_session_token_stands_for_its_user_until_it_expires(hashes):
    settings = settings_with(hashes, "alice", operators="alice", session_hours=1)
    now = time.time()
    token = auth.issue_session(auth.User("alice"), settings, now=now)
    assert auth.read_session(token, settings, now=now + 3599) == auth.User("alice", operator=True)
    assert auth.read_session(token, settings, now=now + 3601) is None
    assert "alice secret" not in token


def test_forged_tokens_are_refused(hashes):
    settings = settings_with(hashes, "alice", "bob")
    token = auth.issue_session(auth.User("alice"), settings)
    body, _, mac = token.partition(".")
    as_bob = auth._b64(auth._unb64(body).replace(b'"alice"', b'"bob"'))
    for forged in (f"{as_bob}.{mac}", f"{body}.{mac[:-2]}AA", body, "", "x.y", "." * 9000):
        assert auth.read_session(forged, settings) is None, forged
    other_secret = settings.model_copy(update={"session_secret": "z" * 40})
    assert auth.read_session(token, other_secret) is None


def test_a_new_password_or_a_removed_user_ends_their_sessions(hashes):
    settings = settings_with(hashes, "alice", "bob")
    token = auth.issue_session(auth.User("alice"), settings)
    assert auth.read_session(token, settings) is not None
    changed = settings.model_copy(
        update={"users": (f"alice:{passwords.hash_password('new one')}", settings.users[1])}
    )
    assert auth.read_session(token, changed) is None
    assert auth.read_session(token, settings_with(hashes, "bob")) is None
    assert auth.read_session(token, Settings()) is None  # sign-in switched off


def test_without_a_session_secret_sessions_last_as_long_as_the_process(hashes):
    settings = Settings(users=(f"alice:{hashes['alice']}",))  # type: ignore[arg-type]
    token = auth.issue_session(auth.User("alice"), settings)
    assert auth.read_session(token, settings) == auth.User("alice")
    assert (
        auth.read_session(token, settings.model_copy(update={"session_secret": "k" * 40})) is None
    )


# -- identity providers, roles -----------------------------------------------------------


def test_who_may_come_in_through_an_identity_provider():
    anyone = Settings(operators=("boss@example.com",))  # type: ignore[arg-type]
    assert auth.oidc_user({"email": "Ann@Example.com"}, anyone) == auth.User(
        "ann@example.com", via="oidc"
    )
    assert auth.oidc_user({"email": "boss@example.com"}, anyone).operator  # type: ignore[union-attr]
    assert auth.oidc_user({"sub": "1234567"}, anyone) == auth.User("1234567", via="oidc")
    assert auth.oidc_user({}, anyone) is None
    assert auth.oidc_user({"email": "x y@example.com"}, anyone) is None
    narrowed = Settings(oidc_users=("@example.com", "guest@other.org"))  # type: ignore[arg-type]
    assert auth.oidc_user({"email": "ann@example.com"}, narrowed) is not None
    assert auth.oidc_user({"email": "guest@other.org"}, narrowed) is not None
    assert auth.oidc_user({"email": "ann@evil-example.com"}, narrowed) is None
    assert auth.oidc_user({"email": "ann@other.org"}, narrowed) is None


def test_roles():
    assert auth.is_operator(auth.LOCAL_USER) and auth.LOCAL_USER.tag == "user:local"
    assert not auth.is_operator(auth.User("alice")) and not auth.is_operator(None)
    assert auth.oidc_providers({"client_id": "x", "server_metadata_url": "y"}) == ["default"]
    assert auth.oidc_providers({"google": {"client_id": "x"}, "redirect_uri": "u"}) == ["google"]
    assert auth.oidc_providers(None) == []


def test_failed_sign_ins_are_throttled_per_name_and_address():
    throttle = auth.Throttle(allowed=3, window=60)
    for i in range(3):
        assert throttle.wait_seconds("alice|1.2.3.4", now=100 + i) == 0
        throttle.failed("alice|1.2.3.4", now=100 + i)
    assert throttle.wait_seconds("alice|1.2.3.4", now=110) == pytest.approx(50)
    assert throttle.wait_seconds("alice|5.6.7.8", now=110) == 0
    assert throttle.wait_seconds("alice|1.2.3.4", now=160.5) == 0  # the first one aged out
    throttle.succeeded("alice|1.2.3.4")
    assert throttle.wait_seconds("alice|1.2.3.4", now=110) == 0


# -- the open page ------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"])
def test_an_open_page_on_loopback_is_allowed(address):
    assert auth.startup_problem(Settings(), address, oidc=False) is None


@pytest.mark.parametrize("address", ["0.0.0.0", "", None, "192.168.1.5", "::", "example.org"])
def test_an_open_page_elsewhere_is_refused_with_the_fix(address, hashes):
    problem = auth.startup_problem(Settings(), address, oidc=False)
    assert problem and "YTMP3_USERS" in problem and "python -m ui.passwords" in problem
    assert auth.startup_problem(settings_with(hashes, "alice"), address, oidc=False) is None
    assert auth.startup_problem(Settings(), address, oidc=True) is None


def test_make_run_refuses_an_open_page_on_every_address(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "YTMP3_LOCAL_HOST": "0.0.0.0",
        "YTMP3_DATA_DIR": str(tmp_path / "data"),
        "YTMP3_STATE_DIR": str(tmp_path / "state"),
    }
    done = subprocess.run(
        [sys.executable, "infrastructure/local.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "the web page will not start" in done.stderr and "YTMP3_USERS" in done.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "state").exists()
