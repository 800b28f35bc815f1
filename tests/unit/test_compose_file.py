"""infrastructure/compose.yml, read as data: logs rotated, the database and the library
apart, and the limits' defaults the same as the settings'. (Run for real: tests/docker.)"""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import yaml

from flows.settings import Settings

ROOT = Path(__file__).parents[2]
COMPOSE = yaml.safe_load((ROOT / "infrastructure/compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_every_service_rotates_its_log():
    for name, service in SERVICES.items():
        logging = service.get("logging")
        assert logging == {
            "driver": "json-file",
            "options": {"max-size": "10m", "max-file": "3"},
        }, name


def test_the_prefect_database_and_the_library_are_separate_volumes():
    def volumes(service: str) -> set[str]:
        return {mount.split(":")[0] for mount in SERVICES[service].get("volumes", [])}

    assert "postgres-data" in volumes("postgres")
    assert "ytmp3-library" in volumes("ui")
    assert "ytmp3-library" not in volumes("postgres") | volumes("prefect-server")
    worker_command = " ".join(SERVICES["worker"]["command"])
    assert "--volume=${YTMP3_LIBRARY_VOLUME:-ytmp3-library}:/data" in worker_command
    assert {"postgres-data", "ytmp3-library"} <= set(COMPOSE["volumes"])


def test_the_limits_defaults_agree_with_the_settings():
    defaults = Settings.model_fields
    command = " ".join(SERVICES["worker"]["command"])
    for name in ("min_free_mb", "max_library_mb"):
        variable = f"YTMP3_{name.upper()}"
        found = re.search(rf"--env={variable}=\$\{{{variable}:-(\d+)\}}", command)
        assert found and int(found[1]) == defaults[name].default, name
    assert "--env=YTMP3_MAX_ENCODERS=${YTMP3_MAX_ENCODERS:-}" in command  # empty: the cores
    environment = SERVICES["worker"]["environment"]
    flow_runs = defaults["max_flow_runs"].default
    assert environment["YTMP3_MAX_FLOW_RUNS"] == f"${{YTMP3_MAX_FLOW_RUNS:-{flow_runs}}}"
    local = runpy.run_path(str(ROOT / "infrastructure/local.py"), run_name="not_main")
    server = SERVICES["prefect-server"]["environment"]
    wait = server["PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS"]
    assert wait == local["SLOT_WAIT_SECONDS"]  # as `make run` starts its server
