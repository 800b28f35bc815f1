"""Create or update the Docker work pool with the locked template of pool_template.py.

    python infrastructure/docker/create_pool.py [--pool docker-pool] [--image IMAGE]
        [--network NAME ...] [--volume SRC:DST ...] [--env NAME=VALUE ...]
        [--pull-policy Never]

The options are the pool's configuration, fixed for every flow run: no deployment or run
can change them. Memory and pids limits come from YTMP3_CONTAINER_MEMORY_MB and
YTMP3_CONTAINER_PIDS_LIMIT, the pool's concurrency limit (flow runs at once; more wait,
Scheduled) from YTMP3_MAX_FLOW_RUNS. The pool is overwritten: this script is the truth.
Needs PREFECT_API_URL (and PREFECT_API_AUTH_STRING when the server asks for one).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pool_template import PoolConfig, default_template, locked_template

from flows.settings import SettingsError, load_settings


def parser() -> argparse.ArgumentParser:
    """The pool's options (worker.py adds its own to the same parser)."""
    defaults = PoolConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", default="docker-pool")
    parser.add_argument("--image", default=defaults.image, help="the image of every flow run")
    parser.add_argument("--network", action="append", default=[], help="docker network")
    parser.add_argument(
        "--volume",
        action="append",
        default=[],
        help=f"SRC:DST, replaces the default {defaults.volumes[0]}",
    )
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="fixed for every run"
    )
    parser.add_argument(
        "--pull-policy",
        default=defaults.pull_policy,
        choices=("Never", "IfNotPresent", "Always"),
        help="Never: the image is built on this host",
    )
    return parser


def pool_config(args: argparse.Namespace) -> PoolConfig:
    """The configuration the options describe; limits from the YTMP3_CONTAINER_* settings."""
    settings = load_settings()
    env = {}
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"create_pool: --env {item!r} is not NAME=VALUE")
        env[name] = value
    return PoolConfig(
        image=args.image,
        volumes=tuple(args.volume) or PoolConfig.volumes,
        networks=tuple(args.network),
        env=env,
        memory_mb=settings.container_memory_mb,
        pids_limit=settings.container_pids_limit,
        heartbeat_seconds=settings.heartbeat_seconds,
        pull_policy=args.pull_policy,
        flow_runs=settings.max_flow_runs,
    )


def create_pool(pool: str, template: dict[str, Any], flow_runs: int | None) -> None:
    """Create or overwrite ``pool``: the template, and at most ``flow_runs`` runs at once."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    create = WorkPoolCreate(
        name=pool, type="docker", base_job_template=template, concurrency_limit=flow_runs
    )
    with get_client(sync_client=True) as client:
        client.create_work_pool(create, overwrite=True)
    print(f"create_pool: {pool} uses the locked template, {flow_runs} runs at once", flush=True)


def main() -> int:
    args = parser().parse_args()
    try:
        config = pool_config(args)
    except SettingsError as exc:
        print(f"create_pool: {exc}", file=sys.stderr)
        return 2
    create_pool(args.pool, locked_template(default_template(), config), config.flow_runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
