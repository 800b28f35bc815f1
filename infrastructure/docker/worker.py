"""A Prefect Docker worker that runs flow containers only as its own locked template says.

    python infrastructure/docker/worker.py [create_pool.py's options] [--name NAME]

First creates or updates the pool with the locked template (create_pool.py), then polls
it like ``prefect worker start --type docker --with-healthcheck``. For every flow run it
uses the template it made itself, not the one the server holds, and takes from the
deployment's and the run's job variables only what ``allowed_job_variables`` allows: a
pool rewritten through the API, or a run created past the server's schema check, still
gets the configured container.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import Any, ClassVar

import create_pool
from pool_template import allowed_job_variables, default_template, locked_template
from prefect_docker.worker import DockerWorker, DockerWorkerJobConfiguration

from flows.settings import SettingsError

logger = logging.getLogger("ytmp3.worker")


class LockedJobConfiguration(DockerWorkerJobConfiguration):
    """prefect-docker's job configuration, resolved from the worker's own template."""

    template: ClassVar[dict[str, Any]] = {}

    @classmethod
    async def resolve_for_flow_run(  # type: ignore[override]
        cls, flow_run: Any, *, client: Any, work_pool: Any, deployment: Any = None, **kwargs: Any
    ) -> LockedJobConfiguration:
        if not cls.template:
            raise RuntimeError("LockedJobConfiguration.template is not set")
        if deployment is None and flow_run.deployment_id:
            deployment = await client.read_deployment(flow_run.deployment_id)
        if deployment is not None:
            deployment = deployment.model_copy(
                update={"job_variables": _allowed(deployment.job_variables, flow_run)}
            )
        flow_run = flow_run.model_copy(
            update={"job_variables": _allowed(flow_run.job_variables, flow_run)}
        )
        work_pool = work_pool.model_copy(update={"base_job_template": cls.template})
        return await super().resolve_for_flow_run(
            flow_run, client=client, work_pool=work_pool, deployment=deployment, **kwargs
        )


def _allowed(variables: dict[str, Any] | None, flow_run: Any) -> dict[str, Any]:
    allowed = allowed_job_variables(variables)
    ignored = sorted(set(variables or {}) - set(allowed))
    ignored += sorted(f"env.{name}" for name in set((variables or {}).get("env") or {})
                      - set(allowed.get("env") or {}))  # fmt: skip
    if ignored:
        logger.warning("flow run %s: ignored job variables %s", flow_run.id, ", ".join(ignored))
    return allowed


class LockedDockerWorker(DockerWorker):
    """prefect-docker's worker with :class:`LockedJobConfiguration`."""

    job_configuration = LockedJobConfiguration


def main() -> int:
    parser = create_pool.parser()
    parser.add_argument("--name", help="worker name (default: a random one)")
    args = parser.parse_args()
    try:
        config = create_pool.pool_config(args)
    except SettingsError as exc:
        print(f"worker: {exc}", file=sys.stderr)
        return 2
    template = locked_template(default_template(), config)
    create_pool.create_pool(args.pool, template, config.flow_runs)
    LockedJobConfiguration.template = template
    worker = LockedDockerWorker(
        work_pool_name=args.pool, name=args.name, create_pool_if_not_found=False
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(worker.start(with_healthcheck=True))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main())
