"""A busy Prefect server during a submission: the page's ``runs.submit`` against the real
server behind a proxy that answers 503 (what SQLite's "database is locked" becomes) to
chosen tries at creating the run, and passes every other request through. Prefect's
client retries once here (``PREFECT_CLIENT_MAX_RETRIES=1``; five by default).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import httpx
import pytest
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES

from tests.support.http import QuietHandler, serving
from ui import runs

CREATE = re.compile(r"/deployments/[^/]+/create_flow_run$")
BUSY = b'{"exception_message": "Service Unavailable"}'


class BusyProxy(ThreadingHTTPServer):
    """Forwards to ``upstream``; each try at creating a run takes the next of ``plan``:
    "busy" answers 503 unforwarded, "lost" forwards it and answers 503 all the same
    (the run is made, the answer lost), and an exhausted plan forwards."""

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = upstream.rstrip("/")
        self.plan: list[str] = []
        self.tries = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api"


class _Handler(QuietHandler):
    server: BusyProxy

    def do_GET(self) -> None:
        self.answer(*self._forward())

    def do_POST(self) -> None:
        step = None
        if CREATE.search(self.path):
            self.server.tries += 1
            step = self.server.plan.pop(0) if self.server.plan else None
        if step == "busy":
            return self.answer(503, BUSY)
        status, body = self._forward()
        if step == "lost":
            status, body = 503, BUSY
        self.answer(status, body)

    def _forward(self) -> tuple[int, bytes]:
        length = int(self.headers.get("Content-Length") or 0)
        reply = httpx.request(
            self.command,
            self.server.upstream + self.path.removeprefix("/api"),
            content=self.rfile.read(length) if length else None,
            headers={"Content-Type": self.headers.get("Content-Type", "application/json")},
        )
        return reply.status_code, reply.content


@pytest.fixture
def proxy(prefect_api: str, prefect_settings) -> Iterator[BusyProxy]:
    with serving(BusyProxy(prefect_api)) as server:
        prefect_settings({PREFECT_API_URL: server.url, PREFECT_CLIENT_MAX_RETRIES: 1})
        yield server


def tagged(tag: str) -> list[str]:
    with get_client(sync_client=True) as client:
        found = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag]))
        )
    return [str(run.id) for run in found]


def test_a_lost_answer_is_tried_again_into_the_same_run(proxy, media_server):
    proxy.plan = ["lost"]
    url = media_server.url("/clip.mp4")
    submitted = runs.submit(url, "192", "retry-lost", ("user:lost",))
    assert proxy.tries == 2
    assert tagged("user:lost") == [str(submitted.id)]


def test_a_server_busy_for_long_is_explained_and_nothing_is_made(proxy, media_server):
    proxy.plan = ["busy"] * 10
    url = media_server.url("/clip.mp4")
    with pytest.raises(runs.PrefectUnavailable) as refused:
        runs.submit(url, "192", "retry-never", ("user:never",))
    assert proxy.tries == 2
    assert "too busy" in refused.value.problem and "(503)" in refused.value.problem
    assert refused.value.fix.startswith("Try again in a moment")
    assert tagged("user:never") == []
