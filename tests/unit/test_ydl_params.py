"""What every YoutubeDL that media._ydl builds is told, from the settings."""

from __future__ import annotations

import logging

from flows import media
from flows.settings import Settings


def test_the_real_world_settings_reach_yt_dlp(tmp_path):
    settings = Settings(
        data_dir=tmp_path / "data",
        cache_dir=tmp_path / "cache",
        ytdlp_extractor_args={"youtube": {"player_client": ["web"]}},
        sleep_requests_seconds=1.5,
    )
    with media._ydl(settings, {}) as ydl:
        params = ydl.params
        assert params["cachedir"] == str(tmp_path / "cache")
        assert ydl.cache.enabled
        assert params["extractor_args"] == {"youtube": {"player_client": ["web"]}}
        assert params["sleep_interval_requests"] == 1.5
        assert params["extractor_retries"] == 3  # yt-dlp's own, for flaky YouTube API pages
        assert params["retries"] == 0  # downloads are retried by Prefect
        assert params["remote_components"] == set()  # the installed solver only
        assert params.get("cookiefile") is None
        assert "deno" in params["js_runtimes"]


def test_warnings_go_to_the_module_logger_outside_a_run(tmp_path, caplog):
    with (
        caplog.at_level(logging.WARNING, logger="flows.media"),
        media._ydl(Settings(data_dir=tmp_path), {}) as ydl,
    ):
        ydl.report_warning("formats may be missing")
        ydl.to_screen("[youtube] progress chatter")
    assert [r.getMessage() for r in caplog.records] == ["yt-dlp: formats may be missing"]
