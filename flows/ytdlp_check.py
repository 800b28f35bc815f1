"""Flow ``ytdlp-check``: is the installed yt-dlp far behind the newest release?

YouTube changes often and yt-dlp follows within days; an old yt-dlp is the usual reason
YouTube downloads start failing. The daily deployment ``ytdlp-check/daily`` asks the
package index (``YTMP3_PACKAGE_INDEX_URL``, PyPI's JSON API by default) for yt-dlp's
newest release and, when the installed one is more than ``YTMP3_YTDLP_MAX_AGE_DAYS``
behind it, logs a warning and leaves the markdown artifact ``ytdlp-behind`` with what to
run, and emits the event ``ytmp3.ytdlp.behind`` (a notification, when they are configured:
:mod:`flows.notifications`). Behind by less (or current): nothing but a log line.
"""

from __future__ import annotations

import json
import re
import urllib.request
from dataclasses import dataclass
from datetime import UTC, date, datetime

import yt_dlp.version
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel

from flows import notifications
from flows.settings import Settings, get_settings

ARTIFACT_KEY = "ytdlp-behind"
PACKAGE = "yt-dlp"


@dataclass(frozen=True)
class Release:
    version: str
    released: date | None


class VersionReport(BaseModel):
    """What the check found."""

    installed: str
    newest: str
    behind_days: int
    """Days between the installed release and the newest one (0 when current)."""
    too_old: bool


def newest_release(index_url: str, timeout: float = 20.0) -> tuple[Release, dict[str, date]]:
    """The newest yt-dlp on the index, and the release date of every version it lists."""
    url = f"{index_url.rstrip('/')}/{PACKAGE}/json"
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - a setting
        data = json.load(response)
    dates = {
        version: released
        for version, files in (data.get("releases") or {}).items()
        if (released := _upload_date(files)) is not None
    }
    newest = str(data["info"]["version"])
    return Release(newest, dates.get(newest) or _version_date(newest)), dates


def compare(
    installed: str, newest: Release, dates: dict[str, date], max_days: int
) -> VersionReport:
    """How far ``installed`` is behind ``newest``, in days between their releases."""
    if installed == newest.version:
        behind = 0
    else:
        was = dates.get(installed) or _version_date(installed)
        behind = max(0, (newest.released - was).days) if was and newest.released else 0
    return VersionReport(
        installed=installed, newest=newest.version, behind_days=behind, too_old=behind > max_days
    )


def check(settings: Settings, installed: str | None = None) -> VersionReport:
    """Compare the installed yt-dlp (or ``installed``) with the index's newest release."""
    newest, dates = newest_release(settings.package_index_url, settings.socket_timeout_seconds)
    return compare(
        installed or yt_dlp.version.__version__, newest, dates, settings.ytdlp_max_age_days
    )


@flow(name="ytdlp-check", log_prints=False)
def ytdlp_check() -> VersionReport:
    """Warn (log and artifact) when the installed yt-dlp is too far behind the newest."""
    settings = get_settings()
    logger = get_run_logger()
    result = check(settings)
    if not result.too_old:
        logger.info(
            "yt-dlp %s is current enough (newest %s, %d days behind, limit %d)",
            result.installed,
            result.newest,
            result.behind_days,
            settings.ytdlp_max_age_days,
        )
        return result
    message = (
        f"yt-dlp {result.installed} is {result.behind_days} days behind {result.newest}: "
        "YouTube downloads may fail until it is updated"
    )
    logger.warning(message)
    notifications.ytdlp_behind(result.installed, result.newest, result.behind_days)
    create_markdown_artifact(
        key=ARTIFACT_KEY,
        description=message,
        markdown="\n".join(
            [
                f"### yt-dlp {result.installed} is {result.behind_days} days behind",
                "",
                f"The newest release is **{result.newest}** (limit: "
                f"{settings.ytdlp_max_age_days} days, `YTMP3_YTDLP_MAX_AGE_DAYS`).",
                "",
                "Update it: `make update-ytdlp` (the local venv; with `PREFECT_API_URL` set it",
                "also rebuilds the flows image's yt-dlp layer and redeploys). See the README,",
                '"When YouTube downloads start failing".',
            ]
        ),
    )
    return result


def _upload_date(files: list[dict[str, object]]) -> date | None:
    times = [str(f.get("upload_time_iso_8601") or f.get("upload_time") or "") for f in files]
    parsed = [_parse_time(text) for text in times if text]
    known = [moment for moment in parsed if moment is not None]
    return min(known).date() if known else None


def _parse_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _version_date(version: str) -> date | None:
    match = re.match(r"(\d{4})\.(\d{1,2})\.(\d{1,2})", version)
    if not match:
        return None
    try:
        return date(*(int(part) for part in match.groups()))
    except ValueError:
        return None
