"""A local HTTP server of ffmpeg-generated media, for tests that must not need the internet.

Two halves:

* **Generation.** :func:`generate_media` makes one short clip of a given kind with ffmpeg
  (``testsrc`` video + a 440 Hz sine); :func:`generate_media_set` makes the standard set
  that the ``media_dir`` fixture serves (see :data:`STANDARD_FILES`).
* **Serving.** :class:`MediaServer` is a ``ThreadingHTTPServer`` on 127.0.0.1 with Range and
  HEAD support, dynamic routes (aliases, pages, RSS feeds that grow at runtime), fault
  injection per path (fail, drop, fixed status, redirect, throttle, delay, stop sending
  mid-body) and thread-safe counters (requests per path, media bytes served, media
  downloads in flight). :func:`cut_file` makes the cut copy of a file that a server serves
  as if it were whole.

Paths given to the server's methods may be written with or without the leading slash, or as
a full URL of this server; they are matched against the request path without its query.

Import it as ``from tests.support.media_server import MediaServer, generate_media``.
"""

from __future__ import annotations

import contextlib
import copy
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from html import escape as html_escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Literal
from urllib.parse import unquote, urlsplit
from xml.sax.saxutils import escape as xml_escape
from xml.sax.saxutils import quoteattr

DEFAULT_SECONDS = 6.0
"""Length of the standard clips."""

HOST = "127.0.0.1"

MIME_TYPES: dict[str, str] = {
    ".mp4": "video/mp4",
    ".m4a": "audio/mp4",
    ".webm": "audio/webm",
    ".mp3": "audio/mpeg",
    ".aac": "audio/aac",
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".xml": "application/rss+xml",
    ".rss": "application/rss+xml",
    ".txt": "text/plain; charset=utf-8",
}
"""Content-Type by file extension (anything else is ``application/octet-stream``)."""

KINDS = ("mp4", "mp4-index-at-end", "webm", "m4a", "aac", "mp3", "mp3-<N>k", "hls", "jpg")
"""What :func:`generate_media` can make. ``mp3`` is CBR 128k; ``mp3-192k`` etc. pick the rate."""

STANDARD_FILES: dict[str, tuple[str, str]] = {
    # served path (relative to the media dir): (name, kind) for generate_media
    "clip.mp4": ("clip", "mp4"),
    "clip.webm": ("clip", "webm"),
    "clip.m4a": ("clip", "m4a"),
    "clip.mp3": ("clip", "mp3"),
    "clip-192k.mp3": ("clip-192k", "mp3-192k"),
    "hls/clip.m3u8": ("clip", "hls"),
    "poster.jpg": ("poster", "jpg"),
}
"""The generated files of the standard set; ``page.html`` and ``multi.html`` are added too."""

PAGE_TITLE = "Test Clip Page"
MULTI_PAGE_TITLE = "Test Multi Media Page"
STANDARD_FEED = "/feed.xml"
"""Feed of three ``clip.m4a`` aliases (``/items/feed/{1,2,3}.m4a``) that every server has."""

_CHUNK = 64 * 1024
_FFMPEG = "ffmpeg"
_VIDEO_SIZE = "160x120"
_VIDEO_RATE = 10
_POSTER_SIZE = "320x180"


# --------------------------------------------------------------------------- generation


def _lavfi_inputs(seconds: float, *, video: bool) -> list[str]:
    args = []
    if video:
        args += ["-f", "lavfi", "-i", f"testsrc=size={_VIDEO_SIZE}:rate={_VIDEO_RATE}"]
    args += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
    return args


def _mp3_bitrate(kind: str) -> int | None:
    if kind == "mp3":
        return 128
    if kind.startswith("mp3-") and kind.endswith("k") and kind[4:-1].isdigit():
        return int(kind[4:-1])
    return None


def generate_media(
    dir: Path,
    name: str,
    kind: str,
    seconds: float = DEFAULT_SECONDS,
    *,
    timeout: float | None = None,
) -> Path:
    """Make ``dir/name.<ext>`` of the given kind with ffmpeg and return its path.

    Kinds: ``mp4`` (h264 + aac, index at the front), ``mp4-index-at-end`` (the same with its
    ``moov`` index after the media data, as a plain ffmpeg run writes it), ``webm`` (vp8 +
    opus), ``m4a`` (aac only), ``aac`` (raw ADTS frames: no header states a length),
    ``mp3`` (CBR 128k), ``mp3-<N>k`` (CBR N kbit/s, e.g. ``mp3-192k``), ``hls``
    (``name.m3u8`` + ``name_NNN.ts``
    segments of 2 s; the playlist path is returned) and ``jpg`` (a 320x180 still; ``seconds``
    is ignored). Clips are 160x120 at 10 fps with a 440 Hz stereo tone, encoded for speed.
    The file is written under a temporary name and renamed, so a reader never sees half of it.
    """
    dir.mkdir(parents=True, exist_ok=True)
    if seconds <= 0:
        raise ValueError("seconds must be positive")
    if timeout is None:
        timeout = 60.0 + seconds
    duration = ["-t", f"{seconds:.3f}"]
    audio_aac = ["-c:a", "aac", "-b:a", "128k", "-ac", "2"]
    gop = str(2 * _VIDEO_RATE)  # a keyframe every 2 s, so HLS segments cut cleanly
    h264 = ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency"]
    h264 += ["-pix_fmt", "yuv420p", "-g", gop, "-keyint_min", gop, "-sc_threshold", "0"]
    video_in = _lavfi_inputs(seconds, video=True)
    audio_in = _lavfi_inputs(seconds, video=False)
    bitrate = _mp3_bitrate(kind)
    if kind in ("mp4", "mp4-index-at-end"):
        ext = "mp4"
        index = ["-movflags", "+faststart"] if kind == "mp4" else []
        args = [*video_in, *duration, *h264, *audio_aac, *index, "-f", "mp4"]
    elif kind == "webm":
        ext = "webm"
        vp8 = ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "150k"]
        opus = ["-c:a", "libopus", "-b:a", "64k", "-ac", "2", "-f", "webm"]
        args = [*video_in, *duration, *vp8, *opus]
    elif kind == "m4a":
        ext = "m4a"
        args = [*audio_in, *duration, *audio_aac, "-movflags", "+faststart", "-f", "ipod"]
    elif kind == "aac":
        ext = "aac"
        args = [*audio_in, *duration, *audio_aac, "-f", "adts"]
    elif bitrate is not None:
        ext = "mp3"
        args = [*audio_in, *duration, "-c:a", "libmp3lame", "-b:a", f"{bitrate}k"]
        args += ["-ac", "2", "-f", "mp3"]
    elif kind == "jpg":
        ext = "jpg"
        args = ["-f", "lavfi", "-i", f"testsrc=size={_POSTER_SIZE}:rate=1"]
        args += ["-frames:v", "1", "-q:v", "4", "-f", "image2"]
    elif kind == "hls":
        return _generate_hls(dir, name, [*video_in, *duration, *h264, *audio_aac], timeout)
    else:
        raise ValueError(f"unknown media kind {kind!r}; expected one of {KINDS}")
    target = dir / f"{name}.{ext}"
    partial = dir / f".{name}.{ext}.part"
    _ffmpeg([*args, str(partial)], timeout)
    partial.replace(target)
    return target


def _generate_hls(dir: Path, name: str, encode: list[str], timeout: float) -> Path:
    playlist = dir / f"{name}.m3u8"
    partial = dir / f".{name}.m3u8.part"
    hls = "-f hls -hls_time 2 -hls_playlist_type vod -hls_list_size 0 -hls_segment_type mpegts"
    segments = ["-hls_segment_filename", str(dir / f"{name}_%03d.ts")]
    _ffmpeg([*encode, *hls.split(), *segments, str(partial)], timeout)
    partial.replace(playlist)
    return playlist


def _ffmpeg(args: list[str], timeout: float) -> None:
    subprocess.run(
        [_FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
        check=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )


def cut_file(source: Path, target: Path, keep: float | int) -> Path:
    """Write the first part of ``source`` to ``target``: a fraction (``0.3``) or a byte count.

    Served, the cut file is complete as far as HTTP knows (its Content-Length is its size),
    like a file that was cut before it reached the server.
    """
    data = source.read_bytes()
    size = int(len(data) * keep) if isinstance(keep, float) else keep
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data[:size])
    return target


def video_page_html(
    src: str = "clip.mp4", poster: str = "poster.jpg", title: str = PAGE_TITLE
) -> str:
    """An HTML page with one ``<video poster=... src=...>`` (yt-dlp's html5 extractor)."""
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html_escape(title)}</title></head>\n<body><h1>{html_escape(title)}</h1>\n"
        f'<video controls poster="{html_escape(poster)}" src="{html_escape(src)}"></video>\n'
        "</body></html>\n"
    )


def media_page_html(sources: Sequence[str], title: str = MULTI_PAGE_TITLE) -> str:
    """An HTML page with one ``<audio>`` or ``<video>`` tag per source (a playlist for yt-dlp)."""
    tags = []
    for src in sources:
        tag = "video" if src.rsplit(".", 1)[-1] in ("mp4", "webm", "m3u8") else "audio"
        tags.append(f'<{tag} controls src="{html_escape(src)}"></{tag}>')
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html_escape(title)}</title></head>\n<body>\n"
        + "\n".join(tags)
        + "\n</body></html>\n"
    )


MULTI_PAGE_SOURCES = ("clip.mp4", "clip.m4a", "clip.mp3")


def generate_media_set(
    dir: Path, seconds: float = DEFAULT_SECONDS, *, workers: int = 4
) -> dict[str, Path]:
    """Generate :data:`STANDARD_FILES` plus ``page.html`` and ``multi.html`` into ``dir``.

    Returns served path (relative) -> file. The ffmpeg runs go in parallel.
    """
    dir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {
            rel: pool.submit(generate_media, dir / Path(rel).parent, name, kind, seconds)
            for rel, (name, kind) in STANDARD_FILES.items()
        }
        files = {rel: future.result() for rel, future in futures.items()}
    page = dir / "page.html"
    page.write_text(video_page_html(), encoding="utf-8")
    multi = dir / "multi.html"
    multi.write_text(media_page_html(MULTI_PAGE_SOURCES), encoding="utf-8")
    files["page.html"] = page
    files["multi.html"] = multi
    return files


# --------------------------------------------------------------------------- server state


def content_type_for(path: str) -> str:
    """Content-Type the server sends for a path, by its extension."""
    suffix = Path(path).suffix.lower()
    return MIME_TYPES.get(suffix, "application/octet-stream")


def _is_media_type(content_type: str) -> bool:
    return content_type.startswith(("audio/", "video/"))


@dataclass
class RequestRecord:
    """One request the server received.

    ``status`` is None when the connection was dropped. ``bytes_sent`` is the body handed to
    the kernel so far; ``complete`` turns True once the whole body was sent. (A client that
    reads a little and closes, as yt-dlp's generic extractor does to sniff a direct media
    URL, may still have been sent a few MB: loopback buffers absorb them.)
    """

    method: str
    path: str
    range: str | None
    time: float
    status: int | None = None
    bytes_sent: int = 0
    complete: bool = False
    finished: float | None = None
    """When the last byte of a complete response was handed to the kernel (time.time())."""
    epoch: int = field(default=0, repr=False)
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    """The request's headers (names as sent; a repeated header keeps its last value)."""


@dataclass
class _Rules:
    fail_remaining: int = 0
    fail_status: int = 503
    drop_remaining: int = 0
    drop_reset: bool = False
    status: int | None = None
    redirect: tuple[str, int] | None = None
    bytes_per_second: float | None = None
    delay: float = 0.0
    stop_after: tuple[int, bool] | None = None


@dataclass
class _FeedItem:
    path: str
    title: str
    guid: str


@dataclass
class _Feed:
    title: str
    items: list[_FeedItem] = field(default_factory=list)


@dataclass
class _Routes:
    aliases: dict[str, Path] = field(default_factory=dict)
    pages: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    feeds: dict[str, _Feed] = field(default_factory=dict)
    content_types: dict[str, str] = field(default_factory=dict)


@dataclass
class _Decision:
    """What to do with one request, decided atomically when it arrives."""

    record: RequestRecord
    delay: float = 0.0
    drop: bool = False
    drop_reset: bool = False
    status: int | None = None
    redirect: tuple[str, int] | None = None
    bytes_per_second: float | None = None
    stop_after: tuple[int, bool] | None = None


class _Abort(Exception):
    """The server is stopping (or the response must end without more bytes)."""


def _normalize(path: str) -> str:
    if path.startswith(("http://", "https://")):
        path = urlsplit(path).path
    path = path.split("?", 1)[0].split("#", 1)[0]
    return path if path.startswith("/") else "/" + path


# --------------------------------------------------------------------------- the server


class MediaServer:
    """Serves ``root`` (and dynamic routes) on ``http://127.0.0.1:<random port>``.

    Use as a context manager or call :meth:`start` / :meth:`stop`. All methods are
    thread-safe. :meth:`reset` restores the routes present at :meth:`set_baseline` (called at
    the end of ``__init__``) and clears fault rules, counters and the log.
    """

    def __init__(self, root: Path, *, standard_routes: bool = True) -> None:
        self.root = Path(root).resolve()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._routes = _Routes()
        self._baseline = _Routes()
        self._rules: dict[str, _Rules] = {}
        self._counts: Counter[tuple[str, str]] = Counter()
        self._bytes_by_path: Counter[str] = Counter()
        self._media_bytes = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._log: list[RequestRecord] = []
        self._epoch = 0  # bumped by reset_counters: older responses stop counting
        self._connections: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._dead_socket: socket.socket | None = None
        if standard_routes and (self.root / "clip.m4a").is_file():
            self.add_feed(STANDARD_FEED, 3, file="clip.m4a", title="Test Feed")
        self.set_baseline()

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> MediaServer:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _HTTPServer((HOST, 0), _Handler)
        httpd.media = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"media-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving; throttled or delayed responses in progress are cut off promptly."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        with self._lock:
            for conn in list(self._connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            deadline = time.monotonic() + timeout
            while self._connections and (left := deadline - time.monotonic()) > 0:
                self._idle.wait(left)
        httpd.server_close()
        if thread is not None:
            thread.join(timeout)
        if self._dead_socket is not None:
            self._dead_socket.close()
            self._dead_socket = None
        self._httpd = None
        self._thread = None

    def __enter__(self) -> MediaServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("MediaServer is not started")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (no trailing slash)."""
        return f"http://{HOST}:{self.port}"

    def url(self, path: str) -> str:
        """Absolute URL of a path on this server, e.g. ``url("clip.mp4")``."""
        return self.base_url + _normalize(path)

    def closed_port_url(self, path: str = "/x.mp4") -> str:
        """A URL on 127.0.0.1 where nothing listens (connections are refused).

        The port stays reserved (bound, never listening) while the server lives, so no
        other process can take it in the meantime.
        """
        with self._lock:
            if self._dead_socket is None:
                self._dead_socket = _reserve_port()
            port = self._dead_socket.getsockname()[1]
        return f"http://{HOST}:{port}{_normalize(path)}"

    # ----------------------------------------------------------------- routes

    def alias(self, path: str, file: str | Path) -> str:
        """Serve ``file`` (relative to the media dir, or absolute) under ``path``; give its URL."""
        target = Path(file)
        if not target.is_absolute():
            target = self.root / target
        if not target.is_file():
            raise FileNotFoundError(target)
        with self._lock:
            self._routes.aliases[_normalize(path)] = target
        return self._url_if_started(path)

    def add_page(
        self, path: str, body: str | bytes, content_type: str = "text/html; charset=utf-8"
    ) -> str:
        """Serve fixed content at ``path`` (e.g. a page with no media, or broken links)."""
        data = body.encode("utf-8") if isinstance(body, str) else body
        with self._lock:
            self._routes.pages[_normalize(path)] = (data, content_type)
        return self._url_if_started(path)

    def set_content_type(self, path: str, content_type: str) -> None:
        """Override the Content-Type sent for one path."""
        with self._lock:
            self._routes.content_types[_normalize(path)] = content_type

    def add_feed(
        self,
        path: str,
        items: int | Sequence[str] = 3,
        *,
        file: str | Path = "clip.m4a",
        title: str = "Test Feed",
        item_prefix: str | None = None,
    ) -> str:
        """Serve an RSS 2.0 feed at ``path`` (a playlist for yt-dlp); returns its URL.

        ``items`` is a count or a list of item paths. With a count, items are
        ``{item_prefix}/{i}.<ext of file>`` for i = 1..n, with ``item_prefix`` defaulting to
        ``/items/<feed path without extension>`` (``/feed.xml`` -> ``/items/feed/1.m4a``).
        Item paths that are not already served become aliases of ``file``, so every item is a
        distinct URL with its own request counter. Each item has a title (``Item i``), a
        ``<guid>`` and an ``<enclosure>``; the XML is rebuilt on every request.
        """
        feed_path = _normalize(path)
        if isinstance(items, int):
            prefix = _normalize(item_prefix or "/items" + feed_path.rsplit(".", 1)[0])
            ext = Path(file).suffix
            item_paths = [f"{prefix}/{i}{ext}" for i in range(1, items + 1)]
        else:
            item_paths = [_normalize(p) for p in items]
        with self._lock:
            self._routes.feeds[feed_path] = _Feed(title=title)
        for item_path in item_paths:
            self.append_feed_item(feed_path, item_path, file=file)
        return self._url_if_started(feed_path)

    def append_feed_item(
        self,
        feed: str,
        item_path: str | None = None,
        *,
        file: str | Path = "clip.m4a",
        title: str | None = None,
        guid: str | None = None,
    ) -> str:
        """Add an item at the end of an existing feed; returns the item's URL (or path).

        Without ``item_path`` the next ``.../{n+1}<ext>`` beside the feed's last item is used.
        """
        feed_path = _normalize(feed)
        with self._lock:
            the_feed = self._routes.feeds[feed_path]
            index = len(the_feed.items) + 1
            if item_path is None:
                if the_feed.items:
                    prefix = the_feed.items[-1].path.rsplit("/", 1)[0]
                else:
                    prefix = "/items" + feed_path.rsplit(".", 1)[0]
                item_path = f"{prefix}/{index}{Path(file).suffix}"
            item = _FeedItem(
                path=_normalize(item_path),
                title=title or f"Item {index}",
                guid=guid or f"{feed_path.strip('/').replace('/', '-')}-{item_path.strip('/')}",
            )
            the_feed.items.append(item)
            served = item.path in self._routes.aliases or item.path in self._routes.pages
        if not served and not self._static_file(item.path):
            self.alias(item.path, file)
        return self._url_if_started(item.path)

    def feed_item_paths(self, feed: str) -> list[str]:
        """The item paths of a feed, in order."""
        with self._lock:
            return [item.path for item in self._routes.feeds[_normalize(feed)].items]

    def set_baseline(self) -> None:
        """Remember the current routes as what :meth:`reset` restores."""
        with self._lock:
            self._baseline = copy.deepcopy(self._routes)

    # ----------------------------------------------------------------- fault injection

    def _rule(self, path: str) -> _Rules:
        return self._rules.setdefault(_normalize(path), _Rules())

    def fail_first(self, path: str, n: int, status: int = 503) -> None:
        """The next ``n`` requests (GET or HEAD) of ``path`` get ``status`` with a short body."""
        with self._lock:
            rule = self._rule(path)
            rule.fail_remaining, rule.fail_status = n, status

    def drop_first(self, path: str, n: int, *, reset: bool = False) -> None:
        """The next ``n`` requests of ``path`` get no response: the connection is closed.

        By default the socket is shut down (client sees "Remote end closed connection without
        response"); ``reset=True`` aborts it with a TCP RST ("Connection reset by peer").
        """
        with self._lock:
            rule = self._rule(path)
            rule.drop_remaining, rule.drop_reset = n, reset

    def status(self, path: str, code: int | None) -> None:
        """Always answer ``path`` with ``code`` (e.g. 404, 410, 429); None removes the rule."""
        with self._lock:
            self._rule(path).status = code

    def redirect(self, path: str, location: str, code: int = 302) -> None:
        """Answer ``path`` with a redirect; a location starting with ``/`` is on this server."""
        with self._lock:
            self._rule(path).redirect = (location, code)

    def slow(self, path: str, bytes_per_second: float | None) -> None:
        """Throttle the body of ``path`` (None removes the throttle)."""
        if bytes_per_second is not None and bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be positive")
        with self._lock:
            self._rule(path).bytes_per_second = bytes_per_second

    def stop_sending(self, path: str, after_bytes: int, *, close: bool = False) -> None:
        """Send the headers of ``path`` (with the whole file's Content-Length) and only
        ``after_bytes`` of its body, then nothing more.

        By default the connection then stays open, silent, until the client hangs up or the
        server stops (a server that hangs mid-file); ``close=True`` closes it at once (the
        client sees a body shorter than its Content-Length).
        """
        if after_bytes < 0:
            raise ValueError("after_bytes must not be negative")
        with self._lock:
            self._rule(path).stop_after = (after_bytes, close)

    def delay(self, path: str, seconds: float) -> None:
        """Wait ``seconds`` before answering ``path`` (before any other rule applies)."""
        with self._lock:
            self._rule(path).delay = seconds

    def clear_rules(self, path: str | None = None) -> None:
        """Remove the fault rules of one path, or of all paths."""
        with self._lock:
            if path is None:
                self._rules.clear()
            else:
                self._rules.pop(_normalize(path), None)

    # ----------------------------------------------------------------- observability

    def request_count(self, path: str | None = None, method: str | None = None) -> int:
        """Requests received for ``path`` (all paths when None), optionally of one method."""
        want = None if path is None else _normalize(path)
        with self._lock:
            return sum(
                n
                for (m, p), n in self._counts.items()
                if (want is None or p == want) and (method is None or m == method.upper())
            )

    def request_counts(self) -> dict[str, int]:
        """Requests per path (all methods)."""
        totals: Counter[str] = Counter()
        with self._lock:
            for (_, p), n in self._counts.items():
                totals[p] += n
        return dict(totals)

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the request log, oldest first."""
        with self._lock:
            return list(self._log)

    def requested_paths(self) -> list[str]:
        """Paths requested so far, in order (with repeats)."""
        with self._lock:
            return [record.path for record in self._log]

    @property
    def bytes_served(self) -> int:
        """Body bytes sent for media (audio/*, video/*), summed over all paths."""
        with self._lock:
            return self._media_bytes

    def bytes_served_for(self, path: str) -> int:
        """Body bytes sent for one path (any content type)."""
        with self._lock:
            return self._bytes_by_path[_normalize(path)]

    @property
    def in_flight(self) -> int:
        """Media GETs whose body is being sent right now."""
        with self._lock:
            return self._in_flight

    def max_complete_downloads_at_once(self) -> int:
        """How many whole media downloads (sent to the last byte) overlapped at most.

        Unlike :attr:`max_in_flight`, this leaves out responses the client abandoned,
        such as the generic extractor's sniff of a direct media URL, which a throttled
        response only notices some time after the client has hung up.
        """
        with self._lock:
            spans = [
                (record.time, record.finished)
                for record in self._log
                if record.complete
                and record.finished is not None
                and record.bytes_sent
                and record.method == "GET"
                and _is_media_type(content_type_for(record.path))
            ]
        events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
        peak = current = 0
        for _, delta in events:
            current += delta
            peak = max(peak, current)
        return peak

    @property
    def max_in_flight(self) -> int:
        """Most media GETs in flight at once since the last reset."""
        with self._lock:
            return self._max_in_flight

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no media GET is in flight; False if that did not happen in time.

        A client can read the last byte a moment before the server's thread notices it is
        done, so check ``in_flight`` after this, not right after a download returns.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._in_flight and (left := deadline - time.monotonic()) > 0:
                self._idle.wait(left)
            return self._in_flight == 0

    def reset_counters(self) -> None:
        """Clear request counts, byte counters, the log and the in-flight maximum.

        Bytes still being sent for requests that arrived before this call are not counted.
        """
        with self._lock:
            self._epoch += 1
            self._counts.clear()
            self._bytes_by_path.clear()
            self._media_bytes = 0
            self._max_in_flight = self._in_flight
            self._log.clear()

    def reset(self, drain_timeout: float = 2.0) -> None:
        """Back to the baseline: routes restored, fault rules and counters cleared.

        First waits (up to ``drain_timeout``) for media downloads in flight to end, so that
        stragglers of one test do not show up in the next one's ``max_in_flight``.
        """
        with self._lock:
            self._routes = copy.deepcopy(self._baseline)
            self._rules.clear()
        self.wait_idle(drain_timeout)
        self.reset_counters()

    # ----------------------------------------------------------------- internals

    def _url_if_started(self, path: str) -> str:
        return self.url(path) if self._httpd is not None else _normalize(path)

    def _static_file(self, path: str) -> Path | None:
        candidate = (self.root / unquote(path).lstrip("/")).resolve()
        if candidate != self.root and self.root not in candidate.parents:
            return None
        return candidate if candidate.is_file() else None

    def _begin(
        self,
        method: str,
        path: str,
        range_header: str | None,
        headers: dict[str, str] | None = None,
    ) -> _Decision:
        with self._lock:
            record = RequestRecord(
                method=method,
                path=path,
                range=range_header,
                time=time.time(),
                epoch=self._epoch,
                headers=dict(headers or {}),
            )
            self._counts[(method, path)] += 1
            self._log.append(record)
            decision = _Decision(record=record)
            rule = self._rules.get(path)
            if rule is None:
                return decision
            decision.delay = rule.delay
            decision.bytes_per_second = rule.bytes_per_second
            decision.stop_after = rule.stop_after
            if rule.drop_remaining > 0:
                rule.drop_remaining -= 1
                decision.drop, decision.drop_reset = True, rule.drop_reset
            elif rule.fail_remaining > 0:
                rule.fail_remaining -= 1
                decision.status = rule.fail_status
            elif rule.status is not None:
                decision.status = rule.status
            elif rule.redirect is not None:
                decision.redirect = rule.redirect
            return decision

    def _resolve(self, path: str) -> tuple[str, bytes | Path, str] | None:
        """(kind, content, content type) for a path, or None when nothing is there."""
        with self._lock:
            override = self._routes.content_types.get(path)
            feed = self._routes.feeds.get(path)
            if feed is not None:
                body = self._feed_xml(feed).encode("utf-8")
                return "bytes", body, override or "application/rss+xml"
            page = self._routes.pages.get(path)
            if page is not None:
                return "bytes", page[0], override or page[1]
            target = self._routes.aliases.get(path)
        if target is None:
            target = self._static_file(path)
        if target is None or not target.is_file():
            return None
        return "file", target, override or content_type_for(target.name)

    def _feed_xml(self, feed: _Feed) -> str:
        base = self.base_url
        lines = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            '<rss version="2.0">',
            "<channel>",
            f"<title>{xml_escape(feed.title)}</title>",
            f"<link>{xml_escape(base)}/</link>",
            f"<description>{xml_escape(feed.title)} (generated)</description>",
        ]
        for item in feed.items:
            target = self._routes.aliases.get(item.path) or self._static_file(item.path)
            length = target.stat().st_size if target is not None and target.is_file() else 0
            url = base + item.path
            kind = self._routes.content_types.get(item.path) or content_type_for(item.path)
            lines += [
                "<item>",
                f"<title>{xml_escape(item.title)}</title>",
                f'<guid isPermaLink="false">{xml_escape(item.guid)}</guid>',
                f'<enclosure url={quoteattr(url)} length="{length}" type={quoteattr(kind)}/>',
                "</item>",
            ]
        lines += ["</channel>", "</rss>", ""]
        return "\n".join(lines)

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)
                self._idle.notify_all()

    def _account(self, record: RequestRecord, n: int, media: bool) -> None:
        with self._lock:
            record.bytes_sent += n
            if record.epoch != self._epoch:
                return
            self._bytes_by_path[record.path] += n
            if media:
                self._media_bytes += n

    def _flight(self, delta: int) -> None:
        with self._lock:
            self._in_flight += delta
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            self._idle.notify_all()


def _reserve_port() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((HOST, 0))  # bound but never listening: connecting is refused
    return sock


_dead_sockets: list[socket.socket] = []


def closed_port_url(path: str = "/x.mp4") -> str:
    """``http://127.0.0.1:<port>/x.mp4`` where nothing listens (the port stays reserved)."""
    sock = _reserve_port()
    _dead_sockets.append(sock)
    return f"http://{HOST}:{sock.getsockname()[1]}{_normalize(path)}"


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # parallel downloads and HLS fragments must not overflow the backlog
    media: MediaServer

    def handle_error(self, request: object, client_address: object) -> None:
        exc = sys.exc_info()[1]
        if (
            isinstance(exc, ConnectionError | TimeoutError | _Abort)
            or self.media._stopping.is_set()
        ):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


def _parse_range(header: str | None, size: int) -> tuple[int, int] | Literal[False] | None:
    """(first, last) byte of one satisfiable range; None: serve it all; False: unsatisfiable."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    spec = header[len("bytes=") :].strip()
    first, sep, last = spec.partition("-")
    if not sep:
        return None
    try:
        if first == "":
            suffix = int(last)
            if suffix <= 0:
                return False
            return max(0, size - suffix), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        return False
    return start, min(end, size - 1)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.0"
    server_version = "ytmp3-test-media/1"
    timeout = 60  # a client that stops reading cannot pin a thread forever

    def log_message(self, format: str, *args: object) -> None:
        pass

    def handle(self) -> None:
        media = self.server.media
        media._track(self.connection, True)
        try:
            super().handle()
        except (ConnectionError, TimeoutError, _Abort):
            self.close_connection = True
        except (OSError, ValueError):
            if not media._stopping.is_set():
                raise
        finally:
            media._track(self.connection, False)

    def finish(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            super().finish()

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    # ----------------------------------------------------------------- responses

    def _serve(self, head: bool) -> None:
        media = self.server.media
        path = unquote(urlsplit(self.path).path) or "/"
        decision = media._begin(self.command, path, self.headers.get("Range"), dict(self.headers))
        record = decision.record
        if decision.delay > 0 and media._stopping.wait(decision.delay):
            raise _Abort
        if decision.drop:
            self._drop(decision.drop_reset)
            return
        if decision.status is not None:
            self._simple(record, decision.status, head)
            return
        if decision.redirect is not None:
            location, code = decision.redirect
            if location.startswith("/"):
                location = media.base_url + location
            self._simple(record, code, head, {"Location": location})
            return
        resolved = media._resolve(path)
        if resolved is None:
            self._simple(record, 404, head)
            return
        kind, content, content_type = resolved
        if kind == "bytes":
            assert isinstance(content, bytes)
            self._send_bytes(record, content, content_type, head)
        else:
            assert isinstance(content, Path)
            self._send_file(record, content, content_type, head, decision)

    def _drop(self, reset: bool) -> None:
        self.close_connection = True
        conn = self.connection
        if reset:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()
            self.wfile.close()
            conn.close()
        else:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        raise _Abort

    def _simple(
        self, record: RequestRecord, code: int, head: bool, headers: dict[str, str] | None = None
    ) -> None:
        body = f"{code} {self.responses.get(code, ('',))[0]}\n".encode()
        record.status = code
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)
            self.server.media._account(record, len(body), media=False)
        record.complete = True

    def _send_bytes(
        self, record: RequestRecord, body: bytes, content_type: str, head: bool
    ) -> None:
        record.status = 200
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)
            self.server.media._account(record, len(body), _is_media_type(content_type))
        record.complete = True

    def _send_file(
        self,
        record: RequestRecord,
        file: Path,
        content_type: str,
        head: bool,
        decision: _Decision,
    ) -> None:
        size = file.stat().st_size
        wanted = _parse_range(self.headers.get("Range"), size)
        if wanted is False:
            record.status = 416
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if wanted is None:
            start, end, code = 0, size - 1, 200
        else:
            start, end = wanted
            code = 206
        length = max(0, end - start + 1)
        record.status = code
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Last-Modified", self.date_time_string(int(file.stat().st_mtime)))
        if code == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if head or length == 0:
            record.complete = True
            return
        media = self.server.media
        is_media = _is_media_type(content_type)
        if is_media:
            media._flight(+1)
        try:
            stop = decision.stop_after
            sending = length if stop is None else min(length, stop[0])
            for chunk in self._chunks(file, start, sending, decision.bytes_per_second):
                self.wfile.write(chunk)
                media._account(record, len(chunk), is_media)
            if sending < length:
                self._stop(close=stop is not None and stop[1])
            record.complete = True
            record.finished = time.time()
        finally:
            if is_media:
                media._flight(-1)

    def _stop(self, close: bool) -> None:
        """End a response mid-body: close the connection, or hold it silent until the
        client hangs up or the server stops."""
        self.wfile.flush()
        stopping = self.server.media._stopping
        while not close and not stopping.is_set():
            readable, _, _ = select.select([self.connection], [], [], 0.2)
            if readable and not self.connection.recv(1, socket.MSG_PEEK):
                break  # the client has hung up
        self.close_connection = True
        raise _Abort

    def _chunks(
        self, file: Path, start: int, length: int, bytes_per_second: float | None
    ) -> Iterator[bytes]:
        stopping = self.server.media._stopping
        size = _CHUNK if not bytes_per_second else max(1, min(_CHUNK, int(bytes_per_second / 20)))
        began = time.monotonic()
        sent = 0
        with file.open("rb") as handle:
            handle.seek(start)
            while sent < length:
                if stopping.is_set():
                    raise _Abort
                data = handle.read(min(size, length - sent))
                if not data:
                    return
                yield data
                sent += len(data)
                if bytes_per_second and sent < length:
                    wait = began + sent / bytes_per_second - time.monotonic()
                    if wait > 0 and stopping.wait(wait):
                        raise _Abort
