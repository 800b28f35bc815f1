"""The doctor passes on a good install and names what is missing on a broken one."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from datetime import date
from pathlib import Path

import pytest

from flows import doctor
from flows.settings import ENV_PREFIX, Settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "data").mkdir()
    return Settings(data_dir=tmp_path / "data", state_dir=tmp_path / "state")


def lines(settings: Settings) -> tuple[int, dict[str, str]]:
    out: list[str] = []
    code = doctor.report(settings, prefect=False, out=out.append)
    return code, {line[6:18].strip(): line for line in out[:-1]}


def test_a_good_install_passes(settings):
    code, checks = lines(settings)
    assert code == 0, checks
    assert set(checks) == {
        "yt-dlp", "JS runtime", "yt-dlp-ejs", "ffmpeg", "ffprobe", "data dir", "cache dir",
        "cookies",
    }  # fmt: skip
    assert re.match(
        r"ok +JS runtime +deno 2\.\S+ \(.*\): solved a JS challenge", checks["JS runtime"]
    )
    assert "libmp3lame" in checks["ffmpeg"]
    assert re.search(r"\d{4}\.\d+\.\d+ \(\d+ days old\)", checks["yt-dlp"])
    assert checks["cookies"].startswith("--") and "none" in checks["cookies"]


def test_no_js_runtime_fails_with_a_clear_line(settings, monkeypatch, tmp_path):
    bin_dir = tmp_path / "bin"  # ffmpeg and ffprobe, but no deno anywhere yt-dlp looks
    bin_dir.mkdir()
    for program in ("ffmpeg", "ffprobe"):
        (bin_dir / program).symlink_to(shutil.which(program))
    real = sysconfig.get_path
    monkeypatch.setattr(
        sysconfig,
        "get_path",
        lambda name, *a, **k: str(bin_dir) if name == "scripts" else real(name),
    )
    monkeypatch.setenv("PATH", str(bin_dir))
    code, checks = lines(settings)
    assert code == 1
    assert checks["JS runtime"].startswith("FAIL  JS runtime   yt-dlp finds no JavaScript runtime")
    assert checks["ffmpeg"].startswith("ok")


def test_a_broken_js_runtime_fails_with_its_reason(settings, monkeypatch, tmp_path):
    fake = tmp_path / "deno"  # answers --version like Deno, then fails to run anything
    fake.write_text(
        '#!/bin/sh\n[ "$1" = --version ] && echo "deno 2.9.8 (fake)" && exit 0\nexit 3\n'
    )
    fake.chmod(0o755)
    real = sysconfig.get_path
    monkeypatch.setattr(
        sysconfig,
        "get_path",
        lambda name, *a, **k: str(tmp_path) if name == "scripts" else real(name),
    )
    code, checks = lines(settings)
    assert code == 1
    assert checks["JS runtime"].startswith(
        f"FAIL  JS runtime   deno 2.9.8 ({fake}): yt-dlp could not"
    )


def test_no_ffmpeg_fails_with_a_clear_line(settings, monkeypatch, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # deno is still found beside Python
    code, checks = lines(settings)
    assert code == 1
    assert checks["ffmpeg"] == "FAIL  ffmpeg       not found on PATH (apt-get install ffmpeg)"
    assert checks["ffprobe"].startswith("FAIL")
    assert checks["JS runtime"].startswith("ok")


def test_a_missing_data_dir_fails_with_a_clear_line(tmp_path):
    settings = Settings(data_dir=tmp_path / "nowhere", state_dir=tmp_path / "state")
    code, checks = lines(settings)
    assert code == 1
    assert (
        checks["data dir"]
        == f"FAIL  data dir     {tmp_path / 'nowhere'} does not exist (YTMP3_DATA_DIR)"
    )


def test_cookies_are_named_never_shown(settings, tmp_path):
    cookies = tmp_path / "cookies.txt"
    cookies.write_text("127.0.0.1\tFALSE\t/\tFALSE\t0\tSID\tdoctor-secret-value\n")
    code, checks = lines(settings.model_copy(update={"cookies_file": cookies}))
    assert code == 0
    assert checks["cookies"].startswith(f"ok    cookies      {cookies} (")
    assert "doctor-secret-value" not in "".join(checks.values())


def test_the_prefect_api_is_checked_when_configured(settings):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        check = doctor.check_prefect(timeout=2)
    assert check.failed and "http://127.0.0.1:9/api: not reachable" in check.detail


def test_python_m_flows_doctor(tmp_path):
    env = {name: value for name, value in os.environ.items() if not name.startswith(ENV_PREFIX)}
    env.pop("PREFECT_API_URL", None)
    (tmp_path / "data").mkdir()
    env |= {"YTMP3_DATA_DIR": str(tmp_path / "data"), "YTMP3_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run(
        [sys.executable, "-m", "flows.doctor"], capture_output=True, text=True, env=env,
        cwd=PROJECT_ROOT, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "ytmp3 can convert"
    env["YTMP3_DATA_DIR"] = str(tmp_path / "missing")
    done = subprocess.run(
        [sys.executable, "-m", "flows.doctor", "--no-prefect"], capture_output=True, text=True,
        env=env, cwd=PROJECT_ROOT, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stdout.splitlines()[-1] == "missing: data dir"


def test_the_pages_short_form(settings):
    line = doctor.summary_line(settings)
    assert re.fullmatch(
        r"yt-dlp \d{4}\.\d+\.\d+(\.\d+)? \(\d+ days old\) · JS: deno 2\.\S+ · cookies: none", line
    ), line


def test_version_age():
    assert doctor.version_age_days("2026.10.26", date(2026, 11, 30)) == 35
    assert doctor.version_age_days("2026.10.26.233816", date(2026, 10, 26)) == 0
    assert doctor.version_age_days("unknown") is None
