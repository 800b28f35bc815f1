"""The local media server works with real yt-dlp, plain urllib and ffmpeg's outputs."""

from __future__ import annotations

import http.client
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yt_dlp

from flows.settings import Settings
from tests.support.media_server import (
    MULTI_PAGE_TITLE,
    PAGE_TITLE,
    STANDARD_FEED,
    MediaServer,
    closed_port_url,
    cut_file,
    generate_media,
)

QUIET = {"quiet": True, "no_warnings": True, "noprogress": True, "socket_timeout": 10}


def extract(url: str, **params: object) -> dict:
    with yt_dlp.YoutubeDL({**QUIET, "skip_download": True, **params}) as ydl:
        info = ydl.extract_info(url, download=False)
    assert info is not None
    return ydl.sanitize_info(info)


def fetch(url: str, headers: dict[str, str] | None = None, method: str = "GET"):
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, dict(response.headers), response.read()


def probe(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout
    return json.loads(out)


# --------------------------------------------------------------------------- media


def test_standard_set_has_the_promised_codecs(media_dir: Path):
    expected = {
        "clip.mp4": {"h264", "aac"},
        "clip.webm": {"vp8", "opus"},
        "clip.m4a": {"aac"},
        "clip.mp3": {"mp3"},
        "clip-192k.mp3": {"mp3"},
        "hls/clip.m3u8": {"h264", "aac"},
        "poster.jpg": {"mjpeg"},
    }
    for name, codecs in expected.items():
        info = probe(media_dir / name)
        assert {s["codec_name"] for s in info["streams"]} == codecs, name
        if name != "poster.jpg":
            assert 5.5 < float(info["format"]["duration"]) < 6.5, name
    assert probe(media_dir / "clip.mp3")["streams"][0]["bit_rate"] == "128000"
    assert probe(media_dir / "clip-192k.mp3")["streams"][0]["bit_rate"] == "192000"
    assert len(list((media_dir / "hls").glob("clip_*.ts"))) == 3
    assert 'poster="poster.jpg" src="clip.mp4"' in (media_dir / "page.html").read_text()


def test_generate_media_takes_a_duration(tmp_path: Path):
    clip = generate_media(tmp_path, "short", "mp3-64k", 2.0)
    assert clip == tmp_path / "short.mp3"
    info = probe(clip)
    assert 1.8 < float(info["format"]["duration"]) < 2.3
    assert info["streams"][0]["bit_rate"] == "64000"
    assert not list(tmp_path.glob(".*part"))
    with pytest.raises(ValueError, match="unknown media kind"):
        generate_media(tmp_path, "x", "flac", 1.0)


def test_layouts_for_damage_and_cut_copies(tmp_path: Path):
    """The index of ``mp4-index-at-end`` follows the media data; raw ADTS states no length."""
    end = generate_media(tmp_path, "end", "mp4-index-at-end", 2.0)
    data = end.read_bytes()
    assert data.index(b"moov") > data.index(b"mdat")
    front = generate_media(tmp_path, "front", "mp4", 2.0).read_bytes()
    assert front.index(b"moov") < front.index(b"mdat")
    adts = generate_media(tmp_path, "adts", "aac", 2.0)
    assert probe(adts)["format"]["format_name"] == "aac"
    assert (
        cut_file(adts, tmp_path / "cut" / "a.aac", 0.5).stat().st_size
        == len(adts.read_bytes()) // 2
    )
    assert cut_file(adts, tmp_path / "cut" / "b.aac", 100).read_bytes() == adts.read_bytes()[:100]


# --------------------------------------------------------------------------- yt-dlp


def test_direct_mp4_extracts(media_server: MediaServer):
    info = extract(media_server.url("clip.mp4"))
    assert info["ext"] == "mp4"
    assert info["url"] == media_server.url("/clip.mp4")
    assert media_server.request_count("clip.mp4") >= 1


@pytest.mark.parametrize(("name", "ext"), [("clip.webm", "webm"), ("clip.m4a", "m4a")])
def test_other_direct_files_extract(media_server: MediaServer, name: str, ext: str):
    assert extract(media_server.url(name))["ext"] == ext


def test_html_page_gives_a_video_with_thumbnail(media_server: MediaServer):
    info = extract(media_server.url("page.html"))
    assert info.get("_type", "video") == "video"
    assert info["title"].startswith(PAGE_TITLE)  # the html5 extractor adds " (1)"
    assert info["thumbnail"] == media_server.url("poster.jpg")
    assert info["url"] == media_server.url("clip.mp4")


def test_multi_media_page_is_a_playlist(media_server: MediaServer):
    info = extract(media_server.url("multi.html"), extract_flat="in_playlist")
    assert info["_type"] == "playlist"
    assert info["title"] == MULTI_PAGE_TITLE
    assert len(info["entries"]) == 3


def test_rss_feed_of_three_items_is_a_playlist_of_three(media_server: MediaServer):
    info = extract(media_server.url(STANDARD_FEED), extract_flat="in_playlist")
    assert info["_type"] == "playlist"
    entries = info["entries"]
    assert [e["title"] for e in entries] == ["Item 1", "Item 2", "Item 3"]
    assert all(e.get("id") is None for e in entries)
    assert all("#__youtubedl_smuggle=" in e["url"] for e in entries)
    assert [e["url"].split("#")[0] for e in entries] == [
        media_server.url(f"/items/feed/{i}.m4a") for i in (1, 2, 3)
    ]
    # the smuggled URL works when passed back, and each item is its own path
    item = extract(entries[1]["url"])
    assert item["ext"] == "m4a"
    assert media_server.request_count("/items/feed/2.m4a") >= 1
    assert media_server.request_count("/items/feed/1.m4a") == 0


def test_feed_built_at_runtime_can_grow(media_server: MediaServer):
    url = media_server.add_feed("/feeds/five.xml", 5, file="clip.mp3", title="Five")
    info = extract(url, extract_flat="in_playlist")
    assert info["title"] == "Five"
    assert len(info["entries"]) == 5
    item_url = media_server.append_feed_item("/feeds/five.xml", file="clip.mp3", title="Late")
    assert item_url == media_server.url("/items/feeds/five/6.mp3")
    info = extract(url, extract_flat="in_playlist")
    assert [e["title"] for e in info["entries"]][-1] == "Late"
    assert len(info["entries"]) == 6
    status, headers, body = fetch(item_url)
    assert status == 200
    assert headers["Content-Type"] == "audio/mpeg"
    assert body == (media_server.root / "clip.mp3").read_bytes()


def test_feed_items_can_be_shared_between_feeds(media_server: MediaServer):
    shared = ["/shared/a.m4a", "/shared/b.m4a"]
    media_server.add_feed("/one.xml", shared)
    media_server.add_feed("/two.xml", [shared[1], "/shared/c.m4a"])
    assert media_server.feed_item_paths("/two.xml") == ["/shared/b.m4a", "/shared/c.m4a"]
    assert fetch(media_server.url("/shared/c.m4a"))[0] == 200


def test_hls_downloads(media_server: MediaServer, tmp_path: Path):
    params = {**QUIET, "outtmpl": str(tmp_path / "%(id)s.%(ext)s")}
    with yt_dlp.YoutubeDL(params) as ydl:
        assert ydl.download([media_server.url("hls/clip.m3u8")]) == 0
    [out] = tmp_path.iterdir()
    assert 5.5 < float(probe(out)["format"]["duration"]) < 6.5
    for i in range(3):
        assert media_server.request_count(f"hls/clip_{i:03d}.ts", "GET") == 1
    segments = sum(p.stat().st_size for p in (media_server.root / "hls").glob("*.ts"))
    assert media_server.bytes_served == segments  # the manifest is not media


def test_ytdlp_downloads_a_direct_file(media_server: MediaServer, tmp_path: Path):
    params = {**QUIET, "outtmpl": str(tmp_path / "out.%(ext)s")}
    with yt_dlp.YoutubeDL(params) as ydl:
        assert ydl.download([media_server.url("clip.m4a")]) == 0
    assert (tmp_path / "out.m4a").read_bytes() == (media_server.root / "clip.m4a").read_bytes()


# --------------------------------------------------------------------------- faults


def test_fail_first_gives_503_then_succeeds(media_server: MediaServer):
    url = media_server.url("clip.mp4")
    media_server.fail_first("clip.mp4", 2)
    for _ in range(2):
        with pytest.raises(urllib.error.HTTPError) as failure:
            fetch(url)
        assert failure.value.code == 503
    assert fetch(url)[0] == 200
    media_server.fail_first("clip.mp4", 1, status=429)
    with pytest.raises(yt_dlp.utils.DownloadError, match="429"):
        extract(url)
    assert extract(url)["ext"] == "mp4"
    assert [r.status for r in media_server.requests][:3] == [503, 503, 200]


def test_status_redirect_and_dead_port(media_server: MediaServer):
    media_server.status("gone.mp4", 410)
    with pytest.raises(yt_dlp.utils.DownloadError, match="HTTP Error 410"):
        extract(media_server.url("gone.mp4"))
    with pytest.raises(yt_dlp.utils.DownloadError, match="HTTP Error 404"):
        extract(media_server.url("missing.mp4"))
    media_server.redirect("/moved.mp4", "/clip.mp4", 301)
    info = extract(media_server.url("moved.mp4"))
    assert info["url"] == media_server.url("clip.mp4")
    assert media_server.request_count("moved.mp4") >= 1
    with pytest.raises(yt_dlp.utils.DownloadError, match="Connection refused"):
        extract(media_server.closed_port_url())
    with pytest.raises(urllib.error.URLError, match="Connection refused"):
        fetch(closed_port_url("/y.mp3"))


def test_drop_first_closes_without_response(media_server: MediaServer):
    url = media_server.url("clip.mp3")
    media_server.drop_first("clip.mp3", 1)
    with pytest.raises(http.client.RemoteDisconnected):
        fetch(url)
    media_server.drop_first("clip.mp3", 1, reset=True)
    with pytest.raises(ConnectionResetError):
        fetch(url)
    assert fetch(url)[0] == 200
    assert [r.status for r in media_server.requests] == [None, None, 200]


def test_stop_sending_hangs_or_closes_mid_body(media_server: MediaServer):
    size = (media_server.root / "clip.mp3").stat().st_size
    media_server.stop_sending("clip.mp3", 1000)
    request = urllib.request.Request(media_server.url("clip.mp3"))
    with urllib.request.urlopen(request, timeout=1) as response:
        assert response.headers["Content-Length"] == str(size)  # the whole file's
        assert len(response.read(1000)) == 1000
        with pytest.raises(TimeoutError):
            response.read(1)  # nothing more, and the connection stays open
    assert media_server.bytes_served_for("clip.mp3") == 1000
    media_server.stop_sending("clip.mp3", 1000, close=True)
    with pytest.raises(http.client.IncompleteRead):
        fetch(media_server.url("clip.mp3"))


def test_delay_waits_before_answering(media_server: MediaServer):
    media_server.delay("page.html", 0.5)
    began = time.monotonic()
    assert fetch(media_server.url("page.html"))[0] == 200
    assert time.monotonic() - began >= 0.5


def test_slow_throttles_and_stop_is_prompt(media_dir: Path):
    server = MediaServer(media_dir).start()
    server.slow("clip.mp4", 20_000)  # ~150 kB file: ~7.5 s
    outcome: list[object] = []

    def download() -> None:
        try:
            outcome.append(fetch(server.url("clip.mp4"))[2])
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=download)
    thread.start()
    deadline = time.monotonic() + 5
    while server.bytes_served < 20_000 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.in_flight == 1
    assert server.bytes_served < 60_000  # throttled, not done
    began = time.monotonic()
    server.stop()
    assert time.monotonic() - began < 2
    thread.join(5)
    assert not thread.is_alive()
    assert isinstance(outcome[0], Exception)  # the body was cut short


# --------------------------------------------------------------------------- HTTP


def test_range_and_head(media_server: MediaServer):
    data = (media_server.root / "clip.mp4").read_bytes()
    url = media_server.url("clip.mp4")
    status, headers, body = fetch(url, {"Range": "bytes=100-199"})
    assert status == 206
    assert body == data[100:200]
    assert headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    assert fetch(url, {"Range": "bytes=-50"})[2] == data[-50:]
    assert fetch(url, {"Range": f"bytes={len(data) - 10}-"})[2] == data[-10:]
    with pytest.raises(urllib.error.HTTPError) as failure:
        fetch(url, {"Range": f"bytes={len(data)}-"})
    assert failure.value.code == 416
    status, headers, body = fetch(url, method="HEAD")
    assert (status, body) == (200, b"")
    assert headers["Content-Length"] == str(len(data))
    assert headers["Accept-Ranges"] == "bytes"


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("clip.mp4", "video/mp4"),
        ("clip.m4a", "audio/mp4"),
        ("clip.webm", "audio/webm"),
        ("clip.mp3", "audio/mpeg"),
        ("hls/clip.m3u8", "application/vnd.apple.mpegurl"),
        ("hls/clip_000.ts", "video/mp2t"),
        ("poster.jpg", "image/jpeg"),
        ("page.html", "text/html; charset=utf-8"),
        (STANDARD_FEED, "application/rss+xml"),
    ],
)
def test_content_types(media_server: MediaServer, path: str, content_type: str):
    assert fetch(media_server.url(path), method="HEAD")[1]["Content-Type"] == content_type


def test_counters_count(media_server: MediaServer):
    size = (media_server.root / "clip.m4a").stat().st_size
    fetch(media_server.url("clip.m4a"))
    fetch(media_server.url("clip.m4a"), {"Range": "bytes=0-99"})
    fetch(media_server.url("clip.m4a"), method="HEAD")
    fetch(media_server.url("page.html"))
    fetch(media_server.url(STANDARD_FEED))
    assert media_server.request_count("clip.m4a") == 3
    assert media_server.request_count("/clip.m4a", "HEAD") == 1
    assert media_server.request_count() == 5
    assert media_server.bytes_served == size + 100
    assert media_server.bytes_served_for("clip.m4a") == size + 100
    assert media_server.bytes_served_for("page.html") > 0
    assert media_server.requested_paths() == ["/clip.m4a"] * 3 + ["/page.html", STANDARD_FEED]
    assert media_server.request_counts() == {"/clip.m4a": 3, "/page.html": 1, STANDARD_FEED: 1}
    first, ranged, head = media_server.requests[:3]
    assert (first.status, first.bytes_sent, first.complete) == (200, size, True)
    assert (ranged.status, ranged.range, ranged.bytes_sent) == (206, "bytes=0-99", 100)
    assert (head.method, head.bytes_sent, head.complete) == ("HEAD", 0, True)
    media_server.reset_counters()
    assert media_server.request_count() == 0
    assert media_server.bytes_served == 0
    assert media_server.requests == []


def test_max_in_flight_of_two_parallel_slow_downloads(media_server: MediaServer):
    media_server.alias("/a.m4a", "clip.m4a")
    media_server.alias("/b.m4a", "clip.m4a")
    media_server.slow("/a.m4a", 150_000)  # ~100 kB: about 0.65 s each
    media_server.slow("/b.m4a", 150_000)
    bodies: list[bytes] = []
    threads = [
        threading.Thread(target=lambda p=p: bodies.append(fetch(media_server.url(p))[2]))
        for p in ("/a.m4a", "/b.m4a")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(bodies) == 2
    assert media_server.wait_idle(5)
    assert media_server.max_in_flight == 2
    fetch(media_server.url("clip.m4a"))
    assert media_server.wait_idle(5)
    media_server.reset_counters()
    assert media_server.max_in_flight == 0
    fetch(media_server.url("clip.m4a"))
    assert media_server.max_in_flight == 1


def test_reset_restores_the_baseline(media_server: MediaServer):
    media_server.add_feed("/temp.xml", 2)
    media_server.status(STANDARD_FEED, 500)
    media_server.reset()
    with pytest.raises(urllib.error.HTTPError):
        fetch(media_server.url("/temp.xml"))
    with pytest.raises(urllib.error.HTTPError):
        fetch(media_server.url("/items/temp/1.m4a"))
    assert fetch(media_server.url(STANDARD_FEED))[0] == 200
    assert media_server.request_count() == 3


def test_nothing_is_logged_to_stderr(media_server: MediaServer, capfd: pytest.CaptureFixture):
    fetch(media_server.url("clip.mp4"))
    media_server.drop_first("clip.mp4", 1)
    with pytest.raises(http.client.RemoteDisconnected):
        fetch(media_server.url("clip.mp4"))
    # a client that goes away mid-body
    connection = http.client.HTTPConnection("127.0.0.1", media_server.port, timeout=5)
    connection.request("GET", "/clip.mp4")
    connection.getresponse().read(10)
    connection.close()
    time.sleep(0.2)
    assert capfd.readouterr().err == ""


def test_path_traversal_is_refused(media_server: MediaServer):
    connection = http.client.HTTPConnection("127.0.0.1", media_server.port, timeout=5)
    connection.request("GET", "/../../etc/passwd")
    assert connection.getresponse().status == 404
    connection.close()


# --------------------------------------------------------------------------- settings


def test_settings_env_points_at_a_fresh_data_dir(settings_env: Settings, tmp_path: Path):
    assert settings_env.data_dir == tmp_path / "data"
    assert settings_env.allowed_hosts == ("127.0.0.1",)
    assert settings_env.allow_private_networks is True
    assert settings_env.retry_delay_seconds == 0.2
