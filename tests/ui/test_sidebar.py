"""The sidebar's one line from the doctor; the cookies are named, never shown."""

from __future__ import annotations

import re

from test_page import all_text

from flows.settings import get_settings


def test_the_sidebar_says_yt_dlp_js_and_cookies(app, prefect_api):
    at = app.run()
    (line,) = [c.value for c in at.sidebar.caption if c.value.startswith("yt-dlp")]
    assert re.fullmatch(
        r"yt-dlp \d{4}\.\d+\.\d+\S* \(\d+ days old\) · JS: deno 2\.\S+ · cookies: none", line
    ), line


def test_configured_cookies_never_reach_the_page(app, prefect_api, monkeypatch, tmp_path):
    cookies = tmp_path / "cookies.txt"
    cookies.write_text("127.0.0.1\tFALSE\t/\tFALSE\t0\tSID\tpage-secret-value\n")
    monkeypatch.setenv("YTMP3_COOKIES_FILE", str(cookies))
    get_settings.cache_clear()
    at = app.run()
    sidebar = [c.value for c in at.sidebar.caption]
    (line,) = [text for text in sidebar if text.startswith("yt-dlp")]  # beside who is signed in
    assert line.endswith("· cookies: configured")
    assert "page-secret-value" not in all_text(at) + "".join(sidebar)
