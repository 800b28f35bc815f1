"""infrastructure/docker/pool_template.py: prefect-docker's default template, locked down.

The schema is checked with Prefect's own validator, the one the server applies to every
deployment and every run created from a deployment.
"""

from __future__ import annotations

import copy
import runpy
from pathlib import Path

import pytest
from prefect.utilities.schema_tools import ValidationError, validate

from flows.settings import Settings

POOL = runpy.run_path(str(Path(__file__).parents[2] / "infrastructure/docker/pool_template.py"))
CONFIG = POOL["PoolConfig"](
    image="ytmp3-test/ytmp3:latest",
    volumes=("library:/data",),
    networks=("flows",),
    env={"YTMP3_ALLOWED_HOSTS": "example.com"},
    memory_mb=700,
    pids_limit=300,
)
DEFAULT = POOL["default_template"]()
TEMPLATE = POOL["locked_template"](DEFAULT, CONFIG)

URL_POLICY = {"allowed_hosts", "media_hosts", "allow_private_networks", "private_service", "proxy"}


def check(job_variables: dict) -> None:
    """What the server does with a run's job variables (raises ValidationError)."""
    defaults = {
        name: schema["default"]
        for name, schema in TEMPLATE["variables"]["properties"].items()
        if "default" in schema
    }
    validate(
        defaults | job_variables,
        TEMPLATE["variables"],
        raise_on_error=True,
        preprocess=True,
        ignore_required=False,
        allow_none_with_default=True,
    )


def test_every_setting_is_either_a_run_setting_or_the_pools():
    run, pool = set(POOL["RUN_SETTINGS"]), set(POOL["POOL_SETTINGS"])
    assert not run & pool
    assert run | pool == set(Settings.model_fields), "classify new settings in pool_template.py"
    assert not run & (URL_POLICY | {"data_dir", "retention_hours", "temp_grace_hours"})


def test_the_job_configuration_is_fixed_but_auto_remove():
    job = TEMPLATE["job_configuration"]
    placeholders = {key for key, value in job.items() if "{{" in str(value)}
    assert placeholders == {"auto_remove"}
    assert job["image"] == "ytmp3-test/ytmp3:latest"
    assert job["command"] == "prefect flow-run execute"
    assert job["privileged"] is False
    assert job["volumes"][0] == "library:/data"  # then the cache and cookies volumes
    assert (job["networks"], job["network_mode"]) == (["flows"], None)
    assert (job["mem_limit"], job["memswap_limit"]) == ("700m", "700m")
    assert job["env"] == {
        "YTMP3_DATA_DIR": "/data",
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30",
        "YTMP3_ALLOWED_HOSTS": "example.com",
    }
    options = job["container_create_kwargs"]
    assert options["read_only"] is True
    assert options["cap_drop"] == ["ALL"]
    assert options["security_opt"] == ["no-new-privileges:true"]
    assert options["pids_limit"] == 300
    assert set(options["tmpfs"]) == {"/tmp", "/home/ytmp3"}
    assert options["user"] == "1000:1000"


def test_only_the_run_variables_are_left():
    variables = TEMPLATE["variables"]
    assert set(variables["properties"]) == {"image", "env", "auto_remove"}
    assert variables["additionalProperties"] is False
    assert "$defs" not in variables
    assert POOL["default_template"]() == DEFAULT, "the default must not be modified"


@pytest.mark.parametrize(
    "job_variables",
    [
        {"env": {"YTMP3_CONCURRENCY": "1", "YTMP3_DEFAULT_QUALITY": "V0"}},
        {"auto_remove": False},
        {"image": "ytmp3-test/ytmp3:latest"},  # what prefect deploy sends
        {},
    ],
    ids=["run-settings", "auto-remove", "the-pools-image", "nothing"],
)
def test_what_a_run_may_set(job_variables):
    check(job_variables)


@pytest.mark.parametrize(
    "job_variables",
    [
        {"privileged": True},
        {"volumes": ["/:/host"]},
        {"command": "sh -c 'id'"},
        {"image": "debian:bookworm"},
        {"network_mode": "host"},
        {"container_create_kwargs": {"cap_add": ["SYS_ADMIN"]}},
        {"mem_limit": None},
        {"env": {"YTMP3_ALLOWED_HOSTS": "*"}},
        {"env": {"YTMP3_ALLOW_PRIVATE_NETWORKS": "true"}},
        {"env": {"YTMP3_MEDIA_HOSTS": "169.254.169.254"}},
        {"env": {"YTMP3_PRIVATE_SERVICE": "postgres:5432"}},
        {"env": {"YTMP3_PROXY": "http://attacker.example:3128"}},
        {"env": {"YTMP3_DATA_DIR": "/"}},
        {"env": {"ytmp3_allowed_hosts": "*"}},  # pydantic-settings ignores case
        {"env": {"PREFECT_API_URL": "http://attacker.example/api"}},
        {"env.YTMP3_ALLOWED_HOSTS": "*"},  # the worker reads dotted keys as nested ones
        {"env": {"YTMP3_CONCURRENCY": 4}},  # env values are text
    ],
    ids=lambda variables: next(iter(variables)) + str(next(iter(variables.values())))[:40],
)
def test_what_a_run_may_not_set(job_variables):
    with pytest.raises(ValidationError):
        check(job_variables)


def test_the_worker_takes_only_the_run_variables():
    allowed = POOL["allowed_job_variables"](
        {
            "privileged": True,
            "volumes": ["/:/host"],
            "image": "debian:bookworm",
            "env.YTMP3_ALLOWED_HOSTS": "*",
            "env": {"YTMP3_ALLOWED_HOSTS": "*", "PREFECT_API_URL": "x", "YTMP3_RETRIES": "1"},
            "auto_remove": False,
        }
    )
    assert allowed == {"env": {"YTMP3_RETRIES": "1"}, "auto_remove": False}
    assert POOL["allowed_job_variables"](None) == {}
    assert POOL["allowed_job_variables"]({"env": None}) == {"env": {}}


def test_a_new_field_in_prefect_dockers_default_stops_the_generation():
    changed = copy.deepcopy(DEFAULT)
    changed["job_configuration"]["ports"] = "{{ ports }}"
    with pytest.raises(POOL["TemplateDrift"], match="ports"):
        POOL["locked_template"](changed, CONFIG)


def test_flow_containers_send_heartbeats_as_often_as_the_setting_says():
    """The zombie automation's window is built from YTMP3_HEARTBEAT_SECONDS; the pool
    makes every flow container beat that often."""
    heartbeat = Settings().heartbeat_seconds
    config = POOL["PoolConfig"](heartbeat_seconds=heartbeat)
    env = POOL["job_configuration"](config)["env"]
    assert env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == str(heartbeat)


def test_the_cache_and_cookies_volumes_are_always_mounted():
    volumes = POOL["job_configuration"](POOL["PoolConfig"](volumes=("lib:/data",)))["volumes"]
    assert volumes == ["lib:/data", "ytmp3-ytdlp-cache:/var/cache/ytmp3",
                       "ytmp3-cookies:/run/ytmp3-cookies:ro"]  # fmt: skip


def test_flow_container_logs_are_rotated_as_docker_py_takes_them():
    from docker.types import HostConfig, LogConfig

    log_config = TEMPLATE["job_configuration"]["container_create_kwargs"]["log_config"]
    assert log_config == {"type": "json-file", "config": {"max-size": "10m", "max-file": "3"}}
    host_config = HostConfig(version="1.41", log_config=log_config)
    assert isinstance(host_config["LogConfig"], LogConfig)
    assert host_config["LogConfig"]["Config"] == {"max-size": "10m", "max-file": "3"}


def test_the_pools_concurrency_limit_is_the_flow_runs_setting(monkeypatch):
    import sys

    monkeypatch.syspath_prepend(str(Path(__file__).parents[2] / "infrastructure/docker"))
    monkeypatch.setenv("YTMP3_MAX_FLOW_RUNS", "3")
    create_pool = __import__("create_pool")
    try:
        config = create_pool.pool_config(create_pool.parser().parse_args([]))
    finally:
        sys.modules.pop("create_pool", None)
    assert config.flow_runs == 3
