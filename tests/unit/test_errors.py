"""Permanent versus transient, and the words a person reads for each."""

from __future__ import annotations

import re
import subprocess

import pytest
from yt_dlp.utils import DownloadError

from flows.errors import (
    DAMAGED,
    PermanentError,
    PolicyError,
    TransientError,
    classify,
    final_message,
    program_failed,
)

_CLASS_NAME = re.compile(r"\b[A-Z]\w*(?:Error|Exception)\b")
YT = "https://www.youtube.com/watch?v=dQw4w9WgXcQ"


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("ERROR: [generic] Unable to download webpage: HTTP Error 404: Not Found",
         "www.youtube.com has no such page (HTTP 404)"),
        ("ERROR: Unable to download webpage: HTTP Error 410: Gone",
         "www.youtube.com has no such page (HTTP 410)"),
        ("ERROR: Unable to download webpage: HTTP Error 403: Forbidden",
         "www.youtube.com refused the request (HTTP 403)"),
        ("ERROR: Unsupported URL: http://127.0.0.1/page.html",
         "no video or audio was found at that address"),
        ("ERROR: [youtube] abc: Private video. Sign in if you've been granted access",
         "the video is private"),
        ("ERROR: [youtube] abc: Video unavailable. This video has been removed by the uploader",
         "the video was removed by the uploader"),
        ("ERROR: [youtube] abc: Sign in to confirm your age.", "the video is age-restricted"),
    ],
)  # fmt: skip
def test_permanent_errors(message: str, reason: str):
    error = classify(DownloadError(message), YT)
    assert isinstance(error, PermanentError)
    assert str(error) == reason


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("ERROR: Unable to download webpage: HTTP Error 503: Service Unavailable",
         "www.youtube.com had a server error (HTTP 503)"),
        ("ERROR: Unable to download webpage: HTTP Error 429: Too Many Requests",
         "www.youtube.com is limiting requests (HTTP 429)"),
        ("ERROR: Unable to download webpage: <urlopen error [Errno 111] Connection refused>",
         "could not reach www.youtube.com (connection refused)"),
        ("ERROR: Unable to download webpage: Remote end closed connection without response",
         "the connection to www.youtube.com broke off"),
        ("ERROR: unable to download video data: The read operation timed out",
         "www.youtube.com did not answer in time"),
        ("ERROR: fragment 3 not found, unable to continue",
         "the download from www.youtube.com failed"),
        # The text's own host wins over the submitted URL's (here: what the issue saw).
        ("ERROR: [youtube] dQw4w9WgXcQ: Unable to download API page: HTTPSConnection("
         "host='www.youtube.com', port=443): Failed to resolve 'www.youtube.com' ([Errno -3] "
         "Temporary failure in name resolution)",
         "could not reach www.youtube.com (name lookup failed)"),
    ],
)  # fmt: skip
def test_transient_errors(message: str, reason: str):
    error = classify(DownloadError(message), YT)
    assert isinstance(error, TransientError)
    assert str(error) == reason


def test_the_final_message_after_retries_says_what_and_what_to_do():
    text = (
        "ERROR: [youtube] dQw4w9WgXcQ: Unable to download API page: HTTPSConnection("
        "host='www.youtube.com', port=443): Failed to resolve 'www.youtube.com'"
    )
    message = final_message(classify(DownloadError(text)), attempts=4)
    assert message == (
        "could not reach www.youtube.com (name lookup failed) after 4 attempts; "
        "check this machine's network or DNS"
    )


def test_a_permanent_error_never_counts_attempts():
    error = classify(DownloadError("ERROR: HTTP Error 404: Not Found"), "http://127.0.0.1/x")
    assert final_message(error, attempts=4) == "127.0.0.1 has no such page (HTTP 404)"


@pytest.mark.parametrize(
    "exc",
    [
        TimeoutError("timed out"),
        TimeoutError(),
        ConnectionResetError(104, "Connection reset by peer"),
        subprocess.TimeoutExpired(["/usr/bin/ffmpeg", "-i", "x"], 5),
        DownloadError("ERROR: Unable to download webpage: HTTP Error 502: Bad Gateway"),
    ],
)
def test_final_messages_have_no_retry_talk_and_no_class_names(exc):
    message = final_message(classify(exc, "http://127.0.0.1/clip.mp4"), attempts=4)
    assert "retry" not in message
    assert not _CLASS_NAME.search(message), message
    assert message.count("(") <= 1, message  # one cause, not the same reason twice


def test_own_errors_and_os_errors_keep_their_kind():
    refusal = PolicyError("no")
    assert classify(refusal) is refusal
    wrapped = DownloadError("ERROR: something", exc_info=(PolicyError, refusal, None))
    assert classify(wrapped) is refusal
    assert isinstance(classify(TimeoutError("timed out")), TransientError)
    assert isinstance(classify(ConnectionResetError()), TransientError)
    timeout = classify(subprocess.TimeoutExpired(["/usr/bin/ffmpeg"], 5))
    assert isinstance(timeout, TransientError) and str(timeout) == "ffmpeg took longer than 5 s"
    assert isinstance(classify(ValueError("weird")), PermanentError)


# -- the media itself: damaged, empty --------------------------------------------------

SCRATCH = "/srv/ytmp3/data/.tmp/generic.trunc30-ab12cd34ef56.192.0123456789ab/source.mp4"


@pytest.mark.parametrize(
    "output",
    [
        f"[mov,mp4,m4a,3gp,3g2,mj2 @ 0x5581] moov atom not found\n{SCRATCH}: "
        "Invalid data found when processing input",
        "[aac @ 0x55f5] decode_band_types: Input buffer exhausted before END element found\n"
        "Error while decoding stream #0:0: Invalid data found when processing input",
        f"{SCRATCH}: Input/output error",
        "[matroska,webm @ 0x55d5] File ended prematurely",
    ],
)
def test_ffmpeg_on_a_damaged_file_says_so_without_its_path(output: str):
    error = program_failed("ffprobe", output)
    assert isinstance(error, TransientError)  # a network can cut a file too: tried again
    assert str(error) == DAMAGED == "the file is damaged: ffmpeg could not read its audio"


def test_an_unknown_ffmpeg_failure_names_no_file():
    error = program_failed("ffmpeg", f"{SCRATCH}: something nobody has seen before")
    assert isinstance(error, PermanentError)
    assert "/" not in str(error) and "source.mp4" not in str(error)


def test_an_empty_file_is_said_plainly_and_tried_again():
    error = classify(DownloadError("ERROR: Did not get any data blocks"), "http://127.0.0.1/x")
    assert isinstance(error, TransientError)
    assert final_message(error, attempts=4) == (
        "the server sent an empty file after 4 attempts; try again later"
    )
