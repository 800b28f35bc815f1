"""How long one rerun of the page takes with 1,000 library entries and 20 active runs.

    python -m bench.page_render [--reruns 20] [--entries 1000] [--runs 20]

Everything is real except the browser: a real Prefect server (``prefect server start`` on
SQLite, a free port, a throwaway ``PREFECT_HOME``) with the ``convert/on-demand`` deployment
registered from prefect.yaml, and a data dir with real sidecars (MP3s are sparse files: the
page must not read them to render). Nothing serves the deployment, so the 20 runs stay
where the bench puts them: Running, each with a progress artifact, half of them
playlists with a 10-item table in mixed states, exactly what the flow writes.

The page runs under Streamlit's ``AppTest``, which executes the whole script (the
conversions fragment included) like a browser-triggered rerun does, without the
websocket and the browser's drawing. The goal is < 1.5 s per rerun. Also reported:
the first run (imports, cold caches) and the two data costs inside a rerun (scanning
the library, the four Prefect requests of the conversions panel).

Writes ``bench/results/page_render.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS = PROJECT_ROOT / "bench" / "results" / "page_render.json"
APP = PROJECT_ROOT / "ui" / "app.py"
GOAL_SECONDS = 1.5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(home: Path) -> tuple[subprocess.Popen[bytes], str, float]:
    """``prefect server start`` on a free port; returns it, its API URL, start-up seconds."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")} | {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    log = open(home.parent / "prefect-server.log", "wb")  # noqa: SIM115 - child writes to it
    started = time.monotonic()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "prefect"), "server", "start",
         "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    log.close()
    while time.monotonic() - started < 120:
        if server.poll() is not None:
            raise RuntimeError(f"prefect server exited; see {home.parent / 'prefect-server.log'}")
        try:
            with urllib.request.urlopen(f"{api}/health", timeout=2) as response:
                if response.status == 200:
                    return server, api, time.monotonic() - started
        except (urllib.error.URLError, OSError):
            time.sleep(0.25)
    raise RuntimeError("prefect server did not become healthy in 120 s")


def stop_server(server: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGINT, signal.SIGINT, signal.SIGKILL):
        if server.poll() is not None:
            return
        os.killpg(server.pid, sig)
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            continue


def make_active_runs(count: int) -> None:
    """``count`` Running convert runs with progress; every other one a 10-item playlist."""
    from prefect import get_client
    from prefect.client.schemas.actions import ArtifactCreate
    from prefect.deployments import run_deployment
    from prefect.states import Running

    from flows.progress import ITEMS_KEY, ItemPhase, ItemRow

    later = datetime.now(UTC) + timedelta(days=1)
    P = ItemPhase
    phases = [P.CONVERTED, P.CONVERTED, P.REUSED, P.FAILED, P.RUNNING, P.RUNNING, P.QUEUED]
    with get_client(sync_client=True) as client:
        for index in range(count):
            run = run_deployment(
                "convert/on-demand",
                parameters={"url": f"https://www.youtube.com/watch?v=bench{index:04d}"},
                timeout=0,
                scheduled_time=later,
                as_subflow=False,
            )
            client.set_flow_run_state(run.id, Running(), force=True)
            client.create_artifact(
                ArtifactCreate(type="progress", data=float(5 * index % 100), flow_run_id=run.id)
            )
            if index % 2:
                rows = [
                    ItemRow(
                        position=position,
                        title=f"Track {position} of run {index}",
                        phase=(phase := phases[position % len(phases)]),
                        message="HTTP Error 404" if phase == P.FAILED else None,
                    ).model_dump(mode="json")
                    for position in range(10)
                ]
                client.create_artifact(
                    ArtifactCreate(
                        type="table", key=ITEMS_KEY, data=json.dumps(rows), flow_run_id=run.id
                    )
                )


def measure(entries: int, runs: int, reruns: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ytmp3-page-bench-") as tmp:
        root = Path(tmp)
        (root / "home").mkdir()
        data = root / "data"
        server, api, startup = start_server(root / "home")
        try:
            # Before anything imports Prefect or ytmp3's settings.
            os.environ.update(
                {
                    "PREFECT_API_URL": api,
                    "PREFECT_HOME": str(root / "home"),
                    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                    "YTMP3_DATA_DIR": str(data),
                }
            )
            from streamlit import config as streamlit_config
            from streamlit.testing.v1 import AppTest

            from flows.deployments import load_specs
            from flows.library import Library
            from tests.support.sample_library import write_library
            from ui import runs as ui_runs

            write_library(data, entries)
            spec = next(spec for spec in load_specs() if spec.name == "on-demand")
            spec.to_runner_deployment().apply()
            make_active_runs(runs)

            # Served on loopback as `make run` serves it: open, with no sign-in configured.
            streamlit_config.set_option("server.address", "127.0.0.1")
            app = AppTest.from_file(str(APP), default_timeout=120)
            started = time.perf_counter()
            app.run()
            cold = time.perf_counter() - started
            problems = [e.value for e in app.exception] + [e.value for e in app.error]
            shown = sum(1 for b in app.button if str(b.key or "").startswith("stop:"))
            rows = sum(1 for b in app.download_button if str(b.key or "").startswith("download:"))

            times = []
            for _ in range(reruns):
                started = time.perf_counter()
                app.run()
                times.append(time.perf_counter() - started)

            started = time.perf_counter()
            app.text_input(key="library_filter").input("song 7").run()
            filtered = time.perf_counter() - started

            scans = []
            for _ in range(5):
                started = time.perf_counter()
                Library(data).entries()
                scans.append(time.perf_counter() - started)
            overviews = []
            for _ in range(5):
                started = time.perf_counter()
                ui_runs.overview(limit=20)
                overviews.append(time.perf_counter() - started)
        finally:
            stop_server(server)

    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    import prefect
    import streamlit

    return {
        "what": "one full rerun of ui/app.py (AppTest: script + conversions fragment)",
        "goal_seconds": GOAL_SECONDS,
        "passed": max(times) < GOAL_SECONDS and not problems,
        "library_entries": entries,
        "active_runs": runs,
        "prefect": "real server (prefect server start, SQLite), 4 API requests per rerun",
        "rendered": {"active_runs_shown": shown, "library_rows_shown": rows},
        "page_problems": problems,
        "first_run_seconds": round(cold, 3),
        "rerun_seconds": {
            "median": round(statistics.median(times), 3),
            "p95": round(p95, 3),
            "max": round(max(times), 3),
            "all": [round(t, 3) for t in times],
        },
        "filter_rerun_seconds": round(filtered, 3),
        "inside_a_rerun": {
            "library_scan_seconds_median": round(statistics.median(scans), 3),
            "prefect_overview_seconds_median": round(statistics.median(overviews), 3),
        },
        "server_startup_seconds": round(startup, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "streamlit": streamlit.__version__,
            "prefect": prefect.__version__,
        },
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--reruns", type=int, default=20)
    args = parser.parse_args(argv)
    result = measure(args.entries, args.runs, args.reruns)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    reruns = result["rerun_seconds"]
    print(
        f"page render, {args.entries} entries + {args.runs} active runs: "
        f"median {reruns['median']:.3f} s, p95 {reruns['p95']:.3f} s, max {reruns['max']:.3f} s "
        f"(goal < {GOAL_SECONDS} s: {'met' if result['passed'] else 'NOT met'}); "
        f"first run {result['first_run_seconds']:.2f} s; written to {RESULTS}"
    )
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
