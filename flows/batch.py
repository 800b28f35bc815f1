"""Flow ``playlist-batch``: the operators' scheduled list of playlist URLs.

Without ``urls`` the batch converts the stored subscriptions (:mod:`flows.subscriptions`,
a Prefect Variable the page's operator section edits), each at its own quality; an
invalid stored entry is reported and skipped.

Each playlist is listed, items an earlier run delivered are skipped (``only_new``,
through :mod:`flows.archive`), and the rest are converted with the same item tasks as
the ``convert`` flow. One failing playlist never stops the others; a summary artifact
counts, per playlist, what was new, skipped and failed. Afterwards each subscription's
status Variable is updated, and a batch that delivered anything emits the event
``ytmp3.batch.delivered`` (the notifications of :mod:`flows.notifications` listen for it).
"""

from __future__ import annotations

from dataclasses import replace

from prefect import flow, get_run_logger, runtime
from prefect.artifacts import create_table_artifact
from prefect.client.orchestration import get_client
from prefect.states import Completed, Failed, State
from pydantic import BaseModel

from flows import markdown, media, notifications, sources, subscriptions
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

    @property
    def problem(self) -> str | None:
        """What went wrong with this playlist, in one line (None if nothing did)."""
        if self.error:
            return self.error
        if self.failed and self.result:
            failed = self.result.failed
            first = failed[0].reason if failed and failed[0].reason else "see the run"
            return f"{self.failed} item(s) failed: {first}"
        return None


class BatchResult(BaseModel):
    playlists: list[PlaylistReport]

    @property
    def new(self) -> int:
        return sum(report.new for report in self.playlists)

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
    urls: list[str] | None = None, quality: QualityParam = None, only_new: bool = True
) -> BatchResult | State:
    """Convert every playlist in ``urls``, or, without ``urls``, every stored subscription.

    ``quality``, when given, applies to every playlist of the run; otherwise a
    subscription's own quality, or the default. With ``only_new``, only items not seen before.
    """
    settings = get_settings()
    archive = Archive.from_settings(settings)
    with get_client(sync_client=True) as client:
        stored = subscriptions.read(client)
    if urls:
        jobs = [(url, quality or settings.default_quality) for url in urls]
        reports = []
    else:
        jobs = [
            (sub.url, quality or sub.quality or settings.default_quality)
            for sub in stored.subscriptions
        ]
        reports = [_invalid_entry(problem) for problem in stored.problems]
        if not jobs and not reports:
            return Completed(
                message="no subscriptions: add playlists on the page's operator "
                "section, or run with urls"
            )
    reports += [_one_playlist(url, q, only_new, settings, archive) for url, q in jobs]
    result = BatchResult(playlists=reports)
    _summary_artifact(result)
    _record_statuses(result, stored)
    delivered = [{"title": r.title or r.url, "new": r.new} for r in reports if r.new]
    notifications.batch_delivered(result.new, result.summary(), delivered)
    if reports and all(report.error for report in reports):
        return Failed(message=result.summary(), data=result)
    if any(report.error or report.failed for report in reports):
        return Completed(message=result.summary(), data=result)
    return result


def _invalid_entry(problem: subscriptions.Problem) -> PlaylistReport:
    where = f"stored subscription #{problem.position}" if problem.position else "stored list"
    get_run_logger().warning("%s (%s) skipped: %s", where, problem.label, problem.reason)
    return PlaylistReport(url=problem.label, error=f"{where} skipped: {problem.reason}")


def _record_statuses(result: BatchResult, stored: subscriptions.Stored) -> None:
    """Update the status Variable of every subscription this run converted (never fatal)."""
    subscribed = {sub.url for sub in stored.subscriptions}
    run_id = runtime.flow_run.id
    try:
        with get_client(sync_client=True) as client:
            for report in result.playlists:
                if report.url in subscribed:
                    subscriptions.record(
                        client, report.url, run_id=run_id, new=report.new, error=report.problem
                    )
    except Exception as exc:
        get_run_logger().warning("the subscriptions' status was not updated: %s", exc)


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
