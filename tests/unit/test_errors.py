"""Permanent versus transient, and the words a person reads for each."""

from __future__ import annotations

import re
import subprocess

import pytest
from yt_dlp.utils import DownloadError

from flows.errors import (
    PermanentError,
    PolicyError,
    TransientError,
    classify,
    final_message,
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
