"""The operators' subscriptions: the playlists the scheduled batch converts, kept in Prefect.

The list is one Prefect Variable, :data:`VARIABLE`: a JSON list of objects ``{"url",
"quality", "note"}``, editable at run time from the page's operator section or Prefect's
UI, and never written by ``prefect deploy``. :class:`Subscription` validates every entry
on read and on write. A Variable holds at most :data:`MAX_CHARS` characters of JSON (some
50 subscriptions); a write that would not fit is refused with a message.

Reading never fails on a bad entry: :func:`parse` keeps the valid ones and describes each
invalid one, so the batch reports and skips it. Edits take a Prefect global concurrency
limit of one slot (:data:`EDIT_LOCK`), so two edits at once do not lose each other; they
keep stored entries they do not touch as they are, invalid ones included.

Each subscription's latest outcome (:class:`Status`) is a Variable of its own, written by
the batch after the playlist ran: a playlist's history never competes with the list for
space.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    VariableCreate,
    VariableUpdate,
)
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.types import MAX_VARIABLE_VALUE_LENGTH
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flows import sources
from flows.errors import PermanentError
from flows.settings import QualityParam, Settings

VARIABLE = "ytmp3_subscriptions"
"""The Prefect Variable that holds the list."""
STATUS_PREFIX = "ytmp3_sub_status_"
"""Status Variables are named this plus a hash of the subscription's URL."""
STATUS_TAG = "ytmp3-subscription-status"
EDIT_LOCK = "ytmp3-subscriptions-edit"
"""Global concurrency limit (one slot) that serialises edits of the list."""
MAX_CHARS = MAX_VARIABLE_VALUE_LENGTH
NOTE_MAX = 200
ERROR_MAX = 500


class SubscriptionError(ValueError):
    """An edit that cannot be made; the message says why, in plain words."""


class Subscription(BaseModel):
    """One playlist the scheduled batch converts."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    url: str = Field(min_length=1, max_length=sources.MAX_URL_LENGTH)
    quality: QualityParam = None
    """None: ``YTMP3_DEFAULT_QUALITY`` when the batch runs."""
    note: str | None = Field(default=None, max_length=NOTE_MAX)

    def stored(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


@dataclass(frozen=True)
class Problem:
    """A stored entry that is not a valid subscription."""

    position: int
    """1-based position in the stored list."""
    label: str
    """The entry's URL if it has one, else ``entry N``."""
    reason: str


@dataclass(frozen=True)
class Stored:
    """What the Variable holds: valid subscriptions, and what is wrong with the rest."""

    subscriptions: list[Subscription] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


class Status(BaseModel):
    """What the batch last did with one subscription (its own Variable)."""

    url: str
    last_run_at: datetime | None = None
    last_run_id: str | None = None
    last_new: int = 0
    """Items the last run delivered."""
    delivered_total: int = 0
    last_delivered_at: datetime | None = None
    last_delivered: int = 0
    """Items the last run that delivered any delivered."""
    last_error: str | None = None
    last_error_at: datetime | None = None


# -- reading -----------------------------------------------------------------------------


def parse(value: object) -> Stored:
    """The valid subscriptions in ``value`` and a :class:`Problem` per invalid entry."""
    if value is None:
        return Stored()
    if not isinstance(value, list):
        reason = f"the Variable {VARIABLE} must hold a JSON list, not {type(value).__name__}"
        return Stored(problems=[Problem(0, VARIABLE, reason)])
    valid: list[Subscription] = []
    problems: list[Problem] = []
    for position, entry in enumerate(value, start=1):
        label = _label(entry, position)
        try:
            subscription = Subscription.model_validate(entry)
        except ValidationError as exc:
            problems.append(Problem(position, label, "invalid subscription: " + _why(exc)))
            continue
        if any(known.url == subscription.url for known in valid):
            problems.append(Problem(position, label, "listed twice; the first entry is used"))
            continue
        valid.append(subscription)
    return Stored(valid, problems)


def read(client: SyncPrefectClient) -> Stored:
    """The stored list (empty when the Variable does not exist yet)."""
    variable = client.read_variable_by_name(VARIABLE)
    return parse(variable.value if variable else None)


def find(stored: Stored, url: str) -> Subscription | None:
    return next((sub for sub in stored.subscriptions if sub.url == url), None)


# -- editing -----------------------------------------------------------------------------


def new_subscription(
    url: str, quality: object, note: str | None, settings: Settings
) -> Subscription:
    """A subscription for ``url`` that the URL policy accepts, or SubscriptionError."""
    try:
        url = sources.check(url, settings)
    except PermanentError as exc:
        raise SubscriptionError(f"that link can't be subscribed to: {exc}") from None
    try:
        return Subscription(url=url, quality=quality, note=(note or "").strip() or None)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SubscriptionError(_why(exc)) from None


def add(client: SyncPrefectClient, subscription: Subscription) -> None:
    """Append ``subscription``; refused if its URL is already subscribed or it won't fit."""
    with _editing(client) as entries:
        if any(_entry_url(entry) == subscription.url for entry in entries):
            raise SubscriptionError("that playlist is already subscribed")
        entries.append(subscription.stored())


def remove(client: SyncPrefectClient, url: str) -> bool:
    """Remove every entry for ``url`` (invalid ones too) and its status; False if none."""
    with _editing(client) as entries:
        kept = [entry for entry in entries if _entry_url(entry) != url]
        found = len(kept) < len(entries)
        entries[:] = kept
    with contextlib.suppress(ObjectNotFound):
        client.delete_variable_by_name(status_name(url))
    return found


def change_quality(client: SyncPrefectClient, url: str, quality: object) -> Subscription:
    """Set the quality of the subscription for ``url``."""
    with _editing(client) as entries:
        for position, entry in enumerate(entries):
            if _entry_url(entry) != url:
                continue
            try:
                changed = Subscription.model_validate({**entry, "quality": quality})
            except (ValidationError, TypeError) as exc:
                raise SubscriptionError(_why(exc)) from None
            entries[position] = changed.stored()
            return changed
    raise SubscriptionError("that playlist is not subscribed (any more)")


def encode(entries: list[Any]) -> str:
    """The list as the Variable stores it, or SubscriptionError if it is too long."""
    text = json.dumps(entries, separators=(",", ":"), ensure_ascii=False)
    if len(text) > MAX_CHARS:
        raise SubscriptionError(
            f"the list would take {len(text)} characters, and a Prefect Variable holds at "
            f"most {MAX_CHARS}: remove a subscription or shorten notes first"
        )
    return text


@contextlib.contextmanager
def _editing(client: SyncPrefectClient) -> Iterator[list[Any]]:
    """The stored entries, raw, to change in place; written back when the block ends."""
    from prefect.concurrency.sync import concurrency

    _ensure_lock(client)
    with concurrency(EDIT_LOCK, occupy=1, timeout_seconds=30, strict=True):
        variable = client.read_variable_by_name(VARIABLE)
        value = variable.value if variable else []
        if not isinstance(value, list):
            raise SubscriptionError(parse(value).problems[0].reason + "; fix it in Prefect's UI")
        entries = list(value)
        yield entries
        encode(entries)
        if variable is None:
            client.create_variable(VariableCreate(name=VARIABLE, value=entries, tags=["ytmp3"]))
        else:
            client.update_variable(VariableUpdate(name=VARIABLE, value=entries))


def _ensure_lock(client: SyncPrefectClient) -> None:
    try:
        client.read_global_concurrency_limit_by_name(EDIT_LOCK)
    except ObjectNotFound:
        with contextlib.suppress(ObjectAlreadyExists):
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=EDIT_LOCK, limit=1)
            )


# -- status ------------------------------------------------------------------------------


def status_name(url: str) -> str:
    return STATUS_PREFIX + hashlib.sha256(url.encode()).hexdigest()[:24]


def read_statuses(client: SyncPrefectClient, urls: list[str]) -> dict[str, Status]:
    """The recorded status of each of ``urls`` that has one (one request)."""
    if not urls:
        return {}
    names = {status_name(url): url for url in urls}
    response = client.request(
        "POST",
        "/variables/filter",
        json={"variables": {"name": {"any_": list(names)}}, "limit": len(names)},
    )
    found: dict[str, Status] = {}
    for variable in response.json():
        url = names.get(variable.get("name"))
        with contextlib.suppress(ValidationError):
            status = Status.model_validate(variable.get("value"))
            if url is not None and status.url == url:
                found[url] = status
    return found


def record(
    client: SyncPrefectClient,
    url: str,
    *,
    run_id: str | None,
    new: int,
    error: str | None,
    now: datetime | None = None,
) -> Status:
    """Fold one run's outcome for ``url`` into its status Variable."""
    now = now or datetime.now(UTC)
    name = status_name(url)
    variable = client.read_variable_by_name(name)
    try:
        before = Status.model_validate(variable.value) if variable else Status(url=url)
    except ValidationError:
        before = Status(url=url)
    status = before.model_copy(
        update={
            "last_run_at": now,
            "last_run_id": run_id,
            "last_new": new,
            "delivered_total": before.delivered_total + new,
        }
    )
    if new:
        status = status.model_copy(update={"last_delivered_at": now, "last_delivered": new})
    if error:
        status = status.model_copy(update={"last_error": error[:ERROR_MAX], "last_error_at": now})
    value = status.model_dump(mode="json")
    if variable is None:
        client.create_variable(VariableCreate(name=name, value=value, tags=[STATUS_TAG]))
    else:
        client.update_variable(VariableUpdate(name=name, value=value))
    return status


# -- helpers -----------------------------------------------------------------------------


def _entry_url(entry: object) -> str | None:
    url = entry.get("url") if isinstance(entry, dict) else None
    return url.strip() if isinstance(url, str) else None


def _label(entry: object, position: int) -> str:
    url = _entry_url(entry)
    return url[:200] if url else f"entry {position}"


def _why(exc: ValidationError | TypeError) -> str:
    """A validation error in one line, without echoing the input."""
    if isinstance(exc, TypeError):
        return str(exc)
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in error["loc"])
        parts.append(f"{where}: {error['msg']}" if where else error["msg"])
    return "; ".join(parts)
