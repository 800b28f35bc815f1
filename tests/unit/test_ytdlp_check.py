"""How far behind the newest release is the installed yt-dlp (plain functions)."""

from __future__ import annotations

from datetime import date

from flows.ytdlp_check import Release, compare


def test_behind_by_the_days_between_releases():
    dates = {"2026.10.26": date(2026, 10, 26), "2026.11.30": date(2026, 11, 30)}
    report = compare("2026.10.26", Release("2026.11.30", date(2026, 11, 30)), dates, 7)
    assert (report.behind_days, report.too_old) == (35, True)
    report = compare("2026.10.26", Release("2026.10.30", date(2026, 10, 30)), {}, 7)
    assert (report.behind_days, report.too_old) == (4, False)


def test_current_and_newer_are_never_behind():
    assert compare("2026.10.26", Release("2026.10.26", None), {}, 0).behind_days == 0
    newer_dev = compare("2026.12.01.1", Release("2026.10.26", date(2026, 10, 26)), {}, 0)
    assert (newer_dev.behind_days, newer_dev.too_old) == (0, False)
