"""Each user's fair share of the service, checked by the page before it submits.

Two limits per user (settings): at most ``YTMP3_USER_MAX_WAITING`` items waiting or
converting, where a playlist counts every item it listed (one until it has listed
them), and at most ``YTMP3_USER_SUBMISSIONS_PER_MINUTE`` submissions in any minute. Both
are counted from the user's runs in Prefect (their ``user:<name>`` tag), so every tab,
every page process and a restart see the same numbers; a per-user lock in this process
keeps two tabs from both passing the check at once.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from flows.settings import Settings
from ui import runs
from ui.runs import Load

WINDOW = timedelta(minutes=1)

_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
_locks_lock = threading.Lock()


def user_lock(name: str) -> threading.Lock:
    """The lock to hold around one user's check-and-submit."""
    with _locks_lock:
        return _locks[name]


class Refused(Exception):
    """A submission over the user's share; the message says when to try again."""


def submit(
    user: str, url: str, quality: str, key: str, settings: Settings, *, counted: bool = True
) -> tuple[runs.Submitted, str]:
    """The page's submission path: check ``user``'s share (unless the submission is a
    repeat that finds its run), then submit a run tagged ``user:<name>``; returns it with
    the key used. A key whose run ended badly is retried with a key of its own.

    Raises :class:`Refused` over the share, :class:`runs.PrefectUnavailable` on trouble.
    """
    tag = f"user:{user}"
    with user_lock(user):
        if counted:
            # The submissions of the last minute first: one request, and all a refusal
            # in a burst costs. Only then the items waiting (three more).
            refused = refusal(runs.load(tag, waiting=False), settings)
            if not refused and settings.user_max_waiting:
                refused = refusal(runs.load(tag), settings)
            if refused:
                raise Refused(refused)
        submitted = runs.submit(url, quality, key, (tag,))
        if submitted.state_type in runs.ENDED_BADLY:
            key = runs.retry_key(key, submitted.id)
            submitted = runs.submit(url, quality, key, (tag,))
    return submitted, key


def refusal(load: Load, settings: Settings, now: datetime | None = None) -> str | None:
    """Why one more submission is refused, saying when to try again; None if it may go."""
    most = settings.user_max_waiting
    if most and load.waiting_items >= most:
        return (
            f"You already have {_items(load.waiting_items)} waiting or converting, and at "
            f"most {_items(most)} may wait at a time: try again once some of them have "
            "finished (they show under Conversions)."
        )
    per_minute = settings.user_submissions_per_minute
    if per_minute and len(load.recent) >= per_minute:
        now = now or datetime.now(UTC)
        frees_up = load.recent[len(load.recent) - per_minute] + WINDOW
        seconds = max(1, math.ceil((frees_up - now).total_seconds()))
        return (
            f"You have made {len(load.recent)} submissions in the last minute, and at most "
            f"{per_minute} are taken a minute: try again in {seconds} s."
        )
    return None


def _items(count: int) -> str:
    return f"{count} item" if count == 1 else f"{count} items"
