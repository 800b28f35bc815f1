"""Permanent versus transient: what is retried and what fails at once."""

from __future__ import annotations

import subprocess

import pytest
from yt_dlp.utils import DownloadError

from flows.errors import PermanentError, PolicyError, TransientError, classify


@pytest.mark.parametrize(
    "message",
    [
        "ERROR: [generic] Unable to download webpage: HTTP Error 404: Not Found",
        "ERROR: Unable to download webpage: HTTP Error 410: Gone",
        "ERROR: Unsupported URL: http://127.0.0.1/page.html",
        "ERROR: [youtube] abc: Private video. Sign in if you've been granted access",
        "ERROR: [youtube] abc: Video unavailable. This video has been removed by the uploader",
        "ERROR: [youtube] abc: Sign in to confirm your age.",
    ],
)
def test_permanent_errors(message: str):
    error = classify(DownloadError(message))
    assert isinstance(error, PermanentError)
    assert "ERROR" not in str(error)


@pytest.mark.parametrize(
    "message",
    [
        "ERROR: Unable to download webpage: HTTP Error 503: Service Unavailable",
        "ERROR: Unable to download webpage: HTTP Error 429: Too Many Requests",
        "ERROR: Unable to download webpage: <urlopen error [Errno 111] Connection refused>",
        "ERROR: Unable to download webpage: Remote end closed connection without response",
        "ERROR: unable to download video data: The read operation timed out",
        "ERROR: fragment 3 not found, unable to continue",
    ],
)
def test_transient_errors(message: str):
    assert isinstance(classify(DownloadError(message)), TransientError)


def test_own_errors_and_os_errors_keep_their_kind():
    refusal = PolicyError("no")
    assert classify(refusal) is refusal
    wrapped = DownloadError("ERROR: something", exc_info=(PolicyError, refusal, None))
    assert classify(wrapped) is refusal
    assert isinstance(classify(TimeoutError("timed out")), TransientError)
    assert isinstance(classify(ConnectionResetError()), TransientError)
    assert isinstance(classify(subprocess.TimeoutExpired(["ffmpeg"], 5)), TransientError)
    assert isinstance(classify(ValueError("weird")), PermanentError)
