"""Flow ``playlist-batch``: the operators' scheduled list of playlist URLs.

Each playlist is listed, items an earlier run delivered are skipped (``only_new``,
through :mod:`flows.archive`), and the rest are converted with the same item tasks as
the ``convert`` flow. One failing playlist never stops the others; a summary artifact
counts, per playlist, what was new, skipped and failed.
"""

from __future__ import annotations

from dataclasses import replace

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.states import Completed, Failed, State
from pydantic import BaseModel

from flows import markdown, media, sources
from flows.archive import Archive
from flows.convert import ConvertResult, attempts, convert_listing, list_items, retry_options
from flows.errors import classify, final_message
from flows.settings import Quality, QualityParam, Settings, get_settings


class PlaylistReport(BaseModel):
    """What one playlist of a batch gave."""

    url: str
    title: str | None = None
    new: int = 0
    skipped: int = 0
    failed: int = 0
    left_out: int = 0
    error: str | None = None
    """Why the whole playlist could not be read, if it could not."""
    result: ConvertResult | None = None


class BatchResult(BaseModel):
    playlists: list[PlaylistReport]

    def summary(self) -> str:
        new = sum(report.new for report in self.playlists)
        failed = sum(report.failed for report in self.playlists)
        broken = [f"{report.url} ({report.error})" for report in self.playlists if report.error]
        text = f"{len(self.playlists)} playlist(s): {new} new item(s), {failed} failed"
        if broken:
            text += f"; could not read: {', '.join(broken)}"
        return text


@flow(name="playlist-batch", log_prints=False)
def playlist_batch(
    urls: list[str], quality: QualityParam = None, only_new: bool = True
) -> BatchResult | State:
    """Convert every playlist in ``urls``; with ``only_new``, only items not seen before."""
    settings = get_settings()
    quality = quality or settings.default_quality
    archive = Archive.from_settings(settings)
    reports = [_one_playlist(url, quality, only_new, settings, archive) for url in urls]
    result = BatchResult(playlists=reports)
    _summary_artifact(result)
    if reports and all(report.error for report in reports):
        return Failed(message=result.summary(), data=result)
    if any(report.error or report.failed for report in reports):
        return Completed(message=result.summary(), data=result)
    return result


def _one_playlist(
    url: str, quality: Quality, only_new: bool, settings: Settings, archive: Archive
) -> PlaylistReport:
    logger = get_run_logger()
    try:
        url = sources.check(url, settings)
        seen = archive.seen(url) if only_new else set()
        limit = settings.max_playlist_items + len(seen)
        listing = list_items.with_options(**retry_options(settings))(url, limit)
    except Exception as exc:
        reason = final_message(classify(exc, url), attempts(settings))
        logger.warning("playlist %s could not be read: %s", url, reason)
        return PlaylistReport(url=url, error=reason)
    fresh = [item for item in listing.items if _archive_id(item) not in seen]
    skipped = len(listing.items) - len(fresh)
    capped = replace(
        listing, items=fresh[: settings.max_playlist_items], total=max(0, listing.total - skipped)
    )
    result = convert_listing(capped, quality, settings) if capped.items else None
    delivered = [item.media for item in result.succeeded if item.media] if result else []
    archive.record(url, delivered)
    return PlaylistReport(
        url=url,
        title=listing.title,
        new=len(delivered),
        skipped=skipped,
        failed=len(result.failed) if result else 0,
        left_out=result.left_out if result else 0,
        result=result,
    )


def _archive_id(item: media.Item) -> str:
    identity = item.identity
    return f"{identity.extractor} {identity.media_id}"


def _summary_artifact(result: BatchResult) -> None:
    rows = [
        {
            "playlist": report.title or report.url,
            "new": report.new,
            "skipped": report.skipped,
            "failed": report.failed,
            "left out": report.left_out,
            "error": report.error or "",
        }
        for report in result.playlists
    ]
    create_table_artifact(
        table=markdown.escape_cells(rows),
        key="playlist-batch-summary",
        description=markdown.escape(result.summary()),
    )
