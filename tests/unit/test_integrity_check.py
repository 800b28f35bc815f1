"""The check before publish: the MP3 against the lengths its source declared."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows import integrity, media
from flows.errors import TransientError
from flows.settings import Settings
from tests.support.media_server import cut_file, generate_media


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


def converted(
    source: Path, info: dict, settings: Settings
) -> tuple[media.Download, media.AudioStats]:
    """``source`` in a workspace of its own, made into ``audio.mp3`` beside it."""
    work = source.parent / f"work-{source.stem}"
    work.mkdir()
    audio = work / f"source{source.suffix}"
    audio.write_bytes(source.read_bytes())
    stats = media.transcode(audio, work / "audio.mp3", "128", settings)
    return media.Download(audio=audio, thumbnail=None, info=info), stats


def test_the_tolerance_is_two_seconds_or_one_percent():
    assert integrity.tolerance(60) == 2.0
    assert integrity.tolerance(3600) == 36.0


def test_a_length_the_site_rounds_passes_and_the_sidecar_gets_the_mp3s(tmp_path, settings):
    source = generate_media(tmp_path, "rounded", "m4a", 5.97)
    fetched, stats = converted(source, {"duration": 6}, settings)
    checked = integrity.check_whole(fetched, stats, {}, settings)
    assert checked.duration == pytest.approx(5.97, abs=0.1)


def test_the_longest_declaration_counts_the_site_or_the_listing(tmp_path, settings):
    source = generate_media(tmp_path, "whole", "m4a", 3)
    fetched, stats = converted(source, {}, settings)  # the probe knows no length...
    with pytest.raises(TransientError, match=r"^the source file is incomplete \(3 s of 60 s\)$"):
        integrity.check_whole(fetched, stats, {"duration": 60}, settings)  # ...the feed does


def test_a_cut_file_whose_header_states_its_length_is_incomplete(tmp_path, settings):
    whole = generate_media(tmp_path, "whole", "m4a", 10)
    cut = cut_file(whole, tmp_path / "cut.m4a", 0.4)
    assert integrity.declared_duration(cut, settings) == pytest.approx(10, abs=0.1)
    fetched, stats = converted(cut, {}, settings)
    with pytest.raises(TransientError, match=r"incomplete \(\d s of 10 s\)"):
        integrity.check_whole(fetched, stats, {}, settings)


def test_a_length_estimated_from_the_bitrate_is_no_declaration(tmp_path, settings):
    """Raw ADTS has no header: ffprobe's estimate shrinks with the file, so it is ignored,
    and the file is decoded end to end instead (a whole one passes)."""
    adts = generate_media(tmp_path, "adts", "aac", 4)
    assert integrity.declared_duration(adts, settings) is None
    fetched, stats = converted(adts, {}, settings)
    checked = integrity.check_whole(fetched, stats, {}, settings)
    assert checked.duration == pytest.approx(4, abs=0.2)


def test_long_media_is_said_in_hours_minutes_and_seconds():
    assert integrity._seconds(17.4, 60) == "17 s of 60 s"
    assert integrity._seconds(751, 3720) == "0:12:31 of 1:02:00"
