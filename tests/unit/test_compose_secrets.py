"""infrastructure/docker/compose_secrets.py: the compose stack's secrets in .env, then files."""

from __future__ import annotations

import runpy
import stat
from pathlib import Path

SECRETS = runpy.run_path(
    str(Path(__file__).parents[2] / "infrastructure/docker/compose_secrets.py")
)


def test_missing_secrets_are_generated_and_present_ones_kept(tmp_path: Path, capsys):
    env_file = tmp_path / ".env"
    env_file.write_text("BIND_ADDRESS=0.0.0.0\nPOSTGRES_PASSWORD=chosen")  # no final newline
    values = SECRETS["ensure"](env_file)
    assert values["POSTGRES_PASSWORD"] == "chosen"
    assert values["BIND_ADDRESS"] == "0.0.0.0"
    assert values["PREFECT_API_AUTH_STRING"].startswith("ytmp3:")
    assert len(values["PREFECT_API_AUTH_STRING"]) == len("ytmp3:") + 48
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert SECRETS["ensure"](env_file) == values  # a second run changes nothing
    printed = capsys.readouterr().out
    assert "PREFECT_API_AUTH_STRING" in printed
    assert values["PREFECT_API_AUTH_STRING"] not in printed


def test_each_service_gets_only_its_own_files(tmp_path: Path):
    values = {
        "PREFECT_API_AUTH_STRING": "ytmp3:abc",
        "POSTGRES_PASSWORD": "p@ss/word",
        "YTMP3_SESSION_SECRET": "s" * 43,
    }
    SECRETS["install"](values, tmp_path)
    files = {
        str(path.relative_to(tmp_path)): path.read_text()
        for path in tmp_path.rglob("*")
        if path.is_file()
    }
    assert files == {
        "client/PREFECT_API_AUTH_STRING": "ytmp3:abc",
        "page/PREFECT_API_AUTH_STRING": "ytmp3:abc",
        "page/YTMP3_SESSION_SECRET": "s" * 43,
        "server/PREFECT_SERVER_API_AUTH_STRING": "ytmp3:abc",
        "server/PREFECT_API_DATABASE_CONNECTION_URL": (
            "postgresql+asyncpg://prefect:p%40ss%2Fword@postgres:5432/prefect"
        ),
        "db/POSTGRES_PASSWORD": "p@ss/word",
    }
    assert {
        stat.S_IMODE(path.stat().st_mode) for path in tmp_path.rglob("*") if path.is_file()
    } == {0o440}
