"""Notifications: Prefect automations that send a message when something happens.

Three automations, created by :mod:`flows.automations` when ``YTMP3_NOTIFY_URL`` is set
(and removed when it is not: nothing is sent then):

* a ytmp3 run (tag ``ytmp3``) ends Failed or Crashed;
* a ``playlist-batch`` run delivered new items (the event :data:`BATCH_DELIVERED`, which
  the batch emits at its end);
* ``ytdlp-check`` found yt-dlp too far behind (the event :data:`YTDLP_BEHIND`).

Each message says what happened and links to the run (``PREFECT_UI_URL`` of the server).
They go through one Prefect notification block, :data:`BLOCK_NAME`, which keeps the URL
as a secret: an http(s) URL becomes a ``CustomWebhookNotificationBlock`` that POSTs JSON
(``subject``, ``body``, ``text``); anything else is an Apprise URL, sent by Apprise through
Prefect's ``SlackWebhook`` block, which hands every URL that is not a Slack webhook to
Apprise unchanged (Prefect 3.9 registers no generic Apprise block).
"""

from __future__ import annotations

import contextlib
from typing import Any

from prefect import runtime
from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook
from prefect.client.orchestration import SyncPrefectClient
from prefect.events import emit_event
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.exceptions import ObjectNotFound
from pydantic import SecretStr

from flows.settings import Settings

BLOCK_NAME = "ytmp3-notify"
BLOCK_TYPES = (CustomWebhookNotificationBlock, SlackWebhook)

BATCH_DELIVERED = "ytmp3.batch.delivered"
YTDLP_BEHIND = "ytmp3.ytdlp.behind"

NOTIFY_FAILED = "ytmp3: notify when a run fails or crashes"
NOTIFY_DELIVERED = "ytmp3: notify when scheduled playlists deliver new items"
NOTIFY_YTDLP = "ytmp3: notify when yt-dlp is behind"
NAMES = (NOTIFY_FAILED, NOTIFY_DELIVERED, NOTIFY_YTDLP)

YTMP3_RUN = {"prefect.resource.role": "tag", "prefect.resource.id": "prefect.tag.ytmp3"}
RUN_LINK = "{{ flow_run|ui_url or ('flow run id ' ~ flow_run.id) }}"
"""The run's page in the Prefect UI; its id where the server knows no UI address."""


# -- events the flows emit ---------------------------------------------------------------


def batch_delivered(new: int, summary: str, playlists: list[dict[str, Any]]) -> None:
    """From a ``playlist-batch`` run: it delivered ``new`` items (nothing if none)."""
    if new:
        _emit(BATCH_DELIVERED, {"new": new, "summary": summary, "playlists": playlists[:20]})


def ytdlp_behind(installed: str, newest: str, behind_days: int) -> None:
    """From a ``ytdlp-check`` run: the installed yt-dlp is too far behind."""
    _emit(YTDLP_BEHIND, {"installed": installed, "newest": newest, "behind_days": behind_days})


def _emit(event: str, payload: dict[str, Any]) -> None:
    """An event about the current flow run (nothing outside one)."""
    run_id = runtime.flow_run.id
    if run_id:
        resource = {
            "prefect.resource.id": f"prefect.flow-run.{run_id}",
            "prefect.resource.name": runtime.flow_run.name or run_id,
        }
        emit_event(event=event, resource=resource, payload=payload)


# -- the destination and the automations -------------------------------------------------


def destination(url: SecretStr) -> CustomWebhookNotificationBlock | SlackWebhook:
    """The notification block for ``url`` (the URL stays a secret of the block)."""
    text = url.get_secret_value()
    if text.partition("://")[0].lower() in ("http", "https"):
        return CustomWebhookNotificationBlock(
            name="ytmp3",
            url="{{webhook_url}}",
            json_data={
                "subject": "{{subject}}",
                "body": "{{body}}",
                "text": "{{subject}}\n\n{{body}}",
            },
            secrets={"webhook_url": text},  # type: ignore[arg-type]
        )
    return SlackWebhook(url=url)


def automations(settings: Settings, client: SyncPrefectClient) -> list[AutomationCore]:
    """The notification automations for ``settings``; saves (or removes) the block first.

    Without ``notify_url`` there are none, and the block is deleted.
    """
    if settings.notify_url is None:
        _delete_blocks(client, keep=None)
        return []
    block = destination(settings.notify_url)
    block_id = block.save(BLOCK_NAME, overwrite=True)
    _delete_blocks(client, keep=type(block))
    return [run_failed(block_id), batch_delivered_automation(block_id), ytdlp_automation(block_id)]


def describe(settings: Settings) -> str:
    """Where notifications go, without the URL (it may hold a token)."""
    if settings.notify_url is None:
        return "notifications: off (YTMP3_NOTIFY_URL is not set)"
    scheme = settings.notify_url.get_secret_value().partition("://")[0].lower()
    kind = "a webhook" if scheme in ("http", "https") else f"Apprise ({scheme}://)"
    return f"notifications: to {kind}, through the block {BLOCK_NAME!r}"


def run_failed(block_id: Any) -> AutomationCore:
    """A ytmp3 run ended Failed or Crashed."""
    return _automation(
        NOTIFY_FAILED,
        "Sends a message when a ytmp3 flow run ends Failed or Crashed.",
        {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
        block_id,
        subject="ytmp3: a {{ flow.name }} run {{ flow_run.state.name|lower }}",
        body=(
            "The {{ flow.name }} run {{ flow_run.name }}"
            "{% if deployment %} ({{ flow.name }}/{{ deployment.name }}){% endif %}"
            " ended {{ flow_run.state.name }}: "
            "{{ flow_run.state.message or 'no message' }}"
        ),
        match_related=YTMP3_RUN,
    )


def batch_delivered_automation(block_id: Any) -> AutomationCore:
    """A scheduled batch delivered new items."""
    return _automation(
        NOTIFY_DELIVERED,
        "Sends a message when a playlist-batch run delivered new items.",
        {BATCH_DELIVERED},
        block_id,
        subject="ytmp3: {{ event.payload.new }} new item(s) from scheduled playlists",
        body=(
            "The scheduled playlists delivered {{ event.payload.new }} new item(s).\n"
            "{% for p in event.payload.playlists %}"
            "- {{ p.title }}: {{ p.new }} new\n"
            "{% endfor %}"
            "{{ event.payload.summary }}"
        ),
    )


def ytdlp_automation(block_id: Any) -> AutomationCore:
    """ytdlp-check found yt-dlp too old."""
    return _automation(
        NOTIFY_YTDLP,
        "Sends a message when ytdlp-check finds yt-dlp too far behind.",
        {YTDLP_BEHIND},
        block_id,
        subject="ytmp3: yt-dlp is {{ event.payload.behind_days }} days behind",
        body=(
            "yt-dlp {{ event.payload.installed }} is {{ event.payload.behind_days }} "
            "days behind {{ event.payload.newest }}: YouTube downloads may fail until "
            'it is updated (make update-ytdlp; README, "When YouTube downloads start '
            'failing").'
        ),
    )


def _automation(
    name: str,
    description: str,
    events: set[str],
    block_id: Any,
    *,
    subject: str,
    body: str,
    match_related: Any = None,
) -> AutomationCore:
    """An automation that sends ``subject`` and ``body`` (then the run's link) through the
    block ``block_id`` on each of ``events`` of a flow run."""
    return AutomationCore(
        name=name,
        description=description,
        trigger=EventTrigger(
            expect=events,
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related=match_related or {},
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[
            SendNotification(
                block_document_id=block_id, subject=subject, body=body + "\n" + RUN_LINK
            )
        ],
    )


def _delete_blocks(client: SyncPrefectClient, keep: type | None) -> None:
    """Delete the block :data:`BLOCK_NAME` of every type but ``keep``."""
    for block_type in BLOCK_TYPES:
        if block_type is keep:
            continue
        with contextlib.suppress(ObjectNotFound):
            document = client.read_block_document_by_name(
                BLOCK_NAME, block_type.get_block_type_slug()
            )
            client.delete_block_document(document.id)
