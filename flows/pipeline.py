"""One item's conversion, step by step: plain calls, each logging one line. No Prefect here.

    library lookup -> per-key lock -> lookup again -> limits (what the listing knows)
    -> probe -> room on the disk -> download (watched) -> transcode (duration checked
    first, one encoder slot) -> tag -> integrity check -> room under the cap -> publish

:func:`convert_item` is the whole pipeline; the ``item`` task of :mod:`flows.convert` runs
it once per item, with Prefect's retries around it. A step raises
:class:`~flows.errors.PermanentError` or :class:`~flows.errors.TransientError`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from flows import integrity, media, runlog, sources, space
from flows.library import Entry, Library, Sidecar, make_key
from flows.progress import RunProgress
from flows.settings import Quality, Settings

ItemStatus = Literal["converted", "reused", "failed"]


class ItemResult(BaseModel):
    """The outcome of one item: the file it produced or reused, or why it failed."""

    index: int | None = None
    url: str
    title: str | None = None
    status: ItemStatus
    reason: str | None = None
    media: str | None = None
    """``"<extractor> <media id>"``, as in a yt-dlp download archive."""
    key: str | None = None
    file: str | None = None
    sidecar: Sidecar | None = None


@dataclass(frozen=True)
class Job:
    """What every item of one run shares."""

    quality: Quality
    album: str | None = None
    playlist_url: str | None = None


@dataclass
class _Steps:
    """Announces each step to the run's progress and logs one line when it is done."""

    position: int
    attempt: int
    progress: RunProgress | None

    def begin(self, name: str) -> float:
        if self.progress is not None:
            self.progress.step(self.position, name, self.attempt)
        return time.monotonic()

    def done(self, name: str, started: float, detail: str) -> None:
        seconds = time.monotonic() - started
        runlog.get_logger(__name__).info("%s: %s (%.2f s)", name, detail, seconds)


def convert_item(
    item: media.Item,
    position: int,
    job: Job,
    settings: Settings,
    progress: RunProgress | None = None,
    attempt: int = 1,
) -> ItemResult:
    """Convert one item, or reuse the library's unexpired copy of it without downloading."""
    library = Library.from_settings(settings)
    identity = item.identity
    key = make_key(identity.extractor, identity.media_id, job.quality)
    if (entry := library.lookup(key)) is not None:
        return _reused(item, entry)
    if item.info is None:
        sources.check_request(item.url, settings)  # a playlist entry is a new URL
    steps = _Steps(position, attempt, progress)
    with library.lock(key, timeout=settings.lock_timeout_seconds):
        if (entry := library.lookup(key)) is not None:  # another run made it meanwhile
            return _reused(item, entry)
        media.check_limits(item.info or item.entry, settings)  # what the listing knows
        info = item.info
        if info is None:
            started = steps.begin("probe")
            info = media.probe(item.url, settings)
            media.check_limits(info, settings)
            steps.done("probe", started, info.get("title") or item.url)
        space.check_room(library, info, job.quality, settings)  # before any media byte
        report = (lambda fraction: progress.report(position, fraction)) if progress else None
        with library.workspace(key) as workdir:
            started = steps.begin("download")
            fetched = media.download(info, workdir, settings, report)
            size = fetched.audio.stat().st_size / 1e6
            steps.done("download", started, f"{fetched.audio.name}, {size:.1f} MB")

            started = steps.begin("transcode")
            source_stats = media.check_duration(fetched.audio, settings)
            mp3 = fetched.audio.with_name("audio.mp3")
            stats = media.transcode(fetched.audio, mp3, job.quality, settings, source_stats)
            tags = media.Tags.from_info(
                fetched.info, album=job.album, track=item.index, title=item.title
            )
            media.write_tags(mp3, tags, fetched.thumbnail)
            steps.done("transcode", started, f"{source_stats.codec} to MP3 {job.quality}, tagged")

            started = steps.begin("check")
            stats = integrity.check_whole(fetched, stats, item.entry, settings)
            steps.done("check", started, f"whole: {stats.duration or 0:.1f} s of audio")

            started = steps.begin("publish")
            space.make_room(library, mp3.stat().st_size, settings)  # YTMP3_MAX_LIBRARY_MB
            fields = _sidecar_fields(item, identity, fetched, tags, stats, job)
            entry = library.publish(key, mp3, library.new_sidecar(key, mp3, **fields))
            steps.done("publish", started, f"{key}.mp3")
    return from_entry(entry, "converted", item.url, item.index)


def from_entry(entry: Entry, status: ItemStatus, url: str, index: int | None = None) -> ItemResult:
    """The result of an item whose file is (now) in the library."""
    sidecar = entry.sidecar
    return ItemResult(
        index=index,
        url=url,
        title=sidecar.title,
        media=f"{sidecar.extractor} {sidecar.media_id}",
        status=status,
        key=entry.key,
        file=str(entry.mp3),
        sidecar=sidecar,
    )


def _reused(item: media.Item, entry: Entry) -> ItemResult:
    runlog.get_logger(__name__).info("already in the library: %s.mp3", entry.key)
    return from_entry(entry, "reused", item.url, item.index)


def _sidecar_fields(
    item: media.Item,
    identity: media.Identity,
    fetched: media.Download,
    tags: media.Tags,
    stats: media.AudioStats,
    job: Job,
) -> dict[str, Any]:
    info = fetched.info
    return {
        "title": tags.title,
        "artist": tags.artist,
        "album": tags.album,
        "track": tags.track,
        "source_url": tags.source_url or item.url,
        "requested_url": item.url,
        "extractor": identity.extractor,
        "media_id": identity.media_id,
        "duration": stats.duration or info.get("duration"),
        "quality": job.quality,
        "bitrate_kbps": stats.bitrate_kbps,
        "thumbnail": fetched.thumbnail is not None,
        "playlist_url": job.playlist_url,
    }
