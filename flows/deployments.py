"""Read the deployments declared in ``prefect.yaml`` and serve them from this machine.

``prefect deploy`` registers the file's deployments on a work pool (production, Docker).
On one machine, :func:`serve_from_yaml` runs the very same declarations in local
processes with a Prefect ``Runner``: names, entrypoints, parameters, schedules and
concurrency limits all come from the file, so nothing is declared twice. The runner
holds the flows in memory (``add_flow``), and each run is a process forked from a
pre-imported one (:mod:`flows.warmstart`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from prefect.client.schemas.objects import ConcurrencyLimitConfig
from prefect.deployments.runner import RunnerDeployment
from prefect.exceptions import TerminationSignal
from prefect.flows import Flow, load_flow_from_entrypoint
from prefect.runner import Runner
from prefect.schedules import Cron, Interval, Schedule

from flows.settings import get_settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PREFECT_YAML = PROJECT_ROOT / "prefect.yaml"


@dataclass(frozen=True)
class DeploymentSpec:
    """One entry of prefect.yaml's ``deployments:`` list, as ytmp3 uses it."""

    name: str
    entrypoint: str
    description: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    schedules: list[dict[str, Any]] = field(default_factory=list)
    concurrency_limit: dict[str, Any] | int | None = None
    tags: list[str] = field(default_factory=list)

    @property
    def flow_name(self) -> str:
        return self.load_flow().name

    @property
    def module(self) -> str:
        """``flows/convert.py:convert`` -> ``flows.convert`` (the flow's importable module)."""
        path = self.entrypoint.partition(":")[0]
        return path.removesuffix(".py").replace("/", ".")

    def load_flow(self) -> Flow[Any, Any]:
        function = self.entrypoint.partition(":")[2]
        # By module, not by file: a forked run finds the very module the forkserver imported.
        return load_flow_from_entrypoint(f"{self.module}:{function}", use_placeholder_flow=False)

    def concurrency_limit_config(self) -> ConcurrencyLimitConfig | int | None:
        limit = self.concurrency_limit
        return ConcurrencyLimitConfig(**limit) if isinstance(limit, dict) else limit

    def build_schedules(self) -> list[Schedule]:
        return [_schedule(entry) for entry in self.schedules]

    def to_runner_deployment(self) -> RunnerDeployment:
        return self.load_flow().to_deployment(**self._deployment_options())

    def add_to(self, runner: Runner) -> None:
        """Serve this deployment from ``runner``, which then holds its flow in memory."""
        runner.add_flow(self.load_flow(), **self._deployment_options())

    def _deployment_options(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
            "schedules": self.build_schedules(),
            "concurrency_limit": self.concurrency_limit_config(),
            "tags": self.tags,
        }


def load_specs(path: Path = PREFECT_YAML) -> list[DeploymentSpec]:
    """Every deployment declared in ``path``."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    specs = []
    for entry in document.get("deployments") or []:
        specs.append(
            DeploymentSpec(
                name=entry["name"],
                entrypoint=entry["entrypoint"],
                description=entry.get("description"),
                parameters=entry.get("parameters") or {},
                schedules=entry.get("schedules") or [],
                concurrency_limit=entry.get("concurrency_limit"),
                tags=entry.get("tags") or [],
            )
        )
    return specs


def serve_from_yaml(path: Path = PREFECT_YAML, limit: int | None = None) -> None:
    """Serve every deployment in ``path`` from local processes until interrupted.

    At most ``limit`` flow-run processes at once (default ``YTMP3_MAX_FLOW_RUNS``); runs
    beyond it wait, Scheduled, for the next free one.
    """
    from flows import warmstart

    warmstart.install()
    settings = get_settings()
    # Every flow-run process sends a heartbeat this often (flows/automations.py acts on them).
    runner = Runner(
        limit=limit or settings.max_flow_runs,
        heartbeat_seconds=settings.heartbeat_seconds,
        query_seconds=settings.runner_poll_seconds,  # submit -> Running waits half of it
    )
    specs = load_specs(path)
    for spec in specs:
        spec.add_to(runner)
    print(f"Serving {', '.join(spec.name for spec in specs)} ({runner.name})", flush=True)
    try:
        asyncio.run(runner.start())
    except (KeyboardInterrupt, TerminationSignal) as exc:
        print(f"Received {type(exc).__name__}, shutting down...", flush=True)


def _schedule(entry: dict[str, Any]) -> Schedule:
    options = {
        "timezone": entry.get("timezone"),
        "active": entry.get("active", True),
        "parameters": entry.get("parameters") or {},
    }
    if "cron" in entry:
        return Cron(entry["cron"], day_or=entry.get("day_or", True), **options)
    if "interval" in entry:
        return Interval(entry["interval"], anchor_date=entry.get("anchor_date"), **options)
    raise ValueError(f"unsupported schedule in prefect.yaml: {entry}")


def stop_all_on_hangup() -> None:
    """On SIGHUP, kill this process and the flow-run processes it started, at once.

    Only when this process leads its own process group (as `make run` starts it), which
    its flow-run processes and their ffmpeg share. `make run` has the kernel send SIGHUP
    if it dies without stopping this process; their runs, left Running, are then marked
    Crashed by the zombie automation (flows/automations.py) and re-run.
    """
    if os.getpgrp() == os.getpid():
        signal.signal(signal.SIGHUP, lambda *_: os.killpg(os.getpgrp(), signal.SIGKILL))


if __name__ == "__main__":  # python -m flows.deployments [FILE]  (default: prefect.yaml)
    stop_all_on_hangup()
    serve_from_yaml(Path(sys.argv[1]) if len(sys.argv) > 1 else PREFECT_YAML)
