"""Helpers for the page tests (a module of its own: ``conftest`` is not importable by
name when several test folders have one)."""

from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
from prefect.client.schemas.objects import FlowRun

from flows.deployments import load_specs
from flows.progress import ITEMS_KEY, ItemRow

PROJECT_ROOT = Path(__file__).resolve().parents[2]
APP = PROJECT_ROOT / "ui" / "app.py"


def register_on_demand() -> UUID:
    """Register prefect.yaml's ``on-demand`` deployment (no worker: runs stay Scheduled)."""
    spec = next(spec for spec in load_specs() if spec.name == "on-demand")
    return spec.to_runner_deployment().apply()


def runs_for(url: str) -> list[FlowRun]:
    """Flow runs of the on-demand deployment whose ``url`` parameter is ``url``."""
    with get_client(sync_client=True) as client:
        found = client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["on-demand"])),
            limit=200,
        )
    return [run for run in found if (run.parameters or {}).get("url") == url]


def item_table(run_id: UUID, *rows: ItemRow) -> None:
    """The run's item table artifact, as flows/progress.py writes it."""
    data = json.dumps([row.model_dump(mode="json") for row in rows])
    with get_client(sync_client=True) as client:
        client.create_artifact(
            ArtifactCreate(type="table", key=ITEMS_KEY, data=data, flow_run_id=run_id)
        )
