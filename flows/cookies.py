"""The operator's cookies file, handed to yt-dlp without ever being changed or shown.

yt-dlp reads its ``cookiefile`` when it starts and writes the cookie jar back to the
same file when it closes, so giving it ``YTMP3_COOKIES_FILE`` itself would rewrite the
operator's file (and race between items running at once). Each ``YoutubeDL`` gets a
private copy instead (mode 0600, in the system's temp dir, deleted afterwards): the
original may be read-only, is read exactly once per use, and nothing here logs or
returns its content.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flows import runlog
from flows.errors import PermanentError
from flows.settings import Settings

_MAGIC = re.compile(r"#( Netscape)? HTTP Cookie File")
_EXPIRES = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?)?")


@contextmanager
def private_copy(settings: Settings) -> Iterator[str | None]:
    """A path to a private copy of the cookies file for one ``YoutubeDL``, or None.

    Lines yt-dlp could not read are left out of the copy (yt-dlp would print each of
    them, cookie value and all, to stderr); the format's header line is added if missing.
    The copy is removed on exit, whatever yt-dlp wrote into it.
    """
    if settings.cookies_file is None:
        yield None
        return
    handle, name = tempfile.mkstemp(prefix="ytmp3-cookies-", suffix=".txt")
    try:
        try:
            text = settings.cookies_file.read_bytes().decode("utf-8", errors="replace")
        except OSError as exc:
            raise PermanentError(
                "the cookies file cannot be read",
                "check YTMP3_COOKIES_FILE and that the file is readable by this user",
            ) from exc
        kept, skipped = readable_lines(text)
        if not kept or not _MAGIC.match(kept[0]):  # Python's cookie jar insists on it
            kept.insert(0, "# Netscape HTTP Cookie File\n")
        with os.fdopen(handle, "w", encoding="utf-8") as copy:
            copy.writelines(kept)
        if skipped:
            runlog.get_logger(__name__).warning(
                "%d line(s) of YTMP3_COOKIES_FILE are not Netscape cookie lines and were skipped",
                skipped,
            )
        yield name
    finally:
        Path(name).unlink(missing_ok=True)


def readable_lines(text: str) -> tuple[list[str], int]:
    """The lines of a cookies.txt that yt-dlp reads without a warning, and how many others."""
    kept, skipped = [], 0
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        is_comment = stripped.startswith("#") and not stripped.startswith("#HttpOnly_")
        fields = line.rstrip("\r\n").split("\t")
        if not stripped or is_comment or (len(fields) == 7 and _EXPIRES.fullmatch(fields[4])):
            kept.append(line)
        else:
            skipped += 1
    return kept, skipped


def describe(settings: Settings) -> str:
    """What a person may see about the cookies: configured or not, never their content."""
    path = settings.cookies_file
    if path is None:
        return "none"
    try:
        size = path.stat().st_size
    except OSError:
        return f"{path} (cannot be read)"
    readable = os.access(path, os.R_OK)
    return f"{path} ({size} bytes{'' if readable else ', not readable'})"
