"""Who is using the page: sign-in, sessions that survive a reload, and roles.

Three ways in, decided by configuration:

* **An identity provider** (OIDC) when ``.streamlit/secrets.toml`` has an ``[auth]``
  section: Streamlit's own ``st.login``; Streamlit keeps the identity in its own signed,
  HttpOnly cookie. ``YTMP3_OIDC_USERS`` narrows who may come in.
* **Passwords** when ``YTMP3_USERS`` lists ``NAME:HASH`` entries (``python -m
  ui.passwords``); ``*:HASH`` is a shared password under which people give any name.
  The sign-in form posts to ``/ytmp3/sign-in`` (ui/server.py), which checks the password
  and sets :data:`SESSION_COOKIE`: a token signed with HMAC-SHA256, expiring after
  ``YTMP3_SESSION_HOURS``, HttpOnly and SameSite=Strict. A reload starts a new Streamlit
  session; the browser sends the cookie with it and :func:`current_user` reads it back.
* **Open**, only while nothing is configured and the page is bound to a loopback
  address (``make run``'s default): everyone is the operator ``local``.

A :class:`User` has a name (its runs carry the Prefect tag ``user:<name>``) and a role:
operators (``YTMP3_OPERATORS``) see and stop every run; others only their own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any, Literal

import streamlit as st

from flows.markdown import escape
from flows.settings import USER_NAME_RE, Settings
from ui.passwords import hash_password, verify_password

SESSION_COOKIE = "ytmp3_session"
SIGN_IN_PATH = "/ytmp3/sign-in"
SIGN_OUT_PATH = "/ytmp3/sign-out"
ZIP_PATH = "/ytmp3/zip"
SHARED = "*"

FAILURES_ALLOWED = 5
FAILURE_WINDOW_SECONDS = 600.0
"""After this many wrong passwords for one name from one address, wait out the window."""

_PROCESS_SECRET = secrets.token_bytes(32)
"""Signs sessions when ``YTMP3_SESSION_SECRET`` is unset: they end when the page restarts."""
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16), log2_n=15)
"""Checked for unknown names, so a wrong name costs as long as a wrong password."""


@dataclass(frozen=True)
class User:
    """Someone signed in to the page."""

    name: str
    operator: bool = False
    via: Literal["open", "password", "oidc"] = "password"

    @property
    def tag(self) -> str:
        """The Prefect tag every run this user submits carries."""
        return user_tag(self.name)


LOCAL_USER = User("local", operator=True, via="open")


def user_tag(name: str) -> str:
    return f"user:{name}"


def is_operator(user: User | None) -> bool:
    """Whether ``user`` may see and stop every run (and use the operator section)."""
    return user is not None and user.operator


# -- configuration -----------------------------------------------------------------------


def oidc_providers(auth_section: Any) -> list[str]:
    """The providers of secrets.toml's ``[auth]`` section: ``default`` for a flat one,
    else the names of its ``[auth.NAME]`` sections; empty without one."""
    if not auth_section:
        return []
    if "client_id" in auth_section:
        return ["default"]
    return [name for name, value in auth_section.items() if hasattr(value, "get")]


def is_loopback(address: str | None) -> bool:
    """Whether a bind address only admits this machine (``localhost``, 127.0.0.0/8, ::1)."""
    host = (address or "").strip().strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def startup_problem(settings: Settings, address: str | None, oidc: bool) -> str | None:
    """Why the page must not start on ``address`` as configured, with the fix; else None.

    An empty address means every interface (Streamlit's default), so it needs sign-in too.
    """
    if settings.users or oidc or is_loopback(address):
        return None
    return (
        f"the page would be open to everyone who can reach {address or 'every address'}: "
        "set up sign-in first, either users in YTMP3_USERS (one entry per person from "
        "`python -m ui.passwords NAME`, or `python -m ui.passwords '*'` for a shared "
        'password) or an identity provider in .streamlit/secrets.toml (README, "Sign-in"), '
        "or bind the page to 127.0.0.1"
    )


# -- passwords -------------------------------------------------------------------------


def _entries(settings: Settings) -> dict[str, str]:
    return dict(entry.split(":", 1) for entry in settings.users)


def _entry_for(name: str, settings: Settings) -> str | None:
    entries = _entries(settings)
    return entries.get(name) or entries.get(SHARED)


def check_password(name: str, password: str, settings: Settings) -> User | None:
    """The user ``name`` if ``password`` is theirs (or the shared one), else None."""
    if not USER_NAME_RE.match(name) or name == SHARED:
        verify_password(password, _DUMMY_HASH)
        return None
    encoded = _entry_for(name, settings)
    if not verify_password(password, encoded or _DUMMY_HASH) or encoded is None:
        return None
    return _user(name, settings, "password")


def _user(name: str, settings: Settings, via: Literal["password", "oidc"]) -> User:
    operators = {operator.casefold() for operator in settings.operators}
    return User(name, operator=name.casefold() in operators, via=via)


class Throttle:
    """Failed sign-ins per key (a name and an address) in a sliding window, in memory."""

    def __init__(
        self, allowed: int = FAILURES_ALLOWED, window: float = FAILURE_WINDOW_SECONDS
    ) -> None:
        self.allowed, self.window = allowed, window
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def wait_seconds(self, key: str, now: float | None = None) -> float:
        """0 if ``key`` may try now, else how long until it may."""
        now = time.monotonic() if now is None else now
        with self._lock:
            failures = self._failures.get(key)
            while failures and failures[0] <= now - self.window:
                failures.popleft()
            if not failures or len(failures) < self.allowed:
                return 0.0
            return failures[0] + self.window - now

    def failed(self, key: str, now: float | None = None) -> None:
        with self._lock:
            self._failures[key].append(time.monotonic() if now is None else now)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)


# -- session tokens ----------------------------------------------------------------------


def _secret(settings: Settings) -> bytes:
    return settings.session_secret.encode() if settings.session_secret else _PROCESS_SECRET


def sign(payload: dict[str, Any], settings: Settings) -> str:
    """``payload`` as a compact token, HMAC-SHA256-signed with the session secret."""
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    mac = hmac.new(_secret(settings), body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def unsign(token: str, settings: Settings, now: float | None = None) -> dict[str, Any] | None:
    """The payload of a token :func:`sign` made, if its signature holds and its ``exp``
    (seconds since the epoch) has not passed; else None."""
    if not isinstance(token, str) or len(token) > 8192:
        return None
    body, _, mac = token.partition(".")
    if not body:
        return None
    expected = hmac.new(_secret(settings), body.encode(), hashlib.sha256).digest()
    try:
        if not hmac.compare_digest(_unb64(mac), expected):
            return None
        payload = json.loads(_unb64(body))
    except ValueError:
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("exp"), int | float):
        return None
    return payload if payload["exp"] > (time.time() if now is None else now) else None


def issue_session(user: User, settings: Settings, now: float | None = None) -> str:
    """A session token for a password user, valid for ``YTMP3_SESSION_HOURS``.

    It carries a fingerprint of the user's password entry, so a changed or removed
    password ends every session made with the old one.
    """
    expires = (time.time() if now is None else now) + settings.session_hours * 3600
    entry = _entry_for(user.name, settings) or ""
    return sign({"u": user.name, "exp": int(expires), "k": _fingerprint(entry)}, settings)


def read_session(token: str | None, settings: Settings, now: float | None = None) -> User | None:
    """The user a session token stands for, or None (forged, expired, password changed)."""
    payload = unsign(token, settings, now) if isinstance(token, str) else None
    if payload is None or not settings.users:
        return None
    name = payload.get("u")
    if not isinstance(name, str) or not USER_NAME_RE.match(name) or name == SHARED:
        return None
    entry = _entry_for(name, settings)
    if entry is None or not hmac.compare_digest(str(payload.get("k")), _fingerprint(entry)):
        return None
    return _user(name, settings, "password")


def oidc_user(identity: dict[str, Any], settings: Settings) -> User | None:
    """The user an identity provider signed in (by e-mail, else subject), if allowed."""
    name = str(identity.get("email") or identity.get("sub") or "").strip().lower()
    if not USER_NAME_RE.match(name) or name == SHARED:
        return None
    allowed = [entry.strip().lower() for entry in settings.oidc_users]
    if allowed and not any(
        name == entry or (entry.startswith("@") and name.endswith(entry)) for entry in allowed
    ):
        return None
    return _user(name, settings, "oidc")


def _fingerprint(entry: str) -> str:
    return hashlib.sha256(entry.encode()).hexdigest()[:16]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- in the page -------------------------------------------------------------------------

_ROUTES_MOUNTED = threading.Event()
"""Set by ui/server.py: the sign-in routes exist (the page was started through it)."""


def mark_routes_mounted() -> None:
    _ROUTES_MOUNTED.set()


def require_user(settings: Settings) -> User:
    """The user of this session; without one, the sign-in page (and nothing else) is
    rendered and the script stops here."""
    problem = startup_problem(settings, st.get_option("server.address"), bool(provider_section()))
    if problem:
        st.error(f"ytmp3 will not serve this page: {problem}.", icon=":material/lock:")
        st.stop()
    user = current_user(settings)
    if user is None:
        _sign_in_page(settings)
        st.stop()
    st.session_state["ytmp3_user"] = user
    return user


def page_user() -> User | None:
    """The user :func:`require_user` found for this session (for other parts of the page)."""
    user = st.session_state.get("ytmp3_user")
    return user if isinstance(user, User) else None


def current_user(settings: Settings) -> User | None:
    """Who this session belongs to: an identity provider's user, a password session's,
    the open ``local`` operator when no sign-in is configured, or None."""
    providers = oidc_providers(provider_section())
    if providers and st.user.get("is_logged_in"):
        return oidc_user(st.user.to_dict(), settings)
    if settings.users:
        return read_session(st.context.cookies.get(SESSION_COOKIE), settings)
    return None if providers else LOCAL_USER


def account_box(user: User) -> None:
    """The sidebar's line about who is signed in, and the way out."""
    role = " · operator" if user.operator else ""
    if user.via == "open":
        st.sidebar.caption(
            ":material/lock_open: No sign-in: this page is only reachable from this machine."
        )
        return
    st.sidebar.caption(f":material/person: Signed in as **{escape(user.name)}**{role}")
    if user.via == "oidc":
        if st.sidebar.button("Sign out", icon=":material/logout:"):
            st.logout()
    else:
        with st.sidebar:
            st.html(_form(SIGN_OUT_PATH, '<button type="submit">Sign out</button>'))


def _sign_in_page(settings: Settings) -> None:
    st.title(":material/headphones: ytmp3")
    st.subheader("Sign in")
    outcome = st.query_params.get("sign_in")
    if outcome == "failed":
        st.error("Wrong name or password.", icon=":material/key_off:")
    elif outcome and outcome.startswith("wait-"):
        minutes = max(1, -(-int(outcome.removeprefix("wait-") or 0) // 60))
        st.error(f"Too many wrong passwords: try again in {minutes} min.", icon=":material/timer:")
    elif outcome == "refused":
        st.error("That sign-in came from another site and was refused.", icon=":material/block:")
    providers = oidc_providers(provider_section())
    for provider in providers:
        label = "Sign in" if provider == "default" else f"Sign in with {provider.title()}"
        if st.button(label, key=f"login:{provider}", type="primary", icon=":material/login:"):
            st.login(None if provider == "default" else provider)
    if st.user.get("is_logged_in") and providers:
        st.warning(
            "Your account may not use this page: ask its operator to add it.",
            icon=":material/person_off:",
        )
        if st.button("Sign out", icon=":material/logout:"):
            st.logout()
    if settings.users:
        if not _ROUTES_MOUNTED.is_set():
            st.error(
                "Password sign-in needs the page's own routes: start it with "
                "`streamlit run ui/server.py` (as `make run` and compose do).",
                icon=":material/error:",
            )
            return
        shared = SHARED in _entries(settings)
        st.html(_form(SIGN_IN_PATH, _SIGN_IN_FIELDS.format(hint=_SHARED_HINT if shared else "")))


def route(path: str) -> str:
    """Where one of ytmp3's own routes (ui/server.py) is, under ``server.baseUrlPath``."""
    base = st.get_option("server.baseUrlPath").strip("/")
    return f"/{base}{path}" if base else path


def zip_link(title: str, settings: Settings, lifetime: float = 900.0) -> str:
    """The page's link to the ZIP of the library's playlist ``title``, valid for
    ``lifetime`` seconds (ui/server.py streams it)."""
    token = sign({"zip": title, "exp": int(time.time() + lifetime)}, settings)
    return f"{route(ZIP_PATH)}/{token}"


def provider_section() -> Any:
    """secrets.toml's ``[auth]`` section (Streamlit's st.login configuration), or None."""
    try:
        return st.secrets.get("auth")
    except Exception:  # no secrets.toml, or one that does not parse: no provider
        return None


def _form(path: str, inner: str) -> str:
    action = route(path)
    return f'<form method="post" action="{action}" class="ytmp3-form">{inner}</form>{_STYLE}'


_SHARED_HINT = "<p>Give your name: your conversions are kept under it.</p>"
_SIGN_IN_FIELDS = """{hint}
<label>Name<input name="username" autocomplete="username" required maxlength="64"></label>
<label>Password<input name="password" type="password" autocomplete="current-password"
 required maxlength="1024"></label>
<button type="submit">Sign in</button>"""
_STYLE = """<style>
.ytmp3-form { display: flex; flex-direction: column; gap: .75rem; max-width: 22rem; }
.ytmp3-form label { display: flex; flex-direction: column; gap: .25rem; font-size: .9rem; }
.ytmp3-form input { padding: .5rem; border: 1px solid #ccc; border-radius: .5rem; font: inherit; }
.ytmp3-form button { padding: .5rem 1rem; border-radius: .5rem; border: 1px solid #ff4b4b;
  background: #ff4b4b; color: white; font: inherit; cursor: pointer; align-self: flex-start; }
</style>"""
