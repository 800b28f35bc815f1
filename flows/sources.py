"""URL policy: which links ytmp3 accepts, and which requests yt-dlp may make for them.

A link a person pastes is untrusted input that makes *our* server fetch things. Left
alone, that turns ytmp3 into a proxy into the network it runs in (cloud metadata at
169.254.169.254, the Prefect API, anything on localhost) and into a downloader for any
site on the internet. So there are two doors, and a guard that keeps yt-dlp behind them:

* :func:`check` — the link a person submits: http(s) only, a host on
  ``settings.allowed_hosts``, and (unless ``settings.allow_private_networks``) no
  private, loopback, link-local or otherwise non-public address, in any spelling.
* :func:`check_request` — every request made while handling that link (redirect hops,
  manifests, fragments, thumbnails, playlist entries): the same rules, except the host may
  also be one of ``settings.media_hosts`` (the CDNs that serve the media itself).
* :func:`guard` — makes one ``yt_dlp.YoutubeDL`` enforce :func:`check_request` on every
  request it makes, each redirect hop included, *before* a connection is opened.

Why the guard has several layers instead of one check before ``extract_info``: the danger
is not the URL typed in but where it leads. A harmless page can redirect to
``http://169.254.169.254/``, a manifest can list fragments on ``localhost``, and a host
name can resolve to one address when it is checked and to another when yt-dlp connects
(DNS rebinding). yt-dlp's request handlers follow redirects internally, so a check that
only sees the first URL sees none of that. The layers, and what each one is for:

1. **Director** — ``YoutubeDL.urlopen`` hands every request to one ``RequestDirector``
   (extractors, the HTTP/HLS/DASH downloaders, thumbnails, subtitles all use it). The
   guard checks each request's URL there, whatever handler would send it, and removes the
   handlers it cannot supervise (anything but ``urllib`` and ``requests``: websockets,
   curl_cffi), so an unknown handler fails closed instead of open.
2. **Redirect hops** — inside the two kept handlers, every hop goes through one method:
   ``OpenerDirector.open`` for urllib (its redirect handler calls ``parent.open``) and
   ``Session.send`` for requests (``resolve_redirects`` calls ``self.send``). The guard
   wraps those on the handler's own opener/session, so each hop's final URL is checked
   before that hop connects.
3. **Connection** — while a guarded request is being sent, ``socket.getaddrinfo`` results
   are checked against the private-network rules. Both handlers connect to exactly the
   addresses that call returns, so the address that is checked is the address that is
   used: DNS rebinding has no window. (The hook is installed once per process and does
   nothing outside a guarded request.) Behind a proxy the socket only ever sees the
   proxy, so then layers 1 and 2 resolve names themselves instead.

Use in media code::

    ydl = yt_dlp.YoutubeDL({**params, **SAFE_YDL_PARAMS})
    sources.guard(ydl, settings)  # before the first request

Programs that fetch URLs on their own (ffmpeg as HLS downloader, aria2c, rtmpdump, …)
cannot be supervised at all; a guarded ``YoutubeDL`` refuses to start them (see
:data:`SAFE_YDL_PARAMS`). Running ffmpeg on local files (transcoding, tagging) is
unaffected.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import ipaddress
import re
import socket
import unicodedata
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import yt_dlp
from yt_dlp.networking.common import Request, RequestDirector, RequestHandler, Response
from yt_dlp.networking.exceptions import CertificateVerifyError

from flows.errors import PolicyError
from flows.settings import Settings

__all__ = [
    "MAX_REQUEST_URL_LENGTH",
    "MAX_URL_LENGTH",
    "SAFE_YDL_PARAMS",
    "RefusedRequest",
    "check",
    "check_request",
    "guard",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH: Final = 2048
"""Longest link a person may submit. Real video and playlist links are far shorter; the
limit keeps pasted junk out of logs, flow parameters and error messages."""

MAX_REQUEST_URL_LENGTH: Final = 16384
"""Longest URL yt-dlp may request during a run. Deliberately above :data:`MAX_URL_LENGTH`:
signed CDN and fragment URLs that sites hand out (long tokens in the query) routinely pass
2,048 characters, and refusing them would break downloads without protecting anything."""

SAFE_YDL_PARAMS: Final[dict[str, Any]] = {
    # m3u8 goes to yt-dlp's native HLS downloader (fragments through ydl.urlopen, so
    # guarded) instead of ffmpeg, which would fetch the playlist and segments itself.
    "hls_prefer_native": True,
    # Never hand a URL to aria2c/curl/wget/axel/ffmpeg: "native" for every protocol.
    "external_downloader": {"default": "native"},
    # file:// would read the worker's own disk (yt-dlp's default; stated for clarity).
    "enable_file_urls": False,
}
"""yt-dlp params the media code must merge into every ``YoutubeDL`` it guards.

:func:`guard` applies them too, but passing them at construction keeps ``ydl.params``
honest from the start. With them, yt-dlp downloads HTTP, HLS and DASH media itself, so
every byte goes through the guarded request path. Do not pass ``download_ranges``,
``external_downloader`` or ``hls_prefer_native=False``: each makes ffmpeg (or another
program) fetch URLs directly, which a guarded ``YoutubeDL`` refuses with
:class:`RefusedRequest`. Live streams are refused for the same reason (yt-dlp always
records them with ffmpeg).
"""


class RefusedRequest(CertificateVerifyError, PolicyError):
    """A request inside a guarded ``YoutubeDL`` that the URL policy refused.

    It is a :class:`~flows.errors.PolicyError`, so :func:`flows.errors.classify` reports it
    as permanent whether it arrives raw or as the ``exc_info`` cause of a yt-dlp
    ``DownloadError``. It is also a yt-dlp ``CertificateVerifyError`` because that is the
    one network error yt-dlp treats the way a refusal must be treated:

    * it is a ``RequestError``, so the ``RequestDirector`` re-raises it instead of logging
      an "unexpected error" and retrying the request through the next handler;
    * it is a ``TransportError``, so extractors wrap it in ``ExtractorError`` (cause kept)
      and a refused optional request (a thumbnail, a non-fatal API call) is a warning, not
      a crash;
    * the HTTP downloader re-raises it at once instead of retrying, and the fragment
      downloader neither retries nor *skips* it, so a refused fragment can never be
      silently left out of a published file.

    Like a certificate failure, it means: the connection was refused for safety reasons
    and trying again will not change that.
    """


# --- parsing and normalization ----------------------------------------------------------

_SCHEME_RE: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_LABEL_RE: Final = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_NUMERIC_LABEL_RE: Final = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")
_PORT_RE: Final = re.compile(r"^[0-9]{1,5}$")


@dataclass(frozen=True)
class _Target:
    """What a URL would make a client connect to, after normalization."""

    host: str  # lowercase ASCII name, dotted-quad IPv4 or compressed IPv6 (no brackets)
    ip: IPAddress | None  # set when the host is an address in any spelling
    port: int | None
    written: str = ""  # the host as it appeared in the link, for messages

    def describe(self) -> str:
        """The address for a message: as written, and what it really is if that differs."""
        real = self.ip
        if isinstance(real, ipaddress.IPv6Address):
            real = _embedded_ipv4(real) or real
        written = self.written.strip("[]").lower() or self.host
        return written if written == str(real) else f"{written}, that is {real}"


def _has_hidden_characters(text: str) -> bool:
    """True for whitespace, control, format (zero-width, bidi), private-use or unassigned
    characters: none belongs in a link, and several are used to make one look like another."""
    return any(char.isspace() or unicodedata.category(char)[0] in "CZ" for char in text)


def _parse(url: object, max_length: int) -> tuple[str, _Target]:
    """Check the shape of ``url`` and return it (stripped) with its normalized target.

    Everything here is independent of settings: scheme, length, hidden characters,
    credentials, host syntax. Refusing anything ambiguous is the point — a URL that two
    parsers could read differently is how allowlists get bypassed.
    """
    if not isinstance(url, str):
        raise PolicyError("a link must be text")
    url = url.strip()
    if not url:
        raise PolicyError("the link is empty")
    if len(url) > max_length:
        raise PolicyError(
            f"the link is too long ({len(url):,} characters; at most {max_length:,} are accepted)"
        )
    if _has_hidden_characters(url):
        raise PolicyError("the link contains spaces or control characters; copy it again")
    match = _SCHEME_RE.match(url)
    if match is None:
        raise PolicyError(
            "only http and https links are accepted (the link must start with https://)"
        )
    scheme = match.group(1).lower()
    if scheme not in ("http", "https"):
        raise PolicyError(f"only http and https links are accepted, not {scheme}: links")
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        raise PolicyError("this is not a valid link") from None
    netloc = parts.netloc
    if "@" in netloc:
        raise PolicyError("links with a user name or password in them are not allowed")
    raw_host, port = _split_host_port(netloc)
    if not raw_host or raw_host == "[]":
        raise PolicyError("the link has no host name (like www.youtube.com)")
    return url, _normalize_host(raw_host, port)


def _split_host_port(netloc: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` / ``[v6][:port]`` without trusting anything after the host."""
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise PolicyError("this is not a valid link")
        host, rest = netloc[: end + 1], netloc[end + 1 :]
        if rest and not rest.startswith(":"):
            raise PolicyError("this is not a valid link")
        port_text = rest[1:] if rest else ""
    else:
        host, _, port_text = netloc.partition(":")
    if not port_text:
        return host, None
    if not _PORT_RE.match(port_text) or not 0 < int(port_text) <= 65535:
        raise PolicyError(f"the port number in the link is not valid ({port_text})")
    return host, int(port_text)


def _normalize_host(raw: str, port: int | None = None) -> _Target:
    """Lowercase, drop one trailing dot, IDNA-encode, unbracket IPv6, canonicalize IPv4.

    Numeric hosts that ``inet_aton`` accepts (``2130706433``, ``0x7f000001``,
    ``0177.0.0.1``, ``127.1``) are addresses: the C resolver behind urllib and urllib3
    connects to them as such, so they must be judged as such. A host whose last label is
    numeric but that is no valid address is refused rather than guessed at.
    """
    if raw.startswith("["):
        inner = raw[1:-1] if raw.endswith("]") else ""
        try:
            if "%" in inner:  # a zone ID names a local interface: never a remote host
                raise ValueError(inner)
            ip6 = ipaddress.IPv6Address(inner)
        except ValueError:
            raise PolicyError(f"the address in the link is not valid ({raw})") from None
        return _Target(str(ip6), ip6, port, raw)
    host = raw.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host:
        raise PolicyError("the link has no host name (like www.youtube.com)")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise PolicyError(f"the host name in the link is not valid ({raw})") from None
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL_RE.match(label) for label in labels):
        raise PolicyError(f"the host name in the link is not valid ({raw})")
    if _NUMERIC_LABEL_RE.match(labels[-1]):
        try:
            packed = socket.inet_aton(host)
        except OSError:
            raise PolicyError(f"the address in the link is not valid ({raw})") from None
        ip4 = ipaddress.IPv4Address(packed)
        return _Target(str(ip4), ip4, port, raw)
    return _Target(host, None, port, raw)


@functools.lru_cache(maxsize=64)
def _normalized_entries(entries: tuple[str, ...]) -> frozenset[str]:
    """Host list entries normalized like hosts ('*' and a leading '.' kept as markers).

    Entries that are no valid host cannot match anything and are dropped; settings
    validation is not this module's job, and a typo must not widen the policy.
    """
    result: set[str] = set()
    for entry in entries:
        entry = entry.strip()
        if entry == "*":
            result.add("*")
            continue
        dot = "." if entry.startswith(".") else ""
        try:
            target = _normalize_host(entry[len(dot) :])
        except PolicyError:
            continue
        result.add(dot + target.host)
    return frozenset(result)


def _host_listed(host: str, entries: frozenset[str], *, subdomains: bool) -> bool:
    """Exact match; with ``subdomains``, an entry ``.example.com`` also matches
    ``example.com`` and every name under it (never ``evilexample.com``)."""
    if "*" in entries or host in entries:
        return True
    if subdomains:
        labels = host.split(".")
        return any("." + ".".join(labels[i:]) in entries for i in range(len(labels)))
    return False


# --- addresses --------------------------------------------------------------------------

_REFUSED_NETWORKS: Final[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]] = tuple(
    ipaddress.ip_network(net)
    for net in (
        # IANA special-purpose IPv4 ranges that are not the public internet.
        "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches localhost on Linux
        "10.0.0.0/8",
        "100.64.0.0/10",  # shared address space (carrier-grade NAT)
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata services
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
        # IPv6 (embedded IPv4 forms are unwrapped before this list is consulted).
        "::/8",  # unspecified, loopback, IPv4-compatible, IPv4-translated, reserved
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments, Teredo
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "5f00::/16",  # SRv6 SIDs
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
"""Explicit, so the verdict does not shift with the Python version's ``is_private``."""

_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, NAT64), if any.

    Such addresses reach the embedded IPv4 host, so ``[::ffff:127.0.0.1]`` must be judged
    as 127.0.0.1, not as "some IPv6 address".
    """
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _is_refused_address(ip: IPAddress) -> bool:
    """True for every address that is not plainly on the public internet."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:  # link-scoped by definition
            return True
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return _is_refused_address(embedded)
    return (
        any(ip in net for net in _REFUSED_NETWORKS if net.version == ip.version)
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_unspecified
        or ip.is_reserved
        or not ip.is_global
    )


def _private_refusal(detail: str) -> PolicyError:
    return PolicyError(f"links to private or local network addresses are not allowed ({detail})")


def _resolve(host: str, port: int | None) -> list[IPAddress]:
    """Addresses ``host`` resolves to; empty when it does not resolve.

    A name that does not resolve is not a policy matter: nothing can be fetched from it,
    and yt-dlp reports that in its own words ("Name or service not known"), which
    :mod:`flows.errors` already classifies.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError):
        return []
    return [ip for ip in (_sockaddr_ip(info[4]) for info in infos) if ip is not None]


def _sockaddr_ip(sockaddr: Any) -> IPAddress | None:
    try:
        return ipaddress.ip_address(str(sockaddr[0]))
    except (ValueError, IndexError, TypeError):
        return None


def _check_addresses(target: _Target, *, resolve: bool) -> None:
    """The private-network rule: literal addresses always, names via DNS if ``resolve``."""
    if target.ip is not None:
        if _is_refused_address(target.ip):
            raise _private_refusal(target.describe())
        return
    if target.host == "localhost" or target.host.endswith(".localhost"):
        raise _private_refusal(target.host)  # RFC 6761: always loopback, DNS or not
    if resolve:
        for ip in _resolve(target.host, target.port):
            if _is_refused_address(ip):
                raise _private_refusal(f"{target.host} points to {ip}")


# --- the two doors ----------------------------------------------------------------------


def _check(url: object, settings: Settings, *, during_run: bool, resolve: bool) -> str:
    """Shared body of :func:`check` and :func:`check_request`.

    The allowlist comes before the address rules, so a host that is not on the list is
    refused without a DNS query (which would itself tell that host's DNS server we looked).
    """
    max_length = MAX_REQUEST_URL_LENGTH if during_run else MAX_URL_LENGTH
    url, target = _parse(url, max_length)
    allowed = _host_listed(
        target.host, _normalized_entries(tuple(settings.allowed_hosts)), subdomains=False
    )
    if not allowed and during_run:
        allowed = _host_listed(
            target.host, _normalized_entries(tuple(settings.media_hosts)), subdomains=True
        )
    if not allowed:
        listed = list(settings.allowed_hosts) + (list(settings.media_hosts) if during_run else [])
        raise PolicyError(
            f"this host is not allowed: {target.host} (allowed: {', '.join(listed) or 'none'})"
        )
    if not settings.allow_private_networks:
        _check_addresses(target, resolve=resolve)
    return url


def check(url: str, settings: Settings) -> str:
    """Policy for a URL a person submits.

    Returns the URL stripped of surrounding whitespace, or raises
    :class:`~flows.errors.PolicyError` whose message says in plain words what is wrong.
    Host names are resolved (unless private networks are allowed) so that a name pointing
    at a private address is refused up front; :func:`guard` re-checks at connect time.
    """
    return _check(url, settings, during_run=False, resolve=True)


def check_request(url: str, settings: Settings) -> None:
    """Policy for every request made during a run (redirect targets, manifests,
    fragments, thumbnails, playlist entries).

    Like :func:`check`, but the host may also be on ``settings.media_hosts`` (an entry
    with a leading dot matches that domain and all its subdomains; others match exactly),
    and the length limit is :data:`MAX_REQUEST_URL_LENGTH`. Raises
    :class:`~flows.errors.PolicyError`.
    """
    _check(url, settings, during_run=True, resolve=True)


# --- the guard --------------------------------------------------------------------------

_SUPERVISED_HANDLERS: Final = frozenset({"Urllib", "Requests"})
"""Request handlers whose redirect loop the guard hooks; all others are removed."""

_MARK: Final = "_ytmp3_url_policy"
"""Attribute on a guarded ``YoutubeDL`` (its settings); read by the downloader hook."""

_HOOKED: Final = "_ytmp3_url_policy_hook"
"""Marks functions this module installed, so installing twice is a no-op."""


@dataclass(frozen=True)
class _Scope:
    """The policy in force while one guarded request is being sent (layer 3 reads it)."""

    settings: Settings
    via_proxy: bool  # the socket then sees only the proxy, so names are resolved up front


_ACTIVE: Final[contextvars.ContextVar[_Scope | None]] = contextvars.ContextVar(
    "ytmp3_url_policy", default=None
)


def _display(url: str) -> str:
    """The URL without its query, shortened: enough for a person, no tokens in logs."""
    try:
        parts = urllib.parse.urlsplit(url)
        shown = f"{parts.scheme}://{parts.netloc}{parts.path}"
    except ValueError:
        shown = url
    return shown if len(shown) <= 100 else shown[:99] + "…"


def _enforce(url: str, settings: Settings, *, resolve: bool) -> None:
    """:func:`check_request` for a request yt-dlp is about to make; raises
    :class:`RefusedRequest` so yt-dlp handles the refusal as described there."""
    try:
        _check(url, settings, during_run=True, resolve=resolve)
    except PolicyError as err:
        raise RefusedRequest(f"{err} (refused request to {_display(url)})") from err


def _resolve_up_front(settings: Settings) -> bool:
    """Whether URL-level checks must resolve names: only when a proxy hides the real
    connection from the socket hook (layer 3), which otherwise does it at connect time."""
    scope = _ACTIVE.get()
    return scope is None or scope.via_proxy or scope.settings is not settings


def _checked_hop(
    send: Callable[..., Any], url_of: Callable[[Any], str], settings: Settings
) -> Callable[..., Any]:
    """Wrap the per-hop send of a handler's opener/session with the request policy."""

    @functools.wraps(send)
    def hop(request: Any, *args: Any, **kwargs: Any) -> Any:
        _enforce(url_of(request), settings, resolve=_resolve_up_front(settings))
        return send(request, *args, **kwargs)

    return hop


def _urllib_url(request: Any) -> str:
    return request if isinstance(request, str) else str(request.full_url)


def _supervise_handler(handler: RequestHandler, settings: Settings) -> bool:
    """Hook the redirect loop of ``handler``; False if it is not one the guard knows.

    Both handlers build their opener/session lazily in ``_create_instance`` (one per
    cookie jar / proxy combination); the wrapper hooks each one as it is made.
    """
    key = handler.RH_KEY
    create = getattr(handler, "_create_instance", None)
    if key not in _SUPERVISED_HANDLERS or create is None:
        return False

    def create_supervised(**kwargs: Any) -> Any:
        instance = create(**kwargs)
        if key == "Urllib":  # HTTPRedirectHandler follows hops via parent.open()
            instance.open = _checked_hop(instance.open, _urllib_url, settings)
        else:  # requests' resolve_redirects sends each hop via self.send()
            instance.send = _checked_hop(instance.send, lambda prepared: prepared.url, settings)
        return instance

    handler._create_instance = create_supervised  # type: ignore[method-assign]
    return True


def _uses_proxy(proxies: dict[str, Any]) -> bool:
    return any(value and value != "__noproxy__" for key, value in proxies.items() if key != "no")


def _supervise_director(director: RequestDirector, settings: Settings) -> None:
    """Layers 1 and 2 on a freshly built director (see the module docstring)."""
    for key, handler in list(director.handlers.items()):
        if not _supervise_handler(handler, settings):
            handler.close()
            del director.handlers[key]
    send = director.send

    @functools.wraps(send)
    def supervised_send(request: Request) -> Response:
        default_proxies = (
            next(iter(director.handlers.values())).proxies if director.handlers else {}
        )
        scope = _Scope(settings, via_proxy=_uses_proxy(request.proxies or default_proxies))
        _enforce(request.url, settings, resolve=scope.via_proxy)
        _install_resolver_hook()
        token = _ACTIVE.set(scope)
        try:
            return send(request)
        finally:
            _ACTIVE.reset(token)

    director.send = supervised_send  # type: ignore[method-assign]


def _install_resolver_hook() -> None:
    """Layer 3: judge the addresses a guarded request is about to connect to.

    A wrapper around ``socket.getaddrinfo`` (the resolver both urllib and urllib3 call
    right before connecting), active only while a guarded request is being sent in this
    thread/context. A new wrapper closes over whatever ``getaddrinfo`` is current, so it
    composes with others (tests' fake DNS included) and is reinstalled if replaced.
    """
    current = socket.getaddrinfo
    if getattr(current, _HOOKED, False):
        return

    @functools.wraps(current, updated=())
    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        results = current(host, port, *args, **kwargs)
        scope = _ACTIVE.get()
        if scope is None or scope.via_proxy or scope.settings.allow_private_networks:
            return results
        name = host.decode("ascii", "replace") if isinstance(host, bytes) else str(host)
        for info in results:
            ip = _sockaddr_ip(info[4])
            if ip is None or _is_refused_address(ip):  # unreadable counts as refused
                detail = name if ip is None or name == str(ip) else f"{name} points to {ip}"
                raise RefusedRequest(f"{_private_refusal(detail)} (refused connection)")
        return results

    setattr(getaddrinfo, _HOOKED, True)
    socket.getaddrinfo = getaddrinfo


def _install_downloader_hook() -> None:
    """Refuse, for guarded ``YoutubeDL`` objects only, downloaders that run a program which
    fetches URLs itself: every ``ExternalFD`` (ffmpeg, aria2c, curl, wget, axel, httpie)
    and ``RtmpFD`` (rtmpdump). Params alone cannot stop this: the native HLS downloader
    hands a stream to ffmpeg when it meets features it does not support."""
    from yt_dlp.downloader.external import ExternalFD
    from yt_dlp.downloader.rtmp import RtmpFD

    for cls in (ExternalFD, RtmpFD):
        original = cls.__dict__["real_download"]
        if getattr(original, _HOOKED, False):
            continue

        @functools.wraps(original)
        def real_download(
            self: Any, filename: str, info_dict: dict[str, Any], _original: Any = original
        ) -> Any:
            settings = getattr(self.ydl, _MARK, None)
            if isinstance(settings, Settings) and not _is_open_policy(settings):
                raise RefusedRequest(
                    f"this media can only be fetched by an outside program "
                    f"({self.get_basename()}) that the link checks cannot supervise, "
                    "so it is refused"
                )
            return _original(self, filename, info_dict)

        setattr(real_download, _HOOKED, True)
        cls.real_download = real_download


def _is_open_policy(settings: Settings) -> bool:
    """Any host and private networks allowed: there is nothing left to enforce."""
    return "*" in settings.allowed_hosts and settings.allow_private_networks


def guard(ydl: yt_dlp.YoutubeDL, settings: Settings) -> None:
    """Make every HTTP request this YoutubeDL makes pass :func:`check_request`, each
    redirect hop included, before any connection is opened to a refused address.

    Call it right after constructing the ``YoutubeDL`` (it is idempotent; calling it again
    replaces the settings). It applies :data:`SAFE_YDL_PARAMS`, rebuilds the request
    director with the layers described in the module docstring (also after
    ``ydl.close()``, which drops the director), and marks ``ydl`` so that downloaders
    running outside programs refuse to start. A refusal surfaces as
    :class:`RefusedRequest` — raw, or as the ``exc_info`` cause of yt-dlp's
    ``DownloadError`` — which :func:`flows.errors.classify` reports as permanent.
    """
    ydl.params.update(copy.deepcopy(SAFE_YDL_PARAMS))
    setattr(ydl, _MARK, settings)
    _install_resolver_hook()
    _install_downloader_hook()

    build = functools.partial(type(ydl).build_request_director, ydl)

    def build_supervised(
        handlers: Iterable[type[RequestHandler]], preferences: Any = None
    ) -> RequestDirector:
        director = build(handlers, preferences)
        _supervise_director(director, settings)
        return director

    ydl.build_request_director = build_supervised  # type: ignore[method-assign]
    existing = ydl.__dict__.pop("_request_director", None)  # a functools.cached_property
    if existing is not None:
        existing.close()
