"""A Prefect global concurrency limit that ytmp3 creates the first time a process needs it.

Created only when the server has none of that name (an operator's tuning of an existing
one is kept), by one thread of a process at a time, and asked about once per process
(:meth:`LazyLimit.forget` makes the next :meth:`LazyLimit.ensure` ask again).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any


class LazyLimit:
    def __init__(self, name: str, fields: Callable[[], dict[str, Any]]) -> None:
        """``fields``: the limit's settings when it is created (``limit``, a rate, ...)."""
        self.name = name
        self._fields = fields
        self._created = threading.Event()
        self._creating = threading.Lock()

    def ensure(self) -> None:
        """Create the limit if the server has none (idempotent; an existing one is kept)."""
        if self._created.is_set():
            return
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
        from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

        with self._creating, get_client(sync_client=True) as client:  # one thread asks
            if self._created.is_set():
                return
            try:
                client.read_global_concurrency_limit_by_name(self.name)
            except ObjectNotFound:
                create = GlobalConcurrencyLimitCreate(name=self.name, **self._fields())
                with contextlib.suppress(ObjectAlreadyExists):  # another process was first
                    client.create_global_concurrency_limit(create)
        self._created.set()

    def forget(self) -> None:
        """Ask the server again next time (tests delete and recreate the limit)."""
        self._created.clear()
