"""The disk never fills: room for a conversion before its download, the cap at publish.

Two checks of the item pipeline (flows/convert.py calls each once):

- :func:`check_room`, before any media byte is fetched: what the probe or listing knows
  of the download and the MP3 (:func:`flows.media.space_needed`) must fit on the data
  dir's disk with ``YTMP3_MIN_FREE_MB`` to spare, and the MP3 alone within
  ``YTMP3_MAX_LIBRARY_MB``. Unknown sizes count as nothing: the reserve still holds.
- :func:`make_room`, before publish: over ``YTMP3_MAX_LIBRARY_MB``, the oldest entries go
  the way cleanup evicts them (:func:`flows.cleanup.make_room`), and the run's log says
  which and why.

A disk that fills anyway (other writers, concurrent items) fails the item with
:class:`~flows.errors.DiskFull` wherever the write was (flows/errors.py), and the item's
workspace goes with it.
"""

from __future__ import annotations

from typing import Any

from flows import cleanup, media, runlog
from flows.errors import DISK_FULL_ADVICE, DiskFull, LimitError
from flows.library import Library
from flows.settings import Quality, Settings


def check_room(
    library: Library, info: dict[str, Any], quality: Quality, settings: Settings
) -> None:
    """Refuse a conversion the disk or the library's cap cannot hold (makes no request)."""
    mp3 = media.mp3_size(info.get("duration"), quality)
    cap = settings.max_library_bytes
    if cap and mp3 and mp3 >= cap:
        raise LimitError(
            f"the MP3 would be about {_mb(mp3)}; the library holds at most "
            f"{settings.max_library_mb} MB in all",
            "convert a lower quality, or raise YTMP3_MAX_LIBRARY_MB",
        )
    needed = media.space_needed(info, quality) or 0
    free, reserve = library.free_bytes(), settings.min_free_bytes
    if free - needed >= reserve:
        return
    if needed:
        beyond = max(free - reserve, 0)
        detail = f"it needs about {_mb(needed)} and {_mb(beyond)} are free beyond the reserve"
    else:
        detail = f"{_mb(free)} are free, less than the reserve"
    raise DiskFull(
        f"the server's disk is too full for this conversion ({detail} of "
        f"{settings.min_free_mb} MB)",
        DISK_FULL_ADVICE,
    )


def make_room(library: Library, incoming: int, settings: Settings) -> None:
    """Keep the library within ``YTMP3_MAX_LIBRARY_MB`` with ``incoming`` new bytes in it:
    the oldest entries go first, as cleanup evicts them (entries in use stay)."""
    cap = settings.max_library_bytes
    if not cap:
        return
    if incoming >= cap:
        raise LimitError(
            f"the MP3 is {_mb(incoming)}; the library holds at most "
            f"{settings.max_library_mb} MB in all",
            "convert a lower quality, or raise YTMP3_MAX_LIBRARY_MB",
        )
    report = cleanup.make_room(library, incoming, cap)
    if report is not None and report.removed:
        removed = ", ".join(f"{key} ({why})" for key, why, _ in report.removed)
        runlog.get_logger(__name__).warning("made room in the library: removed %s", removed)


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
