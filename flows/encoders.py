"""One encoder queue for the whole service: a Prefect global concurrency limit.

Every ffmpeg transcode (:func:`flows.media.transcode`, decorated with :func:`limited`)
first takes one slot of the limit ``ytmp3-encoders`` and holds it while it runs, so all
runs together, on every worker, never start more encoders than the limit allows; the
others wait for a slot. libmp3lame is single-threaded: one slot per core keeps the
machine busy without oversubscribing it.

The limit lives on the Prefect server. It is created when first needed, with
``YTMP3_MAX_ENCODERS`` slots (default: the cores), and left alone once it exists: an
operator tunes it in Prefect (``prefect gcl update ytmp3-encoders --limit N``). A Prefect
API hiccup never fails a conversion: the transcode then runs without a slot, with a
warning in the run's log. Outside a Prefect run (the doctor, plain scripts) nothing waits.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

from flows import runlog
from flows.lazylimit import LazyLimit
from flows.settings import get_settings

LIMIT_NAME = "ytmp3-encoders"
LEASE_SECONDS = 60.0
"""How long a slot outlives a process that died holding it (Prefect renews it meanwhile)."""

_P = ParamSpec("_P")
_R = TypeVar("_R")


def limited(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run ``function`` holding one encoder slot (inside a Prefect run)."""

    @functools.wraps(function)
    def holding_a_slot(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with slot():
            return function(*args, **kwargs)

    return holding_a_slot


@contextlib.contextmanager
def slot() -> Iterator[None]:
    """Hold one slot of ``ytmp3-encoders`` for the body; wait for it first if none is free."""
    held = _acquire() if _in_prefect_run() else None
    try:
        yield
    finally:
        if held is not None:
            _release(held)


_LIMIT = LazyLimit(LIMIT_NAME, lambda: {"limit": get_settings().max_encoders})
ensure_limit = _LIMIT.ensure
forget_limit = _LIMIT.forget


def _acquire() -> contextlib.AbstractContextManager[None] | None:
    """The entered slot, or None (with a warning) when Prefect could not give one."""
    from prefect.concurrency.sync import concurrency

    try:
        ensure_limit()
        held = concurrency(LIMIT_NAME, occupy=1, lease_duration=LEASE_SECONDS)
        held.__enter__()
    except Exception as exc:
        runlog.get_logger(__name__).warning("encoder limit skipped: %s", exc)
        return None
    return held


def _release(held: contextlib.AbstractContextManager[None]) -> None:
    try:
        held.__exit__(None, None, None)
    except Exception as exc:  # the slot's lease runs out by itself
        runlog.get_logger(__name__).warning("encoder slot not released: %s", exc)


def _in_prefect_run() -> bool:
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None
