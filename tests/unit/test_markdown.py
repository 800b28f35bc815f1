"""flows/markdown.py: text from a site renders as written, through a real CommonMark
renderer (markdown-it-py, as the Prefect UI and Streamlit's renderer follow CommonMark)."""

from __future__ import annotations

import json
import re

import pytest
from markdown_it import MarkdownIt

from flows import markdown, progress

HOSTILE = "[x](http://127.0.0.1/) ![i](http://127.0.0.1/i.png) **b**"
RENDER = MarkdownIt("commonmark").enable("table").enable("strikethrough")


GFM_AUTOLINK = re.compile(r"(?i)https?://|www\.|[-.\w+]+@[-\w]+")
"""What GFM (remark's find-and-replace on text, as Streamlit runs it) turns into a link."""


def visible_text(html: str) -> str:
    return re.sub(r"<[^>]+>", "", html).strip()


@pytest.mark.parametrize(
    "text",
    [
        HOSTILE,
        "<img src=http://127.0.0.1/x.png> <script>alert(1)</script>",
        "# heading\n- item\n1. one\n> quote",
        "`code` ~~gone~~ _em_ | a | b |",
        "[ref]: http://127.0.0.1/ &lbrack;x&rbrack;(http://127.0.0.1/) &amp;",
        "<http://127.0.0.1/auto> a@b.example www.example.org",
        ":red[x] $x^2$ \\[already\\]",
    ],
)
def test_escaped_text_renders_as_plain_text(text):
    html = RENDER.render(markdown.escape(text))
    assert "<a " not in html and "<img" not in html and "<script" not in html, html
    assert "<strong>" not in html and "<em>" not in html and "<h1>" not in html, html
    assert "<code>" not in html and "<li>" not in html and "<s>" not in html, html
    shown = visible_text(html)
    for entity, char in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&amp;", "&")):
        shown = shown.replace(entity, char)
    assert not GFM_AUTOLINK.search(shown), shown  # the text GFM's autolinks look at
    assert shown.replace(markdown.WORD_JOINER, "") == " ".join(text.split()), html


def test_links_have_an_escaped_label_and_only_an_http_address():
    html = RENDER.render(markdown.link(HOSTILE, "http://127.0.0.1/watch?v=1 x(y)"))
    assert html.count("<a ") == 1 and "<img" not in html
    assert 'href="http://127.0.0.1/watch?v=1%20x%28y%29"' in html
    for url in ("javascript:alert(1)", "data:text/html,x", "//127.0.0.1/", "", None):
        assert "<a " not in RENDER.render(markdown.link("label", url)), url


def test_table_cells_are_escaped_and_numbers_kept():
    rows = markdown.escape_cells([{"title": HOSTILE, "new": 3, "error": ""}])
    assert rows == [{"title": markdown.escape(HOSTILE), "new": 3, "error": ""}]


@pytest.mark.parametrize(
    "text",
    [
        "[x](http://127.0.0.1/) ![i](http://127.0.0.1/i.png) **b**",
        r"C:\dir\ a\\b",
        "a@b www.x.org é",
    ],
)
def test_unescape_gives_back_what_escape_was_given(text):
    assert markdown.unescape(markdown.escape(text)) == text


def test_the_item_table_is_written_escaped_and_read_back_as_written():
    title = "[x](http://127.0.0.1/) **b**"
    row = progress.ItemRow(position=0, title=title, message="cut (17 s of 60 s)")
    written = markdown.escape_cells([row.model_dump(mode="json")])
    assert "](http" not in written[0]["title"]  # the Prefect UI renders it as text
    (read,) = progress.read_item_rows(json.dumps(written)) or []
    assert (read.title, read.message) == (title, "cut (17 s of 60 s)")
