"""Create or update the Docker work pool from infrastructure/docker-pool-template.json.

    python infrastructure/docker/create_pool.py [--pool docker-pool] [--image IMAGE]
        [--network NAME] [--volume SRC:DST ...]

Options change the template's defaults, which every deployment on the pool gets unless
its own job_variables say otherwise (compose passes --network so that flow containers can
reach the server by name). The pool is overwritten: the file in the repo is the truth.
Needs PREFECT_API_URL and prefect-docker.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1] / "docker-pool-template.json"


def template(
    image: str | None = None,
    networks: list[str] | None = None,
    volumes: list[str] | None = None,
) -> dict:
    """The base job template with the given variable defaults replaced."""
    data = json.loads(TEMPLATE.read_text())
    props = data["variables"]["properties"]
    for key, value in (("image", image), ("networks", networks), ("volumes", volumes)):
        if value:
            props[key]["default"] = value
    return data


def create_pool(pool: str, base_job_template: dict) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".json") as fh:
        json.dump(base_job_template, fh)
        fh.flush()
        cmd = [
            sys.executable, "-m", "prefect", "work-pool", "create", pool, "--type", "docker",
            "--base-job-template", fh.name, "--overwrite",
        ]  # fmt: skip
        subprocess.run(cmd, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", default="docker-pool")
    parser.add_argument("--image", help="default image for flow runs")
    parser.add_argument("--network", action="append", help="docker network for flow runs")
    parser.add_argument("--volume", action="append", help="replaces the default volumes")
    args = parser.parse_args()
    create_pool(args.pool, template(args.image, args.network, args.volume))


if __name__ == "__main__":
    main()
