"""The page in real headless Chromium, against the real stack (Prefect server, the served
deployments, Streamlit): paste a URL, submit, watch the progress, see the file, download it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import ARTIFACTS, Stack

pytestmark = pytest.mark.browser

TIMEOUT_MS = 120_000


def is_mp3(path: Path) -> str:
    """Why ``path`` is a valid MP3 (ffprobe's verdict and the first frame header), or fail."""
    data = path.read_bytes()
    offset = 0
    if data[:3] == b"ID3":  # skip the ID3v2 tag (synchsafe size) to the first audio frame
        size = (data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9]
        offset = 10 + size + (10 if data[5] & 0x10 else 0)
    while offset < len(data) and data[offset] == 0:
        offset += 1
    header = int.from_bytes(data[offset : offset + 4], "big")
    assert header >> 21 == 0x7FF, f"no MPEG frame sync at byte {offset}"
    assert (header >> 17) & 0b11 == 0b01, "not MPEG layer III"
    verdict = "MPEG layer III frame header"
    if shutil.which("ffprobe"):
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "format=format_name,duration",
             "-show_entries", "stream=codec_name", "-of", "json", str(path)],
            capture_output=True, text=True, check=True, timeout=30,
        )  # fmt: skip
        info = json.loads(probe.stdout)
        assert info["format"]["format_name"] == "mp3", info
        assert info["streams"][0]["codec_name"] == "mp3", info
        assert abs(float(info["format"]["duration"]) - 6.0) < 0.5, info
        verdict += f", ffprobe: mp3, {float(info['format']['duration']):.1f} s"
    return verdict


def watch_newest_run(page: Any, shot: Path | None = None) -> tuple[list[str], list[float]]:
    """Follow the newest run in the self-refreshing conversions panel until it ends.

    Returns the states and progress percentages seen; with ``shot``, saves a screenshot the
    first time a progress strictly between 0 and 100 % is on screen.
    """
    states_seen: list[str] = []
    progress_seen: list[float] = []
    badge = page.get_by_test_id("stMarkdownContainer").get_by_text(
        re.compile(r"^(Scheduled|Pending|Running|Completed|Failed|Crashed|Waiting)$")
    )
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        states = [text.strip() for text in badge.all_inner_texts()]
        if states and states[0] not in states_seen[-1:]:
            states_seen.append(states[0])
        bars = page.get_by_test_id("stProgress").all_inner_texts()
        if bars and (match := re.search(r"(\d+) %", bars[0])):
            progress_seen.append(float(match[1]))
            if shot is not None and 0 < progress_seen[-1] < 100 and not shot.exists():
                full_page_screenshot(page, shot)
        if states and states[0] in ("Completed", "Failed", "Crashed"):
            break
        time.sleep(0.2)
    return states_seen, progress_seen


def full_page_screenshot(page: Any, path: Path) -> None:
    """All of the page: Streamlit scrolls inside its own container, so Playwright's
    ``full_page`` alone sees one viewport; grow the viewport to the content first."""
    size = page.viewport_size
    height = page.evaluate(
        "() => Math.max(...[...document.querySelectorAll("
        "'[data-testid=stMain], [data-testid=stAppViewContainer], body')]"
        ".map(e => e.scrollHeight))"
    )
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], height)})
    page.wait_for_timeout(300)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)


def test_convert_watch_and_download_in_a_real_browser(
    stack: Stack, chromium: Any, media_server: Any, tmp_path: Path
) -> None:
    started = time.monotonic()
    url = media_server.url("clip.mp4")
    media_server.slow("clip.mp4", 25_000)  # ~6 s of download, so progress can be watched
    ARTIFACTS.mkdir(exist_ok=True)
    running_shot = ARTIFACTS / "browser-page-running.png"
    running_shot.unlink(missing_ok=True)
    screenshot = ARTIFACTS / "browser-page.png"
    context = chromium.new_context(viewport={"width": 1100, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(stack.page_url)
        page.get_by_role("heading", name="ytmp3").wait_for()
        page.get_by_text("Nothing converted yet").wait_for()

        # One video: paste, submit, watch the panel refresh itself until it completes.
        page.get_by_label("Video or playlist URL").fill(url)
        page.get_by_role("button", name="Convert").click()
        page.get_by_text("Submitted. Progress shows under Conversions").wait_for()
        single_states, progress = watch_newest_run(page, running_shot)
        assert single_states and single_states[-1] == "Completed", (single_states, stack.logs())
        assert "Running" in single_states, single_states
        assert any(0 < value < 100 for value in progress), (
            f"no progress between 0 and 100 % was shown: {progress}"
        )

        # The library lists the file; the run links into the Prefect UI.
        download = page.get_by_test_id("stDownloadButton").first
        download.wait_for()
        assert page.get_by_text(re.compile(r"expires in \d+:\d\d")).first.is_visible()
        prefect_link = page.get_by_role("link", name="details in Prefect").first
        assert "/runs/flow-run/" in (prefect_link.get_attribute("href") or "")

        with page.expect_download() as pending:
            download.get_by_role("button").click()
        received = pending.value
        target = tmp_path / received.suggested_filename
        received.save_as(target)
        assert target.suffix == ".mp3" and "/" not in received.suggested_filename
        verdict = is_mp3(target)
        single_done = time.monotonic() - started

        # A playlist (an RSS feed of 3 items): per-item states, then all of it as one ZIP.
        feed = media_server.add_feed("/browser-feed.xml", 3, title="Browser Mix")
        page.get_by_label("Video or playlist URL").fill(feed)
        page.get_by_role("button", name="Convert").click()
        page.get_by_text("Submitted. Progress shows under Conversions").wait_for()
        playlist_states, _ = watch_newest_run(page)
        assert playlist_states and playlist_states[-1] == "Completed", (
            playlist_states,
            stack.logs(),
        )
        page.get_by_text("3 items · 3 done").wait_for()
        page.get_by_text(re.compile(r"^Playlists \(1\)$")).click()
        # A link to the page's ZIP route (ui/server.py streams it); fetched with the
        # browser's cookies, as a click in a new tab would.
        href = page.get_by_role("link", name="Download all as ZIP").get_attribute("href")
        response = context.request.get(urllib.parse.urljoin(stack.page_url, str(href)))
        assert response.status == 200, response.status
        disposition = response.headers["content-disposition"]  # RFC 6266, either form
        name = re.search(r"filename\*=utf-8''([^;]+)|filename=\"([^\"]+)\"", disposition)
        assert name, disposition
        archive_path = tmp_path / urllib.parse.unquote(name[1] or name[2])
        archive_path.write_bytes(response.body())
        with zipfile.ZipFile(archive_path) as archive:
            names = archive.namelist()
            assert archive_path.name == "Browser Mix.zip"
            assert len([n for n in names if n.endswith(".mp3")]) == 3, names
            assert "Browser Mix.m3u" in names, names
            (tmp_path / "first.mp3").write_bytes(archive.read(names[0]))
        is_mp3(tmp_path / "first.mp3")

        # Nothing went wrong on the page, though it reads the library read-only.
        assert page.get_by_test_id("stException").count() == 0
        assert "Traceback" not in page.content()
        page.mouse.move(0, 0)
        full_page_screenshot(page, screenshot)
    finally:
        context.close()
    elapsed = time.monotonic() - started
    print(
        f"\nbrowser test: {single_done:.1f} s from page load to a downloaded MP3, "
        f"{elapsed:.1f} s with the playlist ZIP; states seen {single_states} then "
        f"{playlist_states}, progress seen "
        f"{sorted(set(progress))}; {received.suggested_filename}: {verdict}; ZIP {names}; "
        f"page reads the library via {stack.page_view}; screenshots {screenshot}, {running_shot}"
    )
