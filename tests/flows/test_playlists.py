"""Playlists through ``convert`` and the scheduled ``playlist-batch`` flow.

RSS feeds and multi-media pages served from 127.0.0.1 stand in for YouTube playlists:
yt-dlp's generic extractor lists them the way it lists any playlist.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from mutagen.id3 import ID3
from prefect.states import State

from flows.batch import BatchResult, playlist_batch
from flows.convert import ConvertResult, convert
from flows.progress import ITEMS_KEY, ItemPhase, ItemRow, read_item_rows
from flows.settings import Settings, get_settings

pytestmark = pytest.mark.flow


def item_rows(state: State) -> list[ItemRow]:
    """The run's item table (flows/progress.py), as the page reads it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]),
                key=ArtifactFilterKey(any_=[ITEMS_KEY]),
            )
        )
    rows = read_item_rows(artifact.data)
    assert rows is not None, artifact.data
    return rows


def run(url: str, quality: str = "128") -> tuple[State, ConvertResult | None]:
    state = convert(url=url, quality=quality, return_state=True)
    result = state.result(raise_on_failure=False)
    return state, result if isinstance(result, ConvertResult) else None


def run_batch(urls: list[str], only_new: bool = True) -> tuple[State, BatchResult | None]:
    state = playlist_batch(urls=urls, quality="128", only_new=only_new, return_state=True)
    result = state.result(raise_on_failure=False)
    return state, result if isinstance(result, BatchResult) else None


def set_env(monkeypatch: pytest.MonkeyPatch, **values: str) -> Settings:
    for name, value in values.items():
        monkeypatch.setenv(f"YTMP3_{name.upper()}", value)
    get_settings.cache_clear()
    return get_settings()


def mp3s(settings: Settings) -> list[Path]:
    return sorted(settings.data_dir.glob("*.mp3"))


def test_a_feed_of_three_converts_with_album_and_track_numbers(media_server, settings_env):
    media_server.add_feed("/three.xml", 3, title="Three Songs")
    state, result = run(media_server.url("/three.xml"))
    assert state.is_completed(), state.message
    assert result is not None and result.is_playlist
    assert [item.status for item in result.items] == ["converted"] * 3
    tags = {int(ID3(p)["TRCK"].text[0]): ID3(p) for p in mp3s(settings_env)}
    assert sorted(tags) == [1, 2, 3]
    assert {t["TALB"].text[0] for t in tags.values()} == {"Three Songs"}
    assert tags[2]["TIT2"].text[0] == "Item 2"
    rows = item_rows(state)
    assert [(row.position, row.title, row.phase) for row in rows] == [
        (0, "Item 1", ItemPhase.CONVERTED),
        (1, "Item 2", ItemPhase.CONVERTED),
        (2, "Item 3", ItemPhase.CONVERTED),
    ]


def test_a_page_with_several_media_is_a_playlist(media_server, settings_env):
    state, result = run(media_server.url("multi.html"))
    assert state.is_completed(), state.message
    assert result is not None and len(result.items) >= 2
    assert len(mp3s(settings_env)) == len(result.items)


def test_the_cap_converts_ten_of_twenty_five_and_says_so(media_server, settings_env, monkeypatch):
    set_env(monkeypatch, max_playlist_items="10")
    media_server.add_feed("/big.xml", 25)
    state, result = run(media_server.url("/big.xml"))
    assert state.is_completed(), state.message
    assert result is not None
    assert len(result.items) == 10 and result.left_out == 15
    assert "15 more item(s) left out" in result.summary()
    assert len(mp3s(settings_env)) == 10


def test_a_broken_item_never_sinks_the_others(media_server, settings_env):
    media_server.add_feed("/holey.xml", 5)
    broken = media_server.feed_item_paths("/holey.xml")[2]
    media_server.status(broken, 404)
    state, result = run(media_server.url("/holey.xml"))
    assert state.is_completed()
    assert state.message.startswith("4 of 5 converted; failed: #3")
    assert result is not None
    failed = result.failed
    assert len(failed) == 1 and failed[0].index == 3
    assert failed[0].reason == "127.0.0.1 has no such page (HTTP 404)"
    assert len(mp3s(settings_env)) == 4
    assert media_server.request_count(broken) == 1  # a 404 is not retried
    rows = item_rows(state)
    assert [row.phase for row in rows].count(ItemPhase.CONVERTED) == 4
    assert (rows[2].phase, rows[2].message) == (ItemPhase.FAILED, failed[0].reason)


def test_an_item_that_keeps_failing_says_how_often_it_was_tried(media_server, settings_env):
    media_server.add_feed("/flaky.xml", 2)
    flaky = media_server.feed_item_paths("/flaky.xml")[1]
    media_server.fail_first(flaky, 100, status=502)
    state, result = run(media_server.url("/flaky.xml"))
    attempts = settings_env.retries + 1
    assert state.is_completed()
    assert result is not None and result.failed[0].reason == (
        f"127.0.0.1 had a server error (HTTP 502) after {attempts} attempts; try again later"
    )
    assert "retry" not in state.message and "Error" not in state.message
    assert media_server.request_count(flaky) == attempts
    assert item_rows(state)[1].phase == ItemPhase.FAILED
    assert item_rows(state)[1].attempt == attempts  # the table followed every attempt


def test_a_playlist_where_nothing_converts_fails(media_server, settings_env):
    media_server.add_feed("/dead.xml", 2)
    for path in media_server.feed_item_paths("/dead.xml"):
        media_server.status(path, 410)
    state, _ = run(media_server.url("/dead.xml"))
    assert state.is_failed()
    assert "0 of 2 converted" in state.message


def test_parallel_downloads_reach_but_never_exceed_the_setting(
    media_server, settings_env, monkeypatch
):
    set_env(monkeypatch, concurrency="2")
    media_server.add_feed("/par.xml", 6)
    for path in media_server.feed_item_paths("/par.xml"):
        media_server.slow(path, 400_000)
    media_server.reset_counters()
    state, _ = run(media_server.url("/par.xml"))
    assert state.is_completed(), state.message
    # Whole downloads only: the generic extractor's sniff of each item (a GET it abandons
    # after a few kB) lingers "in flight" on a throttled response after the client left.
    assert media_server.max_complete_downloads_at_once() == 2


# -- the batch ----------------------------------------------------------------------------


def test_only_new_converts_exactly_the_new_item_even_after_cleanup(media_server, settings_env):
    feed = media_server.add_feed("/sub.xml", 3)
    state, first = run_batch([feed])
    assert state.is_completed(), state.message
    assert first is not None and first.playlists[0].new == 3
    # What cleanup does after 8 hours: the files go, the archive stays.
    for path in [*settings_env.data_dir.glob("*.mp3"), *settings_env.data_dir.glob("*.json")]:
        path.unlink()
    new_item = media_server.append_feed_item("/sub.xml")
    media_server.reset_counters()
    state, second = run_batch([feed])
    assert state.is_completed(), state.message
    assert second is not None
    report = second.playlists[0]
    assert (report.new, report.skipped, report.failed) == (1, 3, 0)
    assert len(mp3s(settings_env)) == 1
    old_items = media_server.feed_item_paths("/sub.xml")[:3]
    assert all(media_server.request_count(path) == 0 for path in old_items)
    assert media_server.request_count(new_item) >= 1


def test_without_only_new_everything_is_delivered_again(media_server, settings_env):
    feed = media_server.add_feed("/again.xml", 2)
    run_batch([feed])
    _, second = run_batch([feed], only_new=False)
    assert second is not None and second.playlists[0].new == 2  # reused from the library


def test_one_failing_playlist_does_not_stop_the_others(media_server, settings_env):
    good = media_server.add_feed("/good.xml", 2)
    media_server.status("/missing.xml", 404)
    state, result = run_batch([media_server.url("/missing.xml"), good])
    assert state.is_completed()
    assert result is not None
    missing, fine = result.playlists
    assert missing.error == "127.0.0.1 has no such page (HTTP 404)"
    assert fine.new == 2
    assert f"could not read: {missing.url} (127.0.0.1 has no such page" in state.message


def test_a_refused_playlist_url_is_reported_not_fetched(media_server, settings_env):
    state, _ = run_batch(["ftp://127.0.0.1/feed.xml", "javascript:alert(1)"])
    assert state.is_failed()
    assert media_server.request_count() == 0


# -- cancellation -------------------------------------------------------------------------


def test_cancelling_a_playlist_stops_it_promptly_and_leaves_no_partial_files(
    media_server, settings_env, served_deployments
):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.states import Cancelling

    feed = media_server.add_feed("/cancel.xml", 6)
    items = media_server.feed_item_paths("/cancel.xml")
    for path in items:
        media_server.slow(path, 20_000)
    flow_run = run_deployment(
        "convert/on-demand", parameters={"url": feed, "quality": "128"}, timeout=0
    )
    deadline = time.monotonic() + 60
    while media_server.bytes_served_for(items[0]) < 30_000:
        assert time.monotonic() < deadline, "the first download never got going"
        time.sleep(0.2)

    cancelled_at = time.monotonic()
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run.id, Cancelling(), force=True)
        while not client.read_flow_run(flow_run.id).state.is_cancelled():
            assert time.monotonic() - cancelled_at < 45, "the run was not cancelled"
            time.sleep(0.5)
    assert media_server.wait_idle(10), "downloads went on after the cancellation"

    assert all(media_server.request_count(path) == 0 for path in items[3:])
    published = {p.stem for p in settings_env.data_dir.glob("*.mp3")}
    assert published == {p.stem for p in settings_env.data_dir.glob("*.json")}
    assert len(published) < len(items)
    leftovers = list((settings_env.data_dir / ".tmp").glob("*"))
    assert leftovers == [], "the cancelled items left scratch files behind"
