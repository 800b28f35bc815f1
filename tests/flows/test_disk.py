"""The disk never fills: a data dir on a real 15 MB tmpfs, real conversions.

A conversion that would not fit is refused before any media request; the library's cap
evicts the oldest entries first (at publish and in the cleanup flow); a write that finds
the disk full (yt-dlp's download, ffmpeg's MP3) fails that item with "the disk is full",
leaves only whole MP3+sidecar pairs and nothing in .tmp/, and the next conversion works
once there is room again.

Mounting a tmpfs needs root: CI runs these as root; elsewhere they are skipped, saying so.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.states import State

from flows.cleanup import cleanup
from flows.convert import convert
from flows.library import Library, make_key
from flows.settings import Settings, get_settings
from tests.support.media_server import MediaServer, generate_media

pytestmark = pytest.mark.flow

DISK_MB = 15


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 15 MB tmpfs mounted for this test, unmounted afterwards."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the disk tests mount a tmpfs and must run as root in CI", pytrace=False)
        pytest.skip("the disk tests mount a 15 MB tmpfs, which needs root (CI runs them)")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m,mode=0755", "tmpfs", str(mount)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    try:
        yield mount
    finally:
        for _ in range(20):  # a process of the test may still be closing its files
            if subprocess.run(["umount", str(mount)], capture_output=True).returncode == 0:
                break
            time.sleep(0.5)
        else:
            subprocess.run(["umount", "--lazy", str(mount)], check=True)


@pytest.fixture
def disk_settings(
    settings_env: Settings, small_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """The library on the tmpfs, with 1 MB kept free."""
    monkeypatch.setenv("YTMP3_DATA_DIR", str(small_disk / "data"))
    monkeypatch.setenv("YTMP3_MIN_FREE_MB", "1")
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture(scope="module")
def long_clip(media_dir: Path) -> str:
    """A 2-minute m4a (about 2 MB; as an MP3 at 320 kbit/s, 4.8 MB)."""
    generate_media(media_dir, "long-120s", "m4a", 120)
    return "long-120s.m4a"


@pytest.fixture(scope="module")
def clip_20s(media_dir: Path) -> str:
    """A 20 s m4a: 0.8 MB as an MP3 at 320 kbit/s."""
    generate_media(media_dir, "clip-20s", "m4a", 20)
    return "clip-20s.m4a"


def run(url: str, quality: str = "320") -> State:
    return convert(url=url, quality=quality, return_state=True)


def fill(disk: Path, leave: int) -> Path:
    """A file outside the library that leaves ``leave`` bytes free on ``disk``."""
    filler = disk / "filler"
    stat = os.statvfs(disk)
    size = stat.f_bavail * stat.f_frsize - leave
    with open(filler, "ab") as handle:
        os.posix_fallocate(handle.fileno(), os.fstat(handle.fileno()).st_size, size)
    return filler


def assert_consistent(data: Path) -> set[str]:
    """Only whole MP3+sidecar pairs under library names, and nothing in .tmp/; their keys."""
    names = {path.name for path in data.iterdir() if not path.name.startswith(".")}
    mp3s = {name.removesuffix(".mp3") for name in names if name.endswith(".mp3")}
    sidecars = {name.removesuffix(".json") for name in names if name.endswith(".json")}
    assert names == {f"{key}.mp3" for key in mp3s} | {f"{key}.json" for key in sidecars}
    assert mp3s == sidecars, names
    for key in mp3s:
        assert json.loads((data / f"{key}.json").read_text())["bytes"] == (
            (data / f"{key}.mp3").stat().st_size
        )
    scratch = data / ".tmp"
    assert not scratch.exists() or list(scratch.iterdir()) == []
    return mp3s


def assert_disk_full_message(state: State, settings: Settings) -> None:
    assert state.is_failed()
    message = state.message or ""
    assert message.startswith("the server's disk is full; free space on the server"), message
    assert "ffmpeg" not in message and "/" not in message, message
    assert str(settings.data_dir) not in message


def made_room(state: State, wait: float) -> list[str]:
    """The run's "made room" log lines (logs reach the server in batches: wait for one)."""
    deadline = time.monotonic() + wait
    while True:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(
                log_filter=LogFilter(
                    flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id])
                )
            )
        lines = [log.message for log in logs if log.message.startswith("made room")]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.5)


def test_a_conversion_that_would_not_fit_is_refused_before_any_media_request(
    media_server: MediaServer, disk_settings: Settings
):
    # A page that says what its audio weighs (schema.org AudioObject): 50 MB, on 15 MB.
    media = media_server.alias("/disk/big.m4a", "clip.m4a")
    ld = {
        "@context": "https://schema.org",
        "@type": "AudioObject",
        "name": "Too big for this disk",
        "contentUrl": media,
        "encodingFormat": "audio/mp4",
        "contentSize": 50_000_000,
        "duration": "PT6S",
    }
    page = media_server.add_page(
        "/disk/big.html",
        f'<html><head><script type="application/ld+json">{json.dumps(ld)}</script></head></html>',
    )
    state = run(page, "192")
    assert state.is_failed()
    assert state.message is not None
    assert state.message.startswith(
        "the server's disk is too full for this conversion (it needs about 50.1 MB and "
    ), state.message
    assert "beyond the reserve of 1 MB); free space on the server" in state.message
    assert str(disk_settings.data_dir) not in state.message
    assert media_server.request_count("/disk/big.m4a") == 0  # not one media request
    assert media_server.bytes_served == 0
    assert media_server.request_count("/disk/big.html") == 1
    assert assert_consistent(disk_settings.data_dir) == set()


def test_the_size_cap_evicts_the_oldest_entries_first(
    media_server: MediaServer, disk_settings: Settings, clip_20s: str, monkeypatch
):
    monkeypatch.setenv("YTMP3_MAX_LIBRARY_MB", "2")  # room for two MP3s of 0.8 MB
    get_settings.cache_clear()
    urls = [media_server.alias(f"/cap/{n}.m4a", clip_20s) for n in (1, 2, 3)]
    keys, states = [], []
    for url in urls:
        state = run(url)
        assert state.is_completed(), state.message
        keys.append(state.result().items[0].key)
        states.append(state)
    data = disk_settings.data_dir
    # The third publish made room: the first (oldest) entry went, the other two stayed.
    assert assert_consistent(data) == {keys[1], keys[2]}
    assert made_room(states[2], wait=30) == [
        f"made room in the library: removed {keys[0]} (library over its size cap of 2 MB "
        "with a new file of 0.8 MB)"
    ]
    assert made_room(states[1], wait=0) == []

    # The cleanup flow applies the same cap: lowered to 1 MB, the older of the two goes.
    monkeypatch.setenv("YTMP3_MAX_LIBRARY_MB", "1")
    get_settings.cache_clear()
    report = cleanup()
    assert [(key, why) for key, why, _ in report.removed] == [
        (keys[1], "library over its size cap of 1 MB")
    ]
    assert assert_consistent(data) == {keys[2]}


def test_a_full_disk_mid_write_fails_the_item_clearly_and_leaves_the_library_whole(
    media_server: MediaServer, disk_settings: Settings, small_disk: Path, long_clip: str
):
    data = disk_settings.data_dir
    first = run(media_server.alias("/full/first.m4a", "clip.m4a"))
    assert first.is_completed(), first.message
    kept = assert_consistent(data)
    size = os.stat(media_server.root / long_clip).st_size
    # The listing of a bare file says nothing of its size: only the reserve is checked,
    # and the disk fills while yt-dlp downloads (0.1 MB beyond the reserve) ...
    filler = fill(small_disk, leave=1_100_000)
    state = run(media_server.alias("/full/a.m4a", long_clip))
    assert_disk_full_message(state, disk_settings)
    assert media_server.bytes_served_for("/full/a.m4a") > 0
    assert assert_consistent(data) == kept
    # ... or while ffmpeg writes the MP3 (the source fits, the 4.8 MB MP3 does not).
    filler.unlink()
    filler = fill(small_disk, leave=1_000_000 + size + 2_000_000)
    source = media_server.alias("/full/b.m4a", long_clip)
    state = run(source)
    assert_disk_full_message(state, disk_settings)
    assert media_server.bytes_served_for("/full/b.m4a") >= size  # downloaded in full
    assert assert_consistent(data) == kept

    filler.unlink()  # space is back: the same conversion works
    state = run(source)
    assert state.is_completed(), state.message
    assert len(assert_consistent(data)) == len(kept) + 1


def test_publish_on_a_full_disk_leaves_no_library_name(disk_settings: Settings, small_disk: Path):
    library = Library.from_settings(disk_settings)
    key = make_key("generic", "full-publish", "192")
    with library.workspace(key) as workdir:
        mp3 = workdir / "audio.mp3"
        mp3.write_bytes(b"\xff\xfb" * 50_000)
        sidecar = library.new_sidecar(
            key, mp3, title="T", source_url="http://x/", extractor="generic",
            media_id="full-publish", quality="192",
        )  # fmt: skip
        filler = fill(small_disk, leave=0)  # not a page left for the sidecar
        with pytest.raises(OSError) as full:
            library.publish(key, mp3, sidecar)
        assert full.value.errno == errno.ENOSPC
        assert mp3.exists()  # still in scratch: the sidecar is written before any rename
    assert assert_consistent(disk_settings.data_dir) == set()
    filler.unlink()
    with library.workspace(key) as workdir:  # room again: the same publish works
        mp3 = workdir / "audio.mp3"
        mp3.write_bytes(b"\xff\xfb" * 50_000)
        library.publish(key, mp3, sidecar)
    assert assert_consistent(disk_settings.data_dir) == {key}
