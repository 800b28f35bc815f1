"""YTMP3_COOKIES_FILE: each YoutubeDL reads a private copy; the original never changes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from flows import cookies, media
from flows.errors import PermanentError
from flows.settings import Settings

HEADER = "# Netscape HTTP Cookie File\n"
GOOD = "127.0.0.1\tFALSE\t/\tFALSE\t0\tSID\tunit-secret-value\n"


def settings_with(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "cookies.txt"
    path.write_text(text)
    return Settings(data_dir=tmp_path / "data", state_dir=tmp_path / "state", cookies_file=path)


def test_no_cookies_no_copy(tmp_path):
    with cookies.private_copy(Settings(data_dir=tmp_path)) as copy:
        assert copy is None


def test_the_copy_is_private_and_gone_afterwards(tmp_path):
    settings = settings_with(tmp_path, HEADER + GOOD)
    with cookies.private_copy(settings) as copy:
        assert copy is not None and Path(copy) != settings.cookies_file
        assert Path(copy).read_text() == HEADER + GOOD
        assert Path(copy).stat().st_mode & 0o077 == 0
    assert not Path(copy).exists()


def test_yt_dlp_rewrites_its_copy_not_the_original(tmp_path):
    settings = settings_with(tmp_path, GOOD)  # no header: the copy gets one
    before = hashlib.sha256(settings.cookies_file.read_bytes()).hexdigest()
    with media._ydl(settings, {}) as ydl:
        copy = Path(ydl.params["cookiefile"])
        assert [c.value for c in ydl.cookiejar] == ["unit-secret-value"]
    assert not copy.exists()
    assert hashlib.sha256(settings.cookies_file.read_bytes()).hexdigest() == before


def test_lines_yt_dlp_would_print_are_left_out_and_counted(tmp_path, caplog):
    bad = "127.0.0.1\tFALSE\t/\tFALSE\tnever\tSID\tprinted-secret\nnot a cookie line\n"
    settings = settings_with(tmp_path, HEADER + GOOD + bad)
    with caplog.at_level("WARNING"), cookies.private_copy(settings) as copy:
        assert Path(copy).read_text() == HEADER + GOOD
    assert "2 line(s) of YTMP3_COOKIES_FILE are not Netscape cookie lines" in caplog.text
    assert "secret" not in caplog.text


def test_kept_lines():
    text = HEADER + "#HttpOnly_.youtube.com\tTRUE\t/\tTRUE\t1800000000\tX\ty\n\n# comment\n"
    assert cookies.readable_lines(text) == (text.splitlines(keepends=True), 0)


def test_an_unreadable_file_is_a_permanent_error(tmp_path):
    settings = settings_with(tmp_path, GOOD)
    settings.cookies_file.unlink()
    with (
        pytest.raises(PermanentError, match="cookies file cannot be read"),
        cookies.private_copy(settings),
    ):
        pass


def test_describe_never_shows_content(tmp_path):
    settings = settings_with(tmp_path, GOOD)
    text = cookies.describe(settings)
    assert str(settings.cookies_file) in text and "secret" not in text
    assert cookies.describe(Settings(data_dir=tmp_path)) == "none"
