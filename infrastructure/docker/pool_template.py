"""The Docker work pool's base job template: prefect-docker's own default, locked down.

    template = locked_template(default_template(), PoolConfig(image="ytmp3:latest"))

prefect-docker's default makes every container setting a variable that each deployment
and each run may override: image, command, privileged, volumes, network, docker-py's
create arguments, env. ``locked_template`` fixes all of them to the pool's
:class:`PoolConfig` and leaves two variables: ``auto_remove``, and ``env`` limited to the
settings in :data:`RUN_SETTINGS`. ``image`` stays in the schema as a constant so that
``prefect deploy`` fails when it built another image than the one the pool runs. The
schema refuses any other variable (the server answers HTTP 422); ``allowed_job_variables``
is the same rule for the worker (infrastructure/docker/worker.py), which applies it to
whatever reaches it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flows.settings import ENV_PREFIX, Settings

RUN_SETTINGS = (
    "default_quality",
    "sleep_requests_seconds",
    "max_duration_seconds",
    "max_filesize_mb",
    "max_playlist_items",
    "concurrency",
    "retries",
    "retry_delay_seconds",
    "socket_timeout_seconds",
    "ffmpeg_timeout_seconds",
    "stall_timeout_seconds",
    "min_download_kb_per_second",
    "lock_timeout_seconds",
)
"""Settings a run may change through ``job_variables={"env": {...}}``: limits and tuning."""

POOL_SETTINGS = (
    "data_dir",
    "retention_hours",
    "max_library_mb",
    "allowed_hosts",
    "media_hosts",
    "allow_private_networks",
    "private_service",
    "proxy",
    "container_memory_mb",
    "container_pids_limit",
    "max_flow_runs",
    "runner_poll_seconds",
    "max_encoders",
    "min_free_mb",
    "cookies_file",
    "ytdlp_extractor_args",
    "cache_dir",
    "rate_limit_cooldown_seconds",
    "ytdlp_max_age_days",
    "package_index_url",
    "heartbeat_seconds",
    "zombie_after_seconds",
    "notify_url",
    "state_dir",
    "local_host",
    "prefect_port",
    "ui_port",
    # the page's: sign-in and per-user limits (flow containers never read them)
    "users",
    "operators",
    "oidc_users",
    "session_secret",
    "session_hours",
    "user_max_waiting",
    "user_submissions_per_minute",
    "max_zip_mb",
)
"""Every other setting: fixed by the pool's env (the URL policy, where the library is, how
long files live), read only where the pool is made, or used only by ``make run``."""

RUN_ENV = frozenset(ENV_PREFIX + name.upper() for name in RUN_SETTINGS)
RUN_VARIABLES = ("env", "auto_remove")

DATA_DIR = "/data"
CACHE_DIR = "/var/cache/ytmp3"  # YTMP3_CACHE_DIR in the image
COOKIES_DIR = "/run/ytmp3-cookies"  # YTMP3_COOKIES_FILE=/run/ytmp3-cookies/cookies.txt
HOME = "/home/ytmp3"
USER = "1000:1000"
TMPFS = {
    "/tmp": "rw,nosuid,nodev,size=256m",  # noqa: S108 - the container's own /tmp
    HOME: "rw,nosuid,nodev,size=32m,uid=1000,gid=1000",
}
"""The only writable places besides the volumes (the root filesystem is read-only); their
contents count against the memory limit."""
LOG_CONFIG = {"type": "json-file", "config": {"max-size": "10m", "max-file": "3"}}
"""A flow container's own log (kept when ``auto_remove`` is off) is rotated: 30 MB at most."""


@dataclass(frozen=True)
class PoolConfig:
    """What the operator decides for every flow container of the pool."""

    image: str = "ytmp3:latest"
    volumes: tuple[str, ...] = (f"ytmp3-library:{DATA_DIR}",)
    networks: tuple[str, ...] = ()
    """None: the worker picks (host networking when the API URL is a localhost one)."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Added to ``YTMP3_DATA_DIR=/data``; runs cannot change these unless in RUN_SETTINGS."""
    memory_mb: int = 1024
    pids_limit: int = 512
    pull_policy: str = "Never"
    heartbeat_seconds: int = 30
    """PREFECT_FLOWS_HEARTBEAT_FREQUENCY: the zombie automation goes by it."""
    cache_volume: str = "ytmp3-ytdlp-cache"
    """yt-dlp's cache (YouTube's player JS), kept between runs; always mounted."""
    cookies_volume: str = "ytmp3-cookies"
    """The operator's cookies.txt, mounted read-only; always mounted, empty unless filled."""
    flow_runs: int | None = None
    """The pool's concurrency limit: flow runs at once on all its workers (None: no limit)."""


class TemplateDrift(RuntimeError):
    """prefect-docker's default template has fields this module does not know."""


def default_template() -> dict[str, Any]:
    """prefect-docker's default, as ``prefect work-pool get-default-base-job-template
    --type docker`` prints it."""
    from prefect_docker.worker import DockerWorker

    return DockerWorker.get_default_base_job_template()


def container_options(config: PoolConfig) -> dict[str, Any]:
    """docker-py ``containers.create`` arguments that prefect-docker has no field for."""
    return {
        "user": USER,
        "read_only": True,
        "tmpfs": dict(TMPFS),
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "pids_limit": config.pids_limit,
        "log_config": dict(LOG_CONFIG),
    }


def job_configuration(config: PoolConfig) -> dict[str, Any]:
    """The job configuration with every value fixed, except the ``auto_remove`` placeholder."""
    return {
        "command": "prefect flow-run execute",
        "env": {
            "YTMP3_DATA_DIR": DATA_DIR,
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(config.heartbeat_seconds),
            **config.env,
        },
        "labels": {},
        "name": None,
        "image": config.image,
        "registry_credentials": None,
        "image_pull_policy": config.pull_policy,
        "networks": list(config.networks),
        "network_mode": None,
        "auto_remove": "{{ auto_remove }}",
        "volumes": [
            *config.volumes,
            f"{config.cache_volume}:{CACHE_DIR}",
            f"{config.cookies_volume}:{COOKIES_DIR}:ro",
        ],
        "stream_output": True,
        "mem_limit": f"{config.memory_mb}m",
        "memswap_limit": f"{config.memory_mb}m",  # no swap on top
        "privileged": False,
        "container_create_kwargs": container_options(config),
    }


def env_schema() -> dict[str, Any]:
    fields = Settings.model_fields
    return {
        "title": "Environment Variables",
        "description": "YTMP3_* settings this run may change; the pool fixes every other one.",
        "type": "object",
        "properties": {
            ENV_PREFIX + name.upper(): {
                "type": "string",
                "description": fields[name].description or name.replace("_", " "),
            }
            for name in RUN_SETTINGS
        },
        "additionalProperties": False,
    }


def locked_template(default: dict[str, Any], config: PoolConfig) -> dict[str, Any]:
    """``default`` (prefect-docker's template) with the patch this module describes."""
    fixed = job_configuration(config)
    known, given = set(fixed), set(default["job_configuration"])
    if known != given:
        raise TemplateDrift(
            "prefect-docker's default job configuration changed "
            f"(new: {sorted(given - known)}, gone: {sorted(known - given)}): "
            "decide in infrastructure/docker/pool_template.py what each field is"
        )
    template = copy.deepcopy(default)
    template["job_configuration"] = fixed
    variables = template["variables"]
    properties = variables["properties"]
    image = {**properties["image"], "const": config.image, "default": config.image}
    image["description"] = "The pool's image; a deployment may only name that one."
    variables["properties"] = {
        "image": image,
        "env": env_schema(),
        "auto_remove": {**properties["auto_remove"], "default": True},
    }
    variables["additionalProperties"] = False
    variables["description"] = (
        "ytmp3's locked Docker pool: the pool fixes the container (image, command, "
        "volumes, network, limits, privileges); a run may set only these variables."
    )
    variables.pop("$defs", None)  # registry credentials: no longer a variable
    return template


def allowed_job_variables(variables: Mapping[str, Any] | None) -> dict[str, Any]:
    """The part of a deployment's or run's job variables that the locked pool takes."""
    allowed = {key: value for key, value in (variables or {}).items() if key in RUN_VARIABLES}
    if "env" in allowed:
        env = allowed["env"] if isinstance(allowed["env"], Mapping) else {}
        allowed["env"] = {key: value for key, value in env.items() if key in RUN_ENV}
    return allowed
