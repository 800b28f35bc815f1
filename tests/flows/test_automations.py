"""flows/automations.py on a real server: created once, updated in place, never duplicated;
and the rules of flows/recovery.py's ``decide``, case by case."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import uuid4

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.events.schemas.automations import AutomationCore
from recovery_support import wait_for_deployment

from flows import automations
from flows.recovery import CRASHED_TWICE_TAG, RERUN_OF_PREFIX, decide
from flows.settings import Settings, load_settings

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


def test_applying_twice_creates_each_automation_once_and_updates_it(declared):
    first = automations.apply(declared)
    assert set(first) == {automations.CRASH_ZOMBIES, automations.RERUN_CRASHED}
    second = automations.apply(load_settings(zombie_after_seconds=120))
    assert second == first
    (zombies,) = by_name(automations.CRASH_ZOMBIES)
    assert zombies.trigger.within.total_seconds() == 120  # updated in place
    assert "No heartbeat for 120 s" in zombies.actions[0].message
    (rerun,) = by_name(automations.RERUN_CRASHED)
    with get_client(sync_client=True) as client:
        recover = client.read_deployment_by_name(automations.RECOVER_DEPLOYMENT)
    assert rerun.actions[0].deployment_id == recover.id


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


def flow_run(state: StateType, tags: list[str] | None = None, deployment: bool = True) -> FlowRun:
    return FlowRun(
        id=uuid4(),
        name="convert http://x/feed.xml",
        flow_id=uuid4(),
        deployment_id=uuid4() if deployment else None,
        tags=tags or ["ytmp3"],
        state=State(type=state, message="Flow run process exited with non-zero status code -9."),
    )


def history(*types: StateType) -> list[State]:
    return [State(type=t) for t in types]


RUNNING, CRASHED = StateType.RUNNING, StateType.CRASHED


def test_a_crashed_run_is_re_run():
    assert decide(flow_run(CRASHED), history(RUNNING, CRASHED)).action == "rerun"


def test_a_re_run_that_crashed_is_given_up():
    original = uuid4()
    run = flow_run(CRASHED, tags=["ytmp3", "rerun", f"{RERUN_OF_PREFIX}{original}"])
    decision = decide(run, history(RUNNING, CRASHED))
    assert decision.action == "give-up"
    assert str(original) in decision.reason and "stays Crashed" in decision.reason


def test_a_cancel_in_the_history_is_never_re_run():
    decision = decide(flow_run(CRASHED), history(RUNNING, StateType.CANCELLING, CRASHED))
    assert decision.action == "cancelled"


@pytest.mark.parametrize("state", [StateType.RUNNING, StateType.COMPLETED, StateType.CANCELLED])
def test_a_run_that_is_not_crashed_now_is_left_alone(state):
    assert decide(flow_run(state), history(RUNNING, CRASHED, state)).action == "nothing"


def test_a_run_already_given_up_and_an_ad_hoc_run_are_left_alone():
    twice = flow_run(CRASHED, tags=["ytmp3", CRASHED_TWICE_TAG, f"{RERUN_OF_PREFIX}{uuid4()}"])
    assert decide(twice, history(RUNNING, CRASHED)).action == "nothing"
    assert decide(flow_run(CRASHED, deployment=False), history(CRASHED)).action == "nothing"
