"""The conversions panel's one Prefect query, shared by every session of the page process.

Each open tab refreshes its panel every :data:`REFRESH_SECONDS`. The overview a user sees
depends only on whose runs they see (their ``user:<name>`` tag, or every run for an
operator), so it is cached per tag for that long (``st.cache_data``): however many tabs a
user (or all operators together) has open, the page asks Prefect once per refresh, and
Streamlit's per-key lock makes concurrent sessions wait for that one answer rather than
ask too. Failures are not cached: each session backs off on its own (ui/app.py).
"""

from __future__ import annotations

import streamlit as st

from ui import runs

REFRESH_SECONDS = 2.0


@st.cache_data(ttl=REFRESH_SECONDS, show_spinner=False, max_entries=1000)
def shared_overview(tag: str | None, limit: int, api_url: str | None) -> runs.Overview:
    """:func:`runs.overview` of ``tag``'s runs (all with None), at most ``REFRESH_SECONDS``
    old; ``api_url`` keys the cache by server."""
    return runs.overview(limit=limit, tag=tag)
