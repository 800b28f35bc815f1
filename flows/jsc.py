"""yt-dlp's JavaScript side: which runtime it found, and whether it can solve a challenge.

YouTube's player hides the real stream URLs behind JavaScript "challenges" (the ``n``
and signature functions). yt-dlp solves them by running the ``yt-dlp-ejs`` solver in a
JavaScript runtime it finds itself (Deno first, also in the venv's ``bin/``), through its
challenge director: the ``deno`` provider, the installed solver scripts (hash-checked
against the versions yt-dlp expects), Deno started with ``--no-remote``. Without it
YouTube downloads miss formats or fail with "no audio stream".

:func:`solve_n` drives that very machinery offline: a tiny player (:data:`TEST_PLAYER`)
whose ``n`` function reverses its input, in the shape the solver looks for. yt-dlp has no
public API for either question, so the three internals used are named here and nowhere
else, and tests/unit/test_jsc.py fails loudly when a yt-dlp release changes them:
``YoutubeDL._js_runtimes``, ``YoutubeIE._code_cache`` with ``_player_js_cache_key``, and
``YoutubeIE._jsc_director``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yt_dlp
from yt_dlp.extractor.youtube.jsc.provider import (
    JsChallengeRequest,
    JsChallengeType,
    NChallengeInput,
)

TEST_PLAYER_URL = "https://www.youtube.com/s/player/0ddba11e/player_ias.vflset/en_US/base.js"
"""Where the test player pretends to come from (never requested: it is handed to yt-dlp)."""

TEST_PLAYER = """\
(function (g) {
  var P = {
    set: function (k, v) { this.q[k] = v; },
    get: function (k) { return this.q[k]; },
    T: function () { this.q.n = this.q.n.split("").reverse().join(""); },
  };
  window.ytmp3 = function () {};
  function Q(u, sp, sig) {
    window.ytmp3("alr", "yes");
    var o = Object.create(P);
    o.q = {};
    if (sig) o.q[sp] = decodeURIComponent(sig);
    return o;
  }
}).call(this, {});
"""
"""A player in the shape yt-dlp-ejs expects, whose ``n`` function reverses its input."""


@dataclass(frozen=True)
class Runtime:
    """The JavaScript runtime yt-dlp would use."""

    name: str
    version: str
    path: str
    supported: bool


def runtime(ydl: yt_dlp.YoutubeDL) -> Runtime | None:
    """The first runtime yt-dlp finds among those enabled (``js_runtimes``; Deno by default).

    Uses ``YoutubeDL._js_runtimes``: name -> runtime object, whose ``info`` is None when
    the program is not found.
    """
    runtimes: dict[str, Any] = ydl._js_runtimes
    for found in runtimes.values():
        info = getattr(found, "info", None)
        if info is not None:
            return Runtime(info.name, info.version, info.path, bool(info.supported))
    return None


def solve_n(
    ydl: yt_dlp.YoutubeDL,
    challenge: str,
    player_url: str = TEST_PLAYER_URL,
    player_js: str | None = TEST_PLAYER,
) -> str | None:
    """Solve an ``n`` challenge with yt-dlp's own challenge director, or None if it could not.

    With ``player_js`` the player is handed to yt-dlp's player cache, so nothing is
    downloaded; with None, yt-dlp downloads ``player_url`` itself (through the URL policy).
    """
    youtube = ydl.get_info_extractor("Youtube")
    youtube.initialize()
    if player_js is not None:
        youtube._code_cache[youtube._player_js_cache_key(player_url)] = player_js
    request = JsChallengeRequest(
        type=JsChallengeType.N, input=NChallengeInput(player_url=player_url, challenges=[challenge])
    )
    for _request, response in youtube._jsc_director.bulk_solve([request]):
        result = response.output.results.get(challenge)
        if result is not None:
            return str(result)
    return None
