"""Served flow runs start in a process of their own, forked from one pre-imported process.

``flows.deployments`` serves prefect.yaml's flows from memory (``Runner.add_flow``), so
Prefect starts each run with ``run_flow_in_subprocess``. Prefect spawns a new interpreter
for it, which imports Prefect, yt-dlp and the flow again before the run can begin. Here
that process is forked from a multiprocessing *forkserver* instead: one process, started
with the serving one, that imported all of that (and did yt-dlp's one-time set-up) once.

Every run is still its own process, as with spawn: the runner knows its pid, signals
it to cancel, reads its exit code and reports it Crashed when it dies; it shares the
serving process's group (``stop_all_on_hangup`` kills both). Only its parent differs:
the forkserver, which the serving process started.
"""

from __future__ import annotations

import copyreg
import importlib
import multiprocessing
import multiprocessing.forkserver
import sys
from typing import Any

from prefect.flows import Flow

PRELOAD = ("flows.preload",)
"""Imported by the forkserver once (see flows/preload.py)."""

_CONTEXT = multiprocessing.get_context("forkserver")


def install() -> None:
    """Have Prefect start this process's flow runs from a forkserver, started now.

    Returns at once: the forkserver imports while the deployments are registered, and a
    run submitted before it is ready waits for it (still sooner than a spawned process).
    """
    _CONTEXT.set_forkserver_preload(list(PRELOAD))
    multiprocessing.forkserver.ensure_running()
    copyreg.pickle(Flow, _reduce_flow)
    _use_forkserver_in_prefect()


def _use_forkserver_in_prefect() -> None:
    """The one private hook: ``prefect.flow_engine.run_flow_in_subprocess`` (Prefect 3.9)
    asks its module's ``multiprocessing`` for the "spawn" context; answer the forkserver.

    ``tests/flows/test_warmstart.py`` fails if a served run is no longer forked from it.
    """
    import prefect.flow_engine

    prefect.flow_engine.multiprocessing = _ForkserverOnly()  # type: ignore[assignment]


class _ForkserverOnly:
    """``multiprocessing`` as prefect.flow_engine sees it: every context is the forkserver."""

    def get_context(self, method: str | None = None) -> Any:
        return _CONTEXT

    def __getattr__(self, name: str) -> Any:
        return getattr(multiprocessing, name)


def _reduce_flow(flow: Flow[Any, Any]) -> tuple[Any, ...]:
    """A module-level flow travels to its run's process as its import path, as
    ``python -m prefect.engine`` loads it: the forkserver has imported it already, and a
    flow function pickled by value would lose what its (PEP 563) annotations name."""
    module, name = flow.fn.__module__, flow.fn.__name__
    if getattr(sys.modules.get(module), name, None) is flow:
        return _flow_named, (module, name)
    return flow.__reduce_ex__(2)


def _flow_named(module: str, name: str) -> Flow[Any, Any]:
    return getattr(importlib.import_module(module), name)
