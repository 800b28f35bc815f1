"""ytmp3's web page: paste a link, watch the conversion, download the MP3s.

Run with ``streamlit run ui/server.py`` (``make run`` and compose do): that adds the
sign-in and ZIP routes (ui/server.py) around this script.

Nothing shows before sign-in (ui/auth.py; open only on a loopback address with no sign-in
configured). Then three parts, top to bottom:

* **Convert** — a URL, a quality, a button. The URL is checked with the flows' own policy
  (:func:`flows.sources.check`) before anything is submitted; the run is created with
  ``run_deployment(..., timeout=0)`` and an idempotency key, so a double-click or a
  rerun makes one flow run, not two. The run is tagged ``user:<name>``; each user's
  share is checked first (ui/quota.py).
* **Conversions** — the user's recent runs of the ``convert`` flow (an operator's: all of
  them), straight from the Prefect API, one query per refresh shared by the user's tabs
  (there is no queue in this process to lose): state, progress from the run's progress
  artifact, the state message, per-item states of playlists, a link into the Prefect UI.
  It is a fragment that refreshes itself every few seconds without reloading the page.
* **Library** — the MP3s on disk, newest first, with a filter, pages, a player and
  download buttons. Downloads read the file only when clicked (``data=`` is a callable),
  and the page never writes into the data dir: in production it is mounted read-only.
* **Scheduled playlists** — operators only (:func:`ui.operator_section.may_operate`, the one
  gate): the subscriptions of the scheduled batch (``ui/operator_section.py``).

Nothing here reads the environment: ytmp3's settings come from :func:`get_settings`, and
Prefect's (``PREFECT_API_URL``, ``PREFECT_UI_URL``) from ``prefect.settings``.
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from functools import partial

import streamlit as st
from prefect.client.schemas.objects import StateType

from flows import doctor, markdown, media, sources
from flows.errors import PermanentError
from flows.library import Entry, Library, utcnow
from flows.progress import ItemPhase
from flows.settings import QUALITIES, Settings, SettingsError, get_settings
from ui import auth, operator_section, polling, quota, runs
from ui import library_view as view

# (Comments, not docstrings, below: Streamlit's "magic" would render bare strings.)

# How often the conversions panel asks Prefect for news.
REFRESH_SECONDS = polling.REFRESH_SECONDS

# After Prefect could not be reached, wait this long before the panel asks again.
DOWN_BACKOFF_SECONDS = 10.0

# Most recent runs listed (active ones in full, finished ones compactly).
RUNS_SHOWN = 20

# Library entries per page: a page of 20 renders fast however big the library is.
PAGE_SIZE = 20

FAILED_STATES = frozenset({StateType.FAILED, StateType.CRASHED})

_BADGE_COLORS: dict[StateType | None, str] = {
    StateType.COMPLETED: "green",
    StateType.RUNNING: "blue",
    StateType.PENDING: "blue",
    StateType.SCHEDULED: "gray",
    StateType.PAUSED: "orange",
    StateType.CANCELLING: "orange",
    StateType.CANCELLED: "gray",
    StateType.FAILED: "red",
    StateType.CRASHED: "red",
}

_ITEM_ICONS: dict[ItemPhase, str] = {
    ItemPhase.CONVERTED: ":green[:material/check_circle:]",
    ItemPhase.REUSED: ":green[:material/check_circle:]",
    ItemPhase.RUNNING: ":blue[:material/downloading:]",
    ItemPhase.RETRYING: ":orange[:material/replay:]",
    ItemPhase.FAILED: ":red[:material/error:]",
}
_ITEM_LABELS: dict[ItemPhase, str] = {
    ItemPhase.QUEUED: "Waiting",
    ItemPhase.RUNNING: "Running",
    ItemPhase.RETRYING: "Will be tried again",
    ItemPhase.CONVERTED: "Completed",
    ItemPhase.REUSED: "Completed (already in the library)",
    ItemPhase.FAILED: "Failed",
}

# Finished runs listed in full; older ones fold into an "Earlier" expander.
FINISHED_SHOWN = 5


# -- the page --------------------------------------------------------------------------


def main() -> None:
    """Render the whole page (Streamlit runs this script top to bottom on every rerun)."""
    st.set_page_config(page_title="ytmp3", page_icon=":material/headphones:", layout="centered")
    st.session_state["full_run"] = True
    try:
        settings = get_settings()
    except SettingsError as exc:
        st.error(f"ytmp3 is misconfigured: {exc}. Fix the YTMP3_* variable and reload.")
        st.stop()
        return
    user = auth.require_user(settings)  # the sign-in page, and a stop, without one
    auth.account_box(user)
    st.sidebar.caption(doctor.summary_line(settings))
    st.title(":material/headphones: ytmp3")
    st.caption(
        "Paste a video or playlist link, get tagged MP3s. "
        f"Files are kept for {_hours(settings.retention_hours)}, then deleted."
    )
    convert_form(settings, user)
    conversions_panel(user)
    library_panel(settings)
    if operator_section.may_operate(user):  # the one gate of the operator section
        operator_section.section(settings)
    st.session_state["full_run"] = False


def convert_form(settings: Settings, user: auth.User) -> None:
    """The URL input, the quality select and the Convert button, with inline feedback."""
    with st.form("convert", border=False):
        url_col, quality_col, button_col = st.columns([6, 2.2, 1.6], vertical_alignment="bottom")
        url = url_col.text_input(
            "Video or playlist URL",
            key="url",
            placeholder="https://www.youtube.com/watch?v=…",
        )
        quality = quality_col.selectbox(
            "Quality",
            QUALITIES,
            index=QUALITIES.index(settings.default_quality),
            format_func=view.quality_label,
            key="quality",
        )
        clicked = button_col.form_submit_button("Convert", type="primary", width="stretch")
    if clicked:
        submit(url or "", str(quality), settings, user)


def submit(raw_url: str, quality: str, settings: Settings, user: auth.User) -> None:
    """Check the URL and the user's share, submit one run for it (tagged with the user),
    and say what happened in plain words."""
    url = raw_url.strip()
    if not url:
        st.error("Paste the address of a video or playlist first.", icon=":material/link:")
        return
    try:
        url = sources.check(url, settings)
    except PermanentError as exc:
        st.error(
            f"That link can't be converted: {markdown.escape(str(exc))}.", icon=":material/block:"
        )
        return
    except Exception as exc:  # a policy bug must not become a traceback on the page
        runs.logger.exception("checking %r failed", url[:200])
        st.error(
            "That link could not be checked: this is a bug in ytmp3 (the page's log has the "
            f"details): {view.escape_markdown(str(exc)[:200])}",
            icon=":material/block:",
        )
        return

    memo: dict[str, dict[str, object]] = st.session_state.setdefault("submissions", {})
    ident = f"{url}\n{quality}"
    now = time.time()
    previous = memo.get(ident)
    repeat = previous is not None and now - float(previous["at"]) < runs.SUBMIT_WINDOW_SECONDS  # type: ignore[arg-type]
    key = (
        str(previous["key"])
        if repeat and previous
        else runs.idempotency_key(url, quality, runs.time_bucket(now), user.name)
    )
    try:
        submitted, used = quota.submit(user.name, url, quality, key, settings, counted=not repeat)
    except quota.Refused as refused:
        st.warning(str(refused), icon=":material/hourglass_disabled:")
        return
    except runs.PrefectUnavailable as exc:
        show_unavailable(exc, inline=True)
        return
    st.session_state.pop("prefect_down", None)  # it answered: the panel may ask again
    _forget_overview(user)
    repeat = repeat and used == key  # a retry after a run that ended badly is a new run
    key = used
    memo[ident] = {"key": key, "at": float(previous["at"]) if repeat and previous else now}  # type: ignore[arg-type]
    link = f" · [open in Prefect]({submitted.link})" if submitted.link else ""
    if repeat and submitted.state_type == StateType.COMPLETED:
        st.info(
            f"Already converted a moment ago: it is in the library below{link}.",
            icon=":material/done_all:",
        )
    elif repeat:
        st.info(
            f"Already submitted: follow it under Conversions{link}.",
            icon=":material/hourglass_top:",
        )
    else:
        st.success(
            f"Submitted. Progress shows under Conversions{link}.", icon=":material/rocket_launch:"
        )


def show_unavailable(exc: runs.PrefectUnavailable, inline: bool = False) -> None:
    """Prefect trouble as one message: what is wrong, then how to fix it."""
    text = f"**{exc.problem}**  \n{exc.fix}"
    if inline:
        st.error(text, icon=":material/cloud_off:")
    else:
        st.warning(text, icon=":material/cloud_off:")


# -- conversions -----------------------------------------------------------------------


def _view_tag(user: auth.User) -> str | None:
    """Which runs ``user`` sees: their own (by tag), or every run for an operator."""
    return None if auth.is_operator(user) else user.tag


def _forget_overview(user: auth.User) -> None:
    polling.shared_overview.clear(_view_tag(user), RUNS_SHOWN, runs.api_url())


@st.fragment(run_every=REFRESH_SECONDS)
def conversions_panel(user: auth.User) -> None:
    """The user's recent runs (an operator's: everyone's), refreshed in place; a finished
    run also refreshes the library."""
    st.subheader("Conversions")
    notice = st.session_state.pop("runs_notice", None)
    if notice:
        st.warning(markdown.escape(notice), icon=":material/warning:")
    down: tuple[float, runs.PrefectUnavailable] | None = st.session_state.get("prefect_down")
    if down is not None and time.monotonic() < down[0]:
        show_unavailable(down[1])  # back off: a dead server costs ~1.5 s per attempt
        return
    try:
        overview = polling.shared_overview(_view_tag(user), RUNS_SHOWN, runs.api_url())
    except runs.PrefectUnavailable as exc:
        st.session_state["prefect_down"] = (time.monotonic() + DOWN_BACKOFF_SECONDS, exc)
        show_unavailable(exc)
        return
    st.session_state.pop("prefect_down", None)
    if not overview.deployment_found:
        show_unavailable(runs.deployment_missing())
    if not overview.runs:
        st.caption("Nothing converted yet: paste a link above to start.")
    active = [run for run in overview.runs if run.is_active]
    finished = [run for run in overview.runs if not run.is_active]
    for run in active:
        active_run(run, user)
    for run in finished[:FINISHED_SHOWN]:
        finished_run(run, user)
    if len(finished) > FINISHED_SHOWN:
        with st.expander(f"Earlier ({len(finished) - FINISHED_SHOWN})", icon=":material/history:"):
            for run in finished[FINISHED_SHOWN:]:
                finished_run(run, user)
    _refresh_library_on_finish(overview.runs)


def active_run(run: runs.RunStatus, user: auth.User) -> None:
    """A run in progress: badge, link, progress bar, items, and a Stop button."""
    with st.container(border=True):
        title_col, stop_col = st.columns([8, 1.4], vertical_alignment="center")
        title_col.markdown(f"{_badge(run)} **{_run_title(run)}**")
        title_col.caption(_run_caption(run, user))
        stop_col.button(
            "Stop",
            key=f"stop:{run.id}",
            icon=":material/stop_circle:",
            disabled=run.state_type == StateType.CANCELLING,
            on_click=_stop,
            args=(run.id, user),
            width="stretch",
        )
        if run.state_type in (StateType.RUNNING, StateType.CANCELLING) or run.progress:
            percent = run.progress or 0.0
            st.progress(min(1.0, percent / 100), text=f"{percent:.0f} %")
        elif run.state_name == "Late":
            st.caption(
                ":material/schedule: Waiting for a worker to pick it up. If this lasts, "
                "nothing is serving the deployment: start the stack with `make run`."
            )
        else:
            st.caption(":material/schedule: Queued")
        _items(run)


def finished_run(run: runs.RunStatus, user: auth.User) -> None:
    """A finished run, compactly: badge, title, link, and what went wrong if anything."""
    with st.container(border=True):
        st.markdown(f"{_badge(run)} **{_run_title(run)}**")
        st.caption(_run_caption(run, user))
        if run.message and run.state_type in FAILED_STATES:
            st.error(view.escape_markdown(run.message), icon=":material/error:")
        elif run.message and run.state_type == StateType.COMPLETED and run.failed_items:
            # A playlist where some items failed ends Completed, its message says which.
            st.warning(view.escape_markdown(run.message), icon=":material/warning:")
        _items(run)


def _items(run: runs.RunStatus) -> None:
    """Per-item states of a playlist run (single videos have just the one)."""
    if len(run.items) < 2:
        return
    done = sum(item.done for item in run.items)
    failed = run.failed_items
    label = f"{len(run.items)} items · {done} done" + (f" · {failed} failed" if failed else "")
    with st.expander(label, icon=":material/queue_music:"):
        lines = []
        for item in run.items:
            icon = _ITEM_ICONS.get(item.phase, ":gray[:material/hourglass_empty:]")
            if item.stopped:
                icon = ":gray[:material/cancel:]"
            title = view.escape_markdown(item.title)
            lines.append(f"{icon} {item.position + 1}. {title} — {_item_state(item)}")
        st.markdown("  \n".join(lines))


def _item_state(item: runs.ItemStatus) -> str:
    if item.stopped:
        return "Not finished"
    label = _ITEM_LABELS[item.phase]
    if item.phase == ItemPhase.RUNNING and item.step:
        label += f" ({item.step})"
    if item.message and item.phase in (ItemPhase.FAILED, ItemPhase.RETRYING):
        label += f": {view.escape_markdown(item.message)}"
    return label


def _stop(run_id: object, user: auth.User) -> None:
    try:
        runs.cancel(run_id, _view_tag(user))  # type: ignore[arg-type]
    except runs.NotYours:
        st.session_state["runs_notice"] = "That run is someone else's: only they can stop it."
    except runs.PrefectUnavailable as exc:
        st.session_state["runs_notice"] = f"Could not stop the run: {exc.problem} {exc.fix}"
    _forget_overview(user)


def _refresh_library_on_finish(shown: list[runs.RunStatus]) -> None:
    """When a run finishes while only this fragment reruns, rerun the page so the
    library lists the new files (a full run renders the library after this anyway)."""
    finished = {str(run.id) for run in shown if run.is_final}
    before: set[str] | None = st.session_state.get("finished_runs")
    st.session_state["finished_runs"] = finished
    if before is not None and finished - before and not st.session_state.get("full_run"):
        st.rerun()


def _badge(run: runs.RunStatus) -> str:
    color = "orange" if run.state_name == "Late" else _BADGE_COLORS.get(run.state_type, "gray")
    label = "Waiting" if run.state_name == "Late" else run.state_name
    return f":{color}-badge[{view.escape_markdown(label)}]"


def _single_title(run: runs.RunStatus) -> str | None:
    """The media title of a one-item run (from its item table), if known yet."""
    if len(run.items) == 1 and run.items[0].title not in ("", "None"):
        return run.items[0].title
    return None


def _run_title(run: runs.RunStatus) -> str:
    return view.escape_markdown(_single_title(run) or run.url or run.name)


def _run_caption(run: runs.RunStatus, user: auth.User) -> str:
    parts = []
    if auth.is_operator(user):
        parts.append(f"by {markdown.escape(run.owner)}" if run.owner else "not from the page")
    if run.quality:
        parts.append(view.quality_label(run.quality))
    if run.created:
        parts.append(view.ago(run.created))
    if _single_title(run) and run.url and (link := markdown.safe_url(run.url)):
        parts.append(f"[link]({link})")
    if run.link:
        parts.append(f"[details in Prefect]({run.link})")
    return " · ".join(parts)


# -- library ---------------------------------------------------------------------------


@st.fragment
def library_panel(settings: Settings) -> None:
    """The library, newest first: filter, one page of entries, playlists as ZIP/m3u.

    A fragment: filtering, paging, playing and downloading rerun only this part.
    """
    st.subheader("Library")
    notice = st.session_state.pop("library_notice", None)
    if notice:
        st.warning(markdown.escape(notice), icon=":material/delete_sweep:")
    if not settings.data_dir.is_dir():
        st.caption(
            f"No files yet: the library folder ({settings.data_dir}) appears with the "
            "first conversion."
        )
        return
    now = utcnow()
    try:
        listed = Library.from_settings(settings).entries()
    except OSError as exc:
        st.error(
            f"The library folder {settings.data_dir} cannot be read ({exc.strerror or exc}). "
            "The page needs read access to it (it never writes there).",
            icon=":material/folder_off:",
        )
        return
    # Cleanup runs every few minutes; files past their lifetime are not offered meanwhile.
    entries = [entry for entry in listed if not entry.sidecar.is_expired(now)]
    if not entries:
        st.caption("No files yet: converted MP3s show up here.")
        return
    text = st.text_input(
        "Filter the library",
        key="library_filter",
        type="search",
        live=True,
        placeholder="Filter by title, artist, album or link",
        label_visibility="collapsed",
        icon=":material/search:",
    )
    shown = view.filter_entries(entries, text or "")
    if not shown:
        st.caption(f"Nothing matches “{view.escape_markdown(text or '')}”.")
        return
    pages = max(1, math.ceil(len(shown) / PAGE_SIZE))
    count = f"{len(shown)} of {len(entries)}" if text else f"{len(shown)}"
    count += " file" if len(entries) == 1 else " files"
    st.caption(f"{count} · newest first")
    rows = st.container()
    # A new filter or page count is a new pager, starting at page 1 (no stale page 7 of 3).
    page = st.pagination(pages, key=f"library_page:{pages}:{text}") if pages > 1 else 1
    playing = st.session_state.get("playing")
    with rows:
        for entry in shown[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]:
            library_entry(entry, now, playing == entry.key)
    playlists_box(entries, shown, settings)


def library_entry(entry: Entry, now: datetime, playing: bool) -> None:
    """One file: title, facts, source link, play and download (bytes read on click only)."""
    sidecar = entry.sidecar
    with st.container(border=True):
        info_col, play_col, download_col = st.columns([7, 1, 2.4], vertical_alignment="center")
        heading = f"**{view.escape_markdown(sidecar.title)}**"
        if sidecar.artist:
            heading += f"  \n{view.escape_markdown(sidecar.artist)}"
        if sidecar.album:
            heading += f" · *{view.escape_markdown(sidecar.album)}*"
        info_col.markdown(heading)
        facts = [
            media.format_duration(sidecar.duration),
            view.format_size(sidecar.bytes),
            view.quality_label(sidecar.quality),
            view.format_expires(sidecar.expires_in(now)),
        ]
        if link := markdown.safe_url(sidecar.source_url):
            facts.append(f"[source]({link})")
        info_col.caption(" · ".join(facts))
        play_col.button(
            "",
            key=f"play:{entry.key}",
            icon=":material/stop:" if playing else ":material/play_arrow:",
            help="Stop" if playing else "Play here",
            on_click=_toggle_play,
            args=(entry.key,),
        )
        download_col.download_button(
            "Download",
            data=partial(view.read_mp3, entry),
            file_name=view.human_name(sidecar),
            mime="audio/mpeg",
            key=f"download:{entry.key}",
            icon=":material/download:",
            on_click=_check_present,
            args=(entry,),
            width="stretch",
        )
        if playing:
            try:
                st.audio(view.read_mp3(entry), format="audio/mpeg", autoplay=True)
            except view.FileGone as exc:
                st.warning(markdown.escape(str(exc)), icon=":material/delete_sweep:")


def playlists_box(entries: list[Entry], shown: list[Entry], settings: Settings) -> None:
    """A playlist's files as one ZIP (with its m3u; ui/server.py streams it) or as an m3u."""
    shown_keys = {entry.key for entry in shown}
    groups = [
        group
        for group in view.playlists(entries)
        if any(entry.key in shown_keys for entry in group.entries)
    ]
    if not groups:
        return
    with st.expander(f"Playlists ({len(groups)})", icon=":material/library_music:"):
        titles = [group.title for group in groups]
        chosen = st.selectbox("Playlist", range(len(groups)), format_func=lambda i: titles[i])
        group = groups[chosen or 0]
        st.caption(f"{len(group.entries)} files · {view.format_size(group.total_bytes)}")
        zip_col, m3u_col = st.columns(2)
        cap = settings.max_zip_mb * 1_000_000
        if group.total_bytes > cap:
            zip_col.caption(str(view.TooBig("This playlist", group.total_bytes, cap)))
        else:
            zip_col.link_button(
                "Download all as ZIP",
                auth.zip_link(group.title, settings),
                icon=":material/folder_zip:",
                width="stretch",
            )
        m3u_col.download_button(
            "Download m3u",
            data=partial(view.playlist_m3u, group),
            file_name=group.m3u_name,
            mime="audio/x-mpegurl",
            key=f"m3u:{group.title}",
            icon=":material/playlist_play:",
            width="stretch",
        )


def _toggle_play(key: str) -> None:
    st.session_state["playing"] = None if st.session_state.get("playing") == key else key


def _check_present(entry: Entry) -> None:
    """Runs when a download is clicked: if cleanup took the file, say so in words."""
    if not view.is_present(entry):
        message = str(view.FileGone(entry.sidecar.title))
        st.session_state["library_notice"] = message
        st.toast(markdown.escape(message), icon=":material/delete_sweep:")


# -- small formatting helpers ------------------------------------------------------------


def _hours(hours: float) -> str:
    return f"{hours:g} hours" if hours != 1 else "1 hour"


main()
