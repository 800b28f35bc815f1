"""The compose stack's secrets: kept in infrastructure/.env, handed to each service as files.

    python infrastructure/docker/compose_secrets.py [ENV_FILE]             (make secrets)
    python infrastructure/docker/compose_secrets.py ENV_FILE --install DIR (compose's service)

Adds what ENV_FILE (default infrastructure/.env, mode 0600) lacks: PREFECT_API_AUTH_STRING
(``ytmp3:<random>``, the Prefect API's password), POSTGRES_PASSWORD and
YTMP3_SESSION_SECRET (signs the page's sign-in sessions). Values already there are kept.
``--install`` then writes one file per environment variable into DIR/client (the worker),
DIR/page (the page), DIR/server (the Prefect server) and DIR/db (Postgres),
each service's volume, readable by uid 1000 and root only; with-secrets.sh exports them
when a service starts. Values are never printed.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path
from urllib.parse import quote

DEFAULT_ENV_FILE = Path(__file__).resolve().parents[1] / ".env"
GENERATED = {
    "PREFECT_API_AUTH_STRING": lambda: f"ytmp3:{secrets.token_hex(24)}",
    "POSTGRES_PASSWORD": lambda: secrets.token_hex(24),
    "YTMP3_SESSION_SECRET": lambda: secrets.token_urlsafe(32),
}
OWNER = (1000, 0)  # the services' user, and root's group (root itself runs with no caps)


def read_env(text: str) -> dict[str, str]:
    """``NAME=value`` lines of an env file (the last one wins; no quoting, no comments)."""
    values = {}
    for line in text.splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name and not name.startswith("#"):
            values[name.strip()] = value
    return values


def missing_lines(values: dict[str, str]) -> list[str]:
    """Lines to append so that every generated secret has a non-empty value."""
    return [f"{name}={make()}" for name, make in GENERATED.items() if not values.get(name)]


def service_files(values: dict[str, str]) -> dict[str, dict[str, str]]:
    """Per service directory: environment variable name -> value."""
    auth, password = values["PREFECT_API_AUTH_STRING"], values["POSTGRES_PASSWORD"]
    database = f"postgresql+asyncpg://prefect:{quote(password, safe='')}@postgres:5432/prefect"
    return {
        "client": {"PREFECT_API_AUTH_STRING": auth},
        "page": {
            "PREFECT_API_AUTH_STRING": auth,
            "YTMP3_SESSION_SECRET": values["YTMP3_SESSION_SECRET"],
        },
        "server": {
            "PREFECT_SERVER_API_AUTH_STRING": auth,
            "PREFECT_API_DATABASE_CONNECTION_URL": database,
        },
        "db": {"POSTGRES_PASSWORD": password},
    }


def ensure(env_file: Path) -> dict[str, str]:
    """Complete ``env_file`` with the missing secrets; returns all its values."""
    old_umask = os.umask(0o077)
    try:
        text = env_file.read_text() if env_file.exists() else ""
        lines = missing_lines(read_env(text))
        if lines:
            with env_file.open("a") as fh:
                fh.write(("\n" if text and not text.endswith("\n") else "") + "\n".join(lines))
                fh.write("\n")
            names = ", ".join(line.partition("=")[0] for line in lines)
            print(f"secrets: generated {names} in {env_file}", flush=True)
    finally:
        os.umask(old_umask)
    env_file.chmod(0o600)
    if os.geteuid() == 0:  # in the container: the file belongs to whoever owns the checkout
        parent = env_file.parent.stat()
        os.chown(env_file, parent.st_uid, parent.st_gid)
    return read_env(env_file.read_text())


def install(values: dict[str, str], root: Path) -> None:
    for service, files in service_files(values).items():
        directory = root / service
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.iterdir():
            if stale.name not in files:
                stale.unlink()
        for name, value in files.items():
            path = directory / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o440)
            with os.fdopen(fd, "w") as fh:
                fh.write(value)
            os.chmod(path, 0o440)
            if os.geteuid() == 0:
                os.chown(path, *OWNER)
    print(f"secrets: installed for {', '.join(service_files(values))}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("env_file", nargs="?", type=Path, default=DEFAULT_ENV_FILE)
    parser.add_argument("--install", type=Path, metavar="DIR", help="write the service files")
    args = parser.parse_args()
    values = ensure(args.env_file)
    if args.install:
        install(values, args.install)
    return 0


if __name__ == "__main__":
    sys.exit(main())
