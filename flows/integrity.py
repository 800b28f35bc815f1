"""Every delivered MP3 is whole: checked against what its source declared, before publish.

A download can be complete as far as HTTP knows and still be short: a server may serve a
file that was cut (the container's header still says 60 s, the audio stops at 17 s), and
ffmpeg converts what is there without complaint. :func:`check_whole` compares the length
of the finished MP3 with the longest length the source declared:

* the site's metadata (yt-dlp's ``duration``: the video page, or the feed entry), and
* the container's header (ffprobe's duration of the audio stream, else of the file), unless
  ffprobe only estimated it from the bitrate, which a cut file shrinks along with it.

(An HTTP body shorter than its Content-Length never gets this far: yt-dlp fails it.)
A shortfall beyond :func:`tolerance` is a :class:`~flows.errors.TransientError`: the
item is downloaded again, and fails with "the source file is incomplete (17 s of 60 s)"
once its retries are spent. A source that declares no length at all is decoded end to
end once with ffmpeg's ``-xerror``, so that a stream cut mid-frame or corrupt fails as
damaged instead of being delivered.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from mutagen.mp3 import MP3, HeaderNotFoundError

from flows import media, runlog
from flows.errors import DAMAGED, TransientError
from flows.settings import Settings

TOLERANCE_SECONDS = 2.0
TOLERANCE_FRACTION = 0.01
_ESTIMATED = "Estimating duration from bitrate"  # ffprobe's warning when it guessed


def tolerance(declared: float) -> float:
    """How much shorter than declared an MP3 may be: 2 s, or 1 % of a long one.

    Sites round (59.97 s is "60"), audio and video tracks of one file differ by a frame
    or two, and MP3 frames add a few milliseconds; a cut file misses far more.
    """
    return max(TOLERANCE_SECONDS, TOLERANCE_FRACTION * declared)


def check_whole(
    fetched: media.Download,
    stats: media.AudioStats,
    entry: dict[str, Any],
    settings: Settings,
) -> media.AudioStats:
    """Raise unless the finished MP3 beside ``fetched.audio`` is as long as declared.

    ``entry`` is what a playlist listing said about the item (its ``duration`` counts
    when the probe found none). Returns ``stats`` with the MP3's own length.
    """
    mp3 = fetched.audio.with_name("audio.mp3")
    length = mp3_length(mp3)
    site = fetched.info.get("duration") or entry.get("duration")
    header = declared_duration(fetched.audio, settings)
    declared = max((float(d) for d in (site, header) if d), default=None)
    log = runlog.get_logger(__name__)
    if declared is None:
        log.info("the source declares no length: decoding it end to end once")
        decode_fully(fetched.audio, settings)
    elif declared - length > tolerance(declared):
        log.warning(
            "the MP3 is %.2f s long; declared: by the site %s, by the file's header %s",
            length,
            f"{site} s" if site else "nothing",
            f"{header} s" if header else "nothing",
        )
        raise TransientError(f"the source file is incomplete ({_seconds(length, declared)})")
    return dataclasses.replace(stats, duration=length)


def mp3_length(mp3: Path) -> float:
    """The MP3's length from its frames (ffmpeg writes their count into the first one)."""
    try:
        return float(MP3(mp3).info.length)
    except HeaderNotFoundError as exc:
        raise TransientError(DAMAGED) from exc


def declared_duration(source: Path, settings: Settings) -> float | None:
    """The length the source file's header states: its audio stream's, else the file's.

    None when there is none, or when ffprobe only estimated it from the bitrate.
    """
    completed = media.run_tool(
        [
            "ffprobe",
            *media.FFMPEG_LOCAL_ONLY,
            "-v",
            "warning",
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=duration:format=duration",
            "-of",
            "json",
            str(source),
        ],
        timeout=min(60.0, settings.ffmpeg_timeout_seconds),
    )
    if _ESTIMATED in completed.stderr:
        return None
    data = json.loads(completed.stdout)
    streams = data.get("streams") or [{}]
    duration = streams[0].get("duration") or data.get("format", {}).get("duration")
    return float(duration) if duration else None


def decode_fully(source: Path, settings: Settings) -> None:
    """Decode the source's audio to nowhere, stopping at the first error (``-xerror``)."""
    media.run_tool(
        [
            "ffmpeg",
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-xerror",
            *media.FFMPEG_LOCAL_ONLY,
            "-i",
            str(source),
            "-map",
            "0:a:0",
            "-f",
            "null",
            "-",
        ],
        timeout=settings.ffmpeg_timeout_seconds,
    )


def _seconds(length: float, declared: float) -> str:
    """``17 s of 60 s``, or ``0:12:31 of 1:02:00`` for long media."""
    if declared < 600:
        return f"{length:.0f} s of {declared:.0f} s"
    clock = media.format_duration
    return f"{clock(length, hours=True)} of {clock(declared, hours=True)}"
