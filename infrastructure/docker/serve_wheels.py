"""Download the image's wheels on the host and serve them to `docker build`.

Containers here cannot reach the package index, so the wheels the Dockerfile installs
(the project's dependencies, its `docker` extra and the build backend) are fetched on
the host for the image's Python (Debian 12: CPython 3.11.2, manylinux x86_64) and served
on the Docker bridge. Build with the printed `--build-arg`s.

    python infrastructure/docker/serve_wheels.py            # download, then serve
    python infrastructure/docker/serve_wheels.py --no-serve # download only

pip evaluates environment markers against the interpreter that runs it, not against
`--python-version`, so a requirement such as `async-timeout; python_full_version <
"3.11.3"` (from redis) would be missing. A second pass reads the downloaded wheels'
metadata and fetches what the markers ask for on the target Python.
"""

from __future__ import annotations

import argparse
import email.parser
import hashlib
import os
import platform
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import bridge  # this directory's bridge.py (a script's own directory is on sys.path)
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

ROOT = Path(__file__).resolve().parents[2]
TARGET_PYTHON = "3.11.2"  # python3 in Debian 12 (bookworm)
GLIBC = 36  # Debian 12 has glibc 2.36
EXTRAS = ("docker", "ui")  # the Dockerfile builds both targets


def requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """The build backend, the dependencies and the image's extras from pyproject.toml."""
    data = tomllib.loads(pyproject.read_text())
    reqs = list(data["build-system"]["requires"])
    reqs += data["project"]["dependencies"]
    for extra in EXTRAS:
        reqs += data["project"].get("optional-dependencies", {}).get(extra, [])
    return reqs


def target_environment() -> dict[str, str]:
    env = default_environment()
    major_minor = ".".join(TARGET_PYTHON.split(".")[:2])
    env.update(
        python_full_version=TARGET_PYTHON,
        python_version=major_minor,
        implementation_version=TARGET_PYTHON,
        platform_python_implementation="CPython",
        implementation_name="cpython",
        sys_platform="linux",
        os_name="posix",
        platform_system="Linux",
        platform_machine=platform.machine(),
    )
    return env


def pip_download(reqs: list[str], dest: Path) -> None:
    machine = platform.machine()
    # pip does not widen a --platform to older manylinux tags: list them all.
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(GLIBC, 4, -1)]
    tags += [f"manylinux{legacy}_{machine}" for legacy in ("2014", "2010", "1")]
    cmd = [
        sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(dest),
        "--only-binary=:all:", "--implementation", "cp", "--abi", "cp311",
        "--python-version", TARGET_PYTHON,
        *(arg for tag in tags for arg in ("--platform", tag)),
        *reqs,
    ]  # fmt: skip
    subprocess.run(cmd, check=True)


def missing_for_target(dest: Path) -> list[str]:
    """Requirements of downloaded wheels that apply on the target but are not there."""
    have: set[str] = set()
    wanted: dict[str, str] = {}
    env = target_environment() | {"extra": ""}
    for wheel in sorted(dest.glob("*.whl")):
        name = parse_wheel_filename(wheel.name)[0]
        have.add(name)
        with zipfile.ZipFile(wheel) as zf:
            meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
            meta = email.parser.BytesParser().parsebytes(zf.read(meta_name), headersonly=True)
        for line in meta.get_all("Requires-Dist") or []:
            req = Requirement(line)
            if req.marker is not None and req.marker.evaluate(env):
                req.marker = None  # pip would evaluate it for the host again
                wanted.setdefault(canonicalize_name(req.name), str(req))
    return [spec for name, spec in sorted(wanted.items()) if name not in have]


def download(dest: Path) -> Path:
    """Fill `dest` with every wheel the image needs; cached by the requirement list."""
    reqs = requirements()
    key = hashlib.sha256("\n".join([TARGET_PYTHON, *reqs]).encode()).hexdigest()
    stamp = dest / ".complete"
    if stamp.exists() and stamp.read_text() == key:
        print(f"serve_wheels: {dest} is up to date", file=sys.stderr)
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    pip_download(reqs, dest)
    for _ in range(5):
        extra = missing_for_target(dest)
        if not extra:
            break
        print(f"serve_wheels: also for Python {TARGET_PYTHON}: {extra}", file=sys.stderr)
        pip_download(extra, dest)
    stamp.write_text(key)
    return dest


def build_args(host: str, port: int) -> list[str]:
    return [
        "--build-arg", "PIP_NO_INDEX=1",
        "--build-arg", f"PIP_FIND_LINKS=http://{host}:{port}/",
        "--build-arg", f"PIP_TRUSTED_HOST={host}",
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=ROOT / ".cache" / "wheels")
    parser.add_argument("--host", help="address to serve on (default: the docker bridge)")
    parser.add_argument("--port", type=int, default=3141)
    parser.add_argument("--no-serve", action="store_true", help="download only")
    args = parser.parse_args()

    dest = download(args.dest.resolve())
    if args.no_serve:
        return
    host = args.host or bridge.host_address()
    print(f"PIP_FIND_LINKS=http://{host}:{args.port}/")
    print("docker build " + " ".join(build_args(host, args.port)) + " ...", flush=True)
    server = [sys.executable, "-m", "http.server", "--bind", host, "--directory", str(dest)]
    os.execv(sys.executable, [*server, str(args.port)])  # noqa: S606 (one process to stop)


if __name__ == "__main__":
    main()
