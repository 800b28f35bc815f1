"""Imported once by the forkserver that served flow runs are forked from (flows/warmstart.py).

Everything a run would otherwise import or set up for itself: the flows of prefect.yaml,
the parts of Prefect a run uses, yt-dlp's extractor list and its URL patterns. Nothing
here starts a thread or opens a connection: a process with threads cannot be forked
safely.
"""

from __future__ import annotations

import prefect.flow_engine  # noqa: F401

from flows import batch, cleanup, convert, media, recovery, ytdlp_check  # noqa: F401

media.warm_up()
