"""Every way a run starts accepts ``quality`` as a number or as text, and refuses nonsense.

Through a real Prefect server and served deployments: the CLI as the README shows it,
schedule parameters (runs the server itself makes from a schedule), the Python API.
The sidecar always records the one canonical form ("192", "V0").
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL

from flows.convert import ConvertResult, convert
from flows.library import Library

pytestmark = pytest.mark.flow

PREFECT = Path(sys.executable).parent / "prefect"
CHOICES = "'128', '192', '256', '320', 'V0', 'V2'"


def prefect_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PREFECT_API_URL": str(PREFECT_API_URL.value()), "COLUMNS": "200"}
    return subprocess.run(
        [str(PREFECT), *args], capture_output=True, text=True, env=env, timeout=180, check=False
    )


def wait_final(run_id: UUID, timeout: float = 120) -> FlowRun:
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(run_id)
            if run.state is not None and run.state.is_final():
                return run
            assert time.monotonic() < deadline, f"run still {run.state_name} after {timeout} s"
            time.sleep(0.5)


def qualities(settings) -> list[str]:
    return sorted(entry.sidecar.quality for entry in Library.from_settings(settings).entries())


def run_count(deployment: str = "on-demand") -> int:
    with get_client(sync_client=True) as client:
        return len(
            client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment]))
            )
        )


# -- the CLI, exactly as the README shows it --------------------------------------------


def test_the_cli_accepts_a_number(media_server, settings_env, served_deployments):
    url = media_server.url("clip.m4a")
    done = prefect_cli("deployment", "run", "convert/on-demand", "--param", f"url={url}",
                       "--param", "quality=192", "--watch", "--watch-timeout", "120")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert qualities(settings_env) == ["192"]


@pytest.mark.parametrize("value", ["191", "loud", "true"])
def test_the_cli_refuses_nonsense_and_lists_the_choices(
    media_server, settings_env, served_deployments, value
):
    before = run_count()
    url = media_server.url("clip.m4a")
    done = prefect_cli("deployment", "run", "convert/on-demand", "--param", f"url={url}",
                       "--param", f"quality={value}")  # fmt: skip
    output = " ".join((done.stdout + done.stderr).split())
    assert done.returncode != 0
    assert "is not one of" in output and CHOICES in output, output
    assert run_count() == before  # refused up front: no run was created
    assert media_server.request_count() == 0


# -- schedule parameters: the server makes the run from the schedule ----------------------


def test_a_schedule_with_a_number_makes_runs_that_convert(
    media_server, settings_env, tmp_path, serve_file
):
    spec = tmp_path / "deployments.yaml"
    spec.write_text(
        "deployments:\n"
        "  - name: every-hour\n"
        "    entrypoint: flows/convert.py:convert\n"
        "    schedules:\n"
        "      - interval: 3600\n"
        "        anchor_date: 2020-01-01T00:00:00Z\n"
        "        parameters:\n"
        f"          url: {media_server.url('clip.mp4')}\n"
        "          quality: 320\n"
    )
    with (
        serve_file(settings_env, spec, wait_for="convert/every-hour"),
        get_client(sync_client=True) as client,
    ):
        deployment = client.read_deployment_by_name("convert/every-hour")
        now = datetime.now(UTC)
        # The server's own scheduling (what its scheduler service runs), for the past hour.
        response = httpx.post(
            f"{PREFECT_API_URL.value()}/deployments/{deployment.id}/schedule",
            json={"start_time": (now - timedelta(hours=1)).isoformat(),
                  "end_time": now.isoformat(), "max_runs": 1},
        )  # fmt: skip
        response.raise_for_status()
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["every-hour"]))
        )
        assert len(runs) == 1 and runs[0].parameters["quality"] == 320
        final = wait_final(runs[0].id)
    assert final.state is not None and final.state.is_completed(), final.state
    assert qualities(settings_env) == ["320"]


# -- the Python API -----------------------------------------------------------------------


def test_run_deployment_accepts_a_number_and_refuses_nonsense(
    media_server, settings_env, served_deployments
):
    url = media_server.url("clip.webm")
    run = run_deployment("convert/on-demand", parameters={"url": url, "quality": 128}, timeout=120)
    assert run.state is not None and run.state.is_completed(), run.state
    with pytest.raises(Exception, match="is not one of") as refused:
        run_deployment("convert/on-demand", parameters={"url": url, "quality": 191}, timeout=0)
    assert CHOICES in str(refused.value)
    assert qualities(settings_env) == ["128"]


@pytest.mark.parametrize(("given", "stored"), [(256, "256"), ("v0", "V0"), (192.0, "192")])
def test_calling_the_flow_normalises_the_quality(media_server, settings_env, given, stored):
    state = convert(url=media_server.url("clip.m4a"), quality=given, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert isinstance(result, ConvertResult) and result.quality == stored
    assert qualities(settings_env) == [stored]


def test_calling_the_flow_with_nonsense_lists_the_choices(media_server, settings_env):
    state = convert(url=media_server.url("clip.m4a"), quality="loud", return_state=True)
    assert state.is_failed()
    assert "'128', '192', '256', '320', 'V0' or 'V2'" in state.message
    assert media_server.request_count() == 0
