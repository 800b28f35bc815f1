"""The logger for plain code: the Prefect run's when called inside one, the module's otherwise.

Plain modules (:mod:`flows.media`) know nothing of Prefect; what they log still belongs
in the run's log, where a person looking at a failed run reads it.
"""

from __future__ import annotations

import logging


def get_logger(name: str) -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The current flow or task run's logger, else ``logging.getLogger(name)``."""
    from prefect.context import FlowRunContext, TaskRunContext

    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        return logging.getLogger(name)
    from prefect import get_run_logger

    return get_run_logger()
