"""What a site sends is shown, never obeyed, in real Chromium against the real stack:
titles with Markdown render as plain text on every surface (the page, its toasts and
warnings, the Prefect UI's artifacts) and the browser fetches nothing they name; a
symbolic link planted in the library is not served (single downloads nor ZIPs)."""

from __future__ import annotations

import io
import re
import time
import urllib.parse
import zipfile
from typing import Any

import pytest
from markdown_it import MarkdownIt
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.settings import PREFECT_API_URL, temporary_settings
from test_browser_page import watch_newest_run

from flows.library import Library
from tests.support.browser import ARTIFACTS, Stack
from tests.support.media_server import video_page_html

pytestmark = pytest.mark.browser

TIMEOUT_MS = 120_000
HOSTILE = "[x](http://127.0.0.1/) ![i](http://127.0.0.1/i.png) **b**"
SHOWN = HOSTILE.replace("http:", "http:\u2060")
"""How it reads on the page: the same text, with an invisible word joiner that keeps
Streamlit from turning ``http://...`` into a link (flows/markdown.py)."""


def planted(requests: list[str]) -> list[str]:
    """Requests to what the hostile title names (127.0.0.1 on port 80: nothing of ours)."""
    return [url for url in requests if urllib.parse.urlsplit(url).netloc == "127.0.0.1"]


def assert_not_rendered(page: Any) -> None:
    assert page.locator('a[href="http://127.0.0.1/"]').count() == 0
    assert page.locator('img[src="http://127.0.0.1/i.png"]').count() == 0
    assert page.locator("strong", has_text=re.compile(r"^b$")).count() == 0


def convert(page: Any, url: str) -> list[str]:
    page.get_by_label("Video or playlist URL").fill(url)
    page.get_by_role("button", name="Convert").click()
    page.get_by_text("Submitted. Progress shows under Conversions").wait_for()
    states, _ = watch_newest_run(page)
    return states


@pytest.mark.timeout(600)
def test_titles_with_markdown_render_as_plain_text_everywhere(
    stack: Stack, chromium: Any, media_server: Any
) -> None:
    video = media_server.add_page("/hostile.html", video_page_html(title=HOSTILE))
    feed_path = "/hostile-feed.xml"
    feed = media_server.add_feed(feed_path, 0, title=f"{HOSTILE} mix")
    for i in (1, 2):
        media_server.append_feed_item(feed_path, title=f"{HOSTILE} {i}")
    context = chromium.new_context(viewport={"width": 1100, "height": 1400})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    requests: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    try:
        page.goto(stack.page_url)
        assert convert(page, video)[-1] == "Completed", stack.logs()
        assert convert(page, feed)[-1] == "Completed", stack.logs()

        # The page: run titles, per-item lines, library headings, albums, the playlists box.
        # Both expanders are opened until one reading shows them open together: a rerun of
        # the page around the run's end can fold one again (seen once in CI).
        for _ in range(5):
            for label, shown in (
                ("2 items · 2 done", "— Completed"),
                (re.compile(r"^Playlists \(1\)$"), "Download all as ZIP"),
            ):
                if not page.get_by_text(shown).first.is_visible():
                    page.get_by_text(label).click()
                    page.get_by_text(shown).first.wait_for()
            text = page.inner_text("body")
            if "— Completed" in text and "Download all as ZIP" in text:
                break
            time.sleep(1)
        assert f"Completed {SHOWN} (1)\n" in text, text  # the single video's run
        for i in (1, 2):
            assert f"{i}. {SHOWN} {i} — Completed" in text, text  # the playlist's items
            assert f"{SHOWN} {i}\n127.0.0.1 · {SHOWN} mix" in text, text  # the library
        assert f"{HOSTILE} mix" in page.content()  # the playlist select box: plain text
        assert_not_rendered(page)

        # A toast and a warning: the single file vanishes, then its download is clicked.
        library = Library(stack.data_dir)
        (single,) = [e for e in library.entries() if e.sidecar.album is None]
        assert single.sidecar.title.startswith(HOSTILE)
        single.mp3.unlink()
        page.locator(f".st-key-download-{single.key.replace('.', '-')} button").click()
        gone = f"“{single.sidecar.title.replace('http:', 'http:' + chr(0x2060))}” is no longer"
        page.get_by_test_id("stToast").get_by_text(gone, exact=False).wait_for()
        page.get_by_test_id("stAlert").get_by_text(gone, exact=False).wait_for()
        assert_not_rendered(page)
        page.screenshot(path=str(ARTIFACTS / "browser-hostile-titles.png"), full_page=True)
        assert page.get_by_test_id("stException").count() == 0

        # The Prefect UI: the playlist run's result artifacts (Markdown and table).
        run_id = str(
            page.get_by_role("link", name="details in Prefect").first.get_attribute("href")
        ).rsplit("/", 1)[-1]
        ui = stack.api_url.removesuffix("/api")
        with (
            temporary_settings({PREFECT_API_URL: stack.api_url}),
            get_client(sync_client=True) as client,
        ):
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])  # type: ignore[list-item]
                )
            )
        shown = [a for a in artifacts if a.type in ("markdown", "table")]
        assert {a.type for a in shown} == {"markdown", "table"}, artifacts
        render = MarkdownIt("commonmark").enable("table")
        for artifact in shown:
            html = render.render(str(artifact.data)) + render.render(artifact.description or "")
            assert 'href="http://127.0.0.1/"' not in html and "<img" not in html, html
        for artifact in shown:
            page.goto(f"{ui}/artifacts/artifact/{artifact.id}")
            page.get_by_text(SHOWN, exact=False).first.wait_for()
            assert_not_rendered(page)
        page.screenshot(path=str(ARTIFACTS / "browser-hostile-artifact.png"), full_page=True)
        assert planted(requests) == [], planted(requests)
    except BaseException:  # a timeout too: show where it stood
        print(stack.logs())
        page.screenshot(path=str(ARTIFACTS / "browser-hostile-failed.png"), full_page=True)
        print(page.inner_text("body"))
        raise
    finally:
        context.close()


def test_a_link_planted_in_the_library_is_not_served(
    stack: Stack, chromium: Any, media_server: Any, tmp_path: Any
) -> None:
    feed = media_server.add_feed("/planted-feed.xml", 2, title="Planted Mix")
    context = chromium.new_context(viewport={"width": 1100, "height": 1200})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(stack.page_url)
        assert convert(page, feed)[-1] == "Completed", stack.logs()
        library = Library(stack.data_dir)
        first, second = sorted(library.entries(), key=lambda e: e.sidecar.track or 0)
        # A file outside the library, of exactly the size the sidecar gives, linked in.
        secret = tmp_path / "not-for-the-page.bin"
        secret.write_bytes(b"NOT FROM THE LIBRARY ".ljust(first.sidecar.bytes, b"!"))
        first.mp3.unlink()
        first.mp3.symlink_to(secret)
        page.reload()

        page.locator(f".st-key-download-{first.key.replace('.', '-')} button").click()
        page.get_by_test_id("stAlert").get_by_text("is no longer there", exact=False).wait_for()

        page.get_by_text(re.compile(r"^Playlists \(1\)$")).click()
        href = page.get_by_role("link", name="Download all as ZIP").get_attribute("href")
        response = context.request.get(urllib.parse.urljoin(stack.page_url, str(href)))
        assert response.status == 200
        assert response.headers["content-type"] == "application/zip"
        with zipfile.ZipFile(io.BytesIO(response.body())) as archive:
            members = archive.namelist()
            assert len([name for name in members if name.endswith(".mp3")]) == 1, members
            assert archive.read(members[0]) == second.mp3.read_bytes()
        assert b"NOT FROM THE LIBRARY" not in response.body()
        # The link is the page's, signed, and expires: a made-up one is refused.
        forged = re.sub(r"[^/.]{6}$", "AAAAAA", str(href))
        assert context.request.get(urllib.parse.urljoin(stack.page_url, forged)).status == 410
        assert page.get_by_test_id("stException").count() == 0
    except Exception:
        print(stack.logs())
        raise
    finally:
        context.close()
