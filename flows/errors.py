"""The two kinds of failure ytmp3 knows, and how to tell them apart.

Permanent failures (a refused URL, a removed video, a 404, a limit) fail at once with a
message a person understands. Transient ones (timeouts, resets, 429, 5xx) are retried
with backoff. :func:`classify` maps whatever yt-dlp, ffmpeg or the OS raised onto one of
the two; :func:`is_transient` is the ``retry_condition_fn`` the tasks use.
"""

from __future__ import annotations

import re
import socket
import subprocess
from typing import Any


class ConversionError(Exception):
    """Base of ytmp3's own errors; ``str(err)`` is meant for people."""


class PermanentError(ConversionError):
    """Retrying will not help: bad input, policy refusal, gone or forbidden media, limits."""


class TransientError(ConversionError):
    """Probably passes: network trouble, rate limits, server errors."""


class PolicyError(PermanentError):
    """The URL (or a request made while handling it) is refused by the URL policy."""


class LimitError(PermanentError):
    """The media is over a configured limit (duration, size, playlist items)."""


_PERMANENT_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"HTTP Error 4(?:0[0-9]|1[0-9]|2[0-8]|3[0-9]|[4-9][0-9])\b", "the server refused it"),
    (r"Unsupported URL", "no video or audio was found at that address"),
    (r"Private video|This video is private", "the video is private"),
    (
        r"Video unavailable|has been removed|no longer available|account .* terminated",
        "the video is unavailable or was removed",
    ),
    (r"Sign in to confirm your age|age.restricted", "the video is age-restricted"),
    (r"members.only|Join this channel", "the video is for channel members only"),
    (r"not available in your country|geo.?restrict", "the video is blocked in this region"),
    (r"Requested format is not available|No video formats found", "no audio stream was found"),
    (r"is not a valid URL", "that is not a valid URL"),
    (r"Invalid data found when processing input|moov atom not found", "the media is corrupt"),
)

_TRANSIENT_PATTERNS: tuple[str, ...] = (
    r"HTTP Error (?:429|5\d\d)",
    r"timed? ?out",
    r"Connection (?:refused|reset|aborted)",
    r"Remote end closed connection",
    r"IncompleteRead|incomplete read|bytes read",
    r"Temporary failure in name resolution|Name or service not known",
    r"fragment|Unable to download",
    r"Network is unreachable|No route to host|Broken pipe",
    r"EOF occurred|RemoteDisconnected|ConnectionError|Errno 10[34]",
)


def _first_line(text: str) -> str:
    text = re.sub(r"^ERROR:\s*", "", text.strip())
    text = re.sub(r"^\[[^\]]+\]\s*(?:[\w-]+:\s*)?", "", text)
    return text.splitlines()[0] if text else "unknown error"


def classify(exc: BaseException) -> ConversionError:
    """Return ``exc`` as a :class:`PermanentError` or :class:`TransientError`.

    yt-dlp reports nearly everything as ``DownloadError`` with the cause in its text (and
    sometimes in ``exc_info``), so matching on the message is the only general way. The
    order matters: a 404 is permanent even though "Unable to download" appears with it.
    """
    if isinstance(exc, ConversionError):
        return exc
    cause = getattr(exc, "exc_info", None)
    if cause and isinstance(cause[1], ConversionError):
        return cause[1]
    if isinstance(exc, subprocess.TimeoutExpired):
        return TransientError(f"ffmpeg took longer than {exc.timeout:.0f} s")
    if isinstance(exc, (socket.timeout, TimeoutError, ConnectionError)):
        return TransientError(f"network trouble: {exc}")
    text = str(exc)
    for pattern, meaning in _PERMANENT_PATTERNS:
        if re.search(pattern, text, re.IGNORECASE):
            return PermanentError(f"{meaning} ({_first_line(text)})")
    for pattern in _TRANSIENT_PATTERNS:
        if re.search(pattern, text, re.IGNORECASE):
            return TransientError(f"network trouble, will retry ({_first_line(text)})")
    return PermanentError(_first_line(text))


def is_transient(task: Any, task_run: Any, state: Any) -> bool:
    """``retry_condition_fn`` for Prefect tasks: retry only what may pass."""
    try:
        state.result()
    except Exception as exc:  # the task's own exception, re-raised by Prefect
        return isinstance(classify(exc), TransientError)
    return False
