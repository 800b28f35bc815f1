"""Faults injected into `make run` (infrastructure/local.py): nothing lost, nothing stuck.

Real processes throughout: the launcher, its Prefect server, prefect.yaml's deployments
served locally, the page, and the automations it creates (heartbeats every 30 s, the
zombie window shortened to 45 s). Media comes from the local media server, slowed down so
that a playlist is still going when the fault hits; its request counters show what was
fetched twice.

Each test prints the measured time to recover (see docs/design.md's table).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psutil
import pytest
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from tests.support.media_server import MediaServer
from tests.support.recovery import (
    alive,
    assert_each_item_once,
    flow_run_processes,
    published,
    reruns_of,
    unfinished_task_runs,
    wait_final,
    wait_for,
    wait_recovered,
)

pytestmark = pytest.mark.timeout(900)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ZOMBIE_AFTER = 45


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Launcher:
    """`make run` as a child process, its console collected line by line."""

    env: dict[str, str]
    process: subprocess.Popen[str] | None = None
    lines: list[str] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.env['YTMP3_PREFECT_PORT']}/api"

    @property
    def data_dir(self) -> Path:
        return Path(self.env["YTMP3_DATA_DIR"])

    def start(self) -> Launcher:
        self.lines = []
        self.process = subprocess.Popen(
            [sys.executable, "infrastructure/local.py"],
            cwd=PROJECT_ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, args=(self.process,), daemon=True).start()
        self.wait_line("Press Ctrl-C", 180)
        return self

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line)

    def wait_line(self, text: str, timeout: float) -> str:
        def seen() -> str | None:
            assert self.process is not None
            assert self.process.poll() is None or any(text in line for line in self.lines), "".join(
                self.lines
            )
            return next((line for line in self.lines if text in line), None)

        return wait_for(seen, timeout, f"'{text}' from make run\n{''.join(self.lines)}")

    def child(self, marker: str) -> psutil.Process:
        assert self.process is not None
        for child in psutil.Process(self.process.pid).children():
            if marker in " ".join(child.cmdline()):
                return child
        raise AssertionError(f"make run has no child '{marker}'")

    def tree(self) -> list[psutil.Process]:
        assert self.process is not None
        return psutil.Process(self.process.pid).children(recursive=True)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


def stack_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "YTMP3_"))}
    return env | {
        "YTMP3_DATA_DIR": str(root / "data"),
        "YTMP3_STATE_DIR": str(root / "state"),
        "YTMP3_ALLOWED_HOSTS": "127.0.0.1",
        "YTMP3_ALLOW_PRIVATE_NETWORKS": "true",
        "YTMP3_RETRY_DELAY_SECONDS": "0.2",
        "YTMP3_ZOMBIE_AFTER_SECONDS": str(ZOMBIE_AFTER),
        "YTMP3_PREFECT_PORT": str(free_port()),
        "YTMP3_UI_PORT": str(free_port()),
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, media_server) -> Iterator[Launcher]:
    """One `make run` for the module; stopped with SIGTERM at the end, leaving nothing."""
    launcher = Launcher(stack_env(tmp_path_factory.mktemp("stack"))).start()
    try:
        with temporary_settings({PREFECT_API_URL: launcher.api_url}):
            yield launcher
    finally:
        tree = launcher.tree() if launcher.process.poll() is None else []
        code = launcher.stop(signal.SIGTERM)
        assert code == 0, "".join(launcher.lines)
        assert alive(tree) == [], f"left running after make run stopped: {alive(tree)}"


def slow_feed(media_server: MediaServer, name: str, items: int = 6) -> list[str]:
    media_server.add_feed(f"/{name}.xml", items)
    paths = media_server.feed_item_paths(f"/{name}.xml")
    for path in paths:
        media_server.slow(path, 40_000)
    return paths


def start_playlist(media_server: MediaServer, name: str) -> FlowRun:
    return run_deployment(
        "convert/on-demand",
        parameters={"url": media_server.url(f"/{name}.xml"), "quality": "128"},
        timeout=0,
    )


def mid_playlist(data_dir: Path, media_server: MediaServer, items: list[str]) -> set[str]:
    """Wait until two items are published and another one is downloading."""

    def ready() -> set[str] | None:
        done = {entry.item_path for entry in published(data_dir)}
        downloading = [p for p in items if p not in done and media_server.bytes_served_for(p)]
        return done if len(done) >= 2 and downloading else None

    return wait_for(ready, 120, "two items published and a third one downloading")


def finish(run: FlowRun, timeout: float = 240) -> tuple[FlowRun, FlowRun | None]:
    """The run's final state, and its re-run's if it crashed (waited for too)."""
    final = wait_final(run.id, timeout)
    if final.state_type != StateType.CRASHED:
        return final, None
    rerun = wait_for(lambda: (reruns_of(run.id) or [None])[0], 120, "the re-run")
    return final, wait_final(rerun.id, timeout)


def test_kill_9_of_the_serving_process(stack: Launcher, media_server: MediaServer):
    items = slow_feed(media_server, "serving-killed")
    run = start_playlist(media_server, "serving-killed")
    done_before = mid_playlist(stack.data_dir, media_server, items)
    requests_before = {path: media_server.request_count(path) for path in done_before}
    serving = stack.child("flows.deployments")
    left_behind = [*flow_run_processes(serving.pid), *serving.children(recursive=True)]
    assert left_behind, "no flow-run process to orphan"

    serving.send_signal(signal.SIGKILL)
    killed_at = time.time()
    stack.wait_line("deployments exited with code -9; restarting it in 1 s", 15)
    stack.wait_line("deployments restarted", 30)
    # What the dead runner started is stopped, not orphaned: the process tree is clean.
    wait_for(lambda: not alive(left_behind), 20, "the orphaned flow-run process stopped")
    gone_after = time.time() - killed_at
    crashed, rerun = finish(run)
    assert crashed.state_type == StateType.CRASHED, crashed.state.message
    assert rerun is not None and rerun.state_type == StateType.COMPLETED, rerun.state.message
    assert_each_item_once(stack.data_dir, items)
    assert {path: media_server.request_count(path) for path in done_before} == requests_before
    wait_recovered(run.id, 60)
    assert unfinished_task_runs(run.id) == []
    new_serving = stack.child("flows.deployments")
    assert new_serving.pid != serving.pid
    children = {" ".join(child.cmdline()) for child in psutil.Process(stack.process.pid).children()}
    assert len(children) == 3, children  # server, deployments, page: no stray process
    print(
        f"\nkill -9 of the serving process: orphans stopped after {gone_after:.1f} s; run "
        f"{crashed.state.message!r} after {since(killed_at, crashed.state.timestamp):.1f} s; "
        f"re-run started after {since(killed_at, rerun.start_time):.1f} s"
    )


def test_the_prefect_server_down_for_15_s_mid_playlist(stack: Launcher, media_server):
    """The server gets SIGTERM and stays down 15 s: the test holds make run (SIGSTOP) so it
    does not restart the server at once, then lets it go (SIGCONT) and it restarts it."""
    items = slow_feed(media_server, "server-down")
    run = start_playlist(media_server, "server-down")
    mid_playlist(stack.data_dir, media_server, items)
    server = stack.child("server start")

    stack.process.send_signal(signal.SIGSTOP)
    try:
        server.send_signal(signal.SIGTERM)
        wait_for(lambda: not alive([server]), 30, "the server stopping")  # unreaped: held
        stopped_at = time.monotonic()
        time.sleep(15)
    finally:
        stack.process.send_signal(signal.SIGCONT)
    stack.wait_line("prefect-server restarted", 30)
    health = stack.api_url + "/health"
    wait_for(lambda: _answers(health), 120, "the restarted server answering")
    back_after = time.monotonic() - stopped_at
    final, rerun = finish(run)
    done_after = time.monotonic() - stopped_at
    if rerun is None:
        assert final.state_type == StateType.COMPLETED, final.state.message
    else:
        assert rerun.state_type == StateType.COMPLETED, rerun.state.message
    assert_each_item_once(stack.data_dir, items)
    print(
        f"\nserver down 15 s: back after {back_after:.1f} s; run "
        f"{'Completed' if rerun is None else 'Crashed, re-run Completed'} "
        f"{done_after:.1f} s after the server stopped"
    )


def since(start: float, moment: datetime | None) -> float:
    """Seconds from ``start`` (``time.time()``) to a timestamp of the Prefect server."""
    assert moment is not None
    return moment.timestamp() - start


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def test_kill_9_of_make_run_leaves_nothing_and_the_next_one_recovers(
    tmp_path: Path, media_server: MediaServer
):
    launcher = Launcher(stack_env(tmp_path)).start()
    with temporary_settings({PREFECT_API_URL: launcher.api_url}):
        items = slow_feed(media_server, "make-run-killed")
        run = start_playlist(media_server, "make-run-killed")
        done_before = mid_playlist(launcher.data_dir, media_server, items)
        requests_before = {path: media_server.request_count(path) for path in done_before}
        tree = launcher.tree()
        launcher.process.kill()
        killed_at = time.time()
        launcher.process.wait(10)
        wait_for(lambda: not alive(tree), 40, "every process make run started gone")
        gone_after = time.time() - killed_at

        launcher.start()  # the same state dir and ports: the same Prefect database
        try:
            restarted_at = time.time()
            crashed, rerun = finish(run)
            assert crashed.state_type == StateType.CRASHED, crashed.state.message
            assert rerun is not None and rerun.state_type == StateType.COMPLETED
            assert_each_item_once(launcher.data_dir, items)
            requests_now = {path: media_server.request_count(path) for path in done_before}
            assert requests_now == requests_before
            print(
                f"\nkill -9 of make run: all its processes gone after {gone_after:.1f} s; "
                f"after the restart: {crashed.state.message!r} "
                f"{since(restarted_at, crashed.state.timestamp):.1f} s later, re-run started "
                f"{since(restarted_at, rerun.start_time):.1f} s later"
            )
        finally:
            tree = launcher.tree()
            assert launcher.stop(signal.SIGINT) == 0
            assert alive(tree) == []
