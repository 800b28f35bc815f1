"""The page's thin client for the Prefect API: submit a conversion, watch recent runs.

Plain functions, each opening a fresh sync client (``get_client(sync_client=True)``) and
closing it before returning: Streamlit reruns the page script in different threads, and
a client kept across reruns outlives the thread (and event loop) it was made in.

Every failure to talk to Prefect becomes :class:`PrefectUnavailable`, which says in plain
words what is wrong and how to fix it, so the page never shows a traceback. The page must
never talk to an *ephemeral* server: without ``PREFECT_API_URL`` a Prefect client quietly
starts a private server in this process, where the deployment does not exist and no
worker would ever run anything. So a missing API URL is reported, not papered over.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import httpx
from prefect import get_client
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    ArtifactFilterType,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import ArtifactSort, FlowRunSort
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.settings import get_current_settings
from prefect.states import State

from flows.errors import first_line
from flows.progress import FINAL_PHASES, ITEMS_KEY, ItemPhase, read_item_rows

FLOW_NAME = "convert"
DEPLOYMENT = "convert/on-demand"
"""The deployment the page submits to (prefect.yaml's ``on-demand`` of flow ``convert``)."""

SUBMIT_WINDOW_SECONDS = 600
"""How long the same URL and quality map to the same idempotency key (and so one run)."""

RETRY_STATUS_CODES = frozenset({429, 502, 503})
"""Answers Prefect's client retries (five times, waiting 2, 4, 8, 16, 32 s) before the
page says the server is busy (docs/design.md, "Bursts on SQLite")."""

REQUEST_TIMEOUT_SECONDS = 10.0
"""Per-request timeout of the page's own reads: a stuck server must not freeze the page."""

ACTIVE_STATES = frozenset(
    {
        StateType.SCHEDULED,
        StateType.PENDING,
        StateType.RUNNING,
        StateType.PAUSED,
        StateType.CANCELLING,
    }
)
FINAL_STATES = frozenset(
    {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}
)
ENDED_BADLY = frozenset({StateType.FAILED, StateType.CRASHED, StateType.CANCELLED})
"""A run in one of these states is not what a new submission of its link should find."""

_MESSAGE_PREFIXES = re.compile(
    r"^(?:(?:Flow|Task) run encountered an exception:?\s*|Flow run failed:?\s*)", re.IGNORECASE
)
_EXCEPTION_NAME = re.compile(r"^(?:[A-Za-z_][\w.]*(?:Error|Exception)):\s*")

logger = logging.getLogger("ytmp3.ui")

T = TypeVar("T")

MAKE_RUN_HINT = "Start the whole stack with `make run`"


class NotYours(Exception):
    """A user asked to stop a run someone else submitted."""


class PrefectUnavailable(Exception):
    """Prefect cannot do what the page asked; ``problem`` and ``fix`` are for people."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem} {fix}")
        self.problem = problem
        self.fix = fix


@dataclass(frozen=True)
class ItemStatus:
    """One item of a conversion, from the run's item table (flows/progress.py)."""

    position: int
    title: str
    phase: ItemPhase
    step: str | None = None
    message: str | None = None
    stopped: bool = False
    """The run ended before this item did (cancelled or crashed)."""

    @property
    def failed(self) -> bool:
        return self.phase == ItemPhase.FAILED

    @property
    def done(self) -> bool:
        return self.phase in (ItemPhase.CONVERTED, ItemPhase.REUSED)


@dataclass(frozen=True)
class RunStatus:
    """What the page shows of one ``convert`` flow run."""

    id: UUID
    name: str
    url: str | None
    quality: str | None
    state_type: StateType | None
    state_name: str
    message: str | None
    progress: float | None
    """0 to 100 from the run's progress artifact; None before the run made one."""
    items: tuple[ItemStatus, ...] = ()
    """Per item; empty until the run lists its items (and for a library hit)."""
    created: datetime | None = None
    link: str | None = None
    """This run's page in the Prefect UI."""
    owner: str | None = None
    """Who submitted it from the page (its ``user:<name>`` tag); None for other runs."""

    @property
    def is_active(self) -> bool:
        return self.state_type in ACTIVE_STATES

    @property
    def is_final(self) -> bool:
        return self.state_type in FINAL_STATES

    @property
    def failed_items(self) -> int:
        return sum(item.failed for item in self.items)


@dataclass(frozen=True)
class Overview:
    """Recent runs plus whether the deployment exists (a missing one explains idle runs)."""

    runs: list[RunStatus] = field(default_factory=list)
    deployment_found: bool = True


@dataclass(frozen=True)
class Load:
    """What one user has asked of the service lately (see ui/quota.py)."""

    waiting_items: int
    """Items of their active runs not yet finished; a run not yet listed counts as one."""
    recent: list[datetime] = field(default_factory=list)
    """When each of their runs of the last minute was created, oldest first."""


@dataclass(frozen=True)
class Submitted:
    """The flow run that a submission created, or found by its idempotency key."""

    id: UUID
    state_type: StateType | None
    state_name: str
    link: str | None


# -- settings (Prefect's own, read through prefect.settings) ---------------------------


def api_url() -> str | None:
    """``PREFECT_API_URL`` as Prefect sees it (environment, profile or test harness)."""
    return get_current_settings().api.url


def run_link(run_id: UUID) -> str | None:
    """The run's page in the Prefect UI (``PREFECT_UI_URL``, derived from the API URL)."""
    ui_url = get_current_settings().ui_url
    return f"{ui_url.rstrip('/')}/runs/flow-run/{run_id}" if ui_url else None


# -- idempotency -----------------------------------------------------------------------


def idempotency_key(url: str, quality: str, bucket: int, user: str = "") -> str:
    """The key for ``user`` submitting ``url`` at ``quality`` in time window ``bucket``.

    Prefect returns the existing run for a key it has seen, so the same URL and quality
    within one window make one run: a double-click, a rerun, or a second browser tab.
    Each user has their own keys (a run belongs to whoever submitted it). The URL is
    hashed (keys are stored and shown by Prefect; URLs can be long).
    """
    text = f"{url}\n{quality}" + (f"\n{user}" if user else "")
    digest = hashlib.sha256(text.encode()).hexdigest()[:32]
    return f"ytmp3-ui:{digest}:{bucket}"


def time_bucket(now: float, window: float = SUBMIT_WINDOW_SECONDS) -> int:
    return int(now // window)


def retry_key(key: str, failed_run: UUID) -> str:
    """The key for trying again after the run for ``key`` ended badly.

    Derived from the failed run, so double-clicking "Convert" to retry still makes one run.
    """
    return f"{key}:after:{failed_run}"


# -- calls -----------------------------------------------------------------------------


def submit(url: str, quality: str, key: str, tags: tuple[str, ...] = ()) -> Submitted:
    """Create (or find, by ``key``) a run of the convert deployment with ``tags`` (the
    submitter's ``user:<name>``); returns at once.

    Prefect's client retries a busy answer; the key makes a retry find the run if an
    earlier try did create it.
    """

    def call() -> FlowRun:
        return run_deployment(
            DEPLOYMENT,
            parameters={"url": url, "quality": quality},
            timeout=0,
            idempotency_key=key,
            as_subflow=False,
            tags=["ytmp3-ui", *tags],
        )

    run = _guarded(call)
    state = run.state
    return Submitted(
        id=run.id,
        state_type=state.type if state else None,
        state_name=state.name if state else "Scheduled",
        link=run_link(run.id),
    )


def overview(limit: int = 20, tag: str | None = None) -> Overview:
    """The most recent ``limit`` runs of the convert flow (only those tagged ``tag`` if
    given), newest first, with progress and per-item states: three or four requests
    however many runs there are.

    The deployment is looked up unless runs are running (then something obviously
    serves it), so a missing deployment explains why submitted runs never start.
    """

    def call() -> Overview:
        with _client() as client:
            flow_runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])),
                flow_run_filter=_tagged(tag),
                sort=FlowRunSort.EXPECTED_START_TIME_DESC,
                limit=limit,
            )
            busy = any(
                run.state is not None and run.state.type in (StateType.RUNNING, StateType.PENDING)
                for run in flow_runs
            )
            found = True if busy else _deployment_exists(client)
            if not flow_runs:
                return Overview(runs=[], deployment_found=found)
            ids = [run.id for run in flow_runs]
            progress = _progress_by_run(client, ids)
            items = _items_by_run(client, ids)
        return Overview(
            runs=[
                _run_status(run, progress.get(run.id), items.get(run.id, [])) for run in flow_runs
            ],
            deployment_found=found,
        )

    return _guarded(call)


def load(tag: str, window_seconds: float = 60.0, *, waiting: bool = True) -> Load:
    """What the runs tagged ``tag`` weigh now: the runs created in the last
    ``window_seconds`` (one request) and, with ``waiting``, their unfinished items (a run
    counts every item it listed, or one before it has listed them; three more)."""

    def call() -> Load:
        now = datetime.now(UTC)
        with _client() as client:
            active = (
                client.read_flow_runs(
                    flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])),
                    flow_run_filter=FlowRunFilter(
                        tags=FlowRunFilterTags(all_=[tag]),
                        state=FlowRunFilterState(
                            type=FlowRunFilterStateType(any_=[*ACTIVE_STATES])
                        ),
                    ),
                    limit=200,
                )
                if waiting
                else []
            )
            recent = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])),
                flow_run_filter=FlowRunFilter(
                    tags=FlowRunFilterTags(all_=[tag]),
                    expected_start_time=FlowRunFilterExpectedStartTime(
                        after_=now - timedelta(seconds=window_seconds + 5)
                    ),
                ),
                limit=200,
            )
            ids = [run.id for run in active]
            items = _items_by_run(client, ids) if ids else {}
        unfinished = 0
        for run in active:  # the item table lists every item once the run has listed them
            listed = items.get(run.id, [])
            finished = sum(1 for item in listed if item.phase in FINAL_PHASES)
            unfinished += max(1, len(listed)) - finished
        since = now - timedelta(seconds=window_seconds)
        created = sorted(run.created for run in recent if run.created and run.created > since)
        return Load(waiting_items=unfinished, recent=created)

    return _guarded(call)


def cancel(run_id: UUID, tag: str | None = None) -> None:
    """Stop a run: a waiting run is cancelled at once, a running one is asked to stop.

    With ``tag``, only a run that carries it (:class:`NotYours` otherwise). A running
    run goes to Cancelling, like ``prefect flow-run cancel``; the process that runs it
    (the local runner or a Docker worker) then kills it and marks it Cancelled.
    """

    def call() -> None:
        with _client() as client:
            run = client.read_flow_run(run_id)
            if tag is not None and tag not in (run.tags or []):
                raise NotYours(run_id)
            waiting = run.state is not None and run.state.type in (
                StateType.SCHEDULED,
                StateType.PENDING,
            )
            target = StateType.CANCELLED if waiting else StateType.CANCELLING
            client.set_flow_run_state(
                run_id, State(type=target, message="Stopped from the web page"), force=waiting
            )

    _guarded(call)


# -- helpers ---------------------------------------------------------------------------


@contextmanager
def _client() -> Iterator[SyncPrefectClient]:
    with get_client(
        sync_client=True, httpx_settings={"timeout": REQUEST_TIMEOUT_SECONDS}
    ) as client:
        yield client


def _guarded(call: Callable[[], T]) -> T:
    """Run ``call`` against the configured server, turning every failure into
    :class:`PrefectUnavailable` (the full error goes to the page's log)."""
    url = api_url()
    if not url:
        raise PrefectUnavailable(
            "This page is not connected to a Prefect server (PREFECT_API_URL is not set).",
            f"{MAKE_RUN_HINT}, which sets it, or set PREFECT_API_URL to your server's API, "
            "e.g. `http://127.0.0.1:4200/api`.",
        )
    try:
        return call()
    except (PrefectUnavailable, NotYours):
        raise
    except Exception as exc:
        explained = explain(exc, url)
        # Expected trouble (server down, no deployment) is logged in one line; anything
        # else with its traceback, in the page's log (never on the page).
        expected = isinstance(exc, (ObjectNotFound, httpx.TransportError, OSError))
        logger.warning(
            "Prefect call failed: %s", explained.problem, exc_info=None if expected else exc
        )
        raise explained from None


def explain(exc: BaseException, url: str) -> PrefectUnavailable:
    """Plain words for why talking to the Prefect server at ``url`` failed."""
    if isinstance(exc, ObjectNotFound):
        return deployment_missing(url)
    if isinstance(exc, httpx.TimeoutException):
        return PrefectUnavailable(
            f"The Prefect server at {url} did not answer in time.",
            "It may be busy or stuck: try again in a moment, and check its log.",
        )
    if isinstance(exc, (httpx.TransportError, ConnectionError, OSError)):
        return PrefectUnavailable(
            f"The Prefect server at {url} is not reachable.",
            f"{MAKE_RUN_HINT}, or check that PREFECT_API_URL points at a running server.",
        )
    if isinstance(exc, (PrefectHTTPStatusError, httpx.HTTPStatusError)):
        code = exc.response.status_code
        if code in (401, 403):
            return PrefectUnavailable(
                f"The Prefect server at {url} refused this page's credentials ({code}).",
                "Check PREFECT_API_KEY or PREFECT_API_AUTH_STRING for the page.",
            )
        if code in RETRY_STATUS_CODES:
            return PrefectUnavailable(
                f"The Prefect server at {url} is too busy to take it now ({code}).",
                "Try again in a moment; if it persists, check the server's log.",
            )
        return PrefectUnavailable(
            f"The Prefect server at {url} answered with an error ({code}).",
            "Check the server's log; if it was restarting, try again in a moment.",
        )
    return PrefectUnavailable(
        f"Talking to the Prefect server at {url} failed ({first_line(str(exc))}).",
        "Check the page's log for details.",
    )


def deployment_missing(url: str | None = None) -> PrefectUnavailable:
    """The deployment the page submits to is not registered on the server."""
    where = f"The Prefect server at {url or api_url()}"
    return PrefectUnavailable(
        f"{where} has no deployment `{DEPLOYMENT}`, so nothing would run a conversion.",
        f"{MAKE_RUN_HINT} (it serves the deployments of prefect.yaml), "
        "or register them with `prefect deploy --all`.",
    )


def clean_message(message: str | None) -> str | None:
    """A state message without Prefect's prefixes and exception class names."""
    if not message:
        return None
    text = _MESSAGE_PREFIXES.sub("", message.strip())
    text = _EXCEPTION_NAME.sub("", text).strip()
    return text or None


def _tagged(tag: str | None) -> FlowRunFilter | None:
    return FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])) if tag else None


def _owner(tags: list[str] | None) -> str | None:
    return next((tag.removeprefix("user:") for tag in tags or [] if tag.startswith("user:")), None)


def _deployment_exists(client: SyncPrefectClient) -> bool:
    try:
        client.read_deployment_by_name(DEPLOYMENT)
    except ObjectNotFound:
        return False
    return True


def _progress_by_run(client: SyncPrefectClient, ids: list[UUID]) -> dict[UUID, float]:
    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=ids),
            type=ArtifactFilterType(any_=["progress"]),
        ),
        sort=ArtifactSort.UPDATED_DESC,
        limit=len(ids) * 4,
    )
    progress: dict[UUID, float] = {}
    for artifact in artifacts:  # newest first: a retried run's latest artifact wins
        if artifact.flow_run_id is None or artifact.flow_run_id in progress:
            continue
        try:
            progress[artifact.flow_run_id] = max(0.0, min(100.0, float(artifact.data)))
        except (TypeError, ValueError):
            continue
    return progress


def _items_by_run(client: SyncPrefectClient, ids: list[UUID]) -> dict[UUID, list[ItemStatus]]:
    """Each run's item table: the newest table artifact with key ``ITEMS_KEY``, read 50
    runs a request (the API returns at most 200 artifacts per request)."""
    artifacts = [
        artifact
        for start in range(0, len(ids), 50)
        for artifact in client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=ids[start : start + 50]),
                key=ArtifactFilterKey(any_=[ITEMS_KEY]),
            ),
            sort=ArtifactSort.UPDATED_DESC,
            limit=min(200, 4 * len(ids[start : start + 50])),
        )
    ]
    items: dict[UUID, list[ItemStatus]] = {}
    for artifact in artifacts:  # newest first: a retried run's latest table wins
        if artifact.flow_run_id is None or artifact.flow_run_id in items:
            continue
        rows = read_item_rows(artifact.data)
        if rows is not None:
            items[artifact.flow_run_id] = [
                ItemStatus(row.position, row.title, row.phase, row.step, row.message)
                for row in sorted(rows, key=lambda row: row.position)
            ]
    return items


def _run_status(run: FlowRun, progress: float | None, items: list[ItemStatus]) -> RunStatus:
    state = run.state
    parameters: dict[str, Any] = run.parameters or {}
    state_type = state.type if state else None
    if state_type == StateType.COMPLETED:
        progress = 100.0
    if state_type in FINAL_STATES:  # what it left unfinished will not finish now
        items = [
            item if item.phase in FINAL_PHASES else replace(item, stopped=True) for item in items
        ]
    return RunStatus(
        id=run.id,
        name=run.name,
        url=str(parameters["url"]) if parameters.get("url") else None,
        quality=str(parameters["quality"]) if parameters.get("quality") else None,
        state_type=state_type,
        state_name=state.name if state else "Unknown",
        message=clean_message(state.message) if state else None,
        progress=progress,
        items=tuple(items),
        created=run.created,
        link=run_link(run.id),
        owner=_owner(run.tags),
    )
