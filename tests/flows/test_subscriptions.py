"""Subscriptions as data: the stored list (a Prefect Variable) drives the scheduled batch.

Real Prefect server (the harness), real yt-dlp and ffmpeg on RSS feeds served from
127.0.0.1; `prefect deploy` itself for the "make deploy leaves the list alone" check.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import VariableCreate
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL
from prefect.states import State

from flows import subscriptions
from flows.batch import BatchResult, playlist_batch
from flows.deployments import PREFECT_YAML, PROJECT_ROOT
from flows.library import Library
from flows.settings import Settings
from flows.subscriptions import Subscription, SubscriptionError
from tests.support.recovery import wait_final, wait_for_deployment

pytestmark = pytest.mark.flow

BATCH = "playlist-batch/scheduled-playlists"


@pytest.fixture
def client() -> Iterator[SyncPrefectClient]:
    """A client, and no stored list or status before or after the test."""
    with get_client(sync_client=True) as client:
        forget_everything(client)
        try:
            yield client
        finally:
            forget_everything(client)


def forget_everything(client: SyncPrefectClient) -> None:
    for variable in client.read_variables():
        if variable.name.startswith(("ytmp3_subscriptions", subscriptions.STATUS_PREFIX)):
            client.delete_variable_by_name(variable.name)


def subscribe(client: SyncPrefectClient, settings: Settings, url: str, quality: str) -> None:
    subscriptions.add(client, subscriptions.new_subscription(url, quality, None, settings))


def store_raw(client: SyncPrefectClient, value: object) -> None:
    client.create_variable(VariableCreate(name=subscriptions.VARIABLE, value=value))


def raw(client: SyncPrefectClient) -> object:
    variable = client.read_variable_by_name(subscriptions.VARIABLE)
    return variable.value if variable else None


def run_batch(**parameters: object) -> tuple[State, BatchResult | None]:
    state = playlist_batch(**parameters, return_state=True)
    result = state.result(raise_on_failure=False)
    return state, result if isinstance(result, BatchResult) else None


def qualities(settings: Settings) -> dict[str, str]:
    """Quality of each file in the library, by the playlist (album) it came from."""
    return {
        entry.sidecar.album or "": entry.sidecar.quality
        for entry in Library.from_settings(settings).entries()
    }


# -- the batch reads the stored list -----------------------------------------------------


def test_the_batch_without_urls_converts_every_subscription_at_its_quality(
    media_server, settings_env, client
):
    low = media_server.add_feed("/low.xml", 2, title="Low")
    vbr = media_server.add_feed("/vbr.xml", 1, title="VBR")
    subscribe(client, settings_env, low, "128")
    subscribe(client, settings_env, vbr, "V2")

    state, result = run_batch()
    assert state.is_completed(), state.message
    assert result is not None
    assert [(r.url, r.new) for r in result.playlists] == [(low, 2), (vbr, 1)]
    assert qualities(settings_env) == {"Low": "128", "VBR": "V2"}

    statuses = subscriptions.read_statuses(client, [low, vbr])
    assert statuses[low].delivered_total == 2 and statuses[low].last_new == 2
    assert statuses[low].last_run_id == str(state.state_details.flow_run_id)
    assert statuses[vbr].last_delivered_at is not None and statuses[vbr].last_error is None

    # Nothing new the second time: the status says when it ran, and keeps what it delivered.
    state, result = run_batch()
    assert result is not None and [r.new for r in result.playlists] == [0, 0]
    again = subscriptions.read_statuses(client, [low])[low]
    assert (again.last_new, again.delivered_total, again.last_delivered) == (0, 2, 2)
    assert again.last_run_at > statuses[low].last_run_at
    assert again.last_delivered_at == statuses[low].last_delivered_at


def test_an_invalid_stored_entry_is_reported_and_skipped(media_server, settings_env, client):
    good = media_server.add_feed("/good.xml", 1, title="Good")
    other = media_server.add_feed("/other.xml", 1, title="Other")
    store_raw(
        client,
        [
            {"url": good, "quality": "128"},
            {"url": other, "quality": "999"},  # no such quality
            "not an object",
            {"url": good, "quality": "320"},  # twice
            {"url": "ftp://127.0.0.1/x.xml"},  # valid entry, refused by the URL policy
        ],
    )
    state, result = run_batch()
    assert state.is_completed(), state.message
    assert result is not None
    errors = {report.url: report.error for report in result.playlists if report.error}
    assert errors[other].startswith("stored subscription #2 skipped: invalid subscription:")
    assert "quality" in errors[other]
    assert errors["entry 3"].startswith("stored subscription #3 skipped")
    assert "listed twice" in errors[good]
    assert "ftp://127.0.0.1/x.xml" in errors
    assert [r.new for r in result.playlists if r.url == good and not r.error] == [1]
    assert "stored subscription #2 skipped" in state.message  # the run says so too
    assert qualities(settings_env) == {"Good": "128"}
    assert media_server.request_count("/other.xml") == 0


def test_a_stored_value_that_is_no_list_fails_the_run_with_a_message(settings_env, client):
    store_raw(client, {"url": "http://127.0.0.1/feed.xml"})
    state, _ = run_batch()
    assert state.is_failed()
    assert "must hold a JSON list" in state.message
    with pytest.raises(SubscriptionError, match="must hold a JSON list"):
        subscriptions.remove(client, "http://127.0.0.1/feed.xml")


def test_no_subscriptions_is_a_quiet_completed_run(settings_env, client):
    state, _ = run_batch()
    assert state.is_completed()
    assert "no subscriptions" in state.message


def test_explicit_urls_win_over_the_stored_list(media_server, settings_env, client):
    stored = media_server.add_feed("/stored.xml", 1, title="Stored")
    given = media_server.add_feed("/given.xml", 1, title="Given")
    subscribe(client, settings_env, stored, "128")
    state, result = run_batch(urls=[given], quality="128")
    assert state.is_completed(), state.message
    assert result is not None and [r.url for r in result.playlists] == [given]
    assert media_server.request_count("/stored.xml") == 0
    # A run for one subscription (the page's "run now") updates its status; others' none.
    run_batch(urls=[stored], quality="128")
    assert set(subscriptions.read_statuses(client, [stored, given])) == {stored}


# -- editing -----------------------------------------------------------------------------


def test_editing_checks_the_policy_duplicates_and_size(media_server, settings_env, client):
    feed = media_server.add_feed("/edit.xml", 1)
    with pytest.raises(SubscriptionError, match="can't be subscribed to"):
        subscriptions.new_subscription("https://example.com/list", "128", None, settings_env)
    with pytest.raises(SubscriptionError, match="note"):
        subscriptions.new_subscription(feed, "128", "x" * 201, settings_env)
    with pytest.raises(SubscriptionError, match="quality"):
        subscriptions.new_subscription(feed, "999", None, settings_env)
    subscribe(client, settings_env, feed, "128")
    with pytest.raises(SubscriptionError, match="already subscribed"):
        subscribe(client, settings_env, f"  {feed} ", "320")

    changed = subscriptions.change_quality(client, feed, "v0")
    assert changed.quality == "V0"
    assert raw(client) == [{"url": feed, "quality": "V0"}]
    with pytest.raises(SubscriptionError, match="quality"):
        subscriptions.change_quality(client, feed, "loud")

    # Fill the Variable up to its limit: the write that would not fit is refused.
    filler = [
        Subscription(url=f"{feed}?n={n}", quality="128", note="n" * 180).stored() for n in range(30)
    ]
    with pytest.raises(SubscriptionError, match="at most 5000"):
        subscriptions.encode(filler)
    for sub in filler:
        try:
            subscriptions.add(client, Subscription.model_validate(sub))
        except SubscriptionError as exc:
            assert "a Prefect Variable holds at most 5000" in str(exc)
            break
    else:
        pytest.fail("30 long subscriptions fit into one Variable")
    stored = subscriptions.read(client)
    assert stored.problems == [] and len(stored.subscriptions) > 10


def test_removing_keeps_entries_it_does_not_touch_even_invalid_ones(
    media_server, settings_env, client
):
    feed = media_server.add_feed("/rm.xml", 1)
    store_raw(client, [{"url": feed, "quality": "128"}, {"url": "x", "loudness": 11}])
    subscriptions.record(client, feed, run_id=None, new=1, error=None)
    assert subscriptions.remove(client, feed)
    assert raw(client) == [{"url": "x", "loudness": 11}]
    assert subscriptions.read_statuses(client, [feed]) == {}  # its status went with it
    assert not subscriptions.remove(client, feed)
    assert subscriptions.remove(client, "x")  # an invalid entry can be removed by its url
    assert raw(client) == []


def test_edits_at_once_lose_nothing(media_server, settings_env, client):
    urls = [media_server.add_feed(f"/burst{n}.xml", 1) for n in range(8)]
    failures: list[BaseException] = []

    def add(url: str) -> None:
        try:
            with get_client(sync_client=True) as own:
                subscribe(own, settings_env, url, "128")
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=add, args=(url,)) for url in urls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures
    assert sorted(sub.url for sub in subscriptions.read(client).subscriptions) == sorted(urls)


# -- deployments: by hand, and `make deploy` --------------------------------------------


def test_the_deployment_runs_by_hand_with_and_without_urls(
    media_server, settings_env, client, served_deployments
):
    stored = media_server.add_feed("/hand-stored.xml", 1, title="Stored")
    given = media_server.add_feed("/hand-given.xml", 1, title="Given")
    subscribe(client, settings_env, stored, "128")
    wait_for_deployment(BATCH)

    # The schedule's parameters: no urls.
    without = run_deployment(BATCH, parameters={"only_new": True}, timeout=0)
    assert wait_final(without.id, 120).state_type.value == "COMPLETED"
    # `prefect deployment run ... --param 'urls=[...]' --param quality=128` (a number).
    with_urls = run_deployment(BATCH, parameters={"urls": [given], "quality": 128}, timeout=0)
    assert wait_final(with_urls.id, 120).state_type.value == "COMPLETED"
    assert qualities(settings_env) == {"Stored": "128", "Given": "128"}
    assert subscriptions.read_statuses(client, [stored])[stored].last_run_id == str(without.id)


def test_prefect_deploy_of_prefect_yaml_leaves_the_stored_list_unchanged(
    media_server, settings_env, client, tmp_path: Path
):
    """`make deploy` runs `prefect --no-prompt deploy --all`: the same command, on
    prefect.yaml with only its Docker build step taken out (no image is built here) and
    the image it would have named written in; the Docker pool exists, as `make pool` makes it.
    """
    feed = media_server.add_feed("/deploy.xml", 1)
    subscribe(client, settings_env, feed, "V0")
    subscriptions.record(client, feed, run_id=None, new=3, error=None)
    before = client.read_variable_by_name(subscriptions.VARIABLE)
    document = yaml.safe_load(PREFECT_YAML.read_text())
    document["build"] = None
    document["definitions"]["work_pool"]["job_variables"]["image"] = "ytmp3:latest"
    for entry in document["deployments"]:
        entry["work_pool"] = document["definitions"]["work_pool"]
    prefect_file = tmp_path / "prefect.yaml"
    prefect_file.write_text(yaml.safe_dump(document))
    env = os.environ | {"PREFECT_API_URL": str(PREFECT_API_URL.value())}
    prefect = [sys.executable, "-m", "prefect"]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*prefect, *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done

    try:
        client.read_work_pool("docker-pool")
    except ObjectNotFound:
        cli("work-pool", "create", "docker-pool", "--type", "docker")
    for _ in range(2):  # a first deploy, and a redeploy over existing deployments
        cli("--no-prompt", "deploy", "--all", "--prefect-file", str(prefect_file))

    deployment = client.read_deployment_by_name(BATCH)
    assert deployment.work_pool_name == "docker-pool"  # registered by `prefect deploy`
    assert deployment.parameters.get("urls") == []
    (schedule,) = deployment.schedules
    assert schedule.parameters == {"only_new": True}
    after = client.read_variable_by_name(subscriptions.VARIABLE)
    assert (after.value, after.updated) == (before.value, before.updated)
    assert subscriptions.read_statuses(client, [feed])[feed].delivered_total == 3
