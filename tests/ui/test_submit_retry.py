"""A busy Prefect server during a submission: the page's ``runs.submit`` against the real
server behind a proxy that answers 503 (what SQLite's "database is locked" becomes) to
chosen tries at creating the run, and passes every other request through. Prefect's
client retries once here (``PREFECT_CLIENT_MAX_RETRIES=1``; five by default).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES

from ui import runs

CREATE = re.compile(r"/deployments/[^/]+/create_flow_run$")


class BusyProxy(ThreadingHTTPServer):
    """Forwards to ``upstream``; each try at creating a run takes the next of ``plan``:
    "busy" answers 503 unforwarded, "lost" forwards it and answers 503 all the same
    (the run is made, the answer lost), and an exhausted plan forwards."""

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = upstream.rstrip("/")
        self.plan: list[str] = []
        self.tries: list[float] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api"


class _Handler(BaseHTTPRequestHandler):
    server: BusyProxy

    def do_GET(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        path = self.path.removeprefix("/api")
        step = None
        if CREATE.search(path):
            self.server.tries.append(time.monotonic())
            step = self.server.plan.pop(0) if self.server.plan else None
        if step == "busy":
            return self._answer(503, b'{"exception_message": "Service Unavailable"}')
        status, body = self._forward()
        if step == "lost":
            self._answer(503, b'{"exception_message": "Service Unavailable"}')
        else:
            self._answer(status, body)

    def _forward(self) -> tuple[int, bytes]:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        path = self.path.removeprefix("/api")
        reply = httpx.request(
            self.command,
            f"{self.server.upstream}{path}",
            content=body,
            headers={"Content-Type": self.headers.get("Content-Type", "application/json")},
        )
        if self.command == "GET":
            self._answer(reply.status_code, reply.content)
        return reply.status_code, reply.content

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def proxy(prefect_api: str, prefect_settings) -> Iterator[BusyProxy]:
    server = BusyProxy(prefect_api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    prefect_settings({PREFECT_API_URL: server.url, PREFECT_CLIENT_MAX_RETRIES: 1})
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


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
    assert len(proxy.tries) == 2
    assert tagged("user:lost") == [str(submitted.id)]


def test_a_server_busy_for_long_is_explained_and_nothing_is_made(proxy, media_server):
    proxy.plan = ["busy"] * 10
    url = media_server.url("/clip.mp4")
    with pytest.raises(runs.PrefectUnavailable) as refused:
        runs.submit(url, "192", "retry-never", ("user:never",))
    assert len(proxy.tries) == 2
    assert "too busy" in refused.value.problem and "(503)" in refused.value.problem
    assert refused.value.fix.startswith("Try again in a moment")
    assert tagged("user:never") == []
