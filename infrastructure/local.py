"""Start the whole of ytmp3 on one machine, keep it running, and stop it cleanly on Ctrl-C.

What runs (each as a child process, logs in ``<state dir>/logs/``):

1. a Prefect server on SQLite (its database in ``<state dir>/prefect/``);
2. every deployment of ``prefect.yaml``, served from local processes
   (``python -m flows.deployments``); once they are, the automations of
   ``flows/automations.py`` are created or updated (``python -m flows.automations``);
3. the Streamlit page (``ui/server.py``: the page with its sign-in routes). On an address
   other than loopback it needs sign-in configured (ui/auth.py), or nothing starts.

This is ``make run``. Configuration comes from the ``YTMP3_*`` settings; the children
inherit this process's environment plus the Prefect variables set here.

Supervision, once everything is up:

- A child that dies is started again after a back-off (1 s, doubling up to 30 s, back to
  1 s once it has stayed up for a minute), with a line on the console and in its log.
- What a dead child leaves behind (the flow-run processes of a serving process, their
  ffmpeg) is stopped: this process is the subreaper of everything it starts, so such
  orphans become its own children. They get SIGTERM, on which a flow run reports itself
  Crashed (and the re-run automation takes over), then SIGKILL after 10 s.
- If this process is killed outright, the kernel signals every child
  (``PR_SET_PDEATHSIG``): the server and the page stop, the serving process kills itself
  and its flow-run processes. Their runs stay Running until the zombie automation marks
  them Crashed (once a server is back) and they are re-run. Nothing started here
  outlives ``make run``.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prefect.settings import get_current_settings

from flows import doctor
from flows.deployments import load_specs
from flows.settings import Settings, SettingsError, load_settings
from ui.auth import startup_problem

PROJECT_ROOT = Path(__file__).resolve().parent.parent

BIN_DIR = Path(sys.executable).parent

FIRST_BACKOFF, MAX_BACKOFF, STABLE_AFTER = 1.0, 30.0, 60.0
SLOT_WAIT_SECONDS = "5"
"""Prefect's default is 30 s: a queue of short conversions would mostly wait."""
ORPHAN_GRACE = 10.0
"""Seconds between SIGTERM and SIGKILL for what a dead child left behind."""
STARTUP_TIMEOUT, STARTUP_NOTICE = 600.0, 30.0
"""A start is waited for while the children live (a new database on a busy machine took
over 90 s); a line every STARTUP_NOTICE seconds says what it waits for."""

LINUX = sys.platform.startswith("linux")
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36


@dataclass
class Child:
    """One supervised child: how to start it, and its current process."""

    name: str
    argv: list[str]
    death_signal: signal.Signals
    """What the kernel sends it if this process dies without stopping it."""
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    backoff: float = FIRST_BACKOFF
    restart_at: float | None = None


class Stack:
    """The child processes of the local stack, started in order and stopped in reverse."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.logs = settings.state_dir / "logs"
        self.children: list[Child] = []
        self.orphans: dict[int, float] = {}
        """Processes a dead child left behind (now ours), and when they got SIGTERM."""
        api_url = f"http://{settings.local_host}:{settings.prefect_port}/api"
        self.env = os.environ | {
            "PREFECT_HOME": str(settings.state_dir / "prefect"),
            "PREFECT_API_URL": api_url,
            "PREFECT_UI_URL": f"http://{settings.local_host}:{settings.prefect_port}",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # A convert run queued by its deployment's limit (ENQUEUE) asks again this often.
            "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": SLOT_WAIT_SECONDS,
            "YTMP3_DATA_DIR": str(settings.data_dir),
        }
        # With Prefect's API auth string set (environment or profile), the server asks
        # for it and every child sends it; without it, the API is open on local_host.
        auth = get_current_settings().api.auth_string
        self.auth = auth.get_secret_value() if auth is not None else None
        if self.auth:
            self.env |= {
                "PREFECT_API_AUTH_STRING": self.auth,
                "PREFECT_SERVER_API_AUTH_STRING": self.auth,
            }

    def start(self, name: str, argv: list[str], death_signal: signal.Signals) -> None:
        child = Child(name, argv, death_signal)
        self.children.append(child)
        self._spawn(child)

    def _spawn(self, child: Child) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / f"{child.name}.log", "ab") as log:
            child.process = subprocess.Popen(
                child.argv,
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with(os.getpid(), child.death_signal),
            )
        child.started, child.restart_at = time.monotonic(), None

    def apply_automations(self) -> None:
        """Create or update flows/automations.py's automations on the server."""
        done = subprocess.run(
            [sys.executable, "-m", "flows.automations"],
            cwd=PROJECT_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"the automations could not be applied:\n{done.stderr[-2000:]}")

    def wait_healthy(self, url: str) -> None:
        def answers() -> bool:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
                    return response.status == 200
            except (urllib.error.URLError, OSError):
                return False

        self.wait_until(answers, f"{url} to answer")

    def wait_for_deployments(self, api_url: str, expected: int) -> None:
        """Wait until the server knows every deployment of prefect.yaml (served = usable)."""
        request = urllib.request.Request(  # noqa: S310 - http URL built here
            f"{api_url}/deployments/count",
            data=b"{}",
            method="POST",
            headers={"Content-Type": "application/json", **basic_auth(self.auth)},
        )

        def served() -> bool:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                return int(response.read()) >= expected

        self.wait_until(served, "the deployments to be served")

    def wait_until(self, done: Callable[[], bool], what: str) -> None:
        """Poll ``done`` while the children live: a slow start (a new database, a busy
        machine) is waited for and reported every STARTUP_NOTICE seconds, up to
        STARTUP_TIMEOUT; a child that exits ends the wait at once."""
        started = time.monotonic()
        noticed = started
        while not done():
            self.raise_if_exited()
            now = time.monotonic()
            if now - started > STARTUP_TIMEOUT:
                raise RuntimeError(f"gave up waiting for {what} after {STARTUP_TIMEOUT:.0f} s")
            if now - noticed > STARTUP_NOTICE:
                noticed = now
                print(f"ytmp3: still waiting for {what} ({now - started:.0f} s)", flush=True)
            time.sleep(0.5)

    def raise_if_exited(self) -> None:
        """While starting, a child that exits is fatal (a port in use, a bad setting)."""
        for child in self.children:
            if child.process is not None and child.process.poll() is not None:
                raise RuntimeError(
                    f"{child.name} exited with code {child.process.returncode}; "
                    f"see {self.logs / (child.name + '.log')}"
                )

    def supervise(self) -> None:
        """One round: stop what dead children left behind; restart them after a back-off."""
        now = time.monotonic()
        self.stop_orphans(now)
        for child in self.children:
            assert child.process is not None
            if child.process.poll() is None:
                if now - child.started > STABLE_AFTER:
                    child.backoff = FIRST_BACKOFF
            elif child.restart_at is None:
                child.restart_at = now + child.backoff
                self._say(
                    child,
                    f"{child.name} exited with code {child.process.returncode}; "
                    f"restarting it in {child.backoff:g} s",
                )
                child.backoff = min(child.backoff * 2, MAX_BACKOFF)
            elif now >= child.restart_at:
                self._spawn(child)
                self._say(child, f"{child.name} restarted (pid {child.process.pid})")

    def stop_orphans(self, now: float) -> None:
        """SIGTERM every process of ours that is not a known child; SIGKILL it after a grace."""
        known = {child.process.pid for child in self.children if child.process is not None}
        for pid in _children_of(os.getpid()) - known:
            if pid not in self.orphans:
                self.orphans[pid] = now
                _signal(pid, signal.SIGTERM)
            elif now - self.orphans[pid] > ORPHAN_GRACE:
                _signal(pid, signal.SIGKILL)
        for pid in list(self.orphans):
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0] == 0:
                    continue
            del self.orphans[pid]

    def stop(self) -> None:
        """Stop the children in reverse order: the page, the deployments, then the server.

        Each gets SIGINT, a second SIGINT if it is still up after a few seconds (Prefect's
        runner ignores the first), and SIGKILL for its whole process group last. The server
        goes last, so the runner can still report its runs' states while it shuts down.
        Whatever they left behind goes last of all.
        """
        for child in reversed(self.children):
            process = child.process
            if process is None:
                continue
            for sig, grace in ((signal.SIGINT, 10.0), (signal.SIGINT, 5.0), (signal.SIGKILL, 5.0)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, sig)
                try:
                    process.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
        deadline = time.monotonic() + ORPHAN_GRACE + 2
        while _children_of(os.getpid()) and time.monotonic() < deadline:
            self.stop_orphans(time.monotonic())
            time.sleep(0.2)

    def _say(self, child: Child, message: str) -> None:
        print(f"ytmp3: {message}", flush=True)
        with open(self.logs / f"{child.name}.log", "a", encoding="utf-8") as log:
            log.write(f"--- make run, {time.strftime('%Y-%m-%d %H:%M:%S')}: {message}\n")


def basic_auth(auth: str | None) -> dict[str, str]:
    """The header a Prefect client sends for ``auth`` (none without one)."""
    if not auth:
        return {}
    return {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def _die_with(parent: int, death_signal: signal.Signals) -> Callable[[], None] | None:
    """In the child, before exec: get ``death_signal`` when ``parent`` dies."""
    if not LINUX:
        return None

    def setup() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # a shell's `&` would leave it ignored
        _prctl(PR_SET_PDEATHSIG, death_signal)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), death_signal)

    return setup


def _children_of(pid: int) -> set[int]:
    """The ids of ``pid``'s child processes (from /proc; empty where there is none)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(stat.parent.name))
    return found


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _has_identity_provider() -> bool:
    """Whether .streamlit/secrets.toml configures Streamlit's st.login (an [auth] section)."""
    try:
        with open(PROJECT_ROOT / ".streamlit" / "secrets.toml", "rb") as handle:
            return bool(tomllib.load(handle).get("auth"))
    except (OSError, tomllib.TOMLDecodeError):
        return False


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"ytmp3: {exc}", file=sys.stderr)
        return 2
    if problem := startup_problem(settings, settings.local_host, _has_identity_provider()):
        print(f"ytmp3: the web page will not start: {problem}.", file=sys.stderr)
        return 2
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if doctor.report(settings, prefect=False, out=lambda line: print(f"ytmp3: {line}")):
        return 1
    if LINUX:  # orphans of our children become ours, so they can be stopped
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
    stack = Stack(settings)
    host, port = settings.local_host, settings.prefect_port
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        print(f"ytmp3: starting the Prefect server on http://{host}:{port} ...", flush=True)
        stack.start(
            "prefect-server",
            [str(BIN_DIR / "prefect"), "server", "start", "--host", host, "--port", str(port)],
            signal.SIGTERM,
        )
        stack.wait_healthy(f"http://{host}:{port}/api/health")
        print("ytmp3: serving the deployments of prefect.yaml ...", flush=True)
        # SIGHUP: it kills itself and its flow-run processes at once (flows/deployments.py).
        stack.start("deployments", [sys.executable, "-m", "flows.deployments"], signal.SIGHUP)
        stack.start(
            "web-page",
            [
                str(BIN_DIR / "streamlit"),
                "run",
                "ui/server.py",
                "--server.address",
                host,
                "--server.port",
                str(settings.ui_port),
                "--server.headless",
                "true",
                "--browser.gatherUsageStats",
                "false",
            ],
            signal.SIGTERM,
        )
        stack.wait_healthy(f"http://{host}:{settings.ui_port}/_stcore/health")
        stack.wait_for_deployments(f"http://{host}:{port}/api", len(load_specs()))
        stack.apply_automations()
        print(
            f"\nytmp3 is running.\n"
            f"  web page:      http://{host}:{settings.ui_port}\n"
            f"  Prefect UI:    http://{host}:{port}\n"
            f"  library:       {settings.data_dir}\n"
            f"  logs:          {stack.logs}\n"
            f"From another shell: PREFECT_API_URL=http://{host}:{port}/api "
            f"prefect deployment run convert/on-demand --param url=...\n"
            f"Press Ctrl-C to stop.",
            flush=True,
        )
        while True:
            stack.supervise()
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nytmp3: stopping ...", flush=True)
        return 0
    except RuntimeError as exc:
        print(f"ytmp3: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
