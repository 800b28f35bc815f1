"""Flow ``convert``: one URL (a video or a whole playlist) to tagged MP3s in the library.

The flow orchestrates; the work is in :mod:`flows.media` and :mod:`flows.library`.
Each item is one task run (``item``) with its own retries, made of one task run per
step (probe, download, transcode, tag, publish) so a person can see where it is.
Items run ``settings.concurrency`` at a time inside the one flow run.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Literal
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.states import Completed, Failed, State
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel

from flows import integrity, markdown, media, sources, space
from flows.errors import ConversionError, PermanentError, classify, final_message, is_transient
from flows.library import Entry, Library, Sidecar, make_key
from flows.settings import Quality, QualityParam, Settings, get_settings

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


class ConvertResult(BaseModel):
    """What a ``convert`` run produced, item by item."""

    url: str
    quality: Quality
    title: str | None = None
    is_playlist: bool = False
    items: list[ItemResult]
    left_out: int = 0
    """Playlist items beyond the maximum-items setting, not converted."""

    @property
    def succeeded(self) -> list[ItemResult]:
        return [item for item in self.items if item.status != "failed"]

    @property
    def failed(self) -> list[ItemResult]:
        return [item for item in self.items if item.status == "failed"]

    def summary(self) -> str:
        """One line a person reads at a glance."""
        done, total = len(self.succeeded), len(self.items)
        text = f"{done} of {total} converted"
        if self.failed:
            names = ", ".join(_item_label(item) for item in self.failed[:5])
            more = f" and {len(self.failed) - 5} more" if len(self.failed) > 5 else ""
            text += f"; failed: {names}{more}"
        if self.left_out:
            text += (
                f"; {self.left_out} more item(s) left out (over the maximum playlist items setting)"
            )
        return text


class RunCancelled(PermanentError):
    """The run is being cancelled or killed; items stop where they are."""


class RunProgress:
    """The run's progress artifact, fed by yt-dlp's progress hooks from many threads.

    Updates are throttled: the artifact is rewritten at most every ``interval`` seconds
    (and always at 100 %), so progress never costs more than it shows.

    It is also how a cancelled run stops its items promptly: once :meth:`stop` is
    called, the next progress report of every running download raises
    :class:`RunCancelled`, which aborts yt-dlp mid-stream and lets the item's workspace
    be removed on the way out.
    """

    def __init__(self, items: int, interval: float = 0.5) -> None:
        self._fractions = [0.0] * max(items, 1)
        self._lock = threading.Lock()
        self._interval = interval
        self._last = 0.0
        self._stopped = threading.Event()
        self._artifact: UUID = create_progress_artifact(
            progress=0.0, description=f"Converting {items} item(s)"
        )

    def stop(self) -> None:
        self._stopped.set()

    def check(self) -> None:
        """Raise :class:`RunCancelled` if the run is stopping."""
        if self._stopped.is_set():
            raise RunCancelled("the run was cancelled")

    def report(self, position: int, fraction: float) -> None:
        self.check()
        with self._lock:
            self._fractions[position] = max(self._fractions[position], fraction)
            percent = 100.0 * sum(self._fractions) / len(self._fractions)
            now = time.monotonic()
            if percent < 100.0 and now - self._last < self._interval:
                return
            self._last = now
        update_progress_artifact(self._artifact, progress=round(percent, 1))


# -- tasks -----------------------------------------------------------------------------


def _item_run_name() -> str:
    """``item 3: <title>``, or the URL when the listing gave no title."""
    from prefect.runtime import task_run

    parameters = task_run.parameters
    item: media.Item = parameters["item"]
    return f"item {parameters['position']}: {item.title or item.url}"


@task(name="list", cache_policy=NO_CACHE, retry_condition_fn=is_transient)
def list_items(url: str, limit: int) -> media.Listing:
    """Expand the URL into items (a playlist is listed, not downloaded)."""
    return media.list_items(url, get_settings(), limit=limit)


@task(name="probe", cache_policy=NO_CACHE)
def probe(url: str) -> dict[str, Any]:
    """Ask yt-dlp for the media's metadata and refuse it if it is over a limit."""
    settings = get_settings()
    info = media.probe(url, settings)
    media.check_limits(info, settings)
    return info


@task(name="download", cache_policy=NO_CACHE)
def download(
    info: dict[str, Any], workdir: Any, on_progress: media.ProgressCallback | None
) -> media.Download:
    """Fetch the best audio stream and the cover into the item's workspace."""
    return media.download(info, workdir, get_settings(), on_progress)


@task(name="transcode-and-tag", cache_policy=NO_CACHE)
def transcode_and_tag(
    fetched: media.Download, quality: Quality, tags: media.Tags
) -> media.AudioStats:
    """Make the MP3 at the asked quality, then write its ID3 tags and cover.

    The download's length is checked first: media whose site gave no duration is held
    to the limit here, before any encoding.
    """
    settings = get_settings()
    source_stats = media.check_duration(fetched.audio, settings)
    target = fetched.audio.with_name("audio.mp3")
    stats = media.transcode(fetched.audio, target, quality, settings, source_stats)
    media.write_tags(target, tags, fetched.thumbnail)
    return stats


@task(name="publish", cache_policy=NO_CACHE)
def publish(key: str, fetched: media.Download, sidecar_fields: dict[str, Any]) -> Entry:
    """Move the finished MP3 and its sidecar into the library, atomically."""
    settings = get_settings()
    library = Library.from_settings(settings)
    mp3 = fetched.audio.with_name("audio.mp3")
    space.make_room(library, mp3.stat().st_size, settings)  # YTMP3_MAX_LIBRARY_MB
    return library.publish(key, mp3, library.new_sidecar(key, mp3, **sidecar_fields))


@task(
    name="item",
    task_run_name=_item_run_name,
    cache_policy=NO_CACHE,
    retry_condition_fn=is_transient,
)
def convert_item(
    item: media.Item,
    position: int,
    quality: Quality,
    album: str | None,
    progress: RunProgress | None = None,
    playlist_url: str | None = None,
) -> ItemResult:
    """Convert one item, or reuse the library's unexpired copy of it without downloading."""
    settings = get_settings()
    library = Library.from_settings(settings)
    identity = item.identity
    key = make_key(identity.extractor, identity.media_id, quality)
    if (entry := library.lookup(key)) is not None:
        return _reused(item, entry, progress, position)
    if item.info is None:
        sources.check_request(item.url, settings)  # a playlist entry is a new URL
    with library.lock(key, timeout=settings.lock_timeout_seconds):
        if (entry := library.lookup(key)) is not None:  # another run made it meanwhile
            return _reused(item, entry, progress, position)
        media.check_limits(item.info or item.entry, settings)  # what the listing knows
        info = item.info if item.info is not None else probe(item.url)
        if progress is not None:
            progress.check()
        space.check_room(library, info, quality, settings)  # before any media byte
        report = (lambda fraction: progress.report(position, fraction)) if progress else None
        with library.workspace(key) as workdir:
            fetched = download(info, workdir, report)
            tags = media.Tags.from_info(
                fetched.info, album=album, track=item.index, title=item.title
            )
            stats = transcode_and_tag(fetched, quality, tags)
            stats = integrity.check_whole(fetched, stats, item.entry, settings)  # before publish
            fields = _sidecar_fields(item, identity, fetched, tags, stats, quality)
            entry = publish(key, fetched, fields | {"playlist_url": playlist_url})
    return _from_entry(entry, "converted", item.url, item.index)


# -- the flow --------------------------------------------------------------------------


@flow(name="convert", flow_run_name="convert {url}", log_prints=False)
def convert(url: str, quality: QualityParam = None) -> ConvertResult | State:
    """Convert a video or playlist URL into tagged MP3 files in the library.

    A run that fails ends Failed with one sentence a person reads (see ``final_message``).
    """
    settings = get_settings()
    logger = get_run_logger()
    quality = quality or settings.default_quality
    try:
        url = sources.check(url, settings)
        reused = _reuse_single(url, quality, settings)
        if reused is not None:
            logger.info("%s is already in the library: %s", url, reused.key)
            result = ConvertResult(url=url, quality=quality, title=reused.title, items=[reused])
            _result_artifact(result)
            return result
        listing = list_items.with_options(**retry_options(settings))(
            url, settings.max_playlist_items
        )
    except ConversionError as error:
        return Failed(message=final_message(error, attempts(settings)))
    result = convert_listing(listing, quality, settings)
    _result_artifact(result)
    return _final_state(result)


def convert_listing(listing: media.Listing, quality: Quality, settings: Settings) -> ConvertResult:
    """Convert a listing's items, ``settings.concurrency`` at a time, inside the current flow.

    Every item is its own task run with its own retries; one that fails is reported in
    the result and never stops the others. Call it from a flow run.
    """
    progress = RunProgress(len(listing.items))
    album = listing.title if listing.is_playlist else None
    item_task = convert_item.with_options(**retry_options(settings))
    with ThreadPoolTaskRunner(max_workers=settings.concurrency) as runner:
        futures = [
            runner.submit(
                item_task,
                {
                    "item": item,
                    "position": position,
                    "quality": quality,
                    "album": album,
                    "progress": progress,
                    "playlist_url": listing.url if listing.is_playlist else None,
                },
            )
            for position, item in enumerate(listing.items)
        ]
        try:
            pairs = zip(listing.items, futures, strict=True)
            items = [_outcome(item, future, attempts(settings)) for item, future in pairs]
        except BaseException:  # cancelled (Prefect's TerminationSignal) or interrupted
            progress.stop()  # running downloads abort; queued items are cancelled on exit
            raise
    return ConvertResult(
        url=listing.url,
        quality=quality,
        title=listing.title,
        is_playlist=listing.is_playlist,
        items=items,
        left_out=max(0, listing.total - len(listing.items)),
    )


def _reuse_single(url: str, quality: Quality, settings: Settings) -> ItemResult | None:
    """A library hit for a single-video URL, found with no network access at all."""
    identity = media.identify(url)
    library = Library.from_settings(settings)
    entry = library.lookup(make_key(identity.extractor, identity.media_id, quality))
    return _from_entry(entry, "reused", url) if entry is not None else None


def _final_state(result: ConvertResult) -> ConvertResult | State:
    if not result.failed:
        return result
    if not result.is_playlist:
        return Failed(message=result.failed[0].reason or "the conversion failed", data=result)
    if not result.succeeded:
        return Failed(message=f"none converted: {result.summary()}", data=result)
    return Completed(message=result.summary(), data=result)


def _outcome(item: media.Item, future: PrefectFuture[ItemResult], attempts: int) -> ItemResult:
    try:
        return future.result()
    except Exception as exc:
        reason = final_message(classify(exc, item.url), attempts)
        return ItemResult(
            index=item.index, url=item.url, title=item.title, status="failed", reason=reason
        )


def _reused(
    item: media.Item, entry: Entry, progress: RunProgress | None, position: int
) -> ItemResult:
    if progress is not None:
        progress.report(position, 1.0)
    return _from_entry(entry, "reused", item.url, item.index)


def _from_entry(entry: Entry, status: ItemStatus, url: str, index: int | None = None) -> ItemResult:
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


def _sidecar_fields(
    item: media.Item,
    identity: media.Identity,
    fetched: media.Download,
    tags: media.Tags,
    stats: media.AudioStats,
    quality: Quality,
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
        "quality": quality,
        "bitrate_kbps": stats.bitrate_kbps,
        "thumbnail": fetched.thumbnail is not None,
    }


def attempts(settings: Settings) -> int:
    """How many times a step that keeps failing transiently has been tried in all."""
    return settings.retries + 1


def retry_options(settings: Settings) -> dict[str, Any]:
    """Exponential backoff with jitter, for transient errors only."""
    base = settings.retry_delay_seconds
    return {
        "retries": settings.retries,
        "retry_delay_seconds": [base * 2**attempt for attempt in range(settings.retries)],
        "retry_jitter_factor": 0.5 if base else None,
    }


def _item_label(item: ItemResult) -> str:
    where = f"#{item.index} " if item.index is not None else ""
    return f"{where}{item.title or item.url} ({item.reason})"


def _result_artifact(result: ConvertResult) -> None:
    rows = [
        {
            "index": item.index if item.index is not None else "",
            "title": item.title or "",
            "status": item.status,
            "reason": item.reason or "",
            "file": item.key + ".mp3" if item.key and item.status != "failed" else "",
        }
        for item in result.items
    ]
    summary = markdown.escape(result.summary())
    create_table_artifact(
        table=markdown.escape_cells(rows), key="convert-result", description=summary
    )
    lines = [f"### {markdown.escape(result.title or result.url)}", "", summary, ""]
    for item in result.succeeded:
        if item.sidecar is not None:
            title = markdown.link(item.sidecar.title, item.sidecar.source_url)
            lines.append(f"- {title} → `{item.key}.mp3`")
    create_markdown_artifact("\n".join(lines), description="ytmp3 result")
