"""YouTube's refusals, as yt-dlp words them, each to the right kind and one useful line.

The messages below are built the way yt-dlp builds them: YouTube's playability reason
(the part in quotes in yt-dlp's issue reports), plus what yt-dlp adds to it. The parts
that are yt-dlp's own words are checked against the installed yt-dlp's source, so a
release that rewords one fails here instead of silently falling through to a vaguer rule.
"""

from __future__ import annotations

import inspect
import re

import pytest
from yt_dlp.extractor.youtube import _base, _video
from yt_dlp.utils import DownloadError, ExtractorError

from flows.errors import PermanentError, RateLimited, TransientError, classify, final_message

YT = "https://www.youtube.com/watch?v=dQw4w9WgXcQ"
ID = "dQw4w9WgXcQ"
# What yt-dlp appends to every "sign in" reason (_base.YoutubeBaseInfoExtractor).
LOGIN_HINT = (
    "Use --cookies-from-browser or --cookies for the authentication. See  "
    "https://github.com/yt-dlp/yt-dlp/wiki/FAQ#how-do-i-pass-cookies-to-yt-dlp  for how to "
    "manually pass cookies. Also see  https://github.com/yt-dlp/yt-dlp/wiki/Extractors#"
    "exporting-youtube-cookies  for tips on effectively exporting YouTube cookies"
)
RATE_LIMITED = (
    "The current session has been rate-limited by YouTube for up to an hour. It is "
    "recommended to use `-t sleep` to add a delay between video requests to avoid exceeding "
    "the rate limit."
)


def yt(reason: str) -> DownloadError:
    """The DownloadError yt-dlp raises for an ExtractorError of the YouTube extractor."""
    return DownloadError(f"ERROR: [youtube] {ID}: {reason}")


# (message, class, what a person reads)
TABLE = [
    (f"Sign in to confirm you\u2019re not a bot. {LOGIN_HINT}", PermanentError,
     "YouTube asks this server to sign in (bot check); configure YTMP3_COOKIES_FILE (see "
     "README, or a PO-token provider with YTMP3_YTDLP_EXTRACTOR_ARGS)"),
    (f"Sign in to confirm you're not a bot. {LOGIN_HINT}", PermanentError,
     "YouTube asks this server to sign in (bot check); configure YTMP3_COOKIES_FILE (see "
     "README, or a PO-token provider with YTMP3_YTDLP_EXTRACTOR_ARGS)"),
    ("Video unavailable. YouTube is requiring a captcha challenge before playback",
     PermanentError,
     "YouTube asks this server to sign in (bot check); configure YTMP3_COOKIES_FILE (see "
     "README, or a PO-token provider with YTMP3_YTDLP_EXTRACTOR_ARGS)"),
    (f"Sign in to confirm your age. This video may be inappropriate for some users. "
     f"{LOGIN_HINT}", PermanentError,
     "the video is age-restricted; configure YTMP3_COOKIES_FILE (see README, from an adult "
     "account)"),
    ("This video is age-restricted and YouTube is requiring account age-verification; some "
     "formats may be missing", PermanentError,
     "the video is age-restricted; configure YTMP3_COOKIES_FILE (see README, from an adult "
     "account)"),
    (f"Private video. Sign in if you've been granted access to this video. {LOGIN_HINT}",
     PermanentError, "the video is private"),
    ("Join this channel to get access to members-only content like this video, and other "
     "exclusive perks.", PermanentError,
     "the video is for channel members only; configure YTMP3_COOKIES_FILE (see README, from a "
     "member's account)"),
    ("This video is available to this channel's members on level: Fan (or any higher level). "
     "Join this channel to get access to members-only content and other exclusive perks.",
     PermanentError,
     "the video is for channel members only; configure YTMP3_COOKIES_FILE (see README, from a "
     "member's account)"),
    ("Video unavailable. This video is no longer available due to a copyright claim by Some "
     "Label", PermanentError, "the video was taken down for copyright"),
    ("Video unavailable. This video contains content from Some Label, who has blocked it on "
     "copyright grounds.", PermanentError, "the video was taken down for copyright"),
    ("Video unavailable. This video has been removed by the uploader", PermanentError,
     "the video was removed by the uploader"),
    ("Video unavailable. This video is no longer available because the YouTube account "
     "associated with this video has been terminated.", PermanentError,
     "the video is unavailable or was removed"),
    ("The uploader has not made this video available in your country\nThis video is available "
     "in Germany.\nYou might want to use a VPN or a proxy server (with --proxy) to workaround.",
     PermanentError,
     "the video is blocked in this server's country; set YTMP3_PROXY to a proxy in a country "
     "where it is available"),
    ("This video is not available from your location due to geo restriction", PermanentError,
     "the video is blocked in this server's country; set YTMP3_PROXY to a proxy in a country "
     "where it is available"),
    ("This live event will begin in 3 hours.", PermanentError,
     "the live event begins in 3 hours; convert it once it has aired"),
    ("This live event will begin in a few moments.", PermanentError,
     "the live event begins in a few moments; convert it once it has aired"),
    ("Premieres in 2 days", PermanentError,
     "the premiere begins in 2 days; convert it once it has aired"),
    (f"This content isn't available, try again later. {RATE_LIMITED}", RateLimited,
     "YouTube is limiting this server's requests after 4 attempts; ytmp3 slows every run down "
     "for a while; if it keeps happening, set YTMP3_SLEEP_REQUESTS_SECONDS"),
    ("Unable to download API page: HTTP Error 429: Too Many Requests", RateLimited,
     "www.youtube.com is limiting requests (HTTP 429) after 4 attempts; ytmp3 slows every run "
     "down for a while; if it keeps happening, set YTMP3_SLEEP_REQUESTS_SECONDS"),
    ("Requested format is not available. Use --list-formats for a list of available formats",
     PermanentError,
     "no audio stream was found; for YouTube, run python -m flows.doctor (a JavaScript runtime "
     "is needed)"),
]  # fmt: skip


@pytest.mark.parametrize(("message", "kind", "words"), TABLE, ids=lambda v: str(v)[:40])
def test_each_youtube_refusal_gets_its_class_and_one_line(message, kind, words):
    error = classify(yt(message), YT)
    assert type(error) is kind
    assert final_message(error, attempts=4) == words
    assert "retry" not in words.lower()
    assert not re.search(r"\b[A-Z]\w*(?:Error|Exception)\b", words)


def test_a_rate_limit_is_transient_and_the_others_are_not():
    kinds = {kind for _, kind, _ in TABLE}
    assert issubclass(RateLimited, TransientError)
    assert kinds == {PermanentError, RateLimited}


def test_the_bot_check_is_not_the_age_check():
    bot = classify(yt(f"Sign in to confirm you\u2019re not a bot. {LOGIN_HINT}"), YT)
    age = classify(yt(f"Sign in to confirm your age. {LOGIN_HINT}"), YT)
    assert str(bot) != str(age)


def test_a_geo_block_raised_as_yt_dlp_does_it():
    """GeoRestrictedError's own text, as YoutubeDL reports it."""
    from yt_dlp.utils import GeoRestrictedError

    cause = GeoRestrictedError("The uploader has not made this video available in your country")
    error = classify(
        DownloadError(f"ERROR: [youtube] {ID}: {cause.msg}", (type(cause), cause, None))
    )
    assert str(error) == "the video is blocked in this server's country"


# yt-dlp's own words in the rules above: still in the installed yt-dlp?
@pytest.mark.parametrize(
    ("module", "text"),
    [
        (_video, "has been rate-limited by YouTube for up to an hour"),
        (_video, "This content isn't available, try again later"),
        (_video, "YouTube is requiring a captcha challenge before playback"),
        (_video, "This video is age-restricted and YouTube is requiring"),
        (_video, "The uploader has not made this video available in your country"),
        (_video, "'confirm your age', 'age-restricted', 'inappropriate'"),
        (_video, "if 'sign in' in reason.lower()"),
        (_base, "Also see  {self._COOKIE_HOWTO_WIKI_URL}  "),
    ],
)
def test_the_texts_come_from_the_installed_yt_dlp(module, text):
    assert text in inspect.getsource(module), (
        f"yt-dlp no longer says {text!r}: check flows/errors.py"
    )


def test_yt_dlps_login_hint_is_the_one_above():
    from yt_dlp import YoutubeDL
    from yt_dlp.extractor.youtube import YoutubeIE

    with YoutubeDL({"quiet": True}) as ydl:
        hint = YoutubeIE(ydl)._youtube_login_hint
    assert hint == LOGIN_HINT
    assert isinstance(ExtractorError("x"), Exception)
