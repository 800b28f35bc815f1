"""The page's operator section: the scheduled playlists (subscriptions).

``ui/app.py`` renders :func:`section` only when :func:`may_operate` says so: for an
operator (``ui/auth.py``), and on the open loopback page only for a browser on this machine
talking to the page directly.

What it does, all through Prefect (:mod:`flows.subscriptions`):

* lists each subscription with its last run, what it delivered and when, its last error;
* adds one: the URL policy judges it, then yt-dlp lists it flat (no media is fetched) for
  a preview of its title and item count, then it is stored;
* changes a subscription's quality, removes one;
* "Run now": one run of ``playlist-batch/scheduled-playlists`` for just that playlist,
  with an idempotency key as the Convert button uses, so a double-click makes one run.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import TypeVar

import streamlit as st
from prefect import get_client
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import run_deployment

from flows import media, subscriptions
from flows.errors import classify
from flows.settings import QUALITIES, Settings
from flows.subscriptions import Stored, Subscription, SubscriptionError
from ui import auth, runs
from ui import library_view as view

BATCH_DEPLOYMENT = "playlist-batch/scheduled-playlists"
REFRESH_SECONDS = 3.0
FORWARDING_HEADERS = ("X-Forwarded-For", "X-Forwarded-Host", "Forwarded", "X-Real-Ip")

T = TypeVar("T")


# -- the gate ----------------------------------------------------------------------------


def may_operate(user: auth.User | None) -> bool:
    """Whether this session may manage the scheduled playlists: operators only.

    On the open page (loopback, no sign-in configured, everyone the ``local`` operator),
    only a browser connected from this machine (a loopback peer), by a loopback host name
    (no DNS rebinding), and not through a proxy.
    """
    if user is None or not auth.is_operator(user):
        return False
    if user.via != "open":
        return True
    headers = st.context.headers
    if not headers or any(name in headers for name in FORWARDING_HEADERS):
        return False
    host = (headers.get("Host") or "").rsplit(":", 1)[0].strip("[]").lower()
    return st.context.ip_address is None and auth.is_loopback(host)


# -- the section -------------------------------------------------------------------------


def section(settings: Settings) -> None:
    """Scheduled playlists: the list (refreshing itself), then the form to add one."""
    st.subheader("Scheduled playlists")
    st.caption(
        "Operators only. The scheduled batch (its schedule is in prefect.yaml) converts "
        "the new items of these playlists into the library above."
    )
    subscriptions_panel(settings)


@st.fragment(run_every=REFRESH_SECONDS)
def subscriptions_panel(settings: Settings) -> None:
    """Every subscription with its status and controls, then the form to add one; refreshed
    in place (one fragment: a second one, on no timer, kept elements its rerun had left
    when the page's timed fragments interrupted it)."""
    notice = st.session_state.pop("operator_notice", None)
    if notice:  # may name a playlist's title: from the site, shown as text
        st.toast(view.escape_markdown(notice), icon=":material/info:")
    try:
        stored, statuses = _prefect(_read_all)
    except runs.PrefectUnavailable as exc:
        st.warning(f"**{exc.problem}**  \n{exc.fix}", icon=":material/cloud_off:")
        return
    for problem in stored.problems:
        where = f"Entry {problem.position}" if problem.position else "The stored list"
        st.warning(
            f"{where} ({view.escape_markdown(problem.label)}) is skipped: "
            f"{view.escape_markdown(problem.reason)}. Fix or delete it in Prefect's UI "
            f"(Variables, `{subscriptions.VARIABLE}`).",
            icon=":material/warning:",
        )
    if not stored.subscriptions:
        st.caption("No scheduled playlists yet: add one below.")
    for position, subscription in enumerate(stored.subscriptions):
        subscription_row(position, subscription, statuses.get(subscription.url))
    add_panel(settings)
    _refresh_page_on_delivery(statuses)


def _refresh_page_on_delivery(statuses: dict[str, subscriptions.Status]) -> None:
    """A run delivered new files: rerun the whole page, so the library lists them."""
    seen = {url: status.last_delivered_at for url, status in statuses.items()}
    before = st.session_state.get("sub_delivered")
    st.session_state["sub_delivered"] = seen
    if before is not None and any(at and at != before.get(url) for url, at in seen.items()):
        st.rerun(scope="app")


def subscription_row(
    position: int, subscription: Subscription, status: subscriptions.Status | None
) -> None:
    """One subscription: name, facts, last error, quality, Run now, Remove."""
    url = subscription.url
    ident = hashlib.sha256(url.encode()).hexdigest()[:16]
    with st.container(border=True, key=f"subscription-{position}"):
        st.markdown(f"**{view.escape_markdown(subscription.note or url)}**")
        st.caption(" · ".join(_facts(subscription, status)))
        quality_col, run_col, remove_col, _ = st.columns(
            [2.2, 1.6, 1.9, 3.7], vertical_alignment="center"
        )
        current = subscription.quality or "default"
        choices = [*QUALITIES, "default"]
        quality_col.selectbox(
            "Quality",
            choices,
            index=choices.index(current),
            format_func=lambda q: "default" if q == "default" else view.quality_label(q),
            key=f"sub-quality:{ident}:{current}",
            on_change=_change_quality,
            args=(url, f"sub-quality:{ident}:{current}"),
            label_visibility="collapsed",
        )
        run_col.button(
            "Run now",
            key=f"sub-run:{ident}",
            icon=":material/play_arrow:",
            on_click=_run_now,
            args=(subscription,),
            width="stretch",
        )
        with remove_col.popover("Remove", icon=":material/delete:", width="stretch"):
            st.caption("Stop converting this playlist? Files already made stay until they expire.")
            st.button("Yes, remove", key=f"sub-remove:{ident}", on_click=_remove, args=(url,))
        if status and status.last_error:
            when = view.ago(status.last_error_at) if status.last_error_at else "earlier"
            latest = status.last_error_at is not None and status.last_error_at == status.last_run_at
            text = f"Last error ({when}): {view.escape_markdown(status.last_error)}"
            if latest:
                st.error(text, icon=":material/error:")
            else:
                st.caption(f":material/history: {text}")


def _facts(subscription: Subscription, status: subscriptions.Status | None) -> list[str]:
    facts = []
    if link := _safe_link(subscription.url):
        facts.append(f"[link]({link})")
    if status is None or status.last_run_at is None:
        facts.append("not run yet")
        return facts
    ran = f"last ran {view.ago(status.last_run_at)}"
    if status.last_run_id and (run_link := runs.run_link(status.last_run_id)):  # type: ignore[arg-type]
        ran = f"[{ran}]({run_link})"
    facts.append(ran)
    if status.last_delivered_at is None:
        facts.append("nothing delivered yet")
    else:
        facts.append(
            f"delivered {status.delivered_total} "
            f"(last {status.last_delivered} {view.ago(status.last_delivered_at)})"
        )
    return facts


def add_panel(settings: Settings) -> None:
    """Add a playlist: policy check, preview (title, item count), then subscribe.

    The buttons act in callbacks, which run before the next render: the page's fragments
    refresh on timers, and an action done in the render itself could be cut short by one
    of their reruns.
    """
    form = st.session_state.setdefault("sub_form", 0)  # a new number: an empty form
    with st.form("subscribe", border=True):
        st.markdown("**Add a playlist**")
        url_col, quality_col = st.columns([6, 2.2], vertical_alignment="bottom")
        url_col.text_input(
            "Playlist or channel URL",
            key=f"sub_url:{form}",
            placeholder="https://www.youtube.com/playlist?list=…",
        )
        quality_col.selectbox(
            "Quality",
            QUALITIES,
            index=QUALITIES.index(settings.default_quality),
            format_func=view.quality_label,
            key=f"sub_quality:{form}",
        )
        st.text_input(
            "Note (optional; default: the playlist's title)",
            key=f"sub_note:{form}",
            max_chars=subscriptions.NOTE_MAX,
        )
        st.form_submit_button(
            "Preview", icon=":material/visibility:", on_click=_preview_clicked,
            args=(settings, form),
        )  # fmt: skip
    if error := st.session_state.get("sub_error"):
        st.error(error, icon=":material/block:")
    if preview := st.session_state.get("sub_preview"):
        preview_card(preview)


def _preview_clicked(settings: Settings, form: int) -> None:
    state = st.session_state
    state.pop("sub_preview", None)
    state["sub_error"] = None
    url, quality, note = (state.get(f"sub_{name}:{form}") for name in ("url", "quality", "note"))
    try:
        state["sub_preview"] = _preview(url or "", str(quality), note or "", settings)
    except SubscriptionError as exc:
        text = view.escape_markdown(str(exc)[:300])
        state["sub_error"] = text[:1].upper() + text[1:]


def _preview(raw_url: str, quality: str, note: str, settings: Settings) -> dict[str, object]:
    """The preview of a new subscription, or SubscriptionError saying why there is none."""
    if not raw_url.strip():
        raise SubscriptionError("paste the address of a playlist first")
    subscription = subscriptions.new_subscription(raw_url, quality, note, settings)
    try:  # a flat listing: no media is downloaded
        listing = media.list_items(subscription.url, settings, limit=settings.max_playlist_items)
    except Exception as exc:
        error = classify(exc, subscription.url)
        raise SubscriptionError(f"could not list that playlist: {error}") from None
    if not listing.is_playlist:
        raise SubscriptionError(
            "that link is a single video: scheduled playlists are for playlists and channels "
            "(convert a video above)"
        )
    return {
        "subscription": subscription.stored(),
        "title": listing.title or subscription.url,
        "count": listing.total,
    }


def preview_card(preview: dict[str, object]) -> None:
    subscription = Subscription.model_validate(preview["subscription"])
    count = f"{preview['count']} items" if preview["count"] != 1 else "1 item"
    with st.container(border=True, key="subscription-preview"):
        st.markdown(f":material/playlist_add: **{view.escape_markdown(str(preview['title']))}**")
        st.caption(
            f"{count} · {view.quality_label(subscription.quality or '192')} · "
            f"{view.escape_markdown(subscription.url)}"
        )
        add_col, cancel_col, _ = st.columns([2, 1.4, 5])
        add_col.button(
            "Subscribe", type="primary", icon=":material/add:", width="stretch",
            on_click=_subscribe, args=(preview,),
        )  # fmt: skip
        cancel_col.button("Cancel", width="stretch", on_click=st.session_state.pop,
                          args=("sub_preview", None))  # fmt: skip


# -- actions (button callbacks) ----------------------------------------------------------


def _subscribe(preview: dict[str, object]) -> bool:
    subscription = Subscription.model_validate(preview["subscription"])
    if not subscription.note:
        title = str(preview["title"])[: subscriptions.NOTE_MAX]
        subscription = subscription.model_copy(update={"note": title})
    if not _act(lambda client: subscriptions.add(client, subscription)):
        return False
    st.session_state.pop("sub_preview", None)
    st.session_state["sub_form"] = st.session_state.get("sub_form", 0) + 1  # an empty form
    _notice(f"Subscribed to “{subscription.note}”.")
    return True


def _remove(url: str) -> None:
    if _act(lambda client: subscriptions.remove(client, url)):
        _notice("Removed. Its files stay in the library until they expire.")


def _change_quality(url: str, key: str) -> None:
    value = st.session_state.get(key)
    quality = None if value == "default" else value
    if _act(lambda client: subscriptions.change_quality(client, url, quality)):
        _notice(f"Quality changed to {'the default' if quality is None else quality}.")


def _run_now(subscription: Subscription) -> None:
    """One batch run for this playlist; a repeat within the window finds the same run."""
    url, quality = subscription.url, subscription.quality or "default"
    memo: dict[str, dict[str, object]] = st.session_state.setdefault("run_now", {})
    ident = f"{url}\n{quality}"
    now = time.time()
    previous = memo.get(ident)
    repeat = previous is not None and now - float(previous["at"]) < runs.SUBMIT_WINDOW_SECONDS  # type: ignore[arg-type]
    key = str(previous["key"]) if repeat and previous else run_now_key(url, quality, now)
    try:
        run = _prefect(lambda: _submit(subscription, key))
        if run.state is not None and run.state.type in (
            StateType.FAILED,
            StateType.CRASHED,
            StateType.CANCELLED,
        ):
            key = runs.retry_key(key, run.id)  # it ended badly: trying again is a new run
            run = _prefect(lambda: _submit(subscription, key))
            repeat = False
    except runs.PrefectUnavailable as exc:
        _notice(f"Could not start it: {exc.problem} {exc.fix}")
        return
    memo[ident] = {"key": key, "at": float(previous["at"]) if repeat and previous else now}  # type: ignore[arg-type]
    link = runs.run_link(run.id)
    follow = f" [Follow it in Prefect]({link})." if link else ""
    if repeat:
        _notice(f"Already started a moment ago.{follow}")
    else:
        _notice(
            f"Started a run for “{subscription.note or url}”.{follow} If a batch is already "
            "running, this one is cancelled (batches never overlap): try again after it."
        )


def run_now_key(url: str, quality: str, now: float) -> str:
    """Like the Convert button's key: the same playlist and quality within one window."""
    digest = hashlib.sha256(f"{url}\n{quality}".encode()).hexdigest()[:32]
    return f"ytmp3-run-now:{digest}:{runs.time_bucket(now)}"


def _submit(subscription: Subscription, key: str) -> FlowRun:
    parameters: dict[str, object] = {"urls": [subscription.url], "only_new": True}
    if subscription.quality:
        parameters["quality"] = subscription.quality
    return run_deployment(
        BATCH_DEPLOYMENT,
        parameters=parameters,
        timeout=0,
        idempotency_key=key,
        as_subflow=False,
        tags=["ytmp3-ui", "run-now"],
    )


def _act(change: Callable[[object], object]) -> bool:
    """Run an edit of the stored list; say why in the notice if it could not be made."""

    def call() -> object:
        with get_client(sync_client=True) as client:
            return change(client)

    try:
        _prefect(call)
    except SubscriptionError as exc:
        _notice(f"Not changed: {exc}.")
        return False
    except runs.PrefectUnavailable as exc:
        _notice(f"Not changed: {exc.problem} {exc.fix}")
        return False
    return True


def _notice(text: str) -> None:
    st.session_state["operator_notice"] = text


# -- Prefect -----------------------------------------------------------------------------


def _read_all() -> tuple[Stored, dict[str, subscriptions.Status]]:
    with get_client(sync_client=True) as client:
        stored = subscriptions.read(client)
        urls = [subscription.url for subscription in stored.subscriptions]
        return stored, subscriptions.read_statuses(client, urls)


def _prefect(call: Callable[[], T]) -> T:
    """``call`` through the page's Prefect guard (plain-words errors); a
    :class:`SubscriptionError` passes through as itself."""

    def keep_own_errors() -> tuple[T | None, SubscriptionError | None]:
        try:
            return call(), None
        except SubscriptionError as exc:
            return None, exc

    value, error = runs._guarded(keep_own_errors)
    if error is not None:
        raise error
    return value  # type: ignore[return-value]


# -- formatting --------------------------------------------------------------------------


def _safe_link(url: str) -> str | None:
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return urllib.parse.quote(url, safe=":/?&=%#@+,;~!")
