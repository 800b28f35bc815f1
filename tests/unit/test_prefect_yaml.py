"""prefect.yaml is the one source of truth for deployments: it must load and validate."""

from __future__ import annotations

import inspect

import pytest
import yaml

from flows.deployments import PREFECT_YAML, load_specs

SPECS = load_specs()


def test_the_expected_deployments_are_declared():
    names = {f"{spec.flow_name}/{spec.name}" for spec in SPECS}
    assert {"convert/on-demand", "playlist-batch/scheduled-playlists"} <= names


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
def test_entrypoint_and_parameters_match_the_flow(spec):
    flow = spec.load_flow()  # raises if the entrypoint is wrong (no placeholder flows)
    signature = inspect.signature(flow.fn)
    assert set(spec.parameters) <= set(signature.parameters)
    for schedule in spec.schedules:
        merged = {**spec.parameters, **(schedule.get("parameters") or {})}
        required = {
            name
            for name, parameter in signature.parameters.items()
            if parameter.default is inspect.Parameter.empty
        }
        assert required <= set(merged), f"schedule misses {required - set(merged)}"
        flow.validate_parameters(merged)  # pydantic validation of every value


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
def test_schedules_and_limits_build(spec):
    for schedule in spec.build_schedules():
        assert schedule.cron if hasattr(schedule, "cron") else schedule.interval
    deployment = spec.to_runner_deployment()
    assert deployment.name == spec.name


def test_every_deployment_targets_the_docker_pool_in_production():
    document = yaml.safe_load(PREFECT_YAML.read_text())
    for entry in document["deployments"]:
        pool = entry["work_pool"]
        assert pool["name"] == "docker-pool"
        # The pool fixes everything else (infrastructure/docker/pool_template.py).
        assert pool["job_variables"] == {"image": "{{ build-image.image }}"}
    build = document["build"][0]["prefect_docker.deployments.steps.build_docker_image"]
    assert build["pull"] is False
