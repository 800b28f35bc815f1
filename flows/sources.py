"""URL policy: which links ytmp3 accepts, and which requests yt-dlp may make for them.

* :func:`check` — a link a person submits: http(s), no credentials or hidden characters,
  a host on ``allowed_hosts`` and, unless ``allow_private_networks``, public addresses only.
* :func:`check_request` — a request during a run: the host may also be on ``media_hosts``
  or be exactly the ``private_service`` (that host and port).
* :class:`GuardedYoutubeDL` — a ``YoutubeDL`` that holds every request, redirect hop and
  connection to :func:`check_request`, and refuses live streams and outside programs.

Refusals are :class:`~flows.errors.PolicyError`. How the guard hooks yt-dlp and what it
cannot see: docs/design.md, "The URL policy".
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import ipaddress
import re
import socket
import unicodedata
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any, Final, NamedTuple

import yt_dlp
from yt_dlp.downloader.external import ExternalFD
from yt_dlp.downloader.rtmp import RtmpFD
from yt_dlp.networking.common import Request, RequestDirector, RequestHandler, Response
from yt_dlp.networking.exceptions import CertificateVerifyError

from flows.errors import PolicyError
from flows.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Addresses = Callable[[], Iterable[IPAddress]]

MAX_URL_LENGTH: Final = 2048  # a link a person submits
MAX_REQUEST_URL_LENGTH: Final = 16384  # a request during a run: signed CDN URLs pass 2,048

SAFE_YDL_PARAMS: Final[dict[str, Any]] = {  # every download inside yt-dlp's own requests
    "hls_prefer_native": True,  # HLS fragments through ydl.urlopen, not through ffmpeg
    "external_downloader": {"default": "native"},  # never aria2c, curl, wget or ffmpeg
    "enable_file_urls": False,
}

_HANDLERS: Final = ("Urllib", "Requests")  # they connect through socket.getaddrinfo
_MARK: Final = "_ytmp3_url_policy"  # on the hooks installed here, so installing is idempotent


class RefusedRequest(CertificateVerifyError, PolicyError):
    """A request refused inside a :class:`GuardedYoutubeDL`; a yt-dlp certificate error, so
    yt-dlp gives up at once (no retry, no other handler, no skipped fragment); permanent."""


# --- parsing ------------------------------------------------------------------------------

_URL_RE: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):(?://([^/?#]*))?")  # scheme, netloc
_LABEL_RE: Final = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_NUMERIC_LABEL_RE: Final = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")
_NETLOC_RE: Final = re.compile(r"(\[[^\]]*\]|[^:\[\]]*)(?::([^:]*))?")  # host, port
_PORT_RE: Final = re.compile(r"^[0-9]{1,5}$")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


class _Target(NamedTuple):
    """Where a URL or a connection goes."""

    host: str  # lowercase ASCII name, dotted-quad IPv4 or compressed IPv6 (no brackets)
    ip: IPAddress | None  # set when the host is an address, in whatever spelling
    port: int | None
    written: str  # the host as written, for messages


def _parse(url: object, max_length: int) -> tuple[str, _Target]:
    """The URL stripped, and its target; refuses anything two parsers could read apart."""
    if not isinstance(url, str):
        raise PolicyError("a link must be text")
    url = url.strip()
    if not url:
        raise PolicyError("the link is empty")
    if len(url) > max_length:
        raise PolicyError(f"the link is too long ({len(url):,} characters; at most {max_length:,})")
    # Whitespace, control, format (zero-width, bidi), private-use or unassigned characters.
    if any(char.isspace() or unicodedata.category(char)[0] in "CZ" for char in url):
        raise PolicyError("the link contains spaces or control characters; copy it again")
    match = _URL_RE.match(url)
    scheme = match.group(1).lower() if match else None
    if scheme not in _DEFAULT_PORTS:
        hint = f"not {scheme}: links" if scheme else "the link must start with https://"
        raise PolicyError(f"only http and https links are accepted ({hint})")
    netloc = match.group(2) or ""  # what urllib.parse.urlsplit calls netloc
    if "@" in netloc:
        raise PolicyError("links with a user name or password in them are not allowed")
    if (split := _NETLOC_RE.fullmatch(netloc)) is None:
        raise PolicyError("this is not a valid link")
    raw_host, port = split.group(1), split.group(2) or str(_DEFAULT_PORTS[scheme])
    if raw_host in ("", "[]"):
        raise PolicyError("the link has no host name (like www.youtube.com)")
    if not _PORT_RE.match(port) or not 0 < int(port) <= 65535:
        raise PolicyError(f"the port number in the link is not valid ({port})")
    return url, _normalize_host(raw_host, int(port))


def _normalize_host(raw: str, port: int | None = None) -> _Target:
    """Lowercase, one trailing dot dropped, IDNA, IPv6 unbracketed, IPv4 in any spelling
    that ``inet_aton`` (and so the resolver) accepts: ``2130706433``, ``0x7f.1``, ``127.1``."""
    try:
        if raw.startswith("[") or ":" in raw:  # IPv6: bracketed in a URL, bare in a connection
            if "%" in raw:  # a zone ID names a local interface: never a remote host
                raise ValueError(raw)
            ip6 = ipaddress.IPv6Address(raw.strip("[]"))
            return _Target(str(ip6), ip6, port, raw)
        host = raw.lower().removesuffix(".")
        host = host if host.isascii() else host.encode("idna").decode("ascii").lower()
        labels = host.split(".")
        if len(host) > 253 or not all(_LABEL_RE.match(label) for label in labels):
            raise ValueError(raw)
        if not _NUMERIC_LABEL_RE.match(labels[-1]):
            return _Target(host, None, port, raw)
        ip4 = ipaddress.IPv4Address(socket.inet_aton(host))
        return _Target(str(ip4), ip4, port, raw)
    except (ValueError, OSError):  # UnicodeError (IDNA) is a ValueError
        raise PolicyError(f"the host in the link is not valid ({raw})") from None


def _listed(host: str, entries: tuple[str, ...], *, subdomains: bool) -> bool:
    """Exact match or '*'; with ``subdomains``, '.example.com' also matches example.com and
    every name under it (never evilexample.com). Entries are normalized like hosts; one
    that is no valid host is dropped: a typo must not widen the policy."""
    listed = set()
    for entry in (entry.strip() for entry in entries):
        dot = "." if entry.startswith(".") else ""
        with contextlib.suppress(PolicyError):
            listed.add("*" if entry == "*" else dot + _normalize_host(entry[len(dot) :]).host)
    labels = host.split(".")
    return bool(
        {"*", host} & listed
        or (subdomains and any("." + ".".join(labels[i:]) in listed for i in range(len(labels))))
    )


# --- the rules ----------------------------------------------------------------------------

_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address reaches (mapped, 6to4, NAT64), if any."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.ipv4_mapped or ip.sixtofour


def _is_public(ip: IPAddress) -> bool:
    """The address rule: global unicast, an IPv6 address judged by the IPv4 one it embeds;
    never multicast, reserved, site-local or zone-scoped."""
    if isinstance(ip, ipaddress.IPv6Address) and (ip.scope_id or ip.is_site_local):
        return False
    ip = _embedded_ipv4(ip) or ip
    return ip.is_global and not (ip.is_multicast or ip.is_reserved)


def _resolve(target: _Target) -> list[IPAddress]:
    """The addresses a name resolves to; none if it does not (yt-dlp then says so itself)."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return [ipaddress.ip_address(info[4][0]) for info in infos]


def _judge(
    target: _Target, settings: Settings, *, during_run: bool, addresses: Addresses | None = None
) -> None:
    """Raise PolicyError unless the host is listed (or, during a run, is the private
    service) and, unless private networks are allowed, every address is public. The
    addresses (DNS's if None) are asked for last: a host not listed costs no DNS query."""
    if during_run and settings.private_service:  # a validated host:port
        service = _parse(f"http://{settings.private_service}", MAX_URL_LENGTH)[1]
        if (target.host, target.port) == (service.host, service.port):
            return
    if not _listed(target.host, settings.allowed_hosts, subdomains=False) and not (
        during_run and _listed(target.host, settings.media_hosts, subdomains=True)
    ):
        listed = ", ".join(settings.allowed_hosts + (settings.media_hosts if during_run else ()))
        raise PolicyError(f"this host is not allowed: {target.host} (allowed: {listed or 'none'})")
    if settings.allow_private_networks:
        return
    refused = "links to private or local network addresses are not allowed ({})"
    if target.ip is not None:
        real, written = _embedded_ipv4(target.ip) or target.ip, target.written.strip("[]").lower()
        if not _is_public(target.ip):
            shown = written if written == str(real) else f"{written}, that is {real}"
            raise PolicyError(refused.format(shown))
    elif target.host == "localhost" or target.host.endswith(".localhost"):
        raise PolicyError(refused.format(target.host))  # RFC 6761: loopback, whatever DNS says
    else:
        for ip in addresses() if addresses else _resolve(target):
            if not _is_public(ip):
                raise PolicyError(refused.format(f"{target.host} points to {ip}"))


def check(url: str, settings: Settings) -> str:
    """Policy for a link a person submits: returns it stripped of surrounding whitespace,
    or raises :class:`~flows.errors.PolicyError` saying in plain words what is wrong."""
    url, target = _parse(url, MAX_URL_LENGTH)
    _judge(target, settings, during_run=False)
    return url


def check_request(url: str, settings: Settings) -> None:
    """Policy for a request during a run (a playlist entry, redirect, manifest, fragment,
    thumbnail): :func:`check`, plus ``media_hosts`` (a leading dot: that domain and its
    subdomains) and the ``private_service``, up to :data:`MAX_REQUEST_URL_LENGTH` long."""
    _url, target = _parse(url, MAX_REQUEST_URL_LENGTH)
    _judge(target, settings, during_run=True)


# --- the guard ----------------------------------------------------------------------------


class _Scope(NamedTuple):
    """The guarded request this thread is sending."""

    settings: Settings
    via_proxy: bool  # the socket then sees only the proxy: URLs are judged, names resolved


_SCOPE: Final = contextvars.ContextVar[_Scope | None]("ytmp3_url_policy", default=None)


def _uses_proxy(proxies: dict[str, Any]) -> bool:
    return any(url and url != "__noproxy__" for key, url in proxies.items() if key != "no")


def _judge_url(url: str, settings: Settings, *, resolve: bool) -> None:
    """:func:`check_request` for a request yt-dlp sends; names resolved only if ``resolve``."""
    try:
        _url, target = _parse(url, MAX_REQUEST_URL_LENGTH)
        _judge(target, settings, during_run=True, addresses=None if resolve else lambda: ())
    except PolicyError as err:
        shown = re.split(r"[?#]", str(url), maxsplit=1)[0][:100]  # no query: no tokens
        raise RefusedRequest(f"{err} (refused request to {shown})") from err


class GuardedYoutubeDL(yt_dlp.YoutubeDL):
    """A ``YoutubeDL(params, auto_init)``, settings first, whose requests, redirect hops and
    connections obey :func:`check_request`, with :data:`SAFE_YDL_PARAMS` and the proxy of
    ``settings``. A refusal is a :class:`RefusedRequest`, raw or as the ``exc_info`` cause
    of a ``DownloadError``."""

    def __init__(
        self, settings: Settings, params: dict[str, Any] | None = None, auto_init: bool = True
    ) -> None:
        self.url_policy = settings
        proxy = {"proxy": settings.proxy} if settings.proxy else {}
        _install_connection_check()
        _refuse_outside_programs()
        super().__init__({**(params or {}), **SAFE_YDL_PARAMS, **proxy}, auto_init)

    def build_request_director(
        self, handlers: Iterable[type[RequestHandler]], preferences: Any = None
    ) -> RequestDirector:
        kept = [handler for handler in handlers if handler.RH_KEY in _HANDLERS]
        director = super().build_request_director(kept, preferences)
        if _uses_proxy(self.proxies):
            for handler in director.handlers.values():
                _judge_each_hop(handler)
        return director

    def urlopen(self, req: str | Request) -> Response:
        url, proxies = (req, {}) if isinstance(req, str) else (req.url, req.proxies)
        scope = _Scope(self.url_policy, _uses_proxy(proxies or self.proxies))
        _judge_url(url, scope.settings, resolve=scope.via_proxy)
        token = _SCOPE.set(scope)
        try:
            return super().urlopen(req)
        finally:
            _SCOPE.reset(token)

    def dl(self, name: str, info: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if info.get("is_live"):
            raise RefusedRequest(
                "live streams are refused: they never end, and yt-dlp records most "
                "with an outside program (ffmpeg)"
            )
        return super().dl(name, info, *args, **kwargs)


def _install_connection_check() -> None:
    """Wrap ``socket.getaddrinfo``, which both kept handlers call right before connecting:
    inside a guarded request not sent via a proxy, judge the host name (so each redirect
    hop's) and the exact addresses returned. Idempotent; wraps the current resolver."""
    resolver = socket.getaddrinfo
    if getattr(resolver, _MARK, False):
        return

    @functools.wraps(resolver)
    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        scope = _SCOPE.get()
        if scope is None or scope.via_proxy:
            return resolver(host, port, *args, **kwargs)
        results: list[Any] = []

        def resolve() -> list[IPAddress]:
            results.extend(resolver(host, port, *args, **kwargs))
            return [ipaddress.ip_address(info[4][0]) for info in results]

        try:
            name = host.decode() if isinstance(host, bytes) else str(host)
            target = _normalize_host(name, int(port) if str(port).isdigit() else None)
            _judge(target, scope.settings, during_run=True, addresses=resolve)
        except (PolicyError, ValueError) as err:
            raise RefusedRequest(f"{err} (refused connection)") from err
        return results or resolver(host, port, *args, **kwargs)

    setattr(getaddrinfo, _MARK, True)
    socket.getaddrinfo = getaddrinfo


def _judge_each_hop(handler: RequestHandler) -> None:
    """Behind a proxy the socket sees only the proxy, so judge each redirect hop's URL.

    The one use of yt-dlp internals: both kept handlers build their client (an urllib
    ``OpenerDirector``, a ``requests.Session``) in ``_create_instance`` and send every hop
    through its ``open``/``send``. Canary: test_redirect_hops_behind_a_proxy_are_judged.
    """
    create = getattr(handler, "_create_instance", None)
    if create is None:
        raise RuntimeError("yt-dlp changed its request handlers; see flows/sources.py")

    def create_judged(**kwargs: Any) -> Any:
        client = create(**kwargs)
        method = "open" if isinstance(client, urllib.request.OpenerDirector) else "send"
        send = getattr(client, method)

        def judged_send(request: Any, *args: Any, **kw: Any) -> Any:
            scope = _SCOPE.get()
            if scope is not None and scope.via_proxy:
                url = request if isinstance(request, str) else getattr(request, "full_url", None)
                _judge_url(url or request.url, scope.settings, resolve=True)
            return send(request, *args, **kw)

        setattr(client, method, judged_send)
        return client

    handler._create_instance = create_judged  # type: ignore[attr-defined]


def _refuse_outside_programs() -> None:
    """Make ``ExternalFD`` (ffmpeg, aria2c, curl, wget, axel, httpie) and ``RtmpFD``
    (rtmpdump) refuse to run for a GuardedYoutubeDL: params alone cannot stop them, as the
    native HLS downloader hands streams it cannot handle to ffmpeg. Idempotent."""
    for cls in (ExternalFD, RtmpFD):
        original = cls.real_download
        if getattr(original, _MARK, False):
            continue

        def real_download(self: Any, *args: Any, _run: Any = original) -> Any:
            if isinstance(self.ydl, GuardedYoutubeDL):
                raise RefusedRequest(
                    f"this media can only be fetched by an outside program "
                    f"({self.get_basename()}) that the URL policy cannot supervise"
                )
            return _run(self, *args)

        setattr(real_download, _MARK, True)
        cls.real_download = real_download  # type: ignore[method-assign]
