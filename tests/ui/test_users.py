"""Many users, one page (AppTest against a real Prefect server): sign-in first, each user's
runs their own, the operator's view of all, and each user's fair share, refused with a
message that says when to try again.

Users come in through an identity provider here (``at.user`` is what ``st.login`` leaves
in ``st.user``); the password path needs the browser and ui/server.py's routes, so it is
tested end to end in tests/browser.
"""

from __future__ import annotations

import re
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from flows.progress import ItemRow
from flows.settings import Settings, get_settings
from tests.support.page import item_table, runs_for
from ui import auth, polling, quota, runs

PROVIDER = {
    "redirect_uri": "http://127.0.0.1:8501/oauth2callback",
    "cookie_secret": "x" * 40,
    "client_id": "ytmp3",
    "client_secret": "secret",
    "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration",
}


@pytest.fixture
def limits(settings_env, monkeypatch):
    """Set per-user limits (and operators) for the page of this test."""

    def apply(**values: object) -> None:
        for name, value in values.items():
            monkeypatch.setenv(f"YTMP3_{name.upper()}", str(value))
        get_settings.cache_clear()

    return apply


def page(app: AppTest, email: str | None) -> AppTest:
    """The page as ``email`` sees it after signing in with the provider (None: signed out)."""
    at = AppTest.from_file(app._script_path, default_timeout=60)
    at.secrets["auth"] = PROVIDER
    at.user = {"is_logged_in": True, "email": email} if email else {"is_logged_in": False}
    return at.run()


def shown(at: AppTest) -> str:
    parts = []
    for kind in ("error", "warning", "info", "success", "markdown", "caption"):
        parts.extend(element.value for element in getattr(at, kind))
    return re.sub(r"\\(.)", r"\1", "\n".join(parts)).replace("\u2060", "")


def convert(at: AppTest, url: str) -> AppTest:
    at.text_input(key="url").input(url)
    at.button[0].click()
    return at.run()


def person() -> str:
    return f"u{uuid.uuid4().hex[:8]}@example.com"


def url_for(media_server: object) -> str:
    return media_server.url("clip.mp4") + f"?u={uuid.uuid4().hex[:8]}"  # type: ignore[attr-defined]


def test_signed_out_there_is_only_the_sign_in(app, prefect_api):
    at = page(app, None)
    assert not at.exception
    assert [button.label for button in at.button] == ["Sign in"]
    assert not at.text_input and not at.download_button
    assert "Conversions" not in shown(at) and "Library" not in shown(at)


def test_an_account_the_operator_did_not_allow_gets_no_further(app, prefect_api, limits):
    limits(oidc_users="@example.org")
    at = page(app, person())  # @example.com
    assert "may not use this page" in shown(at)
    assert not at.text_input


def test_password_sign_in_needs_the_pages_own_routes(app, prefect_api, limits):
    limits(users=f"alice:{auth.hash_password('alice secret')}")
    at = app.run()  # ui/app.py started directly, without ui/server.py
    assert "streamlit run ui/server.py" in shown(at) and not at.text_input


def test_each_user_sees_and_stops_only_their_own_runs(app, prefect_api, media_server, limits):
    alice, bob, boss = person(), person(), person()
    limits(operators=boss)
    alice_url, bob_url = url_for(media_server), url_for(media_server)
    at_alice = convert(page(app, alice), alice_url)
    assert "Submitted" in shown(at_alice), shown(at_alice)
    at_bob = convert(page(app, bob), bob_url)
    (alice_run,) = runs_for(alice_url)
    (bob_run,) = runs_for(bob_url)
    assert f"user:{alice}" in alice_run.tags and f"user:{bob}" in bob_run.tags

    st.cache_data.clear()
    at_bob.run()
    assert bob_url in shown(at_bob) and alice_url not in shown(at_bob)
    assert [b.key for b in at_bob.button if b.key and b.key.startswith("stop:")] == [
        f"stop:{bob_run.id}"
    ]
    with pytest.raises(runs.NotYours):
        runs.cancel(alice_run.id, f"user:{bob}")
    (alice_run,) = runs_for(alice_url)
    assert alice_run.state and alice_run.state.type.value == "SCHEDULED"

    at_boss = page(app, boss)
    text = shown(at_boss)
    assert alice_url in text and bob_url in text
    assert f"by {alice}" in text and f"by {bob}" in text
    at_boss.button(key=f"stop:{alice_run.id}").click().run()
    (alice_run,) = runs_for(alice_url)
    assert alice_run.state and alice_run.state.type.value == "CANCELLED"


def test_at_most_n_items_waiting_per_user(app, prefect_api, media_server, limits):
    limits(user_max_waiting=2, user_submissions_per_minute=0)
    at = page(app, person())
    first, second, third = (url_for(media_server) for _ in range(3))
    convert(at, first)
    convert(at, second)
    convert(at, third)
    (refusal,) = [w.value for w in at.warning]
    assert refusal == (
        "You already have 2 items waiting or converting, and at most 2 items may wait at a "
        "time: try again once some of them have finished (they show under Conversions)."
    )
    assert runs_for(third) == [] and len(runs_for(first) + runs_for(second)) == 2
    # Another user is not held back by this one.
    other = convert(page(app, person()), third)
    assert "Submitted" in shown(other) and len(runs_for(third)) == 1


def test_at_most_m_submissions_a_minute_per_user(app, prefect_api, media_server, limits):
    limits(user_max_waiting=0, user_submissions_per_minute=2)
    at = page(app, person())
    urls = [url_for(media_server) for _ in range(3)]
    convert(at, urls[0])
    convert(at, urls[1])
    started = datetime.now(UTC)
    convert(at, urls[2])
    (refusal,) = [w.value for w in at.warning]
    match = re.fullmatch(
        r"You have made 2 submissions in the last minute, and at most 2 are taken a minute: "
        r"try again in (\d+) s\.",
        refusal,
    )
    assert match, refusal
    first_created = min(run.created for run in runs_for(urls[0]) + runs_for(urls[1]))
    frees_up = (first_created - started).total_seconds() + 60
    assert abs(int(match[1]) - frees_up) <= 2, (match[1], frees_up)
    assert runs_for(urls[2]) == []
    # The same link again is no new submission: it is answered, not refused.
    convert(at, urls[1])
    assert "Already submitted" in shown(at)


def test_a_playlist_counts_every_item_it_listed(app, prefect_api, media_server, limits):
    limits(user_max_waiting=5, user_submissions_per_minute=0)
    name = person()
    at = page(app, name)
    playlist = url_for(media_server)
    convert(at, playlist)
    (run,) = runs_for(playlist)
    assert runs.load(f"user:{name}").waiting_items == 1  # not listed yet: one
    # What the flow writes once it has listed: its item table, every item queued.
    item_table(run.id, *(ItemRow(position=i, title=f"Song {i}") for i in range(5)))
    assert runs.load(f"user:{name}").waiting_items == 5
    convert(at, url_for(media_server))
    (refusal,) = [w.value for w in at.warning]
    assert refusal.startswith("You already have 5 items waiting or converting, and at most 5")


def test_the_refusal_says_when_to_try_again():
    settings = Settings(user_submissions_per_minute=3)
    now = datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC)
    recent = [datetime(2026, 1, 1, 11, 59, s, tzinfo=UTC) for s in (40, 45, 50, 55)]
    load = runs.Load(waiting_items=0, recent=recent)
    # Four in the last minute, three allowed: two must age out; the second goes at 12:00:45.
    assert quota.refusal(load, settings, now).endswith("try again in 15 s.")  # type: ignore[union-attr]
    assert quota.refusal(runs.Load(0, recent[:2]), settings, now) is None


def test_many_tabs_cost_one_prefect_query_per_refresh(prefect_api, monkeypatch):
    """30 sessions refreshing at once (20 tabs of one user, 5 of another, 5 operators'):
    one overview per distinct view, the rest wait for it and share it."""
    asked: list[str | None] = []
    real = runs.overview

    def counted(**kwargs: object) -> runs.Overview:
        asked.append(kwargs["tag"])  # type: ignore[arg-type]
        return real(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(runs, "overview", counted)
    st.cache_data.clear()
    views = ["user:a"] * 20 + ["user:b"] * 5 + [None] * 5
    together = threading.Barrier(len(views))

    def refresh(tag: str | None) -> runs.Overview:
        together.wait()
        return polling.shared_overview(tag, 20, prefect_api)

    with ThreadPoolExecutor(len(views)) as pool:
        answers = list(pool.map(refresh, views))
    assert sorted(asked, key=str) == [None, "user:a", "user:b"]
    assert all(isinstance(answer, runs.Overview) for answer in answers)
