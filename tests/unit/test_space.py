"""The disk never fills: what a conversion is reckoned to need, the checks before download
and at publish, and the words for a full disk. (Real full disks: tests/flows/test_disk.py.)"""

from __future__ import annotations

import errno
from datetime import timedelta
from pathlib import Path

import pytest
from yt_dlp.utils import DownloadError

from flows import media, space
from flows.errors import DiskFull, LimitError, classify, final_message
from flows.library import Library, make_key, utcnow
from flows.settings import Settings, cpu_count, load_settings

MB = 1_000_000


def settings(tmp_path: Path, **overrides: object) -> Settings:
    return load_settings(data_dir=tmp_path / "data", **overrides)


# -- what a conversion is reckoned to write ---------------------------------------------


def test_the_largest_audio_format_and_the_mp3_are_counted():
    info = {
        "duration": 100,
        "formats": [
            {"format_id": "139", "vcodec": "none", "acodec": "mp4a", "filesize": 800_000},
            {"format_id": "251", "vcodec": "none", "acodec": "opus", "filesize_approx": 1_900_000},
            {"format_id": "140", "vcodec": "none", "acodec": "mp4a", "abr": 129.5},  # 1.62 MB
            {"format_id": "137", "vcodec": "avc1", "acodec": "none", "filesize": 90_000_000},
        ],
    }
    # 1.9 MB of audio (the video-only format is never fetched) + 100 s at 192 kbit/s.
    assert media.space_needed(info, "192") == 1_900_000 + 2_400_000
    assert media.space_needed(info, "V0") == 1_900_000 + 3_250_000


def test_a_file_without_audio_only_formats_counts_whole():
    assert media.space_needed({"filesize": 5 * MB}, "128") == 5 * MB
    assert media.space_needed({"duration": 10, "tbr": 800}, "128") == 1_000_000 + 160_000


def test_nothing_known_is_none():
    assert media.space_needed({"url": "http://x/a.m4a"}, "192") is None
    assert media.mp3_size(None, "320") is None


# -- before the download ------------------------------------------------------------------


def test_a_download_that_would_cut_into_the_reserve_is_refused(tmp_path: Path):
    library = Library(tmp_path)
    free = library.free_bytes()
    with pytest.raises(DiskFull) as refused:
        space.check_room(library, {"filesize": free}, "192", settings(tmp_path, min_free_mb=1))
    message = final_message(refused.value)
    assert message.startswith(
        f"the server's disk is too full for this conversion (it needs about {free / MB:.1f} MB"
    )
    assert "beyond the reserve of 1 MB); free space on the server" in message
    assert str(tmp_path) not in message


def test_unknown_sizes_still_keep_the_reserve(tmp_path: Path):
    library = Library(tmp_path / "not-made-yet")  # the nearest existing parent's disk
    reserve_mb = library.free_bytes() // MB + 1
    with pytest.raises(DiskFull, match=rf"less than the reserve of {reserve_mb} MB\)$"):
        space.check_room(library, {}, "192", settings(tmp_path, min_free_mb=reserve_mb))
    space.check_room(library, {}, "192", settings(tmp_path, min_free_mb=0))


def test_an_mp3_bigger_than_the_whole_library_is_refused_before_download(tmp_path: Path):
    capped = settings(tmp_path, max_library_mb=60, min_free_mb=0)
    with pytest.raises(LimitError, match=r"about 86\.4 MB; the library holds at most 60 MB"):
        space.check_room(Library(tmp_path), {"duration": 3600}, "192", capped)
    space.check_room(Library(tmp_path), {"duration": 3600}, "128", capped)  # 57.6 MB fits


# -- at publish ---------------------------------------------------------------------------


def _entry(library: Library, name: str, size: int, age_hours: float) -> str:
    key = make_key("generic", name, "192")
    with library.workspace(key) as workdir:
        mp3 = workdir / "audio.mp3"
        mp3.write_bytes(b"\0" * size)
        sidecar = library.new_sidecar(
            key, mp3, title=name, source_url="http://x/", extractor="generic",
            media_id=name, quality="192",
        )  # fmt: skip
        created = utcnow() - timedelta(hours=age_hours)
        sidecar = sidecar.model_copy(
            update={"created_at": created, "expires_at": created + timedelta(hours=8)}
        )
        library.publish(key, mp3, sidecar)
    return key


def test_publish_makes_room_by_evicting_the_oldest_first(tmp_path: Path):
    capped = settings(tmp_path, max_library_mb=3)
    library = Library.from_settings(capped)
    old, middle, new = (
        _entry(library, name, MB, age) for name, age in (("old", 3), ("mid", 2), ("new", 1))
    )
    assert library.mp3_bytes() == 3 * MB
    space.make_room(library, MB + 1, capped)  # over by 1 MB + 1 byte: two must go
    assert {entry.key for entry in library.entries()} == {new}
    assert not library.mp3_path(old).exists() and not library.mp3_path(middle).exists()
    space.make_room(library, MB, capped)  # fits: nothing goes
    assert {entry.key for entry in library.entries()} == {new}
    with pytest.raises(LimitError, match=r"the MP3 is 3\.0 MB; the library holds at most 3 MB"):
        space.make_room(library, 3 * MB, capped)


def test_no_cap_no_eviction(tmp_path: Path):
    uncapped = settings(tmp_path)
    library = Library.from_settings(uncapped)
    key = _entry(library, "one", MB, 5)
    space.make_room(library, 10**12, uncapped)
    assert [entry.key for entry in library.entries()] == [key]


# -- a disk that fills anyway -------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        OSError(errno.ENOSPC, "No space left on device", "/srv/data/.tmp/k.abc/audio.mp3"),
        OSError(errno.EDQUOT, "Disk quota exceeded", "/srv/data/.tmp/k.abc/source.m4a"),
        DownloadError("ERROR: unable to write data: [Errno 28] No space left on device"),
        RuntimeError("[Errno 28] No space left on device: '/srv/data/k.json.staged'"),
    ],
)
def test_a_full_disk_says_so_without_paths(exc: Exception):
    error = classify(exc, "http://127.0.0.1/a.m4a")
    assert isinstance(error, DiskFull)
    message = final_message(error, attempts=4)
    assert message.startswith("the server's disk is full; free space on the server")
    assert "/" not in message and "attempts" not in message  # never retried


def test_the_encoder_setting_defaults_to_the_cores(tmp_path: Path):
    assert settings(tmp_path).max_encoders == cpu_count()
    assert settings(tmp_path, max_encoders="").max_encoders == cpu_count()
    assert settings(tmp_path, max_encoders=3, min_free_mb=7).min_free_bytes == 7 * MB
