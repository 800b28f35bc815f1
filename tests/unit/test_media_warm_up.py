"""What media.warm_up does once in the forkserver, so a forked run does not do it again."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    """``code`` in a fresh interpreter (warm-up state is per process); its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.strip()


def test_after_warm_up_yt_dlp_starts_no_ffmpeg_version_probe_and_no_thread():
    out = _run(
        """
        import subprocess, threading
        from flows import media
        media.warm_up()
        started = []
        original = subprocess.Popen.__init__
        def spy(self, args, *a, **kw):
            started.append(args)
            return original(self, args, *a, **kw)
        subprocess.Popen.__init__ = spy
        from yt_dlp.postprocessor import FFmpegPostProcessor
        ffmpeg = FFmpegPostProcessor()
        assert ffmpeg.available and ffmpeg.probe_available
        print(len(started), threading.active_count())
        """
    )
    assert out == "0 1"  # no subprocess after the warm-up; the main thread only: forkable


def test_warm_up_loads_the_extractor_modules_ytmp3_uses_most():
    out = _run(
        """
        import sys
        from flows import media
        before = {name for name in sys.modules if name.startswith("yt_dlp.extractor.")}
        media.warm_up()
        after = {name for name in sys.modules if name.startswith("yt_dlp.extractor.")}
        print(" ".join(sorted(after - before)))
        """
    )
    loaded = out.split()
    assert "yt_dlp.extractor.generic" in loaded
    assert any(name.startswith("yt_dlp.extractor.youtube") for name in loaded)
