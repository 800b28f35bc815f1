"""Live streams, upcoming live events and premieres are refused before any download."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flows import media
from flows.errors import LimitError, final_message
from flows.settings import Settings


@pytest.mark.parametrize(
    ("info", "words"),
    [
        ({"live_status": "is_upcoming",
          "release_timestamp": datetime(2026, 12, 5, 18, 0, tzinfo=UTC).timestamp()},
         "the live event begins 2026-12-05 18:00 UTC; convert it once it has aired"),
        ({"live_status": "is_upcoming"},
         "the live event begins later; convert it once it has aired"),
        ({"live_status": "is_live"},
         "the video is a live stream; convert it once the stream has ended"),
        ({"is_live": True}, "the video is a live stream; convert it once the stream has ended"),
    ],
)  # fmt: skip
def test_refused_with_the_start_time_when_known(info, words, tmp_path):
    with pytest.raises(LimitError) as refused:
        media.check_limits(info, Settings(data_dir=tmp_path))
    assert final_message(refused.value) == words


@pytest.mark.parametrize("status", ["was_live", "post_live", "not_live", None])
def test_finished_streams_pass(status, tmp_path):
    media.check_limits({"live_status": status, "duration": 60}, Settings(data_dir=tmp_path))
