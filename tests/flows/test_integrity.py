"""Bad media through ``convert`` on a real Prefect server: cut, damaged, empty, slow, hung.

Every case must end (the guard below is a bound on liveness, not a speed test), fail with
one sentence about the media, publish nothing, leave no scratch files, and show its
retries in the media server's request counts. A failing item is tried twice
(``YTMP3_RETRIES=1``); for the slow servers, downloads stall after 2 s
(``YTMP3_STALL_TIMEOUT_SECONDS``), and the default minimum rate (16 kB/s) applies.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest
from prefect.states import State

from flows.convert import convert
from flows.settings import Settings, get_settings
from tests.support.media_server import MediaServer, cut_file, generate_media, video_page_html

pytestmark = pytest.mark.flow

STALL_SECONDS = 2
BOUND_SECONDS = 120
"""Every run here must reach its final state within this (liveness, not speed)."""


@pytest.fixture(scope="module")
def bad_media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Whole 10-s files of each layout, their cut copies, and a 59.97-s file."""
    root = tmp_path_factory.mktemp("bad-media")
    front = generate_media(root, "front", "mp4", 10)
    end = generate_media(root, "end", "mp4-index-at-end", 10)
    adts = generate_media(root, "adts", "aac", 10)
    return {
        "index-in-front": cut_file(front, root / "cut" / "front.mp4", 0.3),
        "index-at-end": cut_file(end, root / "cut" / "end.mp4", 0.3),
        # Half the file and 7 bytes more: the last ADTS frame (~370 bytes) is cut in two.
        "mid-frame": cut_file(adts, root / "cut" / "mid.aac", adts.stat().st_size // 2 + 7),
        "rounded": generate_media(root, "rounded", "m4a", 59.97),
    }


@pytest.fixture
def faults(settings_env: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings for one bad input: a failing item is tried twice."""
    monkeypatch.setenv("YTMP3_RETRIES", "1")
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture
def short_stall(faults: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """...and downloads stall after 2 s (the slow-server cases only: on a busy machine a
    healthy step can take that long)."""
    monkeypatch.setenv("YTMP3_STALL_TIMEOUT_SECONDS", str(STALL_SECONDS))
    get_settings.cache_clear()
    return get_settings()


def run_bounded(url: str) -> State:
    """``convert(url)`` in a thread that must end within :data:`BOUND_SECONDS`."""
    states: list[State] = []
    thread = threading.Thread(
        target=lambda: states.append(convert(url=url, quality="192", return_state=True)),
        daemon=True,
    )
    thread.start()
    thread.join(BOUND_SECONDS)
    assert not thread.is_alive(), f"the run was still going after {BOUND_SECONDS} s"
    return states[0]


def assert_nothing_delivered(settings: Settings) -> None:
    """No library name at all, and no scratch dir left in ``.tmp``."""
    root = settings.data_dir
    assert [p.name for p in root.iterdir() if not p.name.startswith(".")] == []
    tmp = root / ".tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []


def assert_failed_with(state: State, pattern: str) -> None:
    assert state.is_failed(), state.message
    assert re.fullmatch(pattern, state.message or ""), state.message
    assert not re.search(r"/\w+/|\.tmp", state.message or ""), "an internal path in the message"


def attempts(settings: Settings) -> int:
    return settings.retries + 1


def serve(server: MediaServer, path: str, file: Path) -> str:
    return server.alias(path, file)


# -- files that are complete as far as HTTP knows, but not whole ------------------------


def test_a_cut_mp4_with_its_index_in_front_is_never_delivered(media_server, faults, bad_media):
    """The issue's first case: the header says 10 s, the audio stops at 3 s."""
    url = serve(media_server, "/bad/front.mp4", bad_media["index-in-front"])
    state = run_bounded(url)
    n = attempts(faults)
    assert_failed_with(
        state, rf"the source file is incomplete \([23] s of 10 s\) after {n} attempts"
    )
    assert_nothing_delivered(faults)
    # one request while listing, one download per attempt
    assert media_server.request_count("/bad/front.mp4", "GET") == 1 + n


def test_a_cut_mp4_with_its_index_at_the_end_is_damaged(media_server, faults, bad_media):
    url = serve(media_server, "/bad/end.mp4", bad_media["index-at-end"])
    state = run_bounded(url)
    n = attempts(faults)
    assert_failed_with(
        state, rf"the file is damaged: ffmpeg could not read its audio after {n} attempts"
    )
    assert_nothing_delivered(faults)
    assert media_server.request_count("/bad/end.mp4", "GET") == 1 + n


def test_a_file_cut_mid_frame_that_declares_no_length_is_decoded_and_refused(
    media_server, faults, bad_media
):
    """Raw ADTS states no length; decoding it end to end finds the cut frame."""
    url = serve(media_server, "/bad/mid.aac", bad_media["mid-frame"])
    state = run_bounded(url)
    n = attempts(faults)
    assert_failed_with(
        state, rf"the file is damaged: ffmpeg could not read its audio after {n} attempts"
    )
    assert_nothing_delivered(faults)
    assert media_server.request_count("/bad/mid.aac", "GET") == 1 + n


def test_a_zero_byte_file(media_server, faults):
    url = media_server.add_page("/bad/empty.mp4", b"", "video/mp4")
    state = run_bounded(url)
    n = attempts(faults)
    assert_failed_with(state, rf"the server sent an empty file after {n} attempts; try again later")
    assert_nothing_delivered(faults)
    assert media_server.request_count("/bad/empty.mp4", "GET") == 1 + n


def test_a_file_shorter_than_its_site_says_is_never_delivered(media_server, faults):
    """The feed declares 60 s for a whole 6-s file: the site's metadata counts too."""
    feed = _feed(media_server, "/bad/long.xml", "/bad/long/1.m4a", "clip.m4a", "00:01:00")
    state = run_bounded(feed)
    n = attempts(faults)
    assert state.is_failed(), state.message
    assert f"the source file is incomplete (6 s of 60 s) after {n} attempts" in state.message
    assert_nothing_delivered(faults)
    # per attempt: the item's probe and its download
    assert media_server.request_count("/bad/long/1.m4a", "GET") == 2 * n


# -- servers that send too slowly, or stop ----------------------------------------------


def test_a_trickling_body_is_stopped(media_server, short_stall):
    """2 kB/s, far below the 16 kB/s minimum: stopped once the first 2 s have passed."""
    url = serve(media_server, "/bad/trickle.m4a", media_server.root / "clip.m4a")
    media_server.slow("/bad/trickle.m4a", 2000)
    state = run_bounded(url)
    n = attempts(short_stall)
    assert_failed_with(
        state,
        r"the download was too slow \(\d+\.\d kB/s; at least 16 kB/s is needed\) "
        rf"after {n} attempts; try again later; a site this slow needs a lower "
        r"YTMP3_MIN_DOWNLOAD_KB_PER_SECOND",
    )
    assert_nothing_delivered(short_stall)
    assert media_server.request_count("/bad/trickle.m4a", "GET") == 1 + n


def test_a_server_that_hangs_mid_file_is_a_stall(media_server, short_stall):
    url = serve(media_server, "/bad/hang.m4a", media_server.root / "clip.m4a")
    media_server.stop_sending("/bad/hang.m4a", 30_000)
    state = run_bounded(url)
    n = attempts(short_stall)
    assert_failed_with(
        state, rf"the download stalled for {STALL_SECONDS} s after {n} attempts; try again later"
    )
    assert_nothing_delivered(short_stall)
    assert media_server.request_count("/bad/hang.m4a", "GET") == 1 + n


def test_a_server_that_closes_mid_file(media_server, faults):
    url = serve(media_server, "/bad/cut-off.m4a", media_server.root / "clip.m4a")
    media_server.stop_sending("/bad/cut-off.m4a", 30_000, close=True)
    state = run_bounded(url)
    n = attempts(faults)
    assert_failed_with(
        state, rf"the connection to 127\.0\.0\.1 broke off after {n} attempts; try again later"
    )
    assert_nothing_delivered(faults)
    assert media_server.request_count("/bad/cut-off.m4a", "GET") == 1 + n


def test_a_byte_every_two_seconds_is_stopped_mid_read(media_server, short_stall):
    """yt-dlp's first read wants 1 kB: at this pace it would block for over half an hour,
    with no progress report and no socket timeout. The watchdog shuts the socket.

    (Served behind a page, so that the listing does not read the media itself.)"""
    serve(media_server, "/bad/drip.m4a", media_server.root / "clip.m4a")
    media_server.slow("/bad/drip.m4a", 0.5)
    page = media_server.add_page("/bad/drip.html", video_page_html(src="drip.m4a"))
    state = run_bounded(page)
    n = attempts(short_stall)
    assert_failed_with(
        state, rf"the download stalled for {STALL_SECONDS} s after {n} attempts; try again later"
    )
    assert_nothing_delivered(short_stall)
    assert media_server.request_count("/bad/drip.m4a", "GET") == n


# -- what must still work ---------------------------------------------------------------


def test_a_good_file_whose_site_rounds_its_length_converts(media_server, faults, bad_media):
    """59.97 s declared as "60" by the feed: converted, and the sidecar has the MP3's length."""
    feed = _feed(media_server, "/ok/rounded.xml", "/ok/rounded/1.m4a", bad_media["rounded"], "60")
    state = run_bounded(feed)
    assert state.is_completed(), state.message
    sidecars = list(faults.data_dir.glob("*.json"))
    assert len(sidecars) == 1
    duration = json.loads(sidecars[0].read_text())["duration"]
    assert 59.9 < duration < 60.1
    assert media_server.request_count("/ok/rounded/1.m4a", "GET") == 2  # probe, download


def test_in_a_playlist_the_whole_items_are_delivered_and_the_cut_one_is_not(
    media_server, faults, bad_media
):
    serve(media_server, "/mixed/cut.mp4", bad_media["index-in-front"])
    feed = media_server.add_feed("/mixed.xml", ["/mixed/good.m4a", "/mixed/cut.mp4"])
    state = run_bounded(feed)
    assert state.is_completed(), state.message
    assert re.fullmatch(
        r"1 of 2 converted; failed: #2 Item 2 \(the source file is incomplete "
        rf"\([23] s of 10 s\) after {attempts(faults)} attempts\)",
        state.message or "",
    ), state.message
    sidecars = [json.loads(p.read_text()) for p in faults.data_dir.glob("*.json")]
    delivered = [s["requested_url"].split("#")[0] for s in sidecars]
    assert delivered == [media_server.url("/mixed/good.m4a")]
    assert len(list(faults.data_dir.glob("*.mp3"))) == 1
    tmp = faults.data_dir / ".tmp"
    assert list(tmp.iterdir()) == []


def _feed(server: MediaServer, path: str, item: str, file: str | Path, duration: str) -> str:
    """An RSS feed of one item whose ``itunes:duration`` is ``duration``."""
    item_url = server.alias(item, file)
    content_type = "audio/mp4"
    body = (
        '<?xml version="1.0"?><rss version="2.0" '
        'xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd"><channel>'
        "<title>Declared</title><link>http://127.0.0.1/</link><description>d</description>"
        f'<item><title>One</title><guid>{item}</guid><enclosure url="{item_url}" '
        f'type="{content_type}" length="1"/><itunes:duration>{duration}</itunes:duration>'
        "</item></channel></rss>"
    )
    return server.add_page(path, body, content_type="application/rss+xml")
