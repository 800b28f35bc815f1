"""The library on disk: keys, sidecars, publish, lookup and the per-key lock."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import typing
from datetime import timedelta
from pathlib import Path

import pytest

from flows.errors import TransientError
from flows.library import (
    FOREIGN,
    MAX_SIDECAR_BYTES,
    SYMLINK,
    Entry,
    Library,
    Lifetime,
    Sidecar,
    is_key,
    make_key,
    read_sidecar_file,
)


def _publish(library: Library, key: str, payload: bytes = b"ID3audio") -> None:
    with library.workspace(key) as workdir:
        mp3 = workdir / "audio.mp3"
        mp3.write_bytes(payload)
        sidecar = library.new_sidecar(
            key,
            mp3,
            title="T",
            source_url="http://x/",
            extractor="generic",
            media_id="m",
            quality="192",
        )
        library.publish(key, mp3, sidecar)


def test_keys_are_readable_for_safe_ids_and_hashed_otherwise():
    assert make_key("Youtube", "dQw4w9WgXcQ", "192") == "youtube.dQw4w9WgXcQ.192"
    hostile = make_key("generic", "../../etc/passwd", "V0")
    assert is_key(hostile) and "/" not in hostile and hostile.endswith(".V0")
    assert make_key("generic", "a b", "128") != make_key("generic", "a_b", "128")
    with pytest.raises(ValueError):
        make_key("youtube", "x", "999")  # type: ignore[arg-type]


def test_publish_makes_a_pair_and_lookup_finds_it(tmp_path: Path):
    library = Library(tmp_path, retention_hours=8)
    key = make_key("generic", "clip", "192")
    _publish(library, key)
    entry = library.lookup(key)
    assert entry is not None and entry.mp3.read_bytes() == b"ID3audio"
    sidecar = read_sidecar_file(entry.json)
    assert sidecar is not None
    assert sidecar.expires_at - sidecar.created_at == timedelta(hours=8)
    assert sidecar.bytes == len(b"ID3audio")
    assert not list((tmp_path / ".tmp").iterdir())  # the workspace is gone


def test_lookup_ignores_expired_missing_or_truncated_entries(tmp_path: Path):
    library = Library(tmp_path, retention_hours=1)
    key = make_key("generic", "clip", "192")
    _publish(library, key)
    entry = library.lookup(key)
    assert entry is not None
    assert library.lookup(key, now=entry.sidecar.expires_at + timedelta(seconds=1)) is None
    entry.mp3.write_bytes(b"short")
    assert library.lookup(key) is None
    entry.mp3.unlink()
    assert library.lookup(key) is None


def test_entries_are_newest_first_and_skip_foreign_or_broken_files(tmp_path: Path):
    library = Library(tmp_path)
    for name in ("a", "b", "c"):
        _publish(library, make_key("generic", name, "128"))
        time.sleep(0.01)
    (tmp_path / "notes.json").write_text("{}")
    (tmp_path / "generic.broken.128.json").write_text("{not json")
    assert [entry.sidecar.key.split(".")[1] for entry in library.entries()] == ["c", "b", "a"]


def test_a_failed_conversion_leaves_nothing_under_library_names(tmp_path: Path):
    library = Library(tmp_path)
    key = make_key("generic", "clip", "192")
    with pytest.raises(RuntimeError), library.workspace(key) as workdir:
        (workdir / "audio.mp3").write_bytes(b"half")
        raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tmp"]
    assert library.lookup(key) is None


def test_the_lock_serialises_two_threads(tmp_path: Path):
    library = Library(tmp_path)
    key = make_key("generic", "clip", "192")
    inside: list[int] = []
    overlap: list[bool] = []

    def worker() -> None:
        with library.lock(key, poll=0.01):
            inside.append(1)
            overlap.append(len(inside) > 1)
            time.sleep(0.05)
            inside.pop()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlap == [False] * 4


def _hold_lock_and_die(root: str, key: str, ready: multiprocessing.synchronize.Event) -> None:
    library = Library(Path(root))
    with library.lock(key):
        ready.set()
        time.sleep(60)


def test_a_killed_holder_releases_the_lock(tmp_path: Path):
    key = make_key("generic", "clip", "192")
    ready = multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_lock_and_die, args=(str(tmp_path), key, ready))
    holder.start()
    assert ready.wait(10)
    holder.kill()
    holder.join()
    with Library(tmp_path).lock(key, timeout=5):
        pass


def test_the_lock_times_out_while_held(tmp_path: Path):
    library = Library(tmp_path)
    key = make_key("generic", "clip", "192")
    with library.lock(key):
        blocked = threading.Thread(target=lambda: None)
        blocked.start()
        errors: list[Exception] = []

        def try_lock() -> None:
            try:
                with library.lock(key, timeout=0.2, poll=0.05):
                    pass
            except Exception as exc:
                errors.append(exc)

        thread = threading.Thread(target=try_lock)
        thread.start()
        thread.join()
    assert errors and "too long" in str(errors[0])


# -- what cleanup and the page use ------------------------------------------------------------


def test_the_survey_sorts_names_by_the_scheme_without_following_links(tmp_path: Path):
    library = Library(tmp_path)
    entry, orphan, linked = (make_key("generic", name, "192") for name in ("e", "o", "l"))
    _publish(library, entry)
    _publish(library, linked)
    (tmp_path / f"{orphan}.json").write_text("{}")
    (tmp_path / f"{linked}.mp3").unlink()
    (tmp_path / f"{linked}.mp3").symlink_to(tmp_path / f"{entry}.mp3")
    (tmp_path / ".tmp" / f"{entry}.0123456789ab").mkdir()
    (tmp_path / ".tmp" / "notes").write_text("x")
    (tmp_path / ".locks").mkdir()
    (tmp_path / ".locks" / f"{entry}.lock").write_text("")
    (tmp_path / ".locks" / f"{linked}.lock").write_text("")
    (tmp_path / ".archive").mkdir()
    (tmp_path / "README").write_text("x")

    with library.opened() as data:
        assert data is not None
        survey = data.survey()
    assert survey.keys == {entry, orphan} and survey.pairs == {entry}
    assert survey.workspaces == {entry: [f"{entry}.0123456789ab"]}
    assert survey.locks == {entry}  # the linked key is left alone, its lock file too
    assert sorted(survey.left_alone) == [
        (".tmp/notes", FOREIGN),
        ("README", FOREIGN),
        (f"{linked}.mp3", SYMLINK),
    ]


def test_sidecars_and_mp3s_are_read_only_as_regular_files(tmp_path: Path):
    library = Library(tmp_path)
    key, other = make_key("generic", "real", "192"), make_key("generic", "link", "192")
    _publish(library, key)
    entry = library.lookup(key)
    assert entry is not None and entry.has_mp3() and entry.read_mp3() == b"ID3audio"
    (tmp_path / f"{other}.json").symlink_to(entry.json)
    (tmp_path / f"{other}.mp3").symlink_to(entry.mp3)
    assert read_sidecar_file(tmp_path / f"{other}.json") is None
    assert [found.key for found in library.entries()] == [key]
    linked = Entry(entry.sidecar, tmp_path / f"{other}.mp3", tmp_path / f"{other}.json")
    assert not linked.has_mp3()
    with pytest.raises(FileNotFoundError):
        linked.read_mp3()
    os.mkfifo(tmp_path / "generic.fifo.192.json")  # would block a plain open()
    assert read_sidecar_file(tmp_path / "generic.fifo.192.json") is None
    (tmp_path / "big.json").write_bytes(b" " * (MAX_SIDECAR_BYTES + 1))
    assert read_sidecar_file(tmp_path / "big.json") is None


def test_the_lifetime_cleanup_reads_is_validated_as_the_sidecar_validates_it():
    hints = typing.get_type_hints(Lifetime)
    assert set(hints) == {"created_at", "expires_at", "bytes"}
    for name, annotation in hints.items():
        assert Sidecar.model_fields[name].annotation is annotation, name


def test_try_lock_does_not_wait_and_a_dry_run_makes_no_lock_file(tmp_path: Path):
    library = Library(tmp_path)
    key = make_key("generic", "clip", "192")
    with library.opened() as data:
        assert data is not None
        with data.try_lock(key, create=False) as held:
            assert held and not (tmp_path / ".locks").exists()
        with library.lock(key):
            started = time.monotonic()
            for create in (True, False):
                with data.try_lock(key, create=create) as held:
                    assert not held
            assert time.monotonic() - started < 1
        with data.try_lock(key) as held:
            assert held
            with pytest.raises(TransientError), library.lock(key, timeout=0.1, poll=0.02):
                pass
            data.remove_lock(key)  # while held: a waiting run then locks a new file
        assert not (tmp_path / ".locks" / f"{key}.lock").exists()
        with library.lock(key, timeout=1):
            pass


def test_only_scratch_dirs_of_the_scheme_can_be_removed(tmp_path: Path):
    library = Library(tmp_path)
    (tmp_path / ".tmp").mkdir()
    with library.opened() as data:
        assert data is not None
        for name in ("../x", "notes", "generic.clip.192", "generic.clip.192.0123456789ab/.."):
            with pytest.raises(ValueError):
                data.remove_workspace(name)
        assert data.remove_workspace("generic.clip.192.0123456789ab") is False
        with pytest.raises(ValueError):
            data.stored("../../etc/passwd")
    with Library(tmp_path / "missing").opened() as data:
        assert data is None
