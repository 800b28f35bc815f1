"""What today's YouTube needs, shown offline against the local media server.

* cookies: the server sees the cookie, the original file is never changed (it is made
  immutable for the run) and its value shows up in no log, artifact, message or sidecar;
* yt-dlp's warnings land in the run's log;
* a storm of HTTP 429 slows every run down through one Prefect rate limit, instead of
  each item hitting the site again on its own;
* listing stops at the cap: yt-dlp is told (``playlistend``) and no entry past it is
  requested, while the summary still says how many were left out;
* ``ytdlp-check`` against a local stand-in for the package index.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yt_dlp.version
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.exceptions import ObjectNotFound
from prefect.logging.handlers import APILogWorker
from prefect.states import State

from flows import media, ratelimit, sources
from flows.convert import ConvertResult, convert
from flows.settings import Settings, get_settings
from flows.ytdlp_check import ARTIFACT_KEY, ytdlp_check

pytestmark = pytest.mark.flow


def set_env(monkeypatch: pytest.MonkeyPatch, **values: str) -> Settings:
    for name, value in values.items():
        monkeypatch.setenv(f"YTMP3_{name.upper()}", value)
    get_settings.cache_clear()
    return get_settings()


def run(url: str) -> tuple[State, ConvertResult | None]:
    state = convert(url=url, quality="128", return_state=True)
    result = state.result(raise_on_failure=False)
    return state, result if isinstance(result, ConvertResult) else None


def run_logs(state: State) -> list[str]:
    APILogWorker.drain_all(timeout=10)
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])), limit=200
        )
    return [log.message for log in logs]


def run_artifacts(state: State) -> list[Any]:
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )


@pytest.fixture
def fresh_rate_limit() -> Any:
    """Each test that looks at the pace starts from, and leaves, a normal limit."""

    def drop() -> None:
        with get_client(sync_client=True) as client, contextlib.suppress(ObjectNotFound):
            client.delete_global_concurrency_limit_by_name(ratelimit.LIMIT_NAME)
        ratelimit.forget_limit()

    drop()
    yield
    drop()


# -- cookies ---------------------------------------------------------------------------------


@pytest.fixture
def immutable(tmp_path: Path) -> Any:
    """Make a file immutable (even root cannot write, rename or delete it) for the test."""
    made: list[Path] = []

    def make(path: Path) -> bool:
        if shutil.which("chattr") is None:
            path.chmod(0o444)
            return False
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
        if done.returncode == 0:
            made.append(path)
        else:
            path.chmod(0o444)
        return done.returncode == 0

    yield make
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def test_the_cookie_reaches_the_server_and_never_changes_or_shows(
    media_server, settings_env, monkeypatch, tmp_path, immutable
):
    secret = f"s3cret-{uuid.uuid4().hex}"
    original = tmp_path / "cookies.txt"
    original.write_text(
        f"# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tytmp3_session\t{secret}\n"
    )
    digest = hashlib.sha256(original.read_bytes()).hexdigest()
    really_read_only = immutable(original)
    settings = set_env(monkeypatch, cookies_file=str(original))

    state, result = run(media_server.url("clip.m4a"))

    assert state.is_completed(), state.message
    assert result is not None and result.items[0].status == "converted"
    sent = [r.headers.get("Cookie", "") for r in media_server.requests if r.path == "/clip.m4a"]
    assert sent and all(f"ytmp3_session={secret}" in header for header in sent), sent
    assert hashlib.sha256(original.read_bytes()).hexdigest() == digest
    assert really_read_only or shutil.which("chattr") is None
    # Nowhere a person or the page reads: logs, artifacts, the state, the sidecars.
    shown = [*run_logs(state), state.message or ""]
    for artifact in run_artifacts(state):
        shown += [str(artifact.data), artifact.description or ""]
    shown += [p.read_text() for p in settings.data_dir.glob("*.json")]
    assert shown and not [text for text in shown if secret in text]
    assert not list(Path("/tmp").glob("ytmp3-cookies-*"))  # the private copies are gone


def test_yt_dlp_warnings_reach_the_run_log(settings_env):
    @flow
    def warn_through_yt_dlp() -> None:
        with media._ydl(get_settings(), {}) as ydl:
            ydl.report_warning("a warning yt-dlp would print")

    state = warn_through_yt_dlp(return_state=True)
    assert any("yt-dlp: a warning yt-dlp would print" in m for m in run_logs(state))


# -- HTTP 429 --------------------------------------------------------------------------------


def test_a_429_storm_slows_every_run_down(
    media_server, settings_env, monkeypatch, fresh_rate_limit
):
    cooldown = 3.0
    set_env(
        monkeypatch,
        rate_limit_cooldown_seconds=str(cooldown),
        retries="1",
        retry_delay_seconds="0.2",
        concurrency="2",
    )
    feeds = [f"/storm-{n}.xml" for n in (1, 2)]
    items: list[str] = []
    for feed in feeds:
        media_server.add_feed(feed, 2)
        items += media_server.feed_item_paths(feed)
    for path in items:
        media_server.status(path, 429)

    states: dict[str, State] = {}

    def one(feed: str) -> None:
        states[feed] = convert(url=media_server.url(feed), quality="128", return_state=True)

    started = time.monotonic()
    threads = [threading.Thread(target=one, args=(feed,)) for feed in feeds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    took = time.monotonic() - started

    # Each item was tried exactly twice (its one retry): nothing multiplied the requests.
    hits = sorted(r.time for r in media_server.requests if r.path in items)
    assert len(hits) == len(items) * 2, media_server.request_counts()
    # After the first wave, the whole service sent one request per cooldown (or per half of
    # one, after a listing that got through had doubled the rate back once).
    first_wave = len(items)
    gated = hits[first_wave - 1 :]
    gaps = [later - earlier for earlier, later in itertools.pairwise(gated)]
    print(f"429 storm: {len(hits)} requests, gaps {[round(g, 1) for g in gaps]}, {took:.0f} s")
    assert gaps and min(gaps) >= cooldown / 2 * 0.9, gaps
    assert took >= len(gaps) * cooldown / 2
    for feed, state in states.items():
        assert state.is_failed(), (feed, state.message)
        assert "127.0.0.1 is limiting requests (HTTP 429) after 2 attempts" in state.message
        assert "ytmp3 slows every run down" in state.message
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(ratelimit.LIMIT_NAME)
    assert limit.limit == 1 and limit.slot_decay_per_second <= 1 / cooldown * 2

    # The site answers again: runs go through, and each step speeds the service back up.
    for path in items:
        media_server.clear_rules(path)
    state, _ = run(media_server.url(feeds[0]))
    assert state.is_completed(), state.message
    with get_client(sync_client=True) as client:
        recovered = client.read_global_concurrency_limit_by_name(ratelimit.LIMIT_NAME)
    assert recovered.slot_decay_per_second > limit.slot_decay_per_second


# -- listing ---------------------------------------------------------------------------------


def test_a_5000_entry_listing_stops_at_the_cap(media_server, settings_env, monkeypatch):
    set_env(monkeypatch, max_playlist_items="10")
    media_server.add_feed("/channel.xml", 5000, title="A Big Channel")
    told: list[dict[str, Any]] = []

    class Recording(sources.GuardedYoutubeDL):
        def __init__(self, settings: Settings, params: dict[str, Any], **kwargs: Any) -> None:
            told.append(dict(params))
            super().__init__(settings, params, **kwargs)

    monkeypatch.setattr(media.sources, "GuardedYoutubeDL", Recording)

    state, result = run(media_server.url("/channel.xml"))

    assert state.is_completed(), state.message
    assert result is not None and len(result.items) == 10
    listing = [params for params in told if params.get("extract_flat")]
    assert [params["playlistend"] for params in listing] == [10]
    paths = media_server.feed_item_paths("/channel.xml")
    counts = media_server.request_counts()
    assert all(counts.get(path, 0) > 0 for path in paths[:10])
    assert not [path for path in paths[10:] if counts.get(path)], "an entry past the cap"
    assert counts["/channel.xml"] == 1
    assert result.left_out == 4990
    assert "4990 more item(s) left out" in result.summary()


# -- ytdlp-check -----------------------------------------------------------------------------


def index_json(newest: str, dates: dict[str, str]) -> str:
    releases = {
        version: [{"filename": f"yt_dlp-{version}-py3-none-any.whl",
                   "upload_time_iso_8601": f"{day}T12:00:00.000000Z"}]
        for version, day in dates.items()
    }  # fmt: skip
    return json.dumps({"info": {"name": "yt-dlp", "version": newest}, "releases": releases})


def check_artifacts(state: State) -> list[Any]:
    return [a for a in run_artifacts(state) if a.key == ARTIFACT_KEY]


def test_ytdlp_check_warns_only_when_behind(media_server, settings_env, monkeypatch):
    installed = yt_dlp.version.__version__
    year, month, day = (int(part) for part in installed.split(".")[:3])
    base = f"/index-{uuid.uuid4().hex[:6]}"
    set_env(monkeypatch, package_index_url=media_server.url(base), ytdlp_max_age_days="7")
    newer = f"{year + 1}.{month}.{day}"

    media_server.add_page(
        f"{base}/yt-dlp/json",
        index_json(newer, {installed: f"{year}-{month:02d}-{day:02d}",
                           newer: f"{year + 1}-{month:02d}-{day:02d}"}),
        "application/json",
    )  # fmt: skip
    state = ytdlp_check(return_state=True)
    report = state.result()
    assert report.too_old and report.newest == newer and report.behind_days >= 365
    (artifact,) = check_artifacts(state)
    assert f"yt-dlp {installed} is {report.behind_days} days behind" in artifact.description
    assert "make update-ytdlp" in artifact.data
    assert any("YouTube downloads may fail" in m for m in run_logs(state))

    media_server.add_page(
        f"{base}/yt-dlp/json",
        index_json(installed, {installed: f"{year}-{month:02d}-{day:02d}"}),
        "application/json",
    )
    state = ytdlp_check(return_state=True)
    assert state.result().behind_days == 0
    assert check_artifacts(state) == []


def test_the_rate_limit_is_created_once_and_an_operators_tuning_kept(fresh_rate_limit):
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    ratelimit.ensure_limit()
    ratelimit.forget_limit()
    ratelimit.ensure_limit()  # exists: nothing changes
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(ratelimit.LIMIT_NAME)
        assert (limit.limit, limit.slot_decay_per_second) == (
            ratelimit.BURST,
            ratelimit.NORMAL_RATE,
        )
        client.update_global_concurrency_limit(
            ratelimit.LIMIT_NAME, GlobalConcurrencyLimitUpdate(limit=5)
        )
    ratelimit.forget_limit()
    ratelimit.ensure_limit()
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(ratelimit.LIMIT_NAME).limit == 5
