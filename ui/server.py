"""The page's server: Streamlit's own (``st.App``) plus three routes of ytmp3's.

    streamlit run ui/server.py [--server.address ADDR --server.port PORT ...]

``make run`` and compose start the page this way; the page itself is ui/app.py.

* ``POST /ytmp3/sign-in`` checks a name and password (ui/auth.py), sets the signed,
  HttpOnly session cookie and sends the browser back to the page. A wrong password comes
  back as ``?sign_in=failed``; after too many, ``?sign_in=wait-<seconds>``. A post from
  another site is refused.
* ``POST /ytmp3/sign-out`` deletes the cookie.
* ``GET /ytmp3/zip/<token>`` streams a playlist's ZIP from a temporary file, which is
  deleted once sent. The token is signed by the page and expires, so only someone the
  page served can fetch it.

It refuses to start where the page would be open to other machines with no sign-in.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import urllib.parse

import streamlit as st
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from flows.library import Library
from flows.settings import SettingsError, get_settings
from ui import auth
from ui import library_view as view

MAX_FORM_BYTES = 4096

logger = logging.getLogger("ytmp3.ui")
throttle = auth.Throttle()


def base_path() -> str:
    """The page's own path (``server.baseUrlPath``), ending in ``/``."""
    base = st.get_option("server.baseUrlPath").strip("/")
    return f"/{base}/" if base else "/"


async def sign_in(request: Request) -> Response:
    if not _same_origin(request):
        return _back("refused")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return PlainTextResponse("Too large.", status_code=413)
    form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), max_num_fields=8)
    name = (form.get("username") or [""])[0].strip()
    password = (form.get("password") or [""])[0]
    key = f"{name.casefold()}|{request.client.host if request.client else ''}"
    if wait := throttle.wait_seconds(key):
        return _back(f"wait-{math.ceil(wait)}")
    settings = get_settings()
    user = await run_in_threadpool(auth.check_password, name, password, settings)
    if user is None:
        throttle.failed(key)
        logger.warning("sign-in refused for %r from %s", name[:64], key.partition("|")[2])
        return _back("failed")
    throttle.succeeded(key)
    response = RedirectResponse(base_path(), status_code=303)
    response.set_cookie(
        auth.SESSION_COOKIE,
        auth.issue_session(user, settings),
        max_age=int(settings.session_hours * 3600),
        path=base_path(),
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


async def sign_out(request: Request) -> Response:
    if not _same_origin(request):
        return _back("refused")
    response = RedirectResponse(base_path(), status_code=303)
    response.delete_cookie(auth.SESSION_COOKIE, path=base_path(), httponly=True, samesite="strict")
    return response


async def playlist_zip(request: Request) -> Response:
    settings = get_settings()
    payload = auth.unsign(request.path_params["token"], settings)
    title = payload.get("zip") if payload else None
    if not isinstance(title, str):
        return PlainTextResponse("This link has expired: open the page again.", status_code=410)
    library = Library.from_settings(settings)
    try:
        path, name = await run_in_threadpool(
            view.playlist_zip_file, library, title, settings.max_zip_mb * 1_000_000
        )
    except (view.FileGone, view.TooBig) as exc:
        return PlainTextResponse(str(exc), status_code=410)
    except OSError as exc:
        logger.warning("ZIP of %r failed: %s", title[:80], exc)
        return PlainTextResponse(
            f"The ZIP could not be made ({exc.strerror or exc}).", status_code=503
        )
    return FileResponse(
        path,
        media_type="application/zip",
        filename=name,
        background=BackgroundTask(os.unlink, path),
    )


def _same_origin(request: Request) -> bool:
    """Whether a form post came from this site (Fetch metadata, else the Origin header)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    return origin is None or urllib.parse.urlsplit(origin).netloc == request.headers.get("host")


def _back(outcome: str) -> Response:
    return RedirectResponse(f"{base_path()}?sign_in={outcome}", status_code=303)


def _refuse_an_open_page() -> None:
    try:
        settings = get_settings()
    except SettingsError as exc:
        sys.exit(f"ytmp3's page: {exc}")
    oidc = bool(auth.oidc_providers(auth.provider_section()))
    problem = auth.startup_problem(settings, st.get_option("server.address"), oidc)
    if problem:
        sys.exit(f"ytmp3's page will not start: {problem}.")


_refuse_an_open_page()
auth.mark_routes_mounted()
app = st.App(
    "app.py",
    routes=[
        Route(auth.route(auth.SIGN_IN_PATH), sign_in, methods=["POST"]),
        Route(auth.route(auth.SIGN_OUT_PATH), sign_out, methods=["POST"]),
        Route(auth.route(auth.ZIP_PATH) + "/{token}", playlist_zip, methods=["GET"]),
    ],
)
