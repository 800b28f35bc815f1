"""What the page shows of the library, and the files it hands to the browser.

Plain functions over :class:`flows.library.Entry`, so they are tested without Streamlit:
filtering, human-readable numbers, the download name a person sees ("Artist - Title.mp3"),
and a playlist's files as one ZIP or an m3u. Everything here only *reads* the data dir:
the page runs against a read-only mount of the library. Files are opened without
following links and must be regular files of their sidecar's size. A playlist's ZIP is
written to a temporary file (outside the library) only when someone asks for it, up to a
size cap, and streamed from there (ui/server.py).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
import unicodedata
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from flows import markdown
from flows.library import Entry, Library, Sidecar
from flows.settings import Quality

MAX_NAME_BYTES = 200
"""Download names stay well under the 255-byte limit of common filesystems (with suffix)."""

_FORBIDDEN_CHARS = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')
"""Characters that are not allowed (or dangerous) in a file name on some OS we serve."""

_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com[1-9]|lpt[1-9])(\..*)?$", re.IGNORECASE)


class FileGone(Exception):
    """A library file vanished (cleanup deleted it) between listing and reading it."""

    def __init__(self, title: str) -> None:
        super().__init__(
            f"“{title}” is no longer there: it expired and was deleted. "
            "Convert it again to get it back."
        )
        self.title = title


# -- names -----------------------------------------------------------------------------


def sanitize_filename(text: str, max_bytes: int = MAX_NAME_BYTES) -> str:
    """``text`` as a file name that is safe on Linux, macOS and Windows.

    Titles come from the internet: they may hold path separators, control or bidi
    characters that disguise an extension, or names Windows reserves. The result has
    none of these, no leading/trailing dots or spaces, and at most ``max_bytes`` UTF-8
    bytes (cut at a character boundary). It may be empty; callers supply a fallback.
    """
    text = unicodedata.normalize("NFC", text)
    text = "".join(
        " " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in text
    )
    text = _FORBIDDEN_CHARS.sub(" ", text)
    text = " ".join(text.split()).strip(" .")
    if _WINDOWS_RESERVED.match(text):
        text = f"_{text}"
    encoded = text.encode("utf-8")
    if len(encoded) > max_bytes:
        text = encoded[:max_bytes].decode("utf-8", errors="ignore").rstrip(" .")
    return text


def display_title(sidecar: Sidecar) -> str:
    """ "Artist - Title", without repeating the artist when the title already starts with it."""
    title = sidecar.title.strip() or sidecar.key
    artist = (sidecar.artist or "").strip()
    if artist and not title.casefold().startswith(artist.casefold()):
        return f"{artist} - {title}"
    return title


def human_name(sidecar: Sidecar, suffix: str = ".mp3") -> str:
    """The name offered to the browser: sanitised "Artist - Title.mp3" (the key if empty).

    File names on disk are keys and never titles; a title only ever reaches a name here.
    """
    return (sanitize_filename(display_title(sidecar)) or sidecar.key) + suffix


def unique_names(entries: Sequence[Entry]) -> list[str]:
    """Human names for ``entries``, made distinct ("Name (2).mp3") for one ZIP/playlist."""
    seen: dict[str, int] = defaultdict(int)
    names = []
    for entry in entries:
        name = human_name(entry.sidecar)
        seen[name.casefold()] += 1
        if (count := seen[name.casefold()]) > 1:
            name = f"{name.removesuffix('.mp3')} ({count}).mp3"
        names.append(name)
    return names


def escape_markdown(text: str) -> str:
    """``text`` shown literally by ``st.markdown``/captions (titles are untrusted input):
    :func:`flows.markdown.escape`."""
    return markdown.escape(text)


# -- numbers a person reads ------------------------------------------------------------


def ago(moment: datetime) -> str:
    """``just now``, ``5 min ago``, ``3 h ago``, or the date."""
    seconds = max(0, int((datetime.now(UTC) - moment).total_seconds()))
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return moment.strftime("%Y-%m-%d")


def format_size(size: int) -> str:
    """Decimal units, one decimal place above kB: ``4.6 MB``."""
    if size < 1000:
        return f"{size} B"
    value = float(size)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "kB" else f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def format_expires(left: timedelta) -> str:
    """``expires in 7:59`` (h:mm, minutes rounded up, so it never reads 0:00 while alive)."""
    seconds = left.total_seconds()
    if seconds <= 0:
        return "expired"
    minutes = math.ceil(seconds / 60)
    return f"expires in {minutes // 60}:{minutes % 60:02d}"


def quality_label(quality: Quality | str) -> str:
    """What a quality means, for the select box and the library."""
    labels = {"V0": "VBR V0 (~245 kbps)", "V2": "VBR V2 (~190 kbps)"}
    return labels.get(str(quality), f"{quality} kbps")


# -- filtering and grouping ------------------------------------------------------------


def matches(entry: Entry, words: Sequence[str]) -> bool:
    """Whether every word occurs (case-insensitively) in the entry's title, artist,
    album or source URL."""
    sidecar = entry.sidecar
    haystack = " ".join(
        part for part in (sidecar.title, sidecar.artist, sidecar.album, sidecar.source_url) if part
    ).casefold()
    return all(word in haystack for word in words)


def filter_entries(entries: Iterable[Entry], text: str) -> list[Entry]:
    """The entries that match ``text`` (all of its words), in their original order."""
    words = text.casefold().split()
    if not words:
        return list(entries)
    return [entry for entry in entries if matches(entry, words)]


@dataclass(frozen=True)
class Playlist:
    """Library entries that share an album (what a playlist's items are tagged with)."""

    title: str
    entries: tuple[Entry, ...]

    @property
    def zip_name(self) -> str:
        return (sanitize_filename(self.title) or "playlist") + ".zip"

    @property
    def m3u_name(self) -> str:
        return (sanitize_filename(self.title) or "playlist") + ".m3u"

    @property
    def total_bytes(self) -> int:
        return sum(entry.sidecar.bytes for entry in self.entries)


def playlists(entries: Iterable[Entry], min_items: int = 2) -> list[Playlist]:
    """Entries grouped by album, in track order; newest group first.

    The convert flow tags a playlist's items with the playlist title as album and the
    position as track, so the album is what ties a playlist's files together.
    """
    groups: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:  # newest first, so dict order is newest group first
        album = (entry.sidecar.album or "").strip()
        if album:
            groups[album].append(entry)
    result = []
    for title, members in groups.items():
        if len(members) < min_items:
            continue
        members.sort(key=lambda e: (e.sidecar.track is None, e.sidecar.track or 0))
        result.append(Playlist(title=title, entries=tuple(members)))
    return result


# -- reading files (only when a person clicks) ------------------------------------------


def is_present(entry: Entry) -> bool:
    """Whether the entry's MP3 is still on disk (cleanup may have deleted it)."""
    return entry.has_mp3()


def read_mp3(entry: Entry) -> bytes:
    """The MP3's bytes, or :class:`FileGone` if cleanup deleted it since it was listed."""
    try:
        return entry.read_mp3()
    except FileNotFoundError:
        raise FileGone(entry.sidecar.title) from None


def build_m3u(entries: Sequence[Entry], names: Sequence[str]) -> str:
    """An extended M3U that names the files as they are inside the playlist's ZIP."""
    lines = ["#EXTM3U"]
    for entry, name in zip(entries, names, strict=True):
        duration = round(entry.sidecar.duration) if entry.sidecar.duration else -1
        label = " ".join(display_title(entry.sidecar).split())
        lines += [f"#EXTINF:{duration},{label}", name]
    return "\n".join(lines) + "\n"


def playlist_m3u(playlist: Playlist) -> str:
    """The playlist's m3u; file names match :func:`build_zip`, so it plays unzipped."""
    return build_m3u(playlist.entries, unique_names(playlist.entries))


class TooBig(Exception):
    """A playlist's ZIP would be over the size cap (``YTMP3_MAX_ZIP_MB``)."""

    def __init__(self, title: str, size: int, cap: int) -> None:
        super().__init__(
            f"“{title}” is {format_size(size)}, more than the {format_size(cap)} a ZIP may "
            "hold here: download its files one by one."
        )


def write_zip(playlist: Playlist, handle: BinaryIO, max_bytes: int) -> list[str]:
    """The playlist's MP3s (human names) plus its m3u, as a ZIP written to ``handle``;
    returns the names of the MP3s in it.

    Each MP3 is copied from its file in 1 MiB pieces (MP3s do not compress: members are
    stored). Files that cleanup deleted meanwhile, or that are no longer the sidecar's
    file, are left out (and out of the m3u); if none is left, :class:`FileGone`. Over
    ``max_bytes`` of MP3s: :class:`TooBig`, before anything is written.
    """
    if playlist.total_bytes > max_bytes:
        raise TooBig(playlist.title, playlist.total_bytes, max_bytes)
    kept: list[Entry] = []
    kept_names: list[str] = []
    with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED) as archive:
        for entry, name in zip(playlist.entries, unique_names(playlist.entries), strict=True):
            try:
                source = entry.open_mp3()
            except FileNotFoundError:
                continue
            info = zipfile.ZipInfo(name, date_time=entry.sidecar.created_at.timetuple()[:6])
            info.file_size = entry.sidecar.bytes  # zip64 when a member needs it
            with source, archive.open(info, "w") as target:
                shutil.copyfileobj(source, target, 1 << 20)
            kept.append(entry)
            kept_names.append(name)
        if not kept:
            raise FileGone(playlist.title)
        archive.writestr(playlist.m3u_name, build_m3u(kept, kept_names))
    return kept_names


def playlist_zip_file(
    library: Library, title: str, max_bytes: int, tmp_dir: Path | None = None
) -> tuple[Path, str]:
    """The ZIP of the library's playlist ``title`` in a new temporary file (the caller
    deletes it), and the name to offer; :class:`FileGone` if no such playlist is left."""
    entries = [entry for entry in library.entries() if not entry.sidecar.is_expired()]
    group = next((group for group in playlists(entries) if group.title == title), None)
    if group is None:
        raise FileGone(title)
    fd, name = tempfile.mkstemp(prefix="ytmp3-", suffix=".zip", dir=tmp_dir)
    try:
        with os.fdopen(fd, "wb") as handle:
            write_zip(group, handle, max_bytes)
    except BaseException:
        os.unlink(name)
        raise
    return Path(name), group.zip_name
