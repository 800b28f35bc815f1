"""Flow ``convert``: one URL (a video or a whole playlist) to tagged MP3s in the library.

The flow orchestrates: a ``list`` task expands the URL, then each item is one task run
(``item``) with its own retries, ``settings.concurrency`` at a time inside the one flow
run. An item's steps are plain calls in :func:`flows.pipeline.convert_item`, each logging
a line; where each item is shows in the run's artifacts (:mod:`flows.progress`).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.states import Completed, Failed, State
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff
from pydantic import BaseModel

from flows import markdown, media, pipeline, sources
from flows.errors import ConversionError, TransientError, classify, final_message, is_transient
from flows.library import Library, make_key
from flows.pipeline import ItemResult, from_entry
from flows.progress import ItemPhase, RunProgress
from flows.settings import Quality, QualityParam, Settings, get_settings


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


@task(
    name="item",
    task_run_name=_item_run_name,
    cache_policy=NO_CACHE,
    retry_condition_fn=is_transient,
)
def convert_item(
    item: media.Item, position: int, job: pipeline.Job, progress: RunProgress | None = None
) -> ItemResult:
    """Convert one item (:func:`flows.pipeline.convert_item`); its state goes to ``progress``."""
    from prefect.runtime import task_run

    settings = get_settings()
    attempt = task_run.run_count or 1
    try:
        result = pipeline.convert_item(item, position, job, settings, progress, attempt)
    except Exception as exc:
        if progress is not None:
            error = classify(exc, item.url)
            if isinstance(error, TransientError) and attempt <= settings.retries:
                progress.finish(position, ItemPhase.RETRYING, str(error))
            else:
                progress.finish(position, ItemPhase.FAILED, final_message(error, attempt))
        raise
    if progress is not None:
        progress.finish(position, ItemPhase(result.status))
    return result


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
    job = pipeline.Job(
        quality=quality,
        album=listing.title if listing.is_playlist else None,
        playlist_url=listing.url if listing.is_playlist else None,
    )
    item_task = convert_item.with_options(**retry_options(settings))
    titles = [item.title or item.url for item in listing.items]
    with (
        RunProgress(titles) as progress,
        ThreadPoolTaskRunner(max_workers=settings.concurrency) as runner,
    ):
        futures = [
            runner.submit(
                item_task, {"item": item, "position": position, "job": job, "progress": progress}
            )
            for position, item in enumerate(listing.items)
        ]
        try:
            pairs = zip(listing.items, futures, strict=True)
            items = [_outcome(item, future, attempts(settings)) for item, future in pairs]
        except BaseException:  # cancelled (Prefect's TerminationSignal) or interrupted
            progress.stop()  # running downloads abort; queued items are cancelled on exit
            raise
        for position, result in enumerate(items):
            if result.status == "failed":
                progress.finish(position, ItemPhase.FAILED, result.reason)
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
    return from_entry(entry, "reused", url) if entry is not None else None


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


def attempts(settings: Settings) -> int:
    """How many times a step that keeps failing transiently has been tried in all."""
    return settings.retries + 1


def retry_options(settings: Settings) -> dict[str, Any]:
    """Exponential backoff with jitter, for transient errors only."""
    base = settings.retry_delay_seconds
    return {
        "retries": settings.retries,
        "retry_delay_seconds": exponential_backoff(backoff_factor=base),
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
