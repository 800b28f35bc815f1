"""What a ``convert`` run shows while it works: a progress artifact and an item table.

Both are Prefect artifacts of the flow run, updated in place: the progress artifact (0 to
100) and a table artifact with key :data:`ITEMS_KEY`, one :class:`ItemRow` per item. The
page (ui/runs.py) reads the table into the same model, so the two sides share one
contract instead of parsing task-run names or state messages.
"""

from __future__ import annotations

import json
import threading
import time
from enum import StrEnum
from types import TracebackType
from typing import Any
from uuid import UUID

from pydantic import BaseModel, TypeAdapter, ValidationError

from flows import markdown, runlog
from flows.errors import PermanentError

ITEMS_KEY = "convert-items"
"""Key of every ``convert`` run's item table (artifact keys: ``^[a-z0-9-]*$``)."""


class ItemPhase(StrEnum):
    """Where an item is. The last three are final."""

    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    CONVERTED = "converted"
    REUSED = "reused"
    FAILED = "failed"


FINAL_PHASES = frozenset({ItemPhase.CONVERTED, ItemPhase.REUSED, ItemPhase.FAILED})


class ItemRow(BaseModel):
    """One row of the item table."""

    position: int
    """0-based order in the run (the listing's order)."""
    title: str
    phase: ItemPhase = ItemPhase.QUEUED
    step: str | None = None
    """While running: probe, download, transcode, publish."""
    attempt: int = 1
    message: str | None = None
    """Why it failed, or why it is being tried again."""


_ROWS = TypeAdapter(list[ItemRow])


def read_item_rows(data: Any) -> list[ItemRow] | None:
    """The rows of an item table artifact's ``data`` (as the API returns it), or None."""
    try:
        rows = json.loads(data) if isinstance(data, str) else data
        if isinstance(rows, list):  # written escaped (the Prefect UI renders cells)
            rows = [_unescaped(row) for row in rows]
        return _ROWS.validate_python(rows)
    except (ValueError, ValidationError):
        return None


def _unescaped(row: object) -> object:
    if not isinstance(row, dict):
        return row
    return {key: markdown.unescape(v) if isinstance(v, str) else v for key, v in row.items()}


class RunCancelled(PermanentError):
    """The run is being cancelled or killed; items stop where they are."""


class RunProgress:
    """The run's two artifacts, fed by the item threads (and yt-dlp's progress hooks).

    Updates are throttled: the artifacts are rewritten at most every ``interval`` seconds
    (half the page's refresh), only when they changed, and always on :meth:`close`: each
    write costs the Prefect server an update and an event.

    It is also how a cancelled run stops its items promptly: once :meth:`stop` is
    called, the next report of every running item raises :class:`RunCancelled`, which
    aborts yt-dlp mid-stream and lets the item's workspace be removed on the way out.
    """

    def __init__(self, titles: list[str], interval: float = 1.0) -> None:
        from prefect.artifacts import create_progress_artifact, create_table_artifact
        from prefect.client.orchestration import get_client

        self._rows = [ItemRow(position=i, title=title) for i, title in enumerate(titles)]
        self._fractions = [0.0] * max(len(titles), 1)
        self._lock = threading.Lock()
        self._writing = threading.Lock()
        self._interval = interval
        self._last = 0.0
        self._written = 0.0
        self._dirty = False
        self._stopped = threading.Event()
        self._progress: UUID = create_progress_artifact(
            progress=0.0, description=f"Converting {len(titles)} item(s)"
        )
        self._table: UUID = create_table_artifact(
            table=self._table_data(), key=ITEMS_KEY, description="Items of this run"
        )
        self._client = get_client(sync_client=True)
        self._client.__enter__()

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- what the items report ---------------------------------------------------------

    def stop(self) -> None:
        self._stopped.set()

    def check(self) -> None:
        """Raise :class:`RunCancelled` if the run is stopping."""
        if self._stopped.is_set():
            raise RunCancelled("the run was cancelled")

    def step(self, position: int, step: str, attempt: int = 1) -> None:
        """Item ``position`` is running ``step`` (its ``attempt``-th try)."""
        self.check()
        self._set(position, phase=ItemPhase.RUNNING, step=step, attempt=attempt, message=None)

    def report(self, position: int, fraction: float) -> None:
        """Item ``position`` is ``fraction`` (0.0 to 1.0) of the way through."""
        self.check()
        with self._lock:
            self._fractions[position] = max(self._fractions[position], fraction)
        self._flush()

    def finish(self, position: int, phase: ItemPhase, message: str | None = None) -> None:
        """Item ``position`` is done (or failed, or waits to be tried again)."""
        if phase in FINAL_PHASES:
            with self._lock:
                self._fractions[position] = 1.0
        self._set(position, phase=phase, step=None, message=message)

    def close(self) -> None:
        """Write what is not written yet; the artifacts then stay as they are."""
        try:
            self._flush(force=True)
        finally:
            self._client.__exit__(None, None, None)

    # -- writing -------------------------------------------------------------------------

    def _set(self, position: int, **changes: Any) -> None:
        with self._lock:
            self._rows[position] = self._rows[position].model_copy(update=changes)
            self._dirty = True
        self._flush()

    def _flush(self, force: bool = False) -> None:
        from prefect.client.schemas.actions import ArtifactUpdate

        with self._lock:
            now = time.monotonic()
            if not force and now - self._last < self._interval:
                return
            self._last = now
            percent = round(100.0 * sum(self._fractions) / len(self._fractions), 1)
            progress = None if percent == self._written else percent
            self._written = percent
            table = json.dumps(self._table_data()) if self._dirty else None
            self._dirty = False
        with self._writing:  # the client is shared by the item threads
            try:
                if progress is not None:
                    self._client.update_artifact(self._progress, ArtifactUpdate(data=progress))
                if table is not None:
                    self._client.update_artifact(self._table, ArtifactUpdate(data=table))
            except Exception as exc:  # showing progress must never fail an item or a cancel
                runlog.get_logger(__name__).warning("progress not written: %s", exc)

    def _table_data(self) -> list[dict[str, Any]]:
        """The rows, their text escaped: the Prefect UI renders a table's cells as Markdown,
        and titles come from the sites (:func:`read_item_rows` reads them back)."""
        return markdown.escape_cells([row.model_dump(mode="json") for row in self._rows])
