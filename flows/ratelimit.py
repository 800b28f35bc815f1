"""One pace for every run of the service: a Prefect global concurrency limit with a rate.

Every yt-dlp step (list, probe, download: each ``YoutubeDL`` that :func:`flows.media._ydl`
builds) first looks at the limit ``ytmp3-yt-dlp``. At its normal rate
(:data:`NORMAL_RATE`) the step goes on; while it is lowered, the step waits for one slot
with Prefect's ``rate_limit`` (slots come back at ``slot_decay_per_second``).

When a site answers "too many requests" (:class:`~flows.errors.RateLimited`), that step
calls :func:`slow_down`: the limit shrinks to one slot, taken, that comes back after
``YTMP3_RATE_LIMIT_COOLDOWN_SECONDS``. So the whole service, every run on every worker,
makes at most one yt-dlp step per cooldown (minutes by default), and the items' own
retries wait in that line instead of each hitting the site again. Each step that then
gets through doubles the rate (:func:`recover`); back at the normal rate, the burst
returns and a step costs one API read. The limit lives on the Prefect server; it is
created when first needed and left alone when it exists (an operator may tune it in
Prefect's UI).

Outside a Prefect run (the doctor, plain scripts) nothing is paced.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from flows import runlog
from flows.lazylimit import LazyLimit
from flows.settings import Settings

LIMIT_NAME = "ytmp3-yt-dlp"
BURST = 30
"""Slots once the rate is back to normal (no step takes one then: see :func:`pace`)."""
NORMAL_RATE = 2.0
"""The rate at which the service is no longer slowed down."""


def pace(settings: Settings) -> bool:
    """While the service is slowed down, wait for a slot of the rate limit (inside a
    Prefect run only); at the normal rate, go on at once. Returns whether it was slowed
    down: only then does a step that gets through call :func:`recover`.

    Slots are taken only then: Prefect 3.9's server restarts a rate limit's decay clock on
    every denied request, so busy clients retrying keep slots from coming back and a
    limit far above the real pace still throttled (docs/benchmarks.md, "Findings").
    """
    if not _in_prefect_run():
        return False
    from prefect.client.orchestration import get_client
    from prefect.concurrency.sync import rate_limit

    with _never_fatal("pace"):
        ensure_limit()
        with get_client(sync_client=True) as client:
            limit = client.read_global_concurrency_limit_by_name(LIMIT_NAME)
        if limit.slot_decay_per_second < NORMAL_RATE:
            rate_limit(LIMIT_NAME, occupy=1)
            return True
    return False


def slow_down(settings: Settings) -> None:
    """A rate-limit answer: every run waits ``rate_limit_cooldown_seconds`` per step."""
    if not _in_prefect_run():
        return
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    rate = 1.0 / settings.rate_limit_cooldown_seconds
    with _never_fatal("slow down"), get_client(sync_client=True) as client:
        ensure_limit()
        # One slot, taken: no burst builds up while the service waits.
        update = GlobalConcurrencyLimitUpdate(limit=1, active_slots=1, slot_decay_per_second=rate)
        client.update_global_concurrency_limit(LIMIT_NAME, update)
    runlog.get_logger(__name__).warning(
        "the site is limiting requests: every run of ytmp3 now waits up to %.0f s per step",
        settings.rate_limit_cooldown_seconds,
    )


def recover(settings: Settings) -> None:
    """A step got through: double a lowered rate, up to :data:`NORMAL_RATE`."""
    if not _in_prefect_run():
        return
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    with _never_fatal("recover"), get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(LIMIT_NAME)
        if limit.slot_decay_per_second < NORMAL_RATE:
            rate = min(NORMAL_RATE, limit.slot_decay_per_second * 2)
            burst = BURST if rate >= NORMAL_RATE else limit.limit
            update = GlobalConcurrencyLimitUpdate(slot_decay_per_second=rate, limit=burst)
            client.update_global_concurrency_limit(LIMIT_NAME, update)


_LIMIT = LazyLimit(LIMIT_NAME, lambda: {"limit": BURST, "slot_decay_per_second": NORMAL_RATE})
ensure_limit = _LIMIT.ensure
forget_limit = _LIMIT.forget


def _in_prefect_run() -> bool:
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


@contextlib.contextmanager
def _never_fatal(what: str) -> Iterator[None]:
    """The pace is a courtesy: a Prefect API hiccup here must not fail a conversion."""
    try:
        yield
    except Exception as exc:
        runlog.get_logger(__name__).warning("rate limit (%s) skipped: %s", what, exc)
