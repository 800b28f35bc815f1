"""The two kinds of failure ytmp3 knows, and the words a person reads for each.

Permanent failures (a refused URL, a removed video, a 404, a limit) fail at once.
Transient ones (timeouts, resets, 429, 5xx) are retried with backoff. :func:`classify`
maps whatever yt-dlp, ffmpeg or the OS raised onto one of the two, with a reason in one
short phrase and, where there is one, advice on what to do; the original text stays in
the run's log. :func:`final_message` is what a run or an item says once it has given up.
:func:`is_transient` is the ``retry_condition_fn`` the tasks use.
"""

from __future__ import annotations

import errno
import re
import socket
import subprocess
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


class ConversionError(Exception):
    """Base of ytmp3's own errors: ``str(err)`` is the reason, written for people.

    ``advice`` says what to do about it, when there is something a person can do.
    """

    def __init__(self, reason: str = "", advice: str | None = None) -> None:
        super().__init__(reason)
        self.advice = advice


class PermanentError(ConversionError):
    """Retrying will not help: bad input, policy refusal, gone or forbidden media, limits."""


class TransientError(ConversionError):
    """Probably passes: network trouble, rate limits, server errors."""


class PolicyError(PermanentError):
    """The URL (or a request made while handling it) is refused by the URL policy."""


class LimitError(PermanentError):
    """The media is over a configured limit (duration, size, playlist items)."""


class DiskFull(PermanentError):
    """The data dir's disk has no room for this conversion (before it, or mid-write).

    Permanent: retrying within seconds finds the same full disk. The message never names a
    path; what was written is removed with the item's workspace.
    """


DISK_FULL_REASON = "the server's disk is full"
DISK_FULL_ADVICE = (
    "free space on the server, or lower YTMP3_MAX_LIBRARY_MB; cleanup removes expired "
    "files every 5 minutes, so try again later"
)
_DISK_FULL_RE = re.compile(r"No space left on device|\[Errno (?:28|122)\]|Disk quota exceeded")


def is_disk_full(text: str) -> bool:
    """Whether an error text (yt-dlp's, ffmpeg's, the OS's) says the disk is full."""
    return _DISK_FULL_RE.search(text) is not None


def disk_full() -> DiskFull:
    """The error of a write that found the disk full, in the words a person reads."""
    return DiskFull(DISK_FULL_REASON, DISK_FULL_ADVICE)


class RateLimited(TransientError):
    """The site is limiting this server's requests (HTTP 429, YouTube's session limit).

    Passes, but only after minutes: :mod:`flows.ratelimit` slows every run down when
    one is seen, instead of each item retrying on its own.
    """


@dataclass(frozen=True)
class _Rule:
    """Text that identifies a failure, and what ytmp3 says about it.

    ``reason`` may name ``{host}`` (the host the failing request went to) and any named
    group of the pattern (``{code}``, ``{when}``). ``kind`` overrides the class that
    ``transient`` picks (:class:`RateLimited`).
    """

    pattern: str
    transient: bool
    reason: str
    advice: str | None = None
    kind: type[ConversionError] | None = None


_CHECK_NETWORK = "check this machine's network or DNS"
DAMAGED = "the file is damaged: ffmpeg could not read its audio"
_DAMAGED_PATTERN = (
    r"Invalid data found when processing input|moov atom not found|partial file"
    r"|could not find codec parameters|Error while decoding|corrupt (?:input|packet|frame)"
    r"|Header missing|ended prematurely|Input buffer exhausted|Input/output error"
)
_LATER = "try again later"

_SLOWER = (
    "ytmp3 slows every run down for a while; if it keeps happening, "
    "set YTMP3_SLEEP_REQUESTS_SECONDS"
)
_COOKIES = "configure YTMP3_COOKIES_FILE (see README)"
_APOSTROPHE = "['\u2019]"  # YouTube writes a typographic apostrophe, yt-dlp a plain one

_RULES: tuple[_Rule, ...] = (
    # Rate limits first: they are the one kind that must slow the whole service down.
    _Rule(r"HTTP Error 429", True, "{host} is limiting requests (HTTP 429)", _SLOWER, RateLimited),
    _Rule(
        rf"rate-limited by YouTube|This content isn{_APOSTROPHE}t available, try again later",
        True,
        "YouTube is limiting this server's requests",
        _SLOWER,
        RateLimited,
    ),
    # YouTube's own refusals (its playability reasons, as yt-dlp passes them on), most
    # specific first: each of them also says "Sign in" or "Video unavailable".
    _Rule(
        rf"confirm you{_APOSTROPHE}re not a bot|captcha challenge",
        False,
        "YouTube asks this server to sign in (bot check)",
        f"{_COOKIES[:-1]}, or a PO-token provider with YTMP3_YTDLP_EXTRACTOR_ARGS)",
    ),
    _Rule(
        r"Sign in to confirm your age|age.restricted|age.verification|inappropriate for some users",
        False,
        "the video is age-restricted",
        f"{_COOKIES[:-1]}, from an adult account)",
    ),
    _Rule(r"Private video|This video is private", False, "the video is private"),
    _Rule(
        r"members.only|Join this channel|channel's members",
        False,
        "the video is for channel members only",
        f"{_COOKIES[:-1]}, from a member's account)",
    ),
    _Rule(r"copyright", False, "the video was taken down for copyright"),
    _Rule(r"removed by the uploader", False, "the video was removed by the uploader"),
    _Rule(
        r"not made this video available in your country|not available in your country"
        r"|not available from your location|geo.?restrict",
        False,
        "the video is blocked in this server's country",
        "set YTMP3_PROXY to a proxy in a country where it is available",
    ),
    _Rule(
        r"live event will begin (?P<when>(?:in|on|at) [^.\n]+|shortly)",
        False,
        "the live event begins {when}",
        "convert it once it has aired",
    ),
    _Rule(
        r"Premieres? (?:will begin )?(?P<when>in [^.\n]+|shortly)",
        False,
        "the premiere begins {when}",
        "convert it once it has aired",
    ),
    # HTTP status next: a 404 is permanent although "Unable to download" comes with it.
    _Rule(r"HTTP Error (?P<code>5\d\d)", True, "{host} had a server error (HTTP {code})", _LATER),
    _Rule(r"HTTP Error (?P<code>404|410)", False, "{host} has no such page (HTTP {code})"),
    _Rule(r"HTTP Error (?P<code>4\d\d)", False, "{host} refused the request (HTTP {code})"),
    _Rule(r"Unsupported URL", False, "no video or audio was found at that address"),
    _Rule(
        r"Video unavailable|has been removed|no longer available|account .* terminated",
        False,
        "the video is unavailable or was removed",
    ),
    _Rule(
        r"Requested format is not available|No video formats found|Only images are available",
        False,
        "no audio stream was found",
        "for YouTube, run python -m flows.doctor (a JavaScript runtime is needed)",
    ),
    _Rule(r"is not a valid URL", False, "that is not a valid link"),
    # The media itself: cut short, damaged, empty. Retried once or twice: a network can cut
    # a file as well as a server can.
    _Rule(_DAMAGED_PATTERN, True, DAMAGED),
    _Rule(r"Did not get any data blocks", True, "the server sent an empty file", _LATER),
    # Network trouble: say which host, and that it is this machine's network to check.
    _Rule(
        r"Temporary failure in name resolution|Name or service not known|Failed to resolve"
        r"|No address associated with hostname|getaddrinfo failed",
        True,
        "could not reach {host} (name lookup failed)",
        _CHECK_NETWORK,
    ),
    _Rule(
        r"Connection refused|Errno 111",
        True,
        "could not reach {host} (connection refused)",
        "check that the site is up and this machine's network",
    ),
    _Rule(
        r"Network is unreachable|No route to host|Errno 10[13]",
        True,
        "could not reach {host} (network unreachable)",
        _CHECK_NETWORK,
    ),
    _Rule(r"timed? ?out", True, "{host} did not answer in time", f"{_CHECK_NETWORK}, or {_LATER}"),
    _Rule(
        r"Connection (?:reset|aborted)|Remote end closed|RemoteDisconnected|IncompleteRead"
        r"|incomplete read|bytes read|EOF occurred|Broken pipe|Errno 10[34]",
        True,
        "the connection to {host} broke off",
        _LATER,
    ),
    _Rule(r"fragment|Unable to download", True, "the download from {host} failed", _LATER),
)

_HOST_IN_TEXT = re.compile(r"host='(?P<host>[^']+)'|Failed to resolve '(?P<name>[^']+)'")


def classify(exc: BaseException, url: str | None = None) -> ConversionError:
    """Return ``exc`` as a :class:`PermanentError` or :class:`TransientError`.

    yt-dlp reports nearly everything as ``DownloadError`` with the cause in its text (and
    sometimes in ``exc_info``), so matching on the message is the only general way; the
    first rule that matches wins. ``url`` names the host when the text does not.
    """
    if isinstance(exc, ConversionError):
        return exc
    cause = getattr(exc, "exc_info", None)
    if cause and isinstance(cause[1], ConversionError):
        return cause[1]
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return disk_full()
    if isinstance(exc, subprocess.TimeoutExpired):
        return TransientError(
            f"{_program(exc.cmd)} took longer than {exc.timeout:.0f} s",
            "raise YTMP3_FFMPEG_TIMEOUT_SECONDS for very long media",
        )
    text = str(exc)
    if is_disk_full(text):  # before the rules: "Unable to download" may come with it
        return disk_full()
    if isinstance(exc, (socket.timeout, TimeoutError)) and not re.search("timed? ?out", text):
        text = f"timed out: {text}"
    error = _by_rule(text, url)
    if error is not None:
        return error
    if isinstance(exc, ConnectionError):
        return TransientError(f"the connection to {_host(text, url)} broke off", _LATER)
    return PermanentError(first_line(text))


def program_failed(program: str, output: str) -> ConversionError:
    """What a failed ffmpeg or ffprobe run on a downloaded file means, in words that name
    no file (``output``, its stderr, names the scratch files: it belongs in the run's log).
    """
    if re.search(_DAMAGED_PATTERN, output, re.IGNORECASE):
        return TransientError(DAMAGED)
    return PermanentError(f"{program} could not convert the audio (its output is in the run's log)")


def _by_rule(text: str, url: str | None) -> ConversionError | None:
    """The first rule that matches ``text``, as an error; None when none does."""
    for rule in _RULES:
        match = re.search(rule.pattern, text, re.IGNORECASE)
        if match:
            groups = {name: value or "" for name, value in match.groupdict().items()}
            fields = {"host": _host(text, url), "code": "", **groups}
            kind = rule.kind or (TransientError if rule.transient else PermanentError)
            return kind(rule.reason.format(**fields), rule.advice)
    return None


def final_message(error: ConversionError, attempts: int = 1) -> str:
    """What a run or item says once it has given up: reason, attempts made, advice.

    ``attempts`` counts only for transient errors (a permanent one is never retried).
    """
    text = str(error) or "the conversion failed"
    if isinstance(error, TransientError) and attempts > 1:
        text += f" after {attempts} attempts"
    if error.advice:
        text += f"; {error.advice}"
    return text


def is_transient(task: Any, task_run: Any, state: Any) -> bool:
    """``retry_condition_fn`` for Prefect tasks: retry only what may pass."""
    try:
        state.result()
    except Exception as exc:  # the task's own exception, re-raised by Prefect
        return isinstance(classify(exc), TransientError)
    return False


def _host(text: str, url: str | None) -> str:
    match = _HOST_IN_TEXT.search(text)
    if match:
        return match["host"] or match["name"]
    host = urlsplit(url).hostname if url else None
    return host or "the site"


def _program(cmd: object) -> str:
    argv = cmd if isinstance(cmd, (list, tuple)) else [cmd]
    return str(argv[0]).rsplit("/", 1)[-1] if argv else "a program"


def first_line(text: str) -> str:
    """The first line of an error's text, without yt-dlp's ``ERROR: [extractor] id:`` prefix."""
    text = re.sub(r"^ERROR:\s*", "", text.strip())
    text = re.sub(r"^\[[^\]]+\]\s*(?:[\w-]+:\s*)?", "", text)
    return text.splitlines()[0] if text else "unknown error"
