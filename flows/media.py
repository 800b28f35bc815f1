"""yt-dlp and ffmpeg: list, probe, download, transcode, tag. Plain functions, no Prefect.

Each function does one step and raises :class:`~flows.errors.PermanentError` or
:class:`~flows.errors.TransientError` (via :func:`~flows.errors.classify`), so the flow
can decide about retries without knowing yt-dlp's or ffmpeg's wording.

Every :class:`yt_dlp.YoutubeDL` built here goes through :func:`_ydl`, which applies the
URL policy to each request it makes (:func:`flows.sources.guard`), turns off yt-dlp's
own download retries (retries belong to Prefect, where they are visible and backed off;
only its extractor retries of flaky YouTube API pages stay), and gives it the cookies,
cache, extractor arguments and service-wide pace of today's YouTube.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yt_dlp
from mutagen.id3 import APIC, COMM, ID3, TALB, TDRC, TIT2, TPE1, TRCK, WOAS, ID3NoHeaderError
from yt_dlp.extractor import gen_extractor_classes, get_info_extractor
from yt_dlp.postprocessor import FFmpegPostProcessor
from yt_dlp.utils import unsmuggle_url

from flows import cookies, encoders, ratelimit, runlog, sources
from flows.errors import (
    ConversionError,
    LimitError,
    PermanentError,
    RateLimited,
    TransientError,
    classify,
    disk_full,
    is_disk_full,
    program_failed,
)
from flows.settings import Quality, Settings
from flows.watch import DownloadWatch

ProgressCallback = Callable[[float], None]
"""Receives the fraction (0.0 to 1.0) of the current download that is done."""

_SLUG_RE = re.compile(r"[^A-Za-z0-9_-]+")

GENERIC_EXTRACTORS = frozenset({"Generic", "HTML5MediaEmbed"})
"""Extractors whose ids are only unique within one page, so keys derive from the URL."""
WARM_EXTRACTORS = ("Generic", "Youtube", "YoutubeTab")
"""Extractors whose modules :func:`warm_up` loads (the forkserver: each run then skips it)."""

FFMPEG_LOCAL_ONLY = (
    "-protocol_whitelist",
    "file,pipe",
    "-format_whitelist",
    "aac,ac3,aiff,amr,ape,asf,avi,caf,eac3,flac,flv,gif,gif_pipe,image2,jpeg_pipe,matroska,"
    "mov,mp3,mpeg,mpegts,ogg,png_pipe,tta,w64,wav,webp_pipe,wv",
)
"""Input options of every ffmpeg and ffprobe run on a downloaded file (ours and yt-dlp's).

Local files and pipes only, and only demuxers that read the one file they are given: a
download that is really an HLS playlist or an ffconcat list cannot make ffmpeg fetch a
URL or open another file.
"""


# -- identity --------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """Which media a URL names, known without touching the network."""

    extractor: str
    media_id: str


def identify(url: str) -> Identity:
    """Name the media behind ``url`` from the URL alone (yt-dlp's URL patterns).

    Sites yt-dlp knows give their own id (YouTube's 11 characters). Anything the generic
    extractor handles has no stable id, so the id is derived from the URL itself: the
    same address always maps to the same library key, and two sites never collide.
    """
    plain_url, _ = unsmuggle_url(url)
    for extractor in _extractors():
        if not extractor.suitable(plain_url):
            continue
        if extractor.ie_key() not in GENERIC_EXTRACTORS:
            media_id = extractor.get_temp_id(plain_url)
            if media_id:
                return Identity(extractor.ie_key().lower(), str(media_id))
        break
    return Identity("generic", _url_id(plain_url))


def warm_up() -> None:
    """Do once what every new process would: yt-dlp's extractor list and URL patterns, the
    modules of the extractors ytmp3 uses most, and yt-dlp's ffmpeg and ffprobe version
    probes (a subprocess each, cached by yt-dlp for the process). Starts no thread."""
    identify("https://warm-up.invalid/")  # a generic URL is tried against every pattern
    for name in WARM_EXTRACTORS:
        get_info_extractor(name)()  # a lazy extractor imports its real module when made
    ffmpeg = FFmpegPostProcessor()
    _ = ffmpeg.available, ffmpeg.probe_available


def _url_id(url: str) -> str:
    stem = Path(urlsplit(url).path).stem
    slug = _SLUG_RE.sub("-", stem).strip("-")[:40] or "media"
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    return f"{slug}-{digest}"


@functools.cache
def _extractors() -> tuple[Any, ...]:
    """yt-dlp's default extractors, in its order, computed once per process.

    ``YoutubeDL(params)`` recomputes this list (~1,750 classes, de-duplicated in O(n²))
    for every instance: ~0.1 s of CPU under the GIL, and ytmp3 makes two instances per
    item. :func:`_ydl` builds instances with ``auto_init=False`` and registers this list,
    the same selection yt-dlp's default makes (the ``_ENABLED`` extractors, in order).
    """
    return tuple(extractor for extractor in gen_extractor_classes() if extractor._ENABLED)


# -- listing and probing ---------------------------------------------------------------


@dataclass
class Item:
    """One thing to convert: a URL to probe, or an info dict yt-dlp already gave us."""

    url: str
    index: int | None = None
    title: str | None = None
    info: dict[str, Any] | None = None
    """Full metadata, when the listing already has it (single videos, page entries)."""
    entry: dict[str, Any] = field(default_factory=dict)
    """What a flat playlist listing said about the item (title, duration, ...)."""

    @property
    def identity(self) -> Identity:
        """Site extractors give a site-wide id; generic ones (pages, feeds) do not."""
        extractor = (self.info or {}).get("extractor_key", "Generic")
        if extractor not in GENERIC_EXTRACTORS:
            return Identity(str(extractor).lower(), str(self.info["id"]))  # type: ignore[index]
        return identify(self.url)


@dataclass
class Listing:
    """What a URL expands to: one item, or a playlist's items (capped)."""

    url: str
    title: str | None
    is_playlist: bool
    items: list[Item] = field(default_factory=list)
    total: int = 0
    """How many items the source has (before the cap), when known."""


def list_items(url: str, settings: Settings, limit: int | None = None) -> Listing:
    """Expand ``url`` into the items to convert, without downloading media.

    Playlists are listed flat (one request for the list, none per item) and capped at
    ``limit``. A single video comes back with its full info dict, so the item need not
    be probed a second time.
    """
    # Flat (metadata only), and no further than the cap: a channel of 10,000 videos costs
    # the pages of its first ``limit`` entries. Where the source says how many it has
    # (``playlist_count``), the summary can still say how many the cap left out.
    with _ydl(settings, {"extract_flat": "in_playlist", "playlistend": limit}) as ydl:
        info = _extract(ydl, url)
    if info.get("_type") not in ("playlist", "multi_video"):
        item = Item(url=url, title=info.get("title"), info=info)
        return Listing(url=url, title=info.get("title"), is_playlist=False, items=[item], total=1)
    entries = [entry for entry in info.get("entries") or [] if entry]
    total = int(info.get("playlist_count") or len(entries))
    items = []
    for position, entry in enumerate(entries, start=1):
        flat = entry.get("_type") in ("url", "url_transparent")
        entry_url = entry.get("url") if flat else None
        if not entry_url:
            entry_url = f"{entry.get('webpage_url') or url}#{entry.get('id') or position}"
        index = int(entry.get("playlist_index") or position)
        full = None if flat else entry
        items.append(Item(entry_url, index, entry.get("title"), info=full, entry=entry))
    if limit is not None:
        total = max(total, len(items))
        items = items[:limit]
    return Listing(url=url, title=info.get("title"), is_playlist=True, items=items, total=total)


def probe(url: str, settings: Settings) -> dict[str, Any]:
    """Full metadata of one media URL (formats, duration, thumbnails); no media bytes."""
    with _ydl(settings, {}) as ydl:
        info = _extract(ydl, url)
    if info.get("_type") in ("playlist", "multi_video"):
        raise PermanentError("expected a single video here, but the address is a playlist")
    return info


def check_limits(info: dict[str, Any], settings: Settings) -> None:
    """Refuse media over the duration or size limit before any of it is downloaded."""
    if info.get("live_status") == "is_upcoming":
        raise LimitError(_not_yet_aired(info), "convert it once it has aired")
    if info.get("is_live") or info.get("live_status") == "is_live":
        raise LimitError("the video is a live stream", "convert it once the stream has ended")
    duration = info.get("duration")
    if duration and duration > settings.max_duration_seconds:
        raise LimitError(
            f"the video is {format_duration(duration, hours=True)} long; the limit is "
            f"{format_duration(settings.max_duration_seconds, hours=True)}"
        )
    size = _expected_size(info)
    limit = settings.max_filesize_mb * 1024 * 1024
    if size and size > limit:
        raise LimitError(
            f"the audio would be {size / 1e6:.0f} MB; the limit is {settings.max_filesize_mb} MB"
        )


def _not_yet_aired(info: dict[str, Any]) -> str:
    """``the live event begins 2026-12-05 18:00 UTC``, or without a time when none is known."""
    start = info.get("release_timestamp")
    when = (
        datetime.fromtimestamp(start, UTC).strftime(" %Y-%m-%d %H:%M UTC")
        if isinstance(start, (int, float))
        else " later"
    )
    return f"the live event begins{when}"


def check_duration(audio: Path, settings: Settings) -> AudioStats:
    """Refuse downloaded media over the duration limit (for sources with no metadata).

    Returns the file's stats, so :func:`transcode` need not probe it again.
    """
    stats = audio_stats(audio, settings)
    if stats.duration and stats.duration > settings.max_duration_seconds:
        raise LimitError(
            f"the media is {format_duration(stats.duration, hours=True)} long; the limit is "
            f"{format_duration(settings.max_duration_seconds, hours=True)}"
        )
    return stats


MP3_KBPS: dict[Quality, int] = {
    "128": 128,
    "192": 192,
    "256": 256,
    "320": 320,
    "V0": 260,
    "V2": 210,
}
"""The bitrate an MP3 of each quality is reckoned at (the VBR presets: their upper range)."""


def space_needed(info: dict[str, Any], quality: Quality) -> int | None:
    """Bytes converting ``info`` writes to the data dir, from what the probe or listing knows.

    The download (the largest audio-only format's ``filesize``, ``filesize_approx`` or
    duration x bitrate; without audio-only formats, the file's own) plus the MP3 (duration x
    the quality's bitrate). None when neither can be reckoned. No request is made.
    """
    duration = info.get("duration")
    source = _download_size(info, duration)
    mp3 = mp3_size(duration, quality)
    if source is None and mp3 is None:
        return None
    return (source or 0) + (mp3 or 0)


def mp3_size(duration: float | None, quality: Quality) -> int | None:
    """Bytes an MP3 of ``duration`` seconds at ``quality`` is reckoned at (None: unknown)."""
    return int(duration * MP3_KBPS[quality] * 125) if duration else None  # kbit/s -> bytes


def _download_size(info: dict[str, Any], duration: float | None) -> int | None:
    def reckon(fmt: dict[str, Any]) -> int | None:
        known = fmt.get("filesize") or fmt.get("filesize_approx")
        rate = fmt.get("abr") or fmt.get("tbr")
        if not known and duration and rate:
            known = duration * rate * 125  # kbit/s -> bytes
        return int(known) if known else None

    formats = info.get("formats") or []
    audio = [f for f in formats if f.get("vcodec") == "none" and f.get("acodec") != "none"]
    sizes = [size for size in map(reckon, audio) if size]
    if sizes:
        return max(sizes)  # bestaudio is one of them: never less than what it fetches
    return _expected_size(info) or reckon(info)


def _expected_size(info: dict[str, Any]) -> int | None:
    formats = info.get("requested_formats") or [info]
    sizes = [f.get("filesize") or f.get("filesize_approx") for f in formats]
    known = [int(size) for size in sizes if size]
    return sum(known) if known else None


# -- download --------------------------------------------------------------------------


@dataclass
class Download:
    """The downloaded source audio (and cover image) inside a workspace."""

    audio: Path
    thumbnail: Path | None
    info: dict[str, Any]


def download(
    info: dict[str, Any],
    workdir: Path,
    settings: Settings,
    on_progress: ProgressCallback | None = None,
) -> Download:
    """Download the best audio of probed media (and its thumbnail) into ``workdir``.

    The thumbnail is converted to JPEG by yt-dlp's own ``FFmpegThumbnailsConvertor``,
    so any cover a site offers (WebP included) can be embedded in the MP3. A download that
    stalls or crawls is stopped (:class:`~flows.watch.DownloadWatch`).
    """
    watch = DownloadWatch.from_settings(settings)
    params: dict[str, Any] = {
        "format": "bestaudio/best",
        "outtmpl": {"default": "source.%(ext)s"},  # in paths.home: the workspace
        "paths": {"home": str(workdir), "temp": str(workdir)},
        "writethumbnail": True,
        "max_filesize": settings.max_filesize_mb * 1024 * 1024,
        "postprocessors": [
            {"key": "FFmpegThumbnailsConvertor", "format": "jpg", "when": "before_dl"}
        ],
        # Reads wait longer than the stall timeout: the watch, not a socket, says it stalled.
        "socket_timeout": max(settings.socket_timeout_seconds, settings.stall_timeout_seconds + 2),
        "progress_hooks": [watch.hook],
    }
    if on_progress is not None:
        params["progress_hooks"].append(_progress_hook(on_progress))
    with _ydl(settings, params) as ydl:
        try:
            with watch:
                result = ydl.process_ie_result(dict(info), download=True)
        except Exception as exc:
            url = info.get("webpage_url") or info.get("url")
            raise (watch.error or classify(exc, url)) from exc
    audio = _find_audio(workdir)
    if audio is None:
        raise LimitError(f"the download is over the size limit of {settings.max_filesize_mb} MB")
    thumbnails = sorted(workdir.glob("source*.jpg"))
    return Download(audio=audio, thumbnail=thumbnails[0] if thumbnails else None, info=result)


def _find_audio(workdir: Path) -> Path | None:
    for path in sorted(workdir.glob("source.*")):
        if path.suffix not in (".jpg", ".part", ".ytdl", ".temp", ".webp", ".png"):
            return path
    return None


def _progress_hook(callback: ProgressCallback) -> Callable[[dict[str, Any]], None]:
    def hook(status: dict[str, Any]) -> None:
        if status.get("status") == "finished":
            callback(1.0)
            return
        if status.get("status") != "downloading":
            return
        total = status.get("total_bytes") or status.get("total_bytes_estimate")
        if total:
            callback(min(1.0, status.get("downloaded_bytes", 0) / total))
        elif status.get("fragment_count"):
            callback(min(1.0, (status.get("fragment_index") or 0) / status["fragment_count"]))

    return hook


# -- transcode -------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioStats:
    """What ffprobe says about an audio file."""

    codec: str
    bitrate_kbps: int | None
    duration: float | None


def audio_stats(path: Path, settings: Settings) -> AudioStats:
    """Codec, bitrate and duration of the first audio stream of ``path``."""
    output = _run(
        [
            "ffprobe",
            *FFMPEG_LOCAL_ONLY,
            "-v",
            "error",
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=codec_name,bit_rate:format=duration,bit_rate",
            "-of",
            "json",
            str(path),
        ],
        timeout=min(60.0, settings.ffmpeg_timeout_seconds),
    )
    data = json.loads(output)
    streams = data.get("streams") or []
    if not streams:
        raise PermanentError("the download contains no audio")
    stream, fmt = streams[0], data.get("format", {})
    bitrate = stream.get("bit_rate") or fmt.get("bit_rate")
    duration = fmt.get("duration")
    return AudioStats(
        codec=str(stream.get("codec_name")),
        bitrate_kbps=round(int(bitrate) / 1000) if bitrate else None,
        duration=float(duration) if duration else None,
    )


@encoders.limited  # one of the service's encoder slots while ffmpeg runs
def transcode(
    source: Path,
    target: Path,
    quality: Quality,
    settings: Settings,
    source_stats: AudioStats | None = None,
) -> AudioStats:
    """Make ``target`` an MP3 at ``quality``: stream-copy when the source already is one.

    yt-dlp's ``FFmpegExtractAudio`` skips any MP3 source, whatever its bitrate, and runs
    ffmpeg with no time limit; this copies only an MP3 whose constant bitrate is exactly
    what was asked for, re-encodes everything else, and stops ffmpeg at a real timeout.
    """
    stats = source_stats or audio_stats(source, settings)
    copy = stats.codec == "mp3" and quality.isdigit() and stats.bitrate_kbps == int(quality)
    codec = ["-c:a", "copy"] if copy else ["-c:a", "libmp3lame", *_quality_args(quality)]
    _run(
        [
            "ffmpeg",
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            *FFMPEG_LOCAL_ONLY,
            "-i",
            str(source),
            "-map",
            "0:a:0",
            "-vn",
            "-sn",
            "-dn",
            "-map_metadata",
            "-1",
            *codec,
            "-f",
            "mp3",
            str(target),
        ],
        timeout=settings.ffmpeg_timeout_seconds,
    )
    if copy:
        return stats
    if not quality.isdigit():  # VBR: the average rate can only be read off the result
        return audio_stats(target, settings)
    # Constant bitrate: the rate is the one asked for and the length the source's, so a
    # third ffprobe (each one a process linking all of libav*) would tell nothing new.
    return AudioStats(codec="mp3", bitrate_kbps=int(quality), duration=stats.duration)


def _quality_args(quality: Quality) -> list[str]:
    if quality.startswith("V"):
        return ["-q:a", quality[1:]]
    return ["-b:a", f"{quality}k"]


def _run(argv: list[str], timeout: float) -> str:
    return run_tool(argv, timeout).stdout


def run_tool(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ffmpeg or ffprobe with a real timeout; a failure is explained without file
    names (:func:`~flows.errors.program_failed`), its output goes to the run's log."""
    try:
        completed = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise TransientError(f"{argv[0]} took longer than {timeout:.0f} s") from exc
    except FileNotFoundError as exc:
        raise PermanentError(
            f"{argv[0]} is not installed", "install ffmpeg (apt-get install ffmpeg)"
        ) from exc
    if completed.returncode != 0:
        output = completed.stderr.strip()[-4000:] or "no output"
        runlog.get_logger(__name__).warning("%s failed: %s", argv[0], output)
        if is_disk_full(completed.stderr):
            raise disk_full()  # not "could not process": the file was fine, the disk was not
        raise program_failed(argv[0], output)
    return completed


# -- tags ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tags:
    """The ID3 tags ytmp3 writes."""

    title: str
    source_url: str
    artist: str | None = None
    album: str | None = None
    track: int | None = None
    date: str | None = None
    """``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``."""

    @classmethod
    def from_info(
        cls,
        info: dict[str, Any],
        album: str | None = None,
        track: int | None = None,
        title: str | None = None,
    ) -> Tags:
        """Tags from a yt-dlp info dict; playlist context comes from the caller.

        ``title`` (a playlist entry's title) wins over the title of media that only the
        generic extractor knows, which is just the file name.
        """
        if title and info.get("extractor_key", "Generic") in GENERIC_EXTRACTORS:
            info = {**info, "title": title, "track": None}
        artist = (
            info.get("artist")
            or info.get("creator")
            or info.get("uploader")
            or info.get("channel")
            or urlsplit(info.get("webpage_url") or "").hostname
        )
        upload_date = str(info.get("upload_date") or "")
        date = None
        if re.fullmatch(r"\d{8}", upload_date):
            date = f"{upload_date[:4]}-{upload_date[4:6]}-{upload_date[6:]}"
        elif info.get("release_year"):
            date = str(info["release_year"])
        return cls(
            title=str(info.get("track") or info.get("title") or info.get("id") or "Untitled"),
            source_url=str(info.get("webpage_url") or info.get("original_url") or ""),
            artist=str(artist) if artist else None,
            album=album or info.get("album"),
            track=track or info.get("track_number"),
            date=date,
        )


def write_tags(mp3: Path, tags: Tags, cover: Path | None = None) -> None:
    """Write ID3v2.3 tags (and the cover as front-cover APIC) into ``mp3`` in place.

    mutagen edits the tag without rewriting the audio, where yt-dlp's FFmpegMetadata and
    EmbedThumbnail post-processors would copy the whole file twice, and can write the
    WOAS (source URL) frame, which ffmpeg's muxer cannot.
    """
    try:
        id3 = ID3(mp3)
    except ID3NoHeaderError:
        id3 = ID3()
    id3.delall("COMM")
    id3.add(TIT2(encoding=3, text=tags.title))
    if tags.artist:
        id3.add(TPE1(encoding=3, text=tags.artist))
    if tags.album:
        id3.add(TALB(encoding=3, text=tags.album))
    if tags.track:
        id3.add(TRCK(encoding=3, text=str(tags.track)))
    if tags.date:
        id3.add(TDRC(encoding=3, text=tags.date))
    if tags.source_url:
        id3.add(WOAS(url=tags.source_url))
        id3.add(COMM(encoding=3, lang="eng", desc="", text=tags.source_url))
    if cover is not None:
        id3.add(APIC(encoding=3, mime="image/jpeg", type=3, desc="Cover", data=cover.read_bytes()))
    id3.save(mp3, v2_version=3)


# -- yt-dlp plumbing -------------------------------------------------------------------


class _YtdlpLogger:
    """yt-dlp's warnings go to the run's log (the module's outside a run); its progress
    and debug lines go nowhere, and its errors surface as exceptions."""

    def debug(self, msg: str) -> None:
        pass

    info = debug

    def warning(self, msg: str) -> None:
        runlog.get_logger(__name__).warning("yt-dlp: %s", msg)

    def error(self, msg: str) -> None:
        pass


@contextmanager
def _ydl(settings: Settings, extra: dict[str, Any]) -> Iterator[yt_dlp.YoutubeDL]:
    """The one place a ``YoutubeDL`` is built: the URL policy, ytmp3's params, the pace.

    Each instance reads a private copy of the cookies file (:mod:`flows.cookies`) and
    takes a slot of the service-wide rate limit first; a rate-limit answer slows every
    run down (:mod:`flows.ratelimit`).
    """
    params: dict[str, Any] = {
        "quiet": True,
        "noprogress": True,
        "logger": _YtdlpLogger(),
        "noplaylist": True,
        "socket_timeout": settings.socket_timeout_seconds,
        "retries": 0,
        "extractor_retries": 3,  # yt-dlp's own, for YouTube API pages that come back broken
        "fragment_retries": 2,
        "file_access_retries": 0,
        "retry_sleep_functions": {"fragment": lambda n: min(0.5 * 2**n, 5.0)},
        "skip_unavailable_fragments": False,
        "cachedir": str(settings.ytdlp_cache_dir),
        "extractor_args": settings.ytdlp_extractor_args,
        "sleep_interval_requests": settings.sleep_requests_seconds or None,
        "remote_components": [],  # the installed yt-dlp-ejs only: no solver code fetched
        "noresizebuffer": False,
        # The ffmpeg runs of yt-dlp's own postprocessors read their inputs the same way.
        "postprocessor_args": {
            f"{pp}+ffmpeg_i": list(FFMPEG_LOCAL_ONLY)
            for pp in (
                "thumbnailsconvertor",
                "merger",
                "fixupm3u8",
                "fixupm4a",
                "fixupduration",
                "fixuptimestamp",
                "fixupduplicatemoov",
                "fixupstretched",
            )
        },
        **sources.SAFE_YDL_PARAMS,
        **{key: value for key, value in extra.items() if value is not None},
    }
    with cookies.private_copy(settings) as cookiefile:
        params["cookiefile"] = cookiefile
        slowed = ratelimit.pace(settings)
        with sources.GuardedYoutubeDL(settings, params, auto_init=False) as ydl:
            for extractor in _extractors():
                ydl.add_info_extractor(extractor)
            try:
                yield ydl
            except RateLimited:
                ratelimit.slow_down(settings)
                raise
            if slowed:
                ratelimit.recover(settings)


def _extract(ydl: yt_dlp.YoutubeDL, url: str) -> dict[str, Any]:
    try:
        info = ydl.extract_info(url, download=False)
    except ConversionError:
        raise
    except Exception as exc:
        raise classify(exc, url) from exc
    if not info:
        raise PermanentError("nothing to convert was found at that address")
    return ydl.sanitize_info(info)


def format_duration(seconds: float | None, *, hours: bool = False) -> str:
    """``3:07`` or ``1:02:03`` (with ``hours``, always ``0:03:07``); ``?:??`` when unknown."""
    if seconds is None or seconds < 0 or math.isnan(seconds):
        return "?:??"
    hour, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hour}:{minutes:02d}:{secs:02d}" if hour or hours else f"{minutes}:{secs:02d}"
