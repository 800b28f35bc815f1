"""``python -m flows.doctor``: can this installation convert today's YouTube?

Checks, in order: yt-dlp (version and age), the JavaScript runtime yt-dlp finds and that
it solves a JS challenge with it (:mod:`flows.jsc`), yt-dlp-ejs, ffmpeg and ffprobe with
the codecs ytmp3 needs, the data dir (writable, free space), yt-dlp's cache dir, the
cookies file (configured or not; never its content) and the Prefect API. One plain line
per check; the exit status is 1 when something essential is missing, 2 when the settings
themselves are invalid.

``make run`` runs it before starting anything, the flows image's HEALTHCHECK runs it,
and the page shows :func:`summary_line` in its sidebar.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal

import yt_dlp.version

from flows import cookies, jsc
from flows.settings import Settings, SettingsError, load_settings

Status = Literal["ok", "warn", "FAIL", "--"]

MIN_FREE_BYTES = 200 * 1024 * 1024
"""Below this the data dir fails the check: one long video does not fit."""
LOW_FREE_BYTES = 2 * 1024 * 1024 * 1024
"""Below this it is a warning."""
DECODERS = ("aac", "opus", "mp3", "vorbis")
"""Audio codecs YouTube and most sites serve; ffprobe must read them."""


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    status: Status
    detail: str

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"

    def line(self) -> str:
        return f"{self.status:<5} {self.name:<12} {self.detail}"


# -- the checks --------------------------------------------------------------------------


def check_ytdlp(today: date | None = None) -> Check:
    version = yt_dlp.version.__version__
    age = version_age_days(version, today)
    detail = f"{version} ({age} days old)" if age is not None else version
    return Check("yt-dlp", "ok", detail)


def check_js_runtime(settings: Settings) -> Check:
    """The runtime yt-dlp finds itself, and a challenge solved through yt-dlp with it."""
    from flows import media

    warnings: list[str] = []
    with media._ydl(settings, {"logger": _Collect(warnings)}) as ydl:
        found = jsc.runtime(ydl)
        if found is None:
            return Check(
                "JS runtime",
                "FAIL",
                "yt-dlp finds no JavaScript runtime (it looks for deno on PATH and beside "
                "Python); YouTube needs one: install ytmp3 with its dependencies (yt-dlp[deno])",
            )
        where = f"{found.name} {found.version} ({found.path})"
        if not found.supported:
            return Check("JS runtime", "FAIL", f"{where} is too old for yt-dlp")
        started = time.monotonic()
        try:
            solved = jsc.solve_n(ydl, "ytmp3-doctor")
        except Exception as exc:  # anything yt-dlp raises here means: it cannot solve
            solved, warnings = None, [*warnings, str(exc)]
        seconds = time.monotonic() - started
    if solved != "rotcod-3pmty":
        why = warnings[-1].splitlines()[0] if warnings else "no answer"
        return Check("JS runtime", "FAIL", f"{where}: yt-dlp could not solve a JS challenge: {why}")
    return Check("JS runtime", "ok", f"{where}: solved a JS challenge in {seconds:.1f} s")


def check_ejs() -> Check:
    try:
        version = importlib.metadata.version("yt-dlp-ejs")
    except importlib.metadata.PackageNotFoundError:
        return Check(
            "yt-dlp-ejs", "FAIL", "not installed (YouTube's challenge solver; yt-dlp[default])"
        )
    return Check("yt-dlp-ejs", "ok", version)


def check_ffmpeg(timeout: float = 20.0) -> list[Check]:
    checks = []
    ffmpeg = _program_version("ffmpeg", timeout)
    if ffmpeg is None:
        checks.append(Check("ffmpeg", "FAIL", "not found on PATH (apt-get install ffmpeg)"))
    else:
        encoders = _run(["ffmpeg", "-hide_banner", "-encoders"], timeout)
        if re.search(r"^\s*A\S*\s+libmp3lame\b", encoders, re.MULTILINE):
            checks.append(Check("ffmpeg", "ok", f"{ffmpeg}, encodes MP3 with libmp3lame"))
        else:
            checks.append(Check("ffmpeg", "FAIL", f"{ffmpeg} has no libmp3lame encoder"))
    ffprobe = _program_version("ffprobe", timeout)
    if ffprobe is None:
        checks.append(Check("ffprobe", "FAIL", "not found on PATH (apt-get install ffmpeg)"))
    else:
        decoders = _run(["ffprobe", "-hide_banner", "-decoders"], timeout)
        names = set(re.findall(r"^\s*A\S*\s+(\S+)", decoders, re.MULTILINE))
        missing = [codec for codec in DECODERS if codec not in names]
        status: Status = "warn" if missing else "ok"
        reads = ", ".join(codec for codec in DECODERS if codec in names) or "no audio codec"
        lacks = f"; cannot read {', '.join(missing)}" if missing else ""
        checks.append(Check("ffprobe", status, f"{ffprobe}, reads {reads}{lacks}"))
    return checks


def check_data_dir(settings: Settings) -> Check:
    path = settings.data_dir
    if not path.is_dir():
        return Check("data dir", "FAIL", f"{path} does not exist (YTMP3_DATA_DIR)")
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        return Check("data dir", "FAIL", f"{path} is not writable: {exc.strerror or exc}")
    free = shutil.disk_usage(path).free
    if free < MIN_FREE_BYTES:
        return Check("data dir", "FAIL", f"{path}: writable, only {_size(free)} free")
    status: Status = "warn" if free < LOW_FREE_BYTES else "ok"
    return Check("data dir", status, f"{path}: writable, {_size(free)} free")


def check_cache_dir(settings: Settings) -> Check:
    path = settings.ytdlp_cache_dir
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        detail = f"{path} is not writable ({exc.strerror or exc}): player JS is fetched every run"
        return Check("cache dir", "warn", detail)
    return Check("cache dir", "ok", f"{path}: writable")


def check_cookies(settings: Settings) -> Check:
    if settings.cookies_file is None:
        return Check("cookies", "--", "none (YTMP3_COOKIES_FILE is not set)")
    described = cookies.describe(settings)
    try:
        with settings.cookies_file.open("rb"):
            pass
    except OSError:
        return Check("cookies", "FAIL", f"{described}: cannot be read")
    return Check("cookies", "ok", described)


def check_prefect(timeout: float = 5.0) -> Check:
    """The API named by PREFECT_API_URL answers (without one, a client starts its own)."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        return Check("Prefect API", "warn", "PREFECT_API_URL is not set (runs need a server)")
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout) as response:  # noqa: S310 - Prefect's own setting
            if response.status == 200:
                return Check("Prefect API", "ok", f"{url}: reachable")
            return Check("Prefect API", "FAIL", f"{url}: answered HTTP {response.status}")
    except OSError as exc:
        return Check("Prefect API", "FAIL", f"{url}: not reachable ({_reason(exc)})")


def run_checks(settings: Settings, prefect: bool = True) -> list[Check]:
    """Every check, in report order."""
    checks = [check_ytdlp(), check_js_runtime(settings), check_ejs(), *check_ffmpeg()]
    checks += [check_data_dir(settings), check_cache_dir(settings), check_cookies(settings)]
    if prefect:
        checks.append(check_prefect())
    return checks


def report(settings: Settings, prefect: bool = True, out: Callable[[str], None] = print) -> int:
    """Print the report; 0 when nothing essential is missing, else 1."""
    checks = run_checks(settings, prefect)
    for check in checks:
        out(check.line())
    failed = [check.name for check in checks if check.failed]
    out(f"missing: {', '.join(failed)}" if failed else "ytmp3 can convert")
    return 1 if failed else 0


# -- the page's one line -----------------------------------------------------------------


def summary_line(settings: Settings) -> str:
    """``yt-dlp 2026.10.26 (35 days old) · JS: deno 2.9.8 · cookies: none``, for the page.

    Cheap: the runtime is looked up once per process, nothing is executed per call.
    """
    version = yt_dlp.version.__version__
    age = version_age_days(version)
    ytdlp = f"yt-dlp {version}" + (f" ({age} days old)" if age is not None else "")
    found = _runtime_once(settings)
    js = f"{found.name} {found.version}" if found else "none"
    configured = "configured" if settings.cookies_file is not None else "none"
    return f"{ytdlp} · JS: {js} · cookies: {configured}"


_found: list[jsc.Runtime | None] = []


def _runtime_once(settings: Settings) -> jsc.Runtime | None:
    """The runtime yt-dlp finds, looked up on the first call only."""
    from flows import media

    if not _found:
        with media._ydl(settings, {}) as ydl:
            _found.append(jsc.runtime(ydl))
    return _found[0]


# -- helpers -----------------------------------------------------------------------------


def version_age_days(version: str, today: date | None = None) -> int | None:
    """Days since the release named by a yt-dlp version (``2026.10.26``, ``2026.10.26.1``)."""
    match = re.match(r"(\d{4})\.(\d{1,2})\.(\d{1,2})", version)
    if not match:
        return None
    released = date(*(int(part) for part in match.groups()))
    return ((today or datetime.now(UTC).date()) - released).days


class _Collect:
    """A yt-dlp logger that keeps warnings and errors, for the report's reason."""

    def __init__(self, into: list[str]) -> None:
        self.into = into

    def debug(self, msg: str) -> None:
        pass

    info = debug

    def warning(self, msg: str) -> None:
        self.into.append(msg)

    error = warning


def _program_version(program: str, timeout: float) -> str | None:
    try:
        output = _run([program, "-hide_banner", "-version"], timeout)
    except FileNotFoundError:
        return None
    match = re.search(rf"{program} version (\S+)", output)
    return f"{program} {match.group(1)}" if match else program


def _run(argv: list[str], timeout: float) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return ""
    return done.stdout


def _size(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{count:.0f} B"
        count /= 1000
    return f"{count:.1f} TB"  # pragma: no cover


def _reason(exc: OSError) -> str:
    reason = getattr(exc, "reason", None) or exc.strerror or exc
    return str(reason)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.doctor", description=__doc__)
    parser.add_argument(
        "--no-prefect", action="store_true", help="skip the Prefect API (not started yet)"
    )
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"FAIL  settings     {exc}")
        return 2
    return report(settings, prefect=not args.no_prefect)


if __name__ == "__main__":
    sys.exit(main())
