"""flows/automations.py on a real server: created once, updated in place, never duplicated;
and the rules of flows/recovery.py's ``decide``, case by case."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID, uuid4

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.events.schemas.automations import AutomationCore

from flows import automations
from flows.recovery import CRASHED_TWICE_TAG, RERUN_OF_PREFIX, Facts, decide
from flows.settings import Settings, load_settings
from tests.support.recovery import wait_for_deployment

pytestmark = pytest.mark.flow


@pytest.fixture
def declared(served_deployments, settings_env: Settings) -> Iterator[Settings]:
    """Served deployments (for recover/after-crash); the automations are removed after."""
    wait_for_deployment(automations.RECOVER_DEPLOYMENT)
    try:
        yield settings_env
    finally:
        with get_client(sync_client=True) as client:
            for name in (automations.CRASH_ZOMBIES, automations.RERUN_CRASHED):
                for automation in client.read_automations_by_name(name):
                    client.delete_automation(automation.id)


def by_name(name: str) -> list[AutomationCore]:
    with get_client(sync_client=True) as client:
        return client.read_automations_by_name(name)


def trigger_id(automation_id: UUID) -> str:
    """The server's id of an automation's trigger (its open windows are kept by it)."""
    with get_client(sync_client=True) as client:
        response = client.request("GET", "/automations/{id}", path_params={"id": automation_id})
    return response.json()["trigger"]["id"]


def test_applying_twice_creates_each_automation_once_and_updates_it(declared):
    first = automations.apply(declared)
    assert set(first) == {automations.CRASH_ZOMBIES, automations.RERUN_CRASHED}
    window = trigger_id(first[automations.CRASH_ZOMBIES])
    assert automations.apply(declared) == first
    # Unchanged, so not updated: the zombie trigger keeps its id and its open windows.
    assert trigger_id(first[automations.CRASH_ZOMBIES]) == window
    second = automations.apply(load_settings(zombie_after_seconds=120))
    assert second == first
    (zombies,) = by_name(automations.CRASH_ZOMBIES)
    assert zombies.trigger.within.total_seconds() == 120  # updated in place
    assert "No heartbeat for 120 s" in zombies.actions[0].message
    (rerun,) = by_name(automations.RERUN_CRASHED)
    with get_client(sync_client=True) as client:
        recover = client.read_deployment_by_name(automations.RECOVER_DEPLOYMENT)
    assert rerun.actions[0].deployment_id == recover.id
    assert zombies.actions[1].deployment_id == recover.id  # and recovered, a few s later


def test_duplicates_of_a_name_are_removed(declared):
    automations.apply(declared)
    with get_client(sync_client=True) as client:
        copy = automations.crash_zombies(declared, client)
        client.create_automation(copy)
    assert len(by_name(automations.CRASH_ZOMBIES)) == 2
    automations.apply(declared)
    assert len(by_name(automations.CRASH_ZOMBIES)) == 1


def test_the_zombie_window_must_be_longer_than_a_heartbeat():
    from flows.settings import SettingsError

    with pytest.raises(SettingsError, match="YTMP3_ZOMBIE_AFTER_SECONDS=30"):
        load_settings(heartbeat_seconds=30, zombie_after_seconds=30)
    with pytest.raises(SettingsError, match="YTMP3_HEARTBEAT_SECONDS"):
        load_settings(heartbeat_seconds=10)


# -- decide: the rules, without a server -------------------------------------------------


def facts(
    state: StateType,
    *types: StateType,
    tags: list[str] | None = None,
    flow: str = "convert",
    deployment: bool = True,
    rerun: bool = False,
) -> Facts:
    def run(state: StateType, tags: list[str]) -> FlowRun:
        return FlowRun(
            id=uuid4(),
            name="convert http://x/feed.xml",
            flow_id=uuid4(),
            deployment_id=uuid4() if deployment else None,
            tags=tags,
            state=State(type=state, message="Flow run process exited with code -9."),
        )

    return Facts(
        run=run(state, tags or ["ytmp3"]),
        flow_name=flow,
        history=[State(type=t) for t in (*types, state)],
        rerun=run(StateType.SCHEDULED, ["ytmp3", "rerun"]) if rerun else None,
    )


RUNNING, CRASHED = StateType.RUNNING, StateType.CRASHED


def test_a_crashed_run_is_re_run():
    assert decide(facts(CRASHED, RUNNING)).action == "rerun"
    assert decide(facts(CRASHED, RUNNING, flow="playlist-batch")).action == "rerun"


def test_a_re_run_that_crashed_is_given_up():
    original = uuid4()
    decision = decide(facts(CRASHED, RUNNING, tags=["ytmp3", f"{RERUN_OF_PREFIX}{original}"]))
    assert decision.action == "give-up"
    assert str(original) in decision.reason and "stays Crashed" in decision.reason


def test_a_cancel_in_the_history_is_never_re_run():
    assert decide(facts(CRASHED, RUNNING, StateType.CANCELLING)).action == "cancelled"


@pytest.mark.parametrize("state", [StateType.RUNNING, StateType.COMPLETED, StateType.CANCELLED])
def test_a_run_that_is_not_crashed_now_is_left_alone(state):
    assert decide(facts(state, RUNNING, CRASHED)).action == "nothing"


@pytest.mark.parametrize(
    "case",
    [
        {"tags": ["ytmp3", CRASHED_TWICE_TAG, f"{RERUN_OF_PREFIX}{uuid4()}"]},  # given up
        {"rerun": True},  # a second recover for the same crash
        {"flow": "cleanup"},
        {"flow": "recover"},
        {"deployment": False},  # an ad hoc run
    ],
    ids=["given-up", "already-re-run", "cleanup", "recover", "ad-hoc"],
)
def test_no_re_run(case):
    assert decide(facts(CRASHED, RUNNING, **case)).action == "nothing"
