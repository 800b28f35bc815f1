"""How long bad media takes to fail with the default settings (docs/design.md, "Whole files,
bounded downloads").

    python -m bench.bad_media                   # every input (~20 min on 2 cores)
    python -m bench.bad_media hang.m4a empty.mp4

Makes 60-s media, serves it broken from the local media server (tests/support/media_server.py),
and runs ``convert`` on each input against a Prefect test server with the default
stall timeout, minimum rate and retries. Prints one JSON line per input: seconds to the
final state, the state and its message, GETs per path, what the library holds, and how
many scratch dirs are left. Not part of ``make bench`` (a hung server takes minutes by
design).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from tests.support.media_server import MediaServer, cut_file, generate_media, video_page_html  # noqa: E402

INPUTS = (
    "front-cut.mp4",  # cut to 30 %, index in front: the header still says 60 s
    "end-cut.mp4",  # cut to 30 %, index at the end: no index at all
    "mid.aac",  # raw ADTS cut mid-frame: declares no length
    "empty.mp4",  # zero bytes
    "cut-off.m4a",  # the server closes the connection mid-file
    "trickle.m4a",  # 2 kB/s
    "hang.m4a",  # the server goes silent mid-file and keeps the connection
    "drip.html",  # one byte every 2 s, behind a page
)


def serve(root: Path) -> MediaServer:
    front = generate_media(root, "front", "mp4", 60)
    end = generate_media(root, "end", "mp4-index-at-end", 60)
    adts = generate_media(root, "adts", "aac", 60)
    song = generate_media(root, "song", "m4a", 60)
    cut_file(front, root / "front-cut.mp4", 0.3)
    cut_file(end, root / "end-cut.mp4", 0.3)
    cut_file(adts, root / "mid.aac", adts.stat().st_size // 2 + 7)
    server = MediaServer(root, standard_routes=False).start()
    server.add_page("/empty.mp4", b"", "video/mp4")
    for name in ("trickle.m4a", "hang.m4a", "cut-off.m4a", "drip.m4a"):
        server.alias(name, song)
    server.slow("trickle.m4a", 2000)
    server.stop_sending("hang.m4a", 100_000)
    server.stop_sending("cut-off.m4a", 100_000, close=True)
    server.slow("drip.m4a", 0.5)
    server.add_page("/drip.html", video_page_html(src="drip.m4a", poster="none.jpg"))
    return server


def run(server: MediaServer, name: str) -> dict[str, object]:
    from flows.convert import convert
    from flows.settings import get_settings

    data = Path(tempfile.mkdtemp(prefix="bad-media-data-"))
    os.environ |= {
        "YTMP3_DATA_DIR": str(data),
        "YTMP3_ALLOWED_HOSTS": "127.0.0.1",
        "YTMP3_ALLOW_PRIVATE_NETWORKS": "true",
    }
    get_settings.cache_clear()
    server.reset_counters()
    began = time.monotonic()
    state = convert(url=server.url(name), return_state=True)
    tmp = data / ".tmp"
    return {
        "input": name,
        "seconds": round(time.monotonic() - began, 1),
        "state": state.type.value,
        "message": state.message,
        "GETs": server.request_counts(),
        "library": sorted(p.name for p in data.iterdir() if not p.name.startswith(".")),
        "scratch_dirs_left": len(list(tmp.iterdir())) if tmp.exists() else 0,
    }


def main(names: list[str]) -> None:
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    for name in list(os.environ):
        if name.startswith("YTMP3_"):
            del os.environ[name]
    root = Path(tempfile.mkdtemp(prefix="bad-media-"))
    server = serve(root)
    with (
        temporary_settings({PREFECT_LOCAL_STORAGE_PATH: str(root / "results")}),
        prefect_test_harness(server_startup_timeout=120),
    ):
        for name in names or INPUTS:
            print(json.dumps(run(server, name)), flush=True)
    server.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
