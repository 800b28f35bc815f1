"""Notifications through Prefect automations, for real: the harness's triggers and actions
services send them to a webhook receiver this test starts on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound

from flows import automations, notifications
from flows.settings import Settings, SettingsError, load_settings
from tests.support.recovery import wait_final, wait_for, wait_for_deployment

pytestmark = [pytest.mark.flow, pytest.mark.timeout(600)]

MESSAGE_TIMEOUT = 90


class Receiver:
    """An HTTP server that keeps every request body it is sent."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.paths: list[str] = []
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.paths.append(self.path)
                received.messages.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int) -> list[dict[str, Any]]:
        wait_for(lambda: len(self.messages) >= count, MESSAGE_TIMEOUT, f"{count} message(s)")
        return self.messages


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()


@pytest.fixture
def notifying(served_deployments, settings_env: Settings) -> Iterator[None]:
    """Served deployments; every automation and the block are removed after the test."""
    wait_for_deployment(automations.RECOVER_DEPLOYMENT)
    wait_for_deployment("playlist-batch/scheduled-playlists")
    try:
        yield
    finally:
        automations.apply(load_settings(notify_url=None))
        with get_client(sync_client=True) as client:
            for name in (automations.CRASH_ZOMBIES, automations.RERUN_CRASHED):
                for automation in client.read_automations_by_name(name):
                    client.delete_automation(automation.id)


def with_notify_url(url: str | None) -> Settings:
    return load_settings(notify_url=url)


def notification_ids() -> dict[str, list[UUID]]:
    with get_client(sync_client=True) as client:
        return {
            name: [a.id for a in client.read_automations_by_name(name)]
            for name in notifications.NAMES
        }


def fail_a_conversion(media_server) -> UUID:
    media_server.status("/gone.mp4", 404)
    run = run_deployment(
        "convert/on-demand",
        parameters={"url": media_server.url("/gone.mp4"), "quality": "128"},
        timeout=0,
    )
    assert wait_final(run.id, 120).state_type == StateType.FAILED
    return run.id


def run_batch(feed: str) -> UUID:
    run = run_deployment(
        "playlist-batch/scheduled-playlists",
        parameters={"urls": [feed], "quality": "128"},
        timeout=0,
    )
    assert wait_final(run.id, 180).state_type == StateType.COMPLETED
    return run.id


def test_a_failed_run_and_a_batch_with_new_items_each_send_one_message(
    notifying, receiver, media_server
):
    first = automations.apply(with_notify_url(f"{receiver.url}/hook?token=s3cret"))
    assert set(notifications.NAMES) <= set(first)

    failed = fail_a_conversion(media_server)
    (message,) = receiver.wait_for(1)
    assert message["subject"] == "ytmp3: a convert run failed"
    assert "ended Failed: 127.0.0.1 has no such page (HTTP 404)" in message["body"]
    assert "(convert/on-demand)" in message["body"]
    assert f"http://prefect-ui.test/runs/flow-run/{failed}" in message["body"]  # the link
    assert message["text"].startswith(message["subject"])
    assert receiver.paths == ["/hook?token=s3cret"]

    feed = media_server.add_feed("/notify.xml", 2, title="Fresh Songs")
    batch = run_batch(feed)
    messages = receiver.wait_for(2)
    delivered = messages[1]
    assert delivered["subject"] == "ytmp3: 2 new item(s) from scheduled playlists"
    assert "- Fresh Songs: 2 new" in delivered["body"]
    assert "1 playlist(s): 2 new item(s), 0 failed" in delivered["body"]
    assert f"http://prefect-ui.test/runs/flow-run/{batch}" in delivered["body"]

    # A batch with nothing new sends nothing: the next message is the next failure's.
    run_batch(feed)
    fail_a_conversion(media_server)
    messages = receiver.wait_for(3)
    assert [m["subject"] for m in messages] == [
        "ytmp3: a convert run failed",
        "ytmp3: 2 new item(s) from scheduled playlists",
        "ytmp3: a convert run failed",
    ]


def test_applying_again_creates_no_duplicates_and_unsetting_removes_them(notifying, receiver):
    settings = with_notify_url(f"{receiver.url}/hook")
    first = automations.apply(settings)
    ids = notification_ids()
    assert all(len(found) == 1 for found in ids.values()), ids
    assert automations.apply(settings) == first  # `make deploy` again, or `make run`
    assert notification_ids() == ids

    # Another destination (an Apprise URL): the same automations, updated in place.
    automations.apply(with_notify_url(f"json://127.0.0.1:{receiver.url.rsplit(':', 1)[1]}/a"))
    assert notification_ids() == ids
    with get_client(sync_client=True) as client:
        slack = client.read_block_document_by_name(
            notifications.BLOCK_NAME, "slack-webhook", include_secrets=False
        )
        assert "127.0.0.1" not in json.dumps(slack.data)  # a secret, shown as stars
        with pytest.raises(ObjectNotFound):  # the webhook block of before is gone
            client.read_block_document_by_name(notifications.BLOCK_NAME, "custom-webhook")

    automations.apply(with_notify_url(None))
    assert notification_ids() == {name: [] for name in notifications.NAMES}
    with get_client(sync_client=True) as client, pytest.raises(ObjectNotFound):
        client.read_block_document_by_name(notifications.BLOCK_NAME, "slack-webhook")


def test_an_apprise_url_is_sent_by_apprise(notifying, receiver, media_server):
    port = receiver.url.rsplit(":", 1)[1]
    automations.apply(with_notify_url(f"json://127.0.0.1:{port}/apprise"))
    failed = fail_a_conversion(media_server)
    (message,) = receiver.wait_for(1)
    assert receiver.paths == ["/apprise"]
    assert message["title"] == "ytmp3: a convert run failed"  # Apprise's JSON format
    assert "ended Failed: 127.0.0.1 has no such page" in message["message"]
    assert str(failed) in message["message"]


def test_a_bad_notification_url_is_refused_without_repeating_it():
    with pytest.raises(SettingsError) as refused:
        load_settings(notify_url="nosuchservice://user:t0ken@host")
    assert "YTMP3_NOTIFY_URL=(hidden)" in str(refused.value)
    assert "t0ken" not in str(refused.value)
    with pytest.raises(SettingsError):
        load_settings(notify_url="https://")
    assert load_settings(notify_url="  ").notify_url is None
