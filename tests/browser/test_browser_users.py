"""Many users in real Chromium, against the real stack: password sign-in end to end
(signed out there is only the form; a reload keeps the session; wrong passwords are
refused), each user sees and may stop only their own runs, the operator sees and stops
all. Sign-in through an identity provider: test_browser_oidc.py."""

from __future__ import annotations

import time
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from tests.support.browser import ARTIFACTS, Stack
from ui.passwords import hash_password

pytestmark = pytest.mark.browser

TIMEOUT_MS = 120_000
PASSWORDS = {"alice": "alice's password", "bob": "bob's password", "boss": "the boss's one"}


@pytest.fixture
def users_env(settings_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three password users, ``boss`` the operator (set before the stack starts)."""
    entries = [f"{name}:{hash_password(password)}" for name, password in PASSWORDS.items()]
    monkeypatch.setenv("YTMP3_USERS", ",".join(entries))
    monkeypatch.setenv("YTMP3_OPERATORS", "boss")
    monkeypatch.setenv("YTMP3_SESSION_SECRET", "s" * 43)


def sign_in(browser: Any, stack: Stack, name: str, password: str | None = None) -> Any:
    """A new browser context signed in as ``name`` through the page's form; its page."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(stack.page_url)
    page.get_by_role("heading", name="Sign in").wait_for()
    page.locator("input[name=username]").fill(name)
    page.locator("input[name=password]").fill(password or PASSWORDS[name])
    page.get_by_role("button", name="Sign in").click()
    return page


def run_ids_shown(page: Any) -> list[str]:
    links = page.get_by_role("link", name="details in Prefect")
    return [str(link.get_attribute("href")).rsplit("/", 1)[-1] for link in links.all()]


def test_password_users_see_and_stop_only_their_own_runs(
    users_env: None, stack: Stack, chromium: Any, media_server: Any
) -> None:
    slow = media_server.url("clip.mp4") + "?slow=1"
    media_server.slow("clip.mp4", 4_000)  # ~40 s of download: the runs stay active a while
    bob_url = media_server.url("clip.mp4") + "?bob=1"
    ARTIFACTS.mkdir(exist_ok=True)
    pages: list[Any] = []
    try:
        # Signed out: the sign-in form and nothing else, before and after a reload.
        context = chromium.new_context()
        stranger = context.new_page()
        pages.append(stranger)
        stranger.set_default_timeout(TIMEOUT_MS)
        stranger.goto(stack.page_url)
        stranger.get_by_role("heading", name="Sign in").wait_for()
        stranger.reload()
        stranger.get_by_role("heading", name="Sign in").wait_for()
        assert stranger.get_by_label("Video or playlist URL").count() == 0
        assert stranger.get_by_text("Conversions").count() == 0
        assert stranger.get_by_text("Library").count() == 0
        stranger.screenshot(path=str(ARTIFACTS / "browser-sign-in.png"))
        # A wrong password is refused, and says so.
        stranger.locator("input[name=username]").fill("alice")
        stranger.locator("input[name=password]").fill("not her password")
        stranger.get_by_role("button", name="Sign in").click()
        stranger.get_by_text("Wrong name or password.").wait_for()
        assert stranger.get_by_label("Video or playlist URL").count() == 0
        assert not [c for c in context.cookies() if c["name"] == "ytmp3_session"]

        # Alice signs in; her session survives a reload (an HttpOnly cookie).
        alice = sign_in(chromium, stack, "alice")
        pages.append(alice)
        alice.get_by_label("Video or playlist URL").wait_for()
        (cookie,) = [c for c in alice.context.cookies() if c["name"] == "ytmp3_session"]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        alice.reload()
        alice.get_by_text("Signed in as alice").wait_for()
        alice.get_by_label("Video or playlist URL").fill(slow)
        alice.get_by_role("button", name="Convert").click()
        alice.get_by_text("Submitted. Progress shows under Conversions").wait_for()
        alice.get_by_role("button", name="Stop").wait_for()
        (alice_run,) = run_ids_shown(alice)

        # Bob: his own run only; no Stop for Alice's.
        bob = sign_in(chromium, stack, "bob")
        pages.append(bob)
        bob.get_by_text("Nothing converted yet").wait_for()
        bob.get_by_label("Video or playlist URL").fill(bob_url)
        bob.get_by_role("button", name="Convert").click()
        bob.get_by_text("Submitted. Progress shows under Conversions").wait_for()
        bob.get_by_role("link", name="details in Prefect").first.wait_for()
        time.sleep(2.5)  # a refresh or two of his panel
        (bob_run,) = run_ids_shown(bob)
        assert bob_run != alice_run
        assert "slow=1" not in bob.content()
        assert bob.locator(f"[class*='st-key-stop-{alice_run}']").count() == 0

        # The operator sees both, says whose each is, and may stop Alice's.
        boss = sign_in(chromium, stack, "boss")
        pages.append(boss)
        boss.get_by_text("Signed in as boss · operator").wait_for()
        boss.get_by_text("by alice").first.wait_for()
        boss.get_by_text("by bob").first.wait_for()
        assert {alice_run, bob_run} <= set(run_ids_shown(boss))
        boss.screenshot(path=str(ARTIFACTS / "browser-operator.png"))
        boss.locator(f".st-key-stop-{alice_run} button").click()
        with temporary_settings({PREFECT_API_URL: stack.api_url}):
            deadline = time.monotonic() + TIMEOUT_MS / 1000
            state = None
            while time.monotonic() < deadline:
                with get_client(sync_client=True) as client:
                    run = client.read_flow_run(alice_run)  # type: ignore[arg-type]
                state = run.state.type.value if run.state else None
                if state in ("CANCELLING", "CANCELLED"):
                    break
                time.sleep(0.5)
        assert state in ("CANCELLING", "CANCELLED"), state
        assert "user:alice" in run.tags

        # Alice signs out: the form again, and a reload does not bring her back.
        alice.get_by_role("button", name="Sign out").click()
        alice.get_by_role("heading", name="Sign in").wait_for()
        alice.reload()
        alice.get_by_role("heading", name="Sign in").wait_for()
        assert alice.get_by_label("Video or playlist URL").count() == 0
        for page in pages:
            assert page.get_by_test_id("stException").count() == 0
    except Exception:
        print(stack.logs())
        raise
    finally:
        media_server.slow("clip.mp4", None)
        for page in pages:
            page.context.close()
