"""The page's helpers that need neither Streamlit nor Prefect: names, numbers, filters,
ZIP and m3u of a playlist, idempotency keys, state messages; and the write guard."""

from __future__ import annotations

import io
import os
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest

from flows import media
from tests.support.sample_library import sample_sidecar, write_entry
from tests.support.write_guard import record_writes
from ui import library_view as view
from ui import runs


@pytest.mark.parametrize(
    ("title", "artist", "expected"),
    [
        ("Song", "Band", "Band - Song.mp3"),
        ("Band - Song", "Band", "Band - Song.mp3"),  # the artist is not repeated
        ("Song", None, "Song.mp3"),
        ("../../etc/passwd", "x", "x - .. .. etc passwd.mp3"),
        ('a<b>c:d"e|f?g*h\\i', None, "a b c d e f g h i.mp3"),
        ("evil\u202egpj.exe", None, "evil gpj.exe.mp3"),  # a bidi override cannot hide .exe
        ("line\nbreak\ttab", None, "line break tab.mp3"),
        ("CON", None, "_CON.mp3"),
        ("...", None, "youtube.vid00000001.192.mp3"),  # nothing left: the key
        ("Ünïcödé 日本語", "Ärtist", "Ärtist - Ünïcödé 日本語.mp3"),
    ],
)
def test_human_names_are_sanitised(title, artist, expected):
    assert view.human_name(sample_sidecar(1, title=title, artist=artist or "")) == expected


def test_long_names_are_cut_at_a_character_boundary():
    name = view.human_name(sample_sidecar(1, title="日本" * 200, artist=""))
    assert len(name.encode()) <= view.MAX_NAME_BYTES + len(".mp3")
    assert name.endswith(".mp3") and "\ufffd" not in name


def test_unique_names_in_one_zip(tmp_path):
    entries = [write_entry(tmp_path, sample_sidecar(i, title="Same", artist="A")) for i in range(3)]
    assert view.unique_names(entries) == ["A - Same.mp3", "A - Same (2).mp3", "A - Same (3).mp3"]


def test_markdown_in_titles_is_shown_literally():
    escaped = view.escape_markdown("[click](http://x) :red[hot] $x$ **b**")
    assert "[" not in escaped.replace("\\[", "")
    assert escaped.startswith("\\[click\\]\\(http\\:")


@pytest.mark.parametrize(
    ("seconds", "text"), [(None, "?:??"), (5, "0:05"), (187.4, "3:07"), (3723, "1:02:03")]
)
def test_durations(seconds, text):
    assert media.format_duration(seconds) == text
    assert media.format_duration(seconds, hours=True).endswith(text)


@pytest.mark.parametrize(
    ("size", "text"), [(999, "999 B"), (4_600, "5 kB"), (4_600_000, "4.6 MB"), (2e9, "2.0 GB")]
)
def test_sizes(size, text):
    assert view.format_size(int(size)) == text


@pytest.mark.parametrize(
    ("left", "text"),
    [
        (timedelta(hours=7, minutes=59, seconds=1), "expires in 8:00"),
        (timedelta(hours=7, minutes=58, seconds=59), "expires in 7:59"),
        (timedelta(seconds=10), "expires in 0:01"),
        (timedelta(seconds=-1), "expired"),
    ],
)
def test_expiry(left, text):
    assert view.format_expires(left) == text


def test_filter_matches_every_word_in_title_artist_album_or_link(tmp_path):
    entries = [
        write_entry(tmp_path, sample_sidecar(1, title="Blue Monday", artist="New Order")),
        write_entry(tmp_path, sample_sidecar(2, title="Monday Blues", artist="Other")),
        write_entry(tmp_path, sample_sidecar(3, title="x", artist="y", album="Blue Album")),
    ]
    assert view.filter_entries(entries, "") == entries
    assert view.filter_entries(entries, "blue") == entries
    assert view.filter_entries(entries, "BLUE order") == entries[:1]
    assert view.filter_entries(entries, "vid00000002") == entries[1:2]


def _playlist(tmp_path: Path, gone: int = 0) -> view.Playlist:
    entries = []
    for i, track in enumerate([2, 1, 3]):
        sidecar = sample_sidecar(i, album="My Mix", track=track, title=f"T{track}", artist="A")
        entries.append(write_entry(tmp_path, sidecar, f"ID3 mp3 {track}".encode()))
    write_entry(tmp_path, sample_sidecar(9, title="single"), b"ID3")
    for entry in entries[:gone]:
        entry.mp3.unlink()
    (playlist,) = view.playlists(entries)
    return playlist


def _zip(playlist: view.Playlist, max_bytes: int = 10**9) -> zipfile.ZipFile:
    buffer = io.BytesIO()
    view.write_zip(playlist, buffer, max_bytes)
    return zipfile.ZipFile(io.BytesIO(buffer.getvalue()))


def test_a_playlist_as_zip_with_its_m3u(tmp_path):
    playlist = _playlist(tmp_path)
    assert [e.sidecar.track for e in playlist.entries] == [1, 2, 3]
    assert playlist.zip_name == "My Mix.zip"

    with _zip(playlist) as archive:
        assert archive.namelist() == ["A - T1.mp3", "A - T2.mp3", "A - T3.mp3", "My Mix.m3u"]
        assert archive.read("A - T2.mp3") == b"ID3 mp3 2"
        assert archive.testzip() is None
        m3u = archive.read("My Mix.m3u").decode()
    assert m3u == view.playlist_m3u(playlist)
    assert m3u.splitlines()[:3] == ["#EXTM3U", "#EXTINF:121,A - T1", "A - T1.mp3"]


def test_a_zip_leaves_out_files_that_vanished(tmp_path):
    playlist = _playlist(tmp_path, gone=1)  # track 2 was deleted by cleanup
    with _zip(playlist) as archive:
        assert archive.namelist() == ["A - T1.mp3", "A - T3.mp3", "My Mix.m3u"]
        assert "T2" not in archive.read("My Mix.m3u").decode()
    with pytest.raises(view.FileGone, match="My Mix"):
        _zip(_playlist(tmp_path / "all-gone", gone=3))


def test_a_zip_leaves_out_links_and_files_of_another_size(tmp_path):
    outside = tmp_path / "outside.mp3"
    outside.write_bytes(b"ID3 mp3 9")  # the same size as track 1's file
    playlist = _playlist(tmp_path / "data")
    first, second = playlist.entries[0], playlist.entries[1]
    first.mp3.unlink()
    first.mp3.symlink_to(outside)
    second.mp3.write_bytes(b"ID3 mp3 2 and more")  # not the file its sidecar describes
    with _zip(playlist) as archive:
        assert archive.namelist() == ["A - T3.mp3", "My Mix.m3u"]


def test_a_zip_over_the_cap_is_refused_before_anything_is_written(tmp_path):
    playlist = _playlist(tmp_path)
    buffer = io.BytesIO()
    with pytest.raises(view.TooBig, match="one by one"):
        view.write_zip(playlist, buffer, playlist.total_bytes - 1)
    assert buffer.getvalue() == b""


def test_a_playlist_zip_is_written_to_a_temporary_file_outside_the_library(tmp_path):
    data, scratch = tmp_path / "data", tmp_path / "scratch"
    scratch.mkdir()
    _playlist(data)
    library = view.Library(data)
    path, name = view.playlist_zip_file(library, "My Mix", 10**9, tmp_dir=scratch)
    assert name == "My Mix.zip" and path.parent == scratch
    with zipfile.ZipFile(path) as archive:
        assert len(archive.namelist()) == 4
    with pytest.raises(view.FileGone):
        view.playlist_zip_file(library, "No Such Mix", 10**9, tmp_dir=scratch)
    with pytest.raises(view.TooBig):
        view.playlist_zip_file(library, "My Mix", 10, tmp_dir=scratch)
    assert list(scratch.iterdir()) == [path]  # refused ones leave nothing behind


def test_a_link_planted_under_a_library_name_is_not_served(tmp_path):
    outside = tmp_path / "outside.mp3"
    outside.write_bytes(b"ID3 not from the library")
    entry = write_entry(tmp_path / "data", sample_sidecar(1), b"ID3 real")
    entry.mp3.unlink()
    entry.mp3.symlink_to(outside)
    assert not view.is_present(entry)
    with pytest.raises(view.FileGone):
        view.read_mp3(entry)


def test_a_file_of_another_size_than_its_sidecar_says_is_not_served(tmp_path):
    entry = write_entry(tmp_path / "data", sample_sidecar(1), b"ID3 real")
    entry.mp3.write_bytes(b"ID3 real, and something appended")
    assert not view.is_present(entry)
    with pytest.raises(view.FileGone):
        view.read_mp3(entry)


def test_idempotency_keys():
    key = runs.idempotency_key("https://y/1", "192", 7)
    assert key == runs.idempotency_key("https://y/1", "192", 7)
    assert key != runs.idempotency_key("https://y/1", "320", 7)
    assert key != runs.idempotency_key("https://y/2", "192", 7)
    assert key != runs.idempotency_key("https://y/1", "192", 8)
    alice = runs.idempotency_key("https://y/1", "192", 7, "alice")
    assert alice != key != runs.idempotency_key("https://y/1", "192", 7, "bob") != alice
    assert runs.time_bucket(1199.9) == runs.time_bucket(600.0) != runs.time_bucket(1200.0)
    assert runs.retry_key(key, "abc") == f"{key}:after:abc"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("message", "clean"),
    [
        (
            "Flow run encountered an exception: PermanentError: the server refused it (HTTP 404)",
            "the server refused it (HTTP 404)",
        ),
        (
            "Task run encountered an exception TransientError: network trouble",
            "network trouble",
        ),
        ("2 of 3 converted; failed: #2 x (gone)", "2 of 3 converted; failed: #2 x (gone)"),
        ("", None),
        (None, None),
    ],
)
def test_state_messages_in_plain_words(message, clean):
    assert runs.clean_message(message) == clean


def test_the_write_guard_sees_every_kind_of_write(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "old").write_text("x")
    with record_writes(root) as writes:
        (root / "a").write_text("x")
        os.mkdir(root / "d")
        os.replace(root / "a", root / "b")
        (root / "b").unlink()
        os.close(os.open(root / "c", os.O_WRONLY | os.O_CREAT))
        (root / "old").read_text()  # reading is fine
        (tmp_path / "elsewhere").write_text("x")  # outside: not ours to watch
    events = [w.split()[0] for w in writes]
    assert events == ["open", "os.mkdir", "os.rename", "os.rename", "os.remove", "open"], writes
