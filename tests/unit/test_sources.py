"""The URL policy: ``check`` / ``check_request`` tables, and ``GuardedYoutubeDL`` live.

No test needs the internet. DNS is faked for the whole module (``fake_dns``), so "a name
that resolves to a private address" is tested without a resolver and the accepted
YouTube links are checked against (fake) public addresses. The guard tests run a tiny
threaded HTTP server on 127.0.0.1 that records every path it is asked for, so "no request
reached the refused target" is checked on the server side, not inferred from an error.
"""

from __future__ import annotations

import http.client
import http.server
import ipaddress
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yt_dlp
from yt_dlp.downloader import get_suitable_downloader
from yt_dlp.downloader.external import FFmpegFD
from yt_dlp.downloader.hls import HlsFD
from yt_dlp.networking import Request
from yt_dlp.networking.exceptions import RequestError, TransportError

from flows.errors import PermanentError, PolicyError, classify
from flows.settings import DEFAULT_ALLOWED_HOSTS, DEFAULT_MEDIA_HOSTS, Settings
from flows.sources import (
    MAX_URL_LENGTH,
    SAFE_YDL_PARAMS,
    GuardedYoutubeDL,
    RefusedRequest,
    check,
    check_request,
)

# --- settings -----------------------------------------------------------------------------


def make_settings(**overrides: object) -> Settings:
    """Settings independent of the environment and any .env file."""
    values: dict[str, object] = {
        "allowed_hosts": DEFAULT_ALLOWED_HOSTS,
        "media_hosts": DEFAULT_MEDIA_HOSTS,
        "allow_private_networks": False,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


DEFAULT = make_settings()
ANY_HOST = make_settings(allowed_hosts=("*",))
LOCAL = make_settings(allowed_hosts=("127.0.0.1",), allow_private_networks=True)

# --- fake DNS -----------------------------------------------------------------------------

PUBLIC_V4 = "142.250.185.78"
PUBLIC_V6 = "2a00:1450:4001:82b::200e"

FAKE_DNS: dict[str, list[str]] = {
    "youtube.com": [PUBLIC_V4, PUBLIC_V6],
    "www.youtube.com": [PUBLIC_V4, PUBLIC_V6],
    "m.youtube.com": [PUBLIC_V4],
    "music.youtube.com": [PUBLIC_V4],
    "youtu.be": [PUBLIC_V4],
    "rr1---sn-abc.googlevideo.com": [PUBLIC_V4],
    "public.example": ["93.184.215.14"],
    "localhost": ["127.0.0.1", "::1"],
    "internal.example": ["10.1.2.3"],
    "metadata.example": ["169.254.169.254"],
    "cgnat.example": ["100.64.1.1"],
    "mixed.example": ["93.184.215.14", "192.168.0.10"],
    "ula.example": ["fd00::1"],
    "mapped.example": ["::ffff:127.0.0.1"],
}

_real_getaddrinfo = socket.getaddrinfo


@dataclass
class FakeDNS:
    """A resolver with a table; literal addresses go to the real one (no network)."""

    table: dict[str, list[str]] = field(default_factory=lambda: dict(FAKE_DNS))
    queries: list[str] = field(default_factory=list)

    def __call__(
        self,
        host: str | bytes | None,
        port: str | int | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[tuple]:
        name = host.decode() if isinstance(host, bytes) else str(host)
        self.queries.append(name)
        if name in self.table:
            results = []
            for text in self.table[name]:
                ip = ipaddress.ip_address(text)
                fam = socket.AF_INET if ip.version == 4 else socket.AF_INET6
                if family not in (0, fam):
                    continue
                addr = (text, int(port or 0)) if ip.version == 4 else (text, int(port or 0), 0, 0)
                results.append((fam, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", addr))
            if not results:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return results
        try:
            ipaddress.ip_address(name)
        except ValueError:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
        return _real_getaddrinfo(host, port, family, type, proto, flags)


@pytest.fixture(autouse=True)
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> FakeDNS:
    dns = FakeDNS()
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    return dns


# --- check(): refused ---------------------------------------------------------------------

# Refused with the default list and with allowed_hosts=('*',): (url, words in the message
# with '*'). With the default list, host-level cases are refused as "not allowed" first.
REFUSED_EVERYWHERE: list[tuple[str, str]] = [
    ("file:///etc/passwd", "only http and https"),
    ("FILE:///etc/passwd", "only http and https"),
    ("ftp://ftp.example.com/song.mp3", "only http and https"),
    ("javascript:alert(1)", "only http and https"),
    ("data:text/html,<script>alert(1)</script>", "only http and https"),
    ("gopher://127.0.0.1:6379/_INFO", "only http and https"),
    ("www.youtube.com/watch?v=dQw4w9WgXcQ", "only http and https"),
    ("//www.youtube.com/watch?v=dQw4w9WgXcQ", "only http and https"),
    ("youtube.com:443/watch?v=dQw4w9WgXcQ", "only http and https"),
    ("https://user:secret@www.youtube.com/watch?v=x", "user name or password"),
    ("https://user@www.youtube.com/watch?v=x", "user name or password"),
    ("https://@www.youtube.com/watch?v=x", "user name or password"),
    ("https://www.youtube.com@evil.com/", "user name or password"),
    ("https://www.youtube.com\\@evil.com/", "user name or password"),
    ("https://www.youtube.com:80@evil.com/", "user name or password"),
    ("http://169.254.169.254/latest/meta-data/", "private or local"),
    ("http://169.254.169.254:80/", "private or local"),
    ("http://[::ffff:127.0.0.1]/", "private or local"),
    ("http://[::ffff:7f00:1]/", "private or local"),
    ("http://[::ffff:a9fe:a9fe]/", "private or local"),
    ("http://[::1]/", "private or local"),
    ("http://[::]/", "private or local"),
    ("http://[0:0:0:0:0:0:0:1]:8080/", "private or local"),
    ("http://[fe80::1]/", "private or local"),
    ("http://[fd00::1]/", "private or local"),
    ("http://[ff02::1]/", "private or local"),
    ("http://[2002:7f00:1::]/", "private or local"),  # 6to4 for 127.0.0.1
    ("http://[64:ff9b::a9fe:a9fe]/", "private or local"),  # NAT64 for 169.254.169.254
    ("http://0x7f000001/", "private or local"),
    ("http://0X7F000001/", "private or local"),
    ("http://2130706433/", "private or local"),
    ("http://0177.0.0.1/", "private or local"),
    ("http://0177.0.0.01/", "private or local"),
    ("http://0x7f.0.0.1/", "private or local"),
    ("http://127.1/", "private or local"),
    ("http://127.0.1/", "private or local"),
    ("http://127.0.0.1/", "private or local"),
    ("http://127.0.0.1./", "private or local"),
    ("http://127.255.255.254:8080/", "private or local"),
    ("http://0/", "private or local"),
    ("http://0.0.0.0/", "private or local"),
    ("http://10.0.0.1/", "private or local"),
    ("http://172.16.0.1/", "private or local"),
    ("http://192.168.1.1/", "private or local"),
    ("http://100.64.0.1/", "private or local"),
    ("http://192.0.0.1/", "private or local"),
    ("http://198.18.0.1/", "private or local"),
    ("http://224.0.0.1/", "private or local"),
    ("http://240.0.0.1/", "private or local"),
    ("http://255.255.255.255/", "private or local"),
    ("http://2852039166/", "private or local"),  # 169.254.169.254 in decimal
    ("http://0xa9fea9fe/", "private or local"),  # ... in hex
    ("http://0251.0376.0251.0376/", "private or local"),  # ... in octal
    ("http://0xa9.254.43518/", "private or local"),  # ... mixed, three parts
    ("http://[::ffff:169.254.169.254]/", "private or local"),
    ("http://[::127.0.0.1]/", "private or local"),  # IPv4-compatible (deprecated)
    ("http://[::ffff:0:7f00:1]/", "private or local"),  # IPv4-translated
    ("http://[2002:a9fe:a9fe::]/", "private or local"),  # 6to4 for 169.254.169.254
    ("http://[64:ff9b::10.0.0.1]/", "private or local"),  # NAT64 for 10.0.0.1
    ("http://[fec0::1]/", "private or local"),  # site-local (deprecated)
    ("http://[5f00::1]/", "private or local"),  # reserved (SRv6)
    ("http://[2001:db8::1]/", "private or local"),  # documentation
    ("http://[ff0e::1]/", "private or local"),  # global-scope multicast
    ("http://239.255.255.250/", "private or local"),  # multicast (SSDP)
    ("http://localhost/", "private or local"),
    ("http://LOCALHOST./", "private or local"),
    ("http://localhost:8080/x.mp4", "private or local"),
    ("http://video.localhost/", "private or local"),
    ("http://1.2.3.256/", "not (a )?valid"),
    ("http://example.123/", "not (a )?valid"),
    ("http://[::1/", "not (a )?valid"),
    ("http://[::1]x/", "not (a )?valid"),
    ("http://[fe80::1%25eth0]/", "not (a )?valid"),
    ("http://::1/", "not (a )?valid"),
    ("https://www.youtube.com\\.evil.com/", "not (a )?valid"),
    ("https://www.youtube.com%2eevil.com/", "not (a )?valid"),
    ("https://-youtube.com/", "not (a )?valid"),
    ("https://www..youtube.com/", "not (a )?valid"),
    ("https://www.youtube.com:99999/", "port"),
    ("https://www.youtube.com:0/", "port"),
    ("https://www.youtube.com:8o/", "port"),
    ("https://", "no host"),
    ("http:///watch?v=x", "no host"),
    ("https:www.youtube.com/watch?v=x", "no host"),
    ("https://:443/", "no host"),
    ("https://www.youtube.com/watch?v=" + "a" * MAX_URL_LENGTH, "too long"),
    ("https://www.youtube.com/watch?v=a b", "spaces or control"),
    ("https://www.youtube.com/watch?v=a\tb", "spaces or control"),
    ("https://www.youtube.com/watch?v=a\nb", "spaces or control"),
    ("https://www.youtube.com/watch\r\nX-Injected: 1", "spaces or control"),
    ("https://www.youtube.com/watch?v=a\x00", "spaces or control"),
    ("https://www.youtube.com/watch?v=a\x7f", "spaces or control"),
    ("https://www.you\u200btube.com/", "spaces or control"),  # zero-width space
    ("https://www.youtube.com/\u202ewatch", "spaces or control"),  # right-to-left override
    ("https://www.youtube.com/watch?v=a\u3000b", "spaces or control"),  # ideographic space
    ("", "empty"),
    ("   ", "empty"),
]

# Refused with the default list only: lookalikes and other hosts (accepted with '*').
LOOKALIKES: list[str] = [
    "https://youtube.com.evil.com/watch?v=dQw4w9WgXcQ",
    "https://www.youtube.com.evil.com/watch?v=dQw4w9WgXcQ",
    "https://evil-youtube.com/watch?v=dQw4w9WgXcQ",
    "https://youtube.co/watch?v=dQw4w9WgXcQ",
    "https://wwwyoutube.com/watch?v=dQw4w9WgXcQ",
    "https://youtu.be.evil.com/dQw4w9WgXcQ",
    "https://evil.youtube.com/watch?v=dQw4w9WgXcQ",  # subdomains are not implied
    "https://www.y\u043eutube.com/watch?v=dQw4w9WgXcQ",  # Cyrillic o
    "https://evil.com/?u=https://www.youtube.com/",
    "https://evil.com#@www.youtube.com/",
    "https://evil.com/www.youtube.com",
    "https://rr1---sn-abc.googlevideo.com/videoplayback",  # media hosts: not submittable
    "https://public.example/video.mp4",
]


@pytest.mark.parametrize(("url", "words"), REFUSED_EVERYWHERE)
def test_check_refuses_with_default_hosts(url: str, words: str) -> None:
    with pytest.raises(PolicyError) as info:
        check(url, DEFAULT)
    assert str(info.value)  # a message a person can read, never empty


@pytest.mark.parametrize(("url", "words"), REFUSED_EVERYWHERE)
def test_check_refuses_with_any_host_allowed(url: str, words: str) -> None:
    with pytest.raises(PolicyError, match=words):
        check(url, ANY_HOST)


@pytest.mark.parametrize("url", LOOKALIKES)
def test_check_refuses_hosts_not_on_the_list(url: str, fake_dns: FakeDNS) -> None:
    with pytest.raises(PolicyError, match="this host is not allowed: ") as info:
        check(url, DEFAULT)
    assert "allowed: youtube.com, www.youtube.com" in str(info.value)
    assert fake_dns.queries == []  # refused before any DNS query


@pytest.mark.parametrize("url", LOOKALIKES)
def test_lookalikes_pass_when_any_host_is_allowed(url: str) -> None:
    assert check(url, ANY_HOST) == url


def test_refusal_is_a_permanent_error_with_plain_words() -> None:
    with pytest.raises(PolicyError) as info:
        check("http://169.254.169.254/latest/meta-data/", ANY_HOST)
    assert isinstance(info.value, PermanentError)
    assert str(info.value) == (
        "links to private or local network addresses are not allowed (169.254.169.254)"
    )
    with pytest.raises(PolicyError) as info:
        check("http://0x7f000001/", ANY_HOST)
    assert str(info.value).endswith("(0x7f000001, that is 127.0.0.1)")
    with pytest.raises(PolicyError) as info:
        check("https://evil.com/", DEFAULT)
    assert str(info.value).startswith("this host is not allowed: evil.com (allowed: youtube.com, ")
    with pytest.raises(PolicyError, match="only http and https links are accepted"):
        check("file:///etc/passwd", DEFAULT)


def test_check_refuses_non_text() -> None:
    with pytest.raises(PolicyError, match="text"):
        check(None, DEFAULT)  # type: ignore[arg-type]


# --- check(): names that resolve to private addresses -------------------------------------


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("internal.example", "10.1.2.3"),
        ("metadata.example", "169.254.169.254"),
        ("cgnat.example", "100.64.1.1"),
        ("mixed.example", "192.168.0.10"),  # one private address is enough
        ("ula.example", "fd00::1"),
        ("mapped.example", "::ffff:127.0.0.1"),
    ],
)
def test_check_refuses_names_resolving_to_private_addresses(host: str, address: str) -> None:
    with pytest.raises(PolicyError, match="private or local") as info:
        check(f"https://{host}/video.mp4", ANY_HOST)
    assert f"{host} points to {ipaddress.ip_address(address)}" in str(info.value)


def test_unresolvable_name_is_left_to_yt_dlp(fake_dns: FakeDNS) -> None:
    url = "https://no-such-host.example/video.mp4"
    assert check(url, ANY_HOST) == url
    assert fake_dns.queries == ["no-such-host.example"]


def test_private_networks_allowed_skips_address_rules(fake_dns: FakeDNS) -> None:
    settings = make_settings(allowed_hosts=("*",), allow_private_networks=True)
    for url in ("http://169.254.169.254/", "http://localhost/", "https://internal.example/"):
        assert check(url, settings) == url
    assert fake_dns.queries == []  # nothing to look up when nothing would be refused


# --- check(): accepted ------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
        "https://youtu.be/dQw4w9WgXcQ",
        "https://music.youtube.com/playlist?list=PLFgquLnL59alCl_2TQvOiD5Vgm1hCaGSI",
        "https://www.youtube.com/playlist?list=PLFgquLnL59alCl_2TQvOiD5Vgm1hCaGSI",
        "https://m.youtube.com/watch?v=dQw4w9WgXcQ&t=42s",
        "https://youtube.com/shorts/dQw4w9WgXcQ",
        "http://www.youtube.com/watch?v=dQw4w9WgXcQ",
        "HTTPS://WWW.YOUTUBE.COM/watch?v=dQw4w9WgXcQ",
        "https://www.youtube.com./watch?v=dQw4w9WgXcQ",
        "https://www.youtube.com:443/watch?v=dQw4w9WgXcQ",
        "https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ",
        "https://www.youtube.com/watch?v=dQw4w9WgXcQ#t=10",
        "https://www.youtube.com/results?search_query=caf%C3%A9",
        "https://www.youtube.com/@SomeChannel/videos",  # '@' in the path is no credential
    ],
)
def test_check_accepts_youtube_links(url: str) -> None:
    assert check(url, DEFAULT) == url


def test_check_returns_the_url_stripped() -> None:
    url = "https://youtu.be/dQw4w9WgXcQ"
    assert check(f"  \t{url}\n ", DEFAULT) == url


def test_check_accepts_unicode_host_that_encodes_to_an_allowed_one() -> None:
    settings = make_settings(allowed_hosts=("xn--caf-dma.example",))
    assert check("https://CAFÉ.example/v.mp4", settings) == "https://CAFÉ.example/v.mp4"


def test_allowed_hosts_entries_are_normalized() -> None:
    settings = make_settings(allowed_hosts=("WWW.YouTube.com.", "[::1]", "café.example"))
    check("https://www.youtube.com/watch?v=x", settings)
    check("https://xn--caf-dma.example/x", settings)
    with pytest.raises(PolicyError, match="private"):
        check("http://[::1]/", settings)  # listed, but the address rules still apply


def test_local_server_accepted_when_private_networks_allowed() -> None:
    assert check("http://127.0.0.1:8765/x.mp4", LOCAL) == "http://127.0.0.1:8765/x.mp4"
    # Another spelling of the same address is the same host.
    assert check("http://2130706433:8765/x.mp4", LOCAL) == "http://2130706433:8765/x.mp4"
    with pytest.raises(PolicyError, match="this host is not allowed: localhost"):
        check("http://localhost:8765/x.mp4", LOCAL)
    with pytest.raises(PolicyError, match="private or local"):
        check("http://127.0.0.1:8765/x.mp4", make_settings(allowed_hosts=("127.0.0.1",)))


# --- check_request() ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://rr1---sn-abc.googlevideo.com/videoplayback?expire=1&id=o-A",
        "https://googlevideo.com/x",
        "https://i.ytimg.com/vi/dQw4w9WgXcQ/maxresdefault.jpg",
        "https://yt3.ggpht.com/a/b=s88",
        "https://lh3.googleusercontent.com/x",
        "https://www.youtube.com/youtubei/v1/player",
        "https://r1---sn-abc.googlevideo.com/videoplayback?" + "sig=" + "a" * 4000,
    ],
)
def test_check_request_accepts_media_hosts(url: str) -> None:
    check_request(url, DEFAULT)


@pytest.mark.parametrize(
    "url",
    [
        "https://googlevideo.com.evil.com/x",
        "https://evilgooglevideo.com/x",
        "https://ytimg.com.example/x",
        "http://localhost/x",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
def test_check_request_refuses_other_hosts(url: str) -> None:
    with pytest.raises(PolicyError, match="this host is not allowed"):
        check_request(url, DEFAULT)


def test_check_request_exact_media_entry_and_address_rules() -> None:
    settings = make_settings(media_hosts=("cdn.example", ".internal.example"))
    check_request("https://cdn.example/x", settings)
    with pytest.raises(PolicyError, match="not allowed"):
        check_request("https://a.cdn.example/x", settings)  # no leading dot: exact only
    with pytest.raises(PolicyError, match=r"internal\.example points to 10\.1\.2\.3"):
        check_request("https://internal.example/x", settings)
    for url in ("file:///etc/passwd", "https://u:p@cdn.example/", "https://cdn.example/a b"):
        with pytest.raises(PolicyError):
            check_request(url, settings)


# --- guard(): a local server that logs what it is asked for --------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    server: RecordingServer

    def do_GET(self) -> None:
        self.server.log.append(self.path)
        route = self.server.routes.get(self.path.split("?")[0])
        if route is None:
            self.send_error(404)
            return
        status, headers, body = route(self.server.port)
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


Route = Callable[[int], tuple[int, dict[str, str], bytes]]

AUDIO = b"ID3\x03\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x64" + bytes(4000)
M3U8 = """#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:0
#EXTINF:2.0,
http://localhost:{port}/seg0.ts
#EXTINF:2.0,
seg1.ts
#EXT-X-ENDLIST
"""


class RecordingServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.log: list[str] = []
        self.port = self.server_address[1]
        self.routes: dict[str, Route] = {
            "/redirect": lambda port: (302, {"Location": f"http://localhost:{port}/target"}, b""),
            "/redirect-ok": lambda port: (
                302,
                {"Location": f"http://127.0.0.1:{port}/target"},
                b"",
            ),
            "/redirect-meta": lambda port: (
                301,
                {"Location": "http://169.254.169.254/latest/meta-data/"},
                b"",
            ),
            "/target": lambda port: (200, {"Content-Type": "text/plain"}, b"secret"),
            "/audio.mp3": lambda port: (200, {"Content-Type": "audio/mpeg"}, AUDIO),
            "/thumb.jpg": lambda port: (200, {"Content-Type": "image/jpeg"}, b"\xff\xd8\xff"),
            "/list.m3u8": lambda port: (
                200,
                {"Content-Type": "application/vnd.apple.mpegurl"},
                M3U8.format(port=port).encode(),
            ),
        }

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    srv = RecordingServer()
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


HANDLERS = ["Urllib", "Requests"]


@pytest.fixture
def make_ydl(tmp_path: Path) -> Iterator[Callable[..., yt_dlp.YoutubeDL]]:
    """Guarded YoutubeDL objects, optionally reduced to one request handler."""
    made: list[yt_dlp.YoutubeDL] = []

    def make(
        settings: Settings | None = LOCAL,
        handler: str | None = None,
        **params: object,
    ) -> yt_dlp.YoutubeDL:
        base: dict[str, object] = {
            "quiet": True,
            "no_warnings": True,
            "noprogress": True,
            "proxy": "",  # ignore proxy variables of the environment
            "socket_timeout": 5,
            "cachedir": False,
            "retries": 0,
            "fragment_retries": 0,
            "outtmpl": str(tmp_path / "%(id)s.%(ext)s"),
            **SAFE_YDL_PARAMS,
        }
        if settings is None:
            ydl = yt_dlp.YoutubeDL({**base, **params})  # type: ignore[arg-type]
        else:
            ydl = GuardedYoutubeDL(settings, {**base, **params})
        made.append(ydl)
        if handler is not None:
            director = ydl._request_director
            if handler not in director.handlers:
                pytest.skip(f"yt-dlp request handler {handler} is not available")
            for key in [key for key in director.handlers if key != handler]:
                director.handlers.pop(key).close()
        return ydl

    yield make
    for ydl in made:
        ydl.close()


def assert_policy_cause(exc: BaseException) -> PolicyError:
    """What flows.errors sees: a PolicyError, permanent, with the policy's words."""
    problem = classify(exc)
    assert isinstance(problem, PolicyError), (type(problem), problem)
    return problem


@pytest.mark.parametrize("handler", HANDLERS)
def test_unguarded_control_follows_the_redirect(
    server: RecordingServer, make_ydl: Callable[..., yt_dlp.YoutubeDL], handler: str
) -> None:
    """The premise of the redirect tests: without the guard, /target is fetched."""
    ydl = make_ydl(settings=None, handler=handler)
    with ydl.urlopen(server.url("/redirect")) as response:
        assert response.read() == b"secret"
    assert server.log == ["/redirect", "/target"]


@pytest.mark.parametrize("handler", HANDLERS)
def test_redirect_to_refused_host_is_stopped_before_connecting(
    server: RecordingServer, make_ydl: Callable[..., yt_dlp.YoutubeDL], handler: str
) -> None:
    ydl = make_ydl(handler=handler)
    with pytest.raises(yt_dlp.utils.DownloadError) as info:
        ydl.extract_info(server.url("/redirect"), download=False)
    problem = assert_policy_cause(info.value)
    assert "this host is not allowed: localhost" in str(problem)
    assert server.log == ["/redirect"]  # the refused target never saw a request


@pytest.mark.parametrize("handler", HANDLERS)
def test_redirect_to_metadata_address_is_stopped(
    server: RecordingServer, make_ydl: Callable[..., yt_dlp.YoutubeDL], handler: str
) -> None:
    """Private networks refused, both hosts listed: the hop fails on the address rule.

    The test server stands in for a public site by being the one named private service.
    """
    settings = make_settings(
        allowed_hosts=("169.254.169.254",), private_service=f"127.0.0.1:{server.port}"
    )
    ydl = make_ydl(settings=settings, handler=handler)
    with pytest.raises(RefusedRequest, match=r"private or local .*\(169\.254\.169\.254\)"):
        ydl.urlopen(server.url("/redirect-meta"))
    assert server.log == ["/redirect-meta"]


@pytest.mark.parametrize("handler", HANDLERS)
def test_urlopen_refusal_is_a_policy_error_and_a_yt_dlp_network_error(
    server: RecordingServer, make_ydl: Callable[..., yt_dlp.YoutubeDL], handler: str
) -> None:
    ydl = make_ydl(handler=handler)
    with pytest.raises(RefusedRequest) as info:
        ydl.urlopen(server.url("/redirect"))
    assert isinstance(info.value, PolicyError)
    assert isinstance(info.value, TransportError)  # extractors wrap it, keeping the cause
    assert classify(info.value) is info.value
    with pytest.raises(RefusedRequest, match="not allowed: localhost"):
        ydl.urlopen(server.url("/target", host="localhost"))  # refused as the first hop too
    assert server.log == ["/redirect"]


@pytest.mark.parametrize("handler", HANDLERS)
def test_allowed_redirect_still_works(
    server: RecordingServer, make_ydl: Callable[..., yt_dlp.YoutubeDL], handler: str
) -> None:
    ydl = make_ydl(handler=handler)
    with ydl.urlopen(server.url("/redirect-ok")) as response:
        assert response.read() == b"secret"
    assert server.log == ["/redirect-ok", "/target"]


@pytest.mark.parametrize("handler", HANDLERS)
def test_guarded_download_of_allowed_direct_url_works(
    server: RecordingServer,
    make_ydl: Callable[..., yt_dlp.YoutubeDL],
    handler: str,
    tmp_path: Path,
) -> None:
    ydl = make_ydl(handler=handler)
    info = ydl.extract_info(server.url("/audio.mp3"), download=True)
    assert info is not None
    assert Path(info["requested_downloads"][0]["filepath"]).read_bytes() == AUDIO


@pytest.mark.parametrize("handler", HANDLERS)
def test_native_hls_fragment_on_refused_host_is_not_fetched(
    server: RecordingServer, make_ydl: Callable[..., yt_dlp.YoutubeDL], handler: str
) -> None:
    ydl = make_ydl(handler=handler)
    with pytest.raises(yt_dlp.utils.DownloadError) as info:
        ydl.extract_info(server.url("/list.m3u8"), download=True)
    assert "not allowed: localhost" in str(assert_policy_cause(info.value))
    assert "/list.m3u8" in server.log
    assert not [path for path in server.log if path.startswith("/seg")]


def test_refused_thumbnail_is_skipped_without_a_request(
    server: RecordingServer, make_ydl: Callable[..., yt_dlp.YoutubeDL], tmp_path: Path
) -> None:
    ydl = make_ydl(skip_download=True, writethumbnail=True, write_all_thumbnails=True)
    ydl.process_ie_result(
        {
            "id": "thumbs",
            "title": "thumbs",
            "url": server.url("/audio.mp3"),
            "ext": "mp3",
            "thumbnails": [
                {"id": "ok", "url": server.url("/thumb.jpg")},
                {"id": "refused", "url": server.url("/thumb.jpg", host="localhost")},
            ],
        },
        download=True,
    )
    assert server.log == ["/thumb.jpg"]  # the allowed one only, fetched from 127.0.0.1


@pytest.mark.parametrize("handler", HANDLERS)
def test_name_resolving_to_private_address_is_refused_at_connect_time(
    server: RecordingServer,
    make_ydl: Callable[..., yt_dlp.YoutubeDL],
    fake_dns: FakeDNS,
    handler: str,
) -> None:
    """DNS rebinding: the name is public when checked, private when connecting."""
    fake_dns.table["rebind.example"] = ["93.184.215.14"]
    settings = make_settings(allowed_hosts=("rebind.example",))
    url = server.url("/target", host="rebind.example")
    check(url, settings)  # passes: the name looks public now
    fake_dns.table["rebind.example"] = ["127.0.0.1"]  # ...and points home a moment later
    ydl = make_ydl(settings=settings, handler=handler)
    with pytest.raises(RefusedRequest, match=r"rebind\.example points to 127\.0\.0\.1") as info:
        ydl.urlopen(url)
    assert str(info.value).endswith("(refused connection)")  # caught at the socket layer
    assert server.log == []


def test_behind_a_proxy_names_are_resolved_before_sending(
    server: RecordingServer, make_ydl: Callable[..., yt_dlp.YoutubeDL], fake_dns: FakeDNS
) -> None:
    """The socket then only sees the proxy, so the URL layer resolves the target itself."""
    fake_dns.table["rebind.example"] = ["127.0.0.1"]
    settings = make_settings(allowed_hosts=("rebind.example",))
    ydl = make_ydl(settings=settings, proxy=server.url(""))  # our server plays the proxy
    with pytest.raises(RefusedRequest, match=r"rebind\.example points to 127\.0\.0\.1"):
        ydl.urlopen("http://rebind.example/target")
    assert server.log == []


def test_guard_keeps_only_supervised_handlers_and_survives_close(
    server: RecordingServer, make_ydl: Callable[..., yt_dlp.YoutubeDL]
) -> None:
    ydl = make_ydl()
    assert set(ydl._request_director.handlers) <= {"Urllib", "Requests"}
    assert ydl._request_director.handlers
    ydl.close()  # drops the director; the next request builds a new one
    with pytest.raises(RefusedRequest):
        ydl.urlopen(server.url("/redirect"))
    with pytest.raises(RefusedRequest, match="only http and https"):
        ydl.urlopen("file:///etc/passwd")
    assert server.log == ["/redirect"]


def test_guard_applies_safe_params_so_hls_stays_native(
    make_ydl: Callable[..., yt_dlp.YoutubeDL],
) -> None:
    unsafe = {"hls_prefer_native": False, "external_downloader": None}
    info = {"url": "https://cdn.example/a.m3u8", "protocol": "m3u8", "ext": "mp4"}
    plain = make_ydl(settings=None, **unsafe)
    assert get_suitable_downloader(dict(info), plain.params) is FFmpegFD
    ydl = make_ydl(**unsafe)
    assert get_suitable_downloader(dict(info), ydl.params) is HlsFD
    for key, value in SAFE_YDL_PARAMS.items():
        assert ydl.params[key] == value


def test_guarded_ydl_refuses_to_let_ffmpeg_fetch_urls(
    server: RecordingServer, make_ydl: Callable[..., yt_dlp.YoutubeDL], tmp_path: Path
) -> None:
    """Live HLS always goes to ffmpeg, which would fetch every URL itself."""
    ydl = make_ydl()
    with pytest.raises(yt_dlp.utils.DownloadError) as info:
        ydl.process_ie_result(
            {
                "id": "live",
                "title": "live",
                "url": server.url("/list.m3u8"),
                "ext": "mp4",
                "protocol": "m3u8_native",
                "is_live": True,
            },
            download=True,
        )
    assert "outside program (ffmpeg)" in str(assert_policy_cause(info.value))
    assert server.log == []


def test_unguarded_ydl_still_runs_external_downloaders(
    make_ydl: Callable[..., yt_dlp.YoutubeDL],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The downloader hook is process-wide but acts only for guarded YoutubeDL objects."""

    class Called(Exception):
        pass

    def call_downloader(self: FFmpegFD, tmpfilename: str, info_dict: dict) -> int:
        raise Called

    monkeypatch.setattr(FFmpegFD, "_call_downloader", call_downloader)
    make_ydl()  # installs the hook
    plain = make_ydl(settings=None)
    info = {"url": "https://cdn.example/a.m3u8", "protocol": "m3u8", "ext": "mp4"}
    with pytest.raises(Called):
        FFmpegFD(plain, plain.params).real_download(str(tmp_path / "a.mp4"), info)
    guarded = make_ydl()
    with pytest.raises(RefusedRequest):
        FFmpegFD(guarded, guarded.params).real_download(str(tmp_path / "a.mp4"), info)


# --- the connect-time check judges each hop's host too -------------------------------------


@pytest.mark.parametrize("handler", HANDLERS)
def test_redirect_to_a_public_host_not_on_the_list_is_refused(
    server: RecordingServer,
    make_ydl: Callable[..., yt_dlp.YoutubeDL],
    fake_dns: FakeDNS,
    handler: str,
) -> None:
    server.routes["/to-public"] = lambda port: (302, {"Location": "http://public.example/x"}, b"")
    ydl = make_ydl(handler=handler)
    with pytest.raises(RefusedRequest, match=r"not allowed: public\.example .*refused connection"):
        ydl.urlopen(server.url("/to-public"))
    assert server.log == ["/to-public"]
    assert "public.example" not in fake_dns.queries  # refused before any DNS query


@pytest.mark.parametrize("handler", HANDLERS)
def test_redirect_to_a_media_host_is_followed(
    server: RecordingServer,
    make_ydl: Callable[..., yt_dlp.YoutubeDL],
    fake_dns: FakeDNS,
    handler: str,
) -> None:
    fake_dns.table["rr1.cdn.example"] = ["127.0.0.1"]
    location = f"http://rr1.cdn.example:{server.port}/target"
    server.routes["/to-cdn"] = lambda port: (302, {"Location": location}, b"")
    settings = make_settings(
        allowed_hosts=("127.0.0.1",), media_hosts=(".cdn.example",), allow_private_networks=True
    )
    with make_ydl(settings=settings, handler=handler).urlopen(server.url("/to-cdn")) as response:
        assert response.read() == b"secret"
    assert server.log == ["/to-cdn", "/target"]


# --- the one named private service ---------------------------------------------------------


@pytest.fixture
def other_server() -> Iterator[RecordingServer]:
    """A second local server: another port on the same private address."""
    srv = RecordingServer()
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def service_settings(service: str) -> Settings:
    """YouTube's hosts only, private networks refused, one private service named."""
    return make_settings(private_service=service)


@pytest.mark.parametrize("handler", HANDLERS)
def test_the_private_service_is_reachable_and_nothing_else_private(
    server: RecordingServer,
    other_server: RecordingServer,
    make_ydl: Callable[..., yt_dlp.YoutubeDL],
    handler: str,
) -> None:
    ydl = make_ydl(settings=service_settings(f"127.0.0.1:{server.port}"), handler=handler)
    with ydl.urlopen(server.url("/target")) as response:
        assert response.read() == b"secret"
    refused = [
        other_server.url("/target"),  # the same address on another port
        server.url("/target", host="localhost"),  # another name for the same address
        f"http://127.0.0.2:{server.port}/target",
        f"http://10.0.0.1:{server.port}/target",
        f"http://[::1]:{server.port}/target",
        f"http://169.254.169.254:{server.port}/latest/meta-data/",
        "http://127.0.0.1/target",  # the default port is another port
    ]
    for url in refused:
        with pytest.raises(RefusedRequest, match="not allowed"):
            ydl.urlopen(url)
    assert server.log == ["/target"]
    assert other_server.log == []


@pytest.mark.parametrize("handler", HANDLERS)
def test_a_redirect_from_the_private_service_is_judged_like_any_other(
    server: RecordingServer,
    other_server: RecordingServer,
    make_ydl: Callable[..., yt_dlp.YoutubeDL],
    handler: str,
) -> None:
    other = other_server.url("/target")
    server.routes["/to-other"] = lambda port: (302, {"Location": other}, b"")
    ydl = make_ydl(settings=service_settings(f"127.0.0.1:{server.port}"), handler=handler)
    with ydl.urlopen(server.url("/redirect-ok")) as response:  # to itself: still the service
        assert response.read() == b"secret"
    with pytest.raises(RefusedRequest, match=r"not allowed: 127\.0\.0\.1 .*refused connection"):
        ydl.urlopen(server.url("/to-other"))
    assert server.log == ["/redirect-ok", "/target", "/to-other"]
    assert other_server.log == []


def test_yt_dlp_downloads_from_the_private_service(
    server: RecordingServer, make_ydl: Callable[..., yt_dlp.YoutubeDL]
) -> None:
    ydl = make_ydl(settings=service_settings(f"127.0.0.1:{server.port}"))
    info = ydl.extract_info(server.url("/audio.mp3"), download=True)
    assert info is not None
    assert Path(info["requested_downloads"][0]["filepath"]).read_bytes() == AUDIO


def test_a_named_private_service_passes_by_name_only(
    server: RecordingServer, make_ydl: Callable[..., yt_dlp.YoutubeDL], fake_dns: FakeDNS
) -> None:
    """The name's private addresses pass for that name and port, not written as addresses."""
    fake_dns.table["pot.internal"] = ["127.0.0.1"]
    ydl = make_ydl(settings=service_settings(f"pot.internal:{server.port}"))
    with ydl.urlopen(server.url("/target", host="pot.internal")) as response:
        assert response.read() == b"secret"
    with pytest.raises(RefusedRequest, match=r"not allowed: 127\.0\.0\.1"):
        ydl.urlopen(server.url("/target"))
    assert server.log == ["/target"]


def test_check_request_and_the_private_service() -> None:
    settings = service_settings("tokens.internal:443")
    check_request("https://tokens.internal/get_pot", settings)  # 443: https's default port
    check_request("http://TOKENS.internal.:443/ping", settings)
    for url in ("http://tokens.internal/get_pot", "https://tokens.internal:4416/"):
        with pytest.raises(PolicyError, match=r"not allowed: tokens\.internal"):
            check_request(url, settings)
    with pytest.raises(PolicyError, match=r"not allowed: tokens\.internal"):
        check("https://tokens.internal/get_pot", settings)  # never a link a person submits


# --- behind a proxy: the socket sees only the proxy ------------------------------------------


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    """A forward proxy for http URLs that sends every request on to one upstream server
    (a stand-in for "the internet behind the proxy") and records the URLs it was asked for."""

    server: ForwardingProxy

    def do_GET(self) -> None:
        self.server.log.append(self.path)
        target = urllib.parse.urlsplit(self.path)
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=5)
        try:
            path = target.path + (f"?{target.query}" if target.query else "")
            upstream.request("GET", path, headers={"Host": target.netloc})
            response = upstream.getresponse()
            body = response.read()
        finally:
            upstream.close()
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("connection", "transfer-encoding", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class ForwardingProxy(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream_port: int) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream_port = upstream_port
        self.log: list[str] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def proxy(server: RecordingServer) -> Iterator[ForwardingProxy]:
    srv = ForwardingProxy(server.port)
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def proxied_settings(proxy: ForwardingProxy) -> Settings:
    """Private networks refused (the proxy itself is on 127.0.0.1), YTMP3_PROXY set."""
    return make_settings(allowed_hosts=("site.example", "internal.example"), proxy=proxy.url)


PROXY_DNS = {"site.example": ["93.184.215.14"], "other.example": ["93.184.215.15"]}


@pytest.mark.parametrize("handler", HANDLERS)
def test_yt_dlp_goes_through_the_proxy_setting(
    server: RecordingServer,
    proxy: ForwardingProxy,
    make_ydl: Callable[..., yt_dlp.YoutubeDL],
    fake_dns: FakeDNS,
    handler: str,
) -> None:
    fake_dns.table.update(PROXY_DNS)
    server.routes["/hop"] = lambda port: (302, {"Location": "http://site.example/target"}, b"")
    ydl = make_ydl(settings=proxied_settings(proxy), handler=handler)
    with ydl.urlopen("http://site.example/hop") as response:
        assert response.read() == b"secret"
    assert proxy.log == ["http://site.example/hop", "http://site.example/target"]
    assert server.log == ["/hop", "/target"]


@pytest.mark.parametrize(
    ("location", "words"),
    [
        ("http://other.example/target", r"not allowed: other\.example"),  # public, not listed
        ("http://internal.example/target", r"internal\.example points to 10\.1\.2\.3"),
        ("http://169.254.169.254/latest/meta-data/", r"not allowed: 169\.254\.169\.254"),
        ("file:///etc/passwd", None),  # the handlers refuse other schemes themselves
    ],
)
@pytest.mark.parametrize("handler", HANDLERS)
def test_redirect_hops_behind_a_proxy_are_judged(
    server: RecordingServer,
    proxy: ForwardingProxy,
    make_ydl: Callable[..., yt_dlp.YoutubeDL],
    fake_dns: FakeDNS,
    handler: str,
    location: str,
    words: str | None,
) -> None:
    """Canary for the one use of yt-dlp internals (``sources._judge_each_hop``)."""
    fake_dns.table.update(PROXY_DNS)
    server.routes["/hop"] = lambda port: (302, {"Location": location}, b"")
    ydl = make_ydl(settings=proxied_settings(proxy), handler=handler)
    with pytest.raises(RequestError if words is None else RefusedRequest, match=words):
        ydl.urlopen("http://site.example/hop")
    assert proxy.log == ["http://site.example/hop"]
    assert server.log == ["/hop"]


def test_behind_a_proxy_a_name_resolving_to_a_private_address_is_not_sent(
    server: RecordingServer,
    proxy: ForwardingProxy,
    make_ydl: Callable[..., yt_dlp.YoutubeDL],
    fake_dns: FakeDNS,
) -> None:
    ydl = make_ydl(settings=proxied_settings(proxy))
    with pytest.raises(RefusedRequest, match=r"internal\.example points to 10\.1\.2\.3"):
        ydl.urlopen("http://internal.example/target")
    assert proxy.log == []


def test_a_request_that_bypasses_the_proxy_is_judged_at_connect_time(
    server: RecordingServer,
    proxy: ForwardingProxy,
    make_ydl: Callable[..., yt_dlp.YoutubeDL],
    fake_dns: FakeDNS,
) -> None:
    """A PO-token provider plugin sends its requests with ``proxies={'all': None}``."""
    fake_dns.table["rebind.example"] = ["127.0.0.1"]
    settings = make_settings(
        allowed_hosts=("rebind.example",),
        proxy=proxy.url,
        private_service=f"127.0.0.1:{server.port}",
    )
    ydl = make_ydl(settings=settings)
    direct = {"all": None}
    with ydl.urlopen(Request(server.url("/target"), proxies=direct)) as response:
        assert response.read() == b"secret"
    url = server.url("/target", host="rebind.example")
    with pytest.raises(RefusedRequest, match=r"rebind\.example points to 127\.0\.0\.1"):
        ydl.urlopen(Request(url, proxies=direct))
    assert proxy.log == []
    assert server.log == ["/target"]


# --- outside programs: the class-level hook and what it relies on ---------------------------

SAMPLE_AES = b"""#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:2
#EXT-X-KEY:METHOD=SAMPLE-AES,URI="key.bin"
#EXTINF:2.0,
seg0.ts
#EXT-X-ENDLIST
"""


def test_native_hls_handing_a_stream_to_ffmpeg_is_refused(
    server: RecordingServer, make_ydl: Callable[..., yt_dlp.YoutubeDL]
) -> None:
    """yt-dlp's own HLS downloader delegates what it cannot decrypt to ffmpeg (not live)."""
    server.routes["/sample-aes.m3u8"] = lambda port: (
        200,
        {"Content-Type": "application/vnd.apple.mpegurl"},
        SAMPLE_AES,
    )
    ydl = make_ydl()
    with pytest.raises(yt_dlp.utils.DownloadError) as info:
        ydl.extract_info(server.url("/sample-aes.m3u8"), download=True)
    assert "outside program (ffmpeg)" in str(assert_policy_cause(info.value))
    assert not [path for path in server.log if not path.startswith("/sample-aes.m3u8")]


def test_no_external_downloader_bypasses_the_hook() -> None:
    """The hook replaces ``real_download`` on ExternalFD; a subclass with its own would
    escape it. Fails when a yt-dlp release adds one."""
    import yt_dlp.downloader.external as external

    for cls in vars(external).values():
        if isinstance(cls, type) and issubclass(cls, external.ExternalFD):
            assert "real_download" not in vars(cls) or cls is external.ExternalFD, cls


def test_live_streams_are_refused_whatever_the_downloader(
    server: RecordingServer, make_ydl: Callable[..., yt_dlp.YoutubeDL]
) -> None:
    """A live stream yt-dlp would fetch natively (plain HTTP here, DASH in the wild)."""
    ydl = make_ydl()
    live = {"id": "radio", "title": "radio", "url": server.url("/audio.mp3"), "ext": "mp3"}
    with pytest.raises(yt_dlp.utils.DownloadError) as info:
        ydl.process_ie_result({**live, "is_live": True}, download=True)
    assert "live streams are refused" in str(assert_policy_cause(info.value))
    assert server.log == []
