"""The ``convert`` flow on a real Prefect server, with real yt-dlp and ffmpeg.

Media comes from the local media server (tests/support/media_server.py); nothing needs the
internet. Each test gets a fresh data dir through ``settings_env``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from mutagen.id3 import ID3
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.settings import PREFECT_API_URL
from prefect.states import State

from flows.convert import ConvertResult, convert
from flows.library import Library
from flows.settings import Settings, get_settings

pytestmark = pytest.mark.flow

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def run_convert(url: str, quality: str = "192") -> tuple[State, ConvertResult | None]:
    state = convert(url=url, quality=quality, return_state=True)
    result = state.result(raise_on_failure=False) if state.is_completed() else None
    return state, result if isinstance(result, ConvertResult) else None


def ffprobe(path: Path) -> dict[str, Any]:
    output = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,bit_rate:format=duration,bit_rate",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return json.loads(output)


def library_names(settings: Settings) -> list[str]:
    root = settings.data_dir
    return (
        sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
        if root.exists()
        else []
    )


def task_runs(state: State, named: str = "", timeout: float = 15.0) -> list[Any]:
    """The run's task runs whose names start with ``named``, once one of them is final.

    The server records task runs from the events the run sent, so right after the run
    ends the last of them may still be on the way.
    """
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(
                    id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
                )
            )
            runs = [run for run in runs if run.name.startswith(named)]
            if any(run.state and run.state.is_final() for run in runs):
                return runs
            if time.monotonic() > deadline:
                return runs
            time.sleep(0.2)


def artifacts(state: State) -> list[Any]:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )


# -- every source format becomes a valid, tagged MP3 ------------------------------------


@pytest.mark.parametrize(
    ("path", "quality", "cover"),
    [
        ("clip.mp4", "192", False),
        ("clip.webm", "128", False),
        ("clip.m4a", "320", False),
        ("clip.mp3", "128", False),  # already MP3 at the asked rate: stream copy
        ("clip.mp3", "256", False),  # MP3 at another rate: re-encoded
        ("hls/clip.m3u8", "192", False),
        ("page.html", "192", True),  # <video poster=...>: the poster is the cover
    ],
)
def test_each_format_converts_to_a_tagged_mp3(media_server, settings_env, path, quality, cover):
    url = media_server.url(path)
    state, result = run_convert(url, quality)
    assert state.is_completed(), state.message
    assert result is not None and len(result.items) == 1
    item = result.items[0]
    assert item.status == "converted" and item.sidecar is not None
    mp3 = Path(item.file or "")
    probe = ffprobe(mp3)
    assert probe["streams"][0]["codec_name"] == "mp3"
    assert abs(float(probe["format"]["duration"]) - 6.0) < 1.0
    assert int(probe["streams"][0]["bit_rate"]) == int(quality) * 1000
    tags = ID3(mp3)
    assert tags["TIT2"].text[0]
    assert tags["TPE1"].text[0]
    assert tags["WOAS"].url == item.sidecar.source_url
    assert bool(tags.getall("APIC")) is cover
    sidecar = json.loads(mp3.with_suffix(".json").read_text())
    assert sidecar["bytes"] == mp3.stat().st_size
    assert sidecar["quality"] == quality
    assert sidecar["source_url"]
    assert library_names(settings_env) == sorted([mp3.name, mp3.with_suffix(".json").name])


def test_vbr_quality(media_server, settings_env):
    state, result = run_convert(media_server.url("clip.m4a"), "V0")
    assert state.is_completed(), state.message
    assert result is not None
    probe = ffprobe(Path(result.items[0].file or ""))
    assert probe["streams"][0]["codec_name"] == "mp3"


def test_progress_and_result_artifacts(media_server, settings_env):
    state, _ = run_convert(media_server.url("clip.mp4"))
    kinds = {artifact.type: artifact for artifact in artifacts(state)}
    assert kinds["progress"].data == 100.0
    assert "markdown" in kinds
    tables = {artifact.key: artifact for artifact in artifacts(state) if artifact.type == "table"}
    assert set(tables) == {"convert-items", "convert-result"}
    assert "1 of 1 converted" in tables["convert-result"].description


# -- retries: transient errors retry, permanent ones do not -----------------------------


def test_two_503s_then_success(media_server, settings_env):
    media_server.fail_first("clip.m4a", 2, status=503)
    state, result = run_convert(media_server.url("clip.m4a"))
    assert state.is_completed(), state.message
    assert result is not None and result.items[0].status == "converted"


def test_dropped_connections_then_success(media_server, settings_env):
    media_server.drop_first("clip.mp4", 2)
    state, _ = run_convert(media_server.url("clip.mp4"))
    assert state.is_completed(), state.message


# A final state says what happened and what to do, in one line a person reads: no retry
# talk, no Python class names, the host and the number of attempts where they help.
_CLASS_NAME = re.compile(r"\b[A-Z]\w*(?:Error|Exception)\b")


def assert_final_message(state: State, expected: str) -> None:
    assert state.is_failed()
    assert state.message == expected
    assert "retry" not in expected and not _CLASS_NAME.search(expected)


def test_404_fails_at_once_with_a_clear_message(media_server, settings_env):
    media_server.status("gone.mp4", 404)
    state, _ = run_convert(media_server.url("gone.mp4"))
    assert_final_message(state, "127.0.0.1 has no such page (HTTP 404)")
    assert media_server.request_count("gone.mp4") == 1  # no retry
    assert library_names(settings_env) == []


def test_a_dead_port_is_retried_then_fails_clearly(media_server, settings_env):
    state, _ = run_convert(media_server.closed_port_url("/clip.mp4"))
    attempts = settings_env.retries + 1
    assert_final_message(
        state,
        f"could not reach 127.0.0.1 (connection refused) after {attempts} attempts; "
        "check that the site is up and this machine's network",
    )
    listing = task_runs(state, "list")
    assert listing and listing[0].run_count == attempts


def test_a_name_that_does_not_resolve_says_to_check_dns(media_server, settings_env, monkeypatch):
    monkeypatch.setenv("YTMP3_ALLOWED_HOSTS", "nosuch.example")
    get_settings.cache_clear()
    real = socket.getaddrinfo

    def no_such_name(host, *args, **kwargs):
        if host == "nosuch.example":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    state, _ = run_convert("http://nosuch.example/clip.mp4")
    assert_final_message(
        state,
        f"could not reach nosuch.example (name lookup failed) after "
        f"{settings_env.retries + 1} attempts; check this machine's network or DNS",
    )


def test_a_server_error_that_lasts_gives_up_and_says_so(media_server, settings_env):
    media_server.fail_first("clip.m4a", 100, status=503)
    state, _ = run_convert(media_server.url("clip.m4a"))
    attempts = settings_env.retries + 1
    assert_final_message(
        state,
        f"127.0.0.1 had a server error (HTTP 503) after {attempts} attempts; try again later",
    )
    assert media_server.request_count("clip.m4a") == attempts


def test_a_served_run_that_gave_up_says_so_in_prefect(
    media_server, settings_env, served_deployments
):
    """The README's CLI example against a dead address: the run's state in the API."""
    from prefect.deployments import run_deployment

    url = media_server.closed_port_url("/clip.mp4")
    run = run_deployment("convert/on-demand", parameters={"url": url}, timeout=120)
    assert run.state is not None and run.state.is_failed()
    assert run.state.message == (
        f"could not reach 127.0.0.1 (connection refused) after {settings_env.retries + 1} "
        "attempts; check that the site is up and this machine's network"
    )


def test_a_page_without_media_is_permanent(media_server, settings_env):
    media_server.add_page("/empty.html", "<html><body><p>nothing here</p></body></html>")
    state, _ = run_convert(media_server.url("/empty.html"))
    assert state.is_failed()
    assert "no video or audio" in state.message
    assert media_server.request_count("/empty.html") == 1


def _limit_duration(monkeypatch, seconds: int) -> None:
    from flows.settings import get_settings

    monkeypatch.setenv("YTMP3_MAX_DURATION_SECONDS", str(seconds))
    get_settings.cache_clear()


def test_over_the_duration_limit_is_refused_before_download(
    media_server, settings_env, monkeypatch
):
    """A feed that states durations (itunes:duration) lets the limit act before download."""
    _limit_duration(monkeypatch, 3)
    item = media_server.url("/items/long/1.m4a")
    media_server.alias("/items/long/1.m4a", "clip.m4a")
    feed = (
        '<?xml version="1.0"?><rss version="2.0" '
        'xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd"><channel>'
        "<title>Long</title><link>http://127.0.0.1/</link><description>d</description>"
        f'<item><title>Long one</title><guid>long-1</guid><enclosure url="{item}" '
        'type="audio/mp4" length="1"/><itunes:duration>00:10:00</itunes:duration></item>'
        "</channel></rss>"
    )
    media_server.add_page("/long.xml", feed, content_type="application/rss+xml")
    state, _ = run_convert(media_server.url("/long.xml"))
    assert state.is_failed()
    assert "0:10:00 long; the limit is 0:00:03" in state.message
    assert media_server.request_count("/items/long/1.m4a") == 0


def test_media_without_metadata_is_checked_after_download(media_server, settings_env, monkeypatch):
    _limit_duration(monkeypatch, 3)
    state, _ = run_convert(media_server.url("clip.m4a"))
    assert state.is_failed()
    assert "limit" in state.message
    assert library_names(settings_env) == []


# -- policy: refused URLs fetch nothing -------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://127.0.0.1/clip.mp4",
        "javascript:alert(1)",
        "data:audio/mpeg;base64,AAAA",
        "http://user:pass@127.0.0.1/clip.mp4",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]/clip.mp4",
        "http://0x7f000001/clip.mp4",
        "http://2130706433/clip.mp4",
        "http://localhost/clip.mp4",
        "http://127.0.0.1.evil.example/clip.mp4",
        "http://127.0.0.1/" + "a" * 2100,
    ],
)
def test_refused_urls_fail_with_a_message_and_fetch_nothing(media_server, settings_env, url):
    url = url.replace("127.0.0.1/", f"127.0.0.1:{media_server.port}/", 1)
    state, _ = run_convert(url)
    assert state.is_failed()
    assert state.message
    assert media_server.request_count() == 0


def test_a_redirect_to_a_refused_host_is_stopped(media_server, settings_env):
    target = f"http://localhost:{media_server.port}/clip.mp4"
    media_server.redirect("/jump.mp4", target)
    state, _ = run_convert(media_server.url("/jump.mp4"))
    assert state.is_failed()
    assert "not allowed" in state.message
    assert media_server.request_count("/clip.mp4") == 0


# -- dedupe and races -------------------------------------------------------------------


def test_a_second_run_reuses_the_file_without_any_request(media_server, settings_env):
    url = media_server.url("clip.mp4")
    first_state, first = run_convert(url)
    assert first_state.is_completed()
    media_server.reset_counters()
    second_state, second = run_convert(url)
    assert second_state.is_completed()
    assert second is not None and first is not None
    assert second.items[0].status == "reused"
    assert second.items[0].key == first.items[0].key
    assert media_server.bytes_served == 0
    assert media_server.request_count() == 0


def test_another_quality_is_another_file(media_server, settings_env):
    url = media_server.url("clip.m4a")
    run_convert(url, "128")
    run_convert(url, "192")
    assert len([n for n in library_names(settings_env) if n.endswith(".mp3")]) == 2


def test_two_concurrent_runs_for_one_key_leave_one_file(media_server, settings_env):
    media_server.slow("clip.mp4", 150_000)
    url = media_server.url("clip.mp4")
    results: list[tuple[State, ConvertResult | None]] = []
    threads = [threading.Thread(target=lambda: results.append(run_convert(url))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == 2
    assert all(state.is_completed() for state, _ in results)
    keys = {result.items[0].key for _, result in results if result}
    assert len(keys) == 1
    assert sorted(r.items[0].status for _, r in results if r) == ["converted", "reused"]
    assert len([n for n in library_names(settings_env) if n.endswith(".mp3")]) == 1


# -- a run killed mid-download ----------------------------------------------------------


def test_a_run_killed_mid_download_leaves_nothing_and_the_next_succeeds(media_server, settings_env):
    media_server.slow("clip.webm", 20_000)
    url = media_server.url("clip.webm")
    env = dict(os.environ, PREFECT_API_URL=str(PREFECT_API_URL.value()))
    code = "import sys; from flows.convert import convert; convert(url=sys.argv[1])"
    child = subprocess.Popen(
        [sys.executable, "-c", code, url],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while media_server.bytes_served_for("clip.webm") < 20_000:
            assert child.poll() is None, "the run ended before it was killed"
            assert time.monotonic() < deadline, "the download never started"
            time.sleep(0.1)
        os.killpg(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=10)
    assert library_names(settings_env) == []
    assert Library.from_settings(settings_env).entries() == []

    media_server.slow("clip.webm", None)
    state, result = run_convert(url)
    assert state.is_completed(), state.message
    assert result is not None and result.items[0].status == "converted"
