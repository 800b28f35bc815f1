"""Text from the internet, shown where Markdown renders: the page and Prefect's artifacts.

Titles, artists, albums and URLs come from the sites a person submits. Rendered as
Markdown unescaped, ``[x](http://host/)`` becomes a link, ``![i](http://host/i.png)`` an
image the browser fetches, ``:red[x]`` coloured text. :func:`escape` shows any text
literally; :func:`link` makes a link whose label is escaped and whose address can only be
an http(s) URL. The page (ui/) and the flows' artifacts use these two, and nothing else;
:func:`unescape` reads back what a program wrote escaped (the item table).
"""

from __future__ import annotations

import re
import urllib.parse

_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$=^&@])")
"""ASCII punctuation Markdown (CommonMark, GFM, Streamlit's extensions) gives meaning to;
CommonMark allows a backslash before any of it; ``&`` would start an HTML entity."""


_AUTOLINKED = re.compile(r"https?:|www(?=\.)|@", re.IGNORECASE)
"""Where GFM's autolinks start. Streamlit finds them in the text *after* escapes are
resolved, so a backslash does not stop them; an invisible word joiner does."""
WORD_JOINER = "\u2060"


def escape(text: str | None) -> str:
    """``text`` on one line, every Markdown character escaped: it renders as written (with
    a word joiner, U+2060, after ``http:``, ``www`` and ``@``: no bare link is made)."""
    text = _AUTOLINKED.sub(lambda match: match[0] + WORD_JOINER, " ".join((text or "").split()))
    return _SPECIAL.sub(r"\\\1", text)


def unescape(text: str) -> str:
    """The text :func:`escape` was given (its white space folded)."""
    return _ESCAPED.sub(r"\1", text).replace(WORD_JOINER, "")


_ESCAPED = re.compile(r"\\(.)", re.DOTALL)


def safe_url(url: str | None) -> str | None:
    """An http(s) URL that is safe as a Markdown link's address, or None for anything else."""
    try:
        parts = urllib.parse.urlsplit(url or "")
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return urllib.parse.quote(url or "", safe=":/?&=%#@+,;~!")


def link(label: str | None, url: str | None) -> str:
    """``[label](url)`` with the label escaped; the escaped label alone for a URL that is
    no http(s) URL."""
    target = safe_url(url)
    text = escape(label) or escape(url)
    return f"[{text}]({target})" if target else text


def escape_cells(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """A table artifact's rows with every text cell escaped (the Prefect UI renders text
    cells as Markdown); numbers stay numbers."""
    return [
        {name: escape(value) if isinstance(value, str) else value for name, value in row.items()}
        for row in rows
    ]
