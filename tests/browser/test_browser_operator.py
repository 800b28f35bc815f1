"""The operator section in real headless Chromium, against the real stack: add a scheduled
playlist (an RSS feed on 127.0.0.1), see its preview, run it now, watch its delivered count
change, remove it."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.support.browser import ARTIFACTS, Stack

pytestmark = pytest.mark.browser

TIMEOUT_MS = 120_000


def api(stack: Stack, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        f"{stack.api_url}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
        method="POST" if body is not None else "GET",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def stored_list(stack: Stack) -> Any:
    try:
        return api(stack, "/variables/name/ytmp3_subscriptions")["value"]
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
        return None


def run_now_runs(stack: Stack) -> list[dict[str, Any]]:
    """Batch runs the page started (not the schedule's future runs)."""
    return api(
        stack,
        "/flow_runs/filter",
        {
            "flows": {"name": {"any_": ["playlist-batch"]}},
            "flow_runs": {"tags": {"all_": ["run-now"]}},
            "limit": 50,
        },
    )


def test_add_preview_run_now_and_remove_a_scheduled_playlist(
    stack: Stack, chromium: Any, media_server: Any
) -> None:
    started = time.monotonic()
    feed = media_server.add_feed("/weekly.xml", 2, title="Weekly Mix")
    ARTIFACTS.mkdir(exist_ok=True)
    context = chromium.new_context(viewport={"width": 1100, "height": 1400})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(stack.page_url)
        page.get_by_role("heading", name="Scheduled playlists").wait_for()
        page.get_by_text("No scheduled playlists yet").wait_for()

        # A link the URL policy refuses never reaches yt-dlp.
        page.get_by_label("Playlist or channel URL").fill("ftp://127.0.0.1/weekly.xml")
        page.get_by_role("button", name="Preview").click()
        page.get_by_text("That link can't be subscribed to").wait_for()
        assert media_server.request_count("/weekly.xml") == 0

        # Preview: the policy passes it, yt-dlp lists it flat: title and item count.
        page.get_by_label("Playlist or channel URL").fill(feed)
        page.get_by_role("button", name="Preview").click()
        preview = page.locator(".st-key-subscription-preview")
        preview.get_by_text("Weekly Mix").wait_for()
        preview.get_by_text(re.compile(r"^2 items · 192 kbps")).wait_for()
        assert not any(path.startswith("/items/") for path in media_server.requested_paths()), (
            "the preview fetched media"
        )
        assert stored_list(stack) is None  # nothing stored before "Subscribe"

        page.get_by_role("button", name="Subscribe").click()
        page.get_by_text("Subscribed to “Weekly Mix”.").wait_for()
        row = page.locator(".st-key-subscription-0")
        row.get_by_text("not run yet").wait_for()
        page.get_by_text("Subscribed to").wait_for(state="detached", timeout=15_000)
        assert page.locator(".st-key-subscription-preview").count() == 0
        assert page.get_by_text("That link can't be subscribed to").count() == 0
        assert page.get_by_label("Playlist or channel URL").input_value() == ""
        assert stored_list(stack) == [{"url": feed, "quality": "192", "note": "Weekly Mix"}]

        # Run now, twice: one run; the row's delivered count appears by itself.
        row.get_by_role("button", name="Run now").click()
        page.get_by_text("Started a run for “Weekly Mix”").wait_for()
        row.get_by_role("button", name="Run now").click()
        page.get_by_text("Already started a moment ago").wait_for()
        row.get_by_text(re.compile(r"delivered 2 \(last 2 just now\)")).wait_for()
        page.get_by_text("2 files · newest first").wait_for()  # the library, refreshed
        (run,) = run_now_runs(stack)
        assert run["parameters"]["urls"] == [feed]
        assert run["state"]["type"] == "COMPLETED"
        assert len(list(stack.data_dir.glob("*.mp3"))) == 2
        page.screenshot(path=str(ARTIFACTS / "browser-operator.png"), full_page=True)

        # Remove: asked once more, then gone from the page and the store.
        row.get_by_role("button", name="Remove").click()
        page.get_by_role("button", name="Yes, remove").click()
        page.get_by_text("No scheduled playlists yet").wait_for()
        assert stored_list(stack) == []
        assert page.get_by_test_id("stException").count() == 0
        assert "Traceback" not in page.content()
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "browser-operator-failed.png"), full_page=True)
        print(stack.logs())
        raise
    finally:
        context.close()
    print(f"\noperator browser test: {time.monotonic() - started:.1f} s")
