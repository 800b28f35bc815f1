"""Every Prefect automation ytmp3 declares, built from settings, and their upsert by name.

``python -m flows.automations`` creates or updates them on ``$PREFECT_API_URL``; ``make
run`` and ``make deploy`` call it after the deployments exist. It is idempotent: an
automation is found by its name, updated in place only if it differs, and duplicates of
a name are removed, so calling it again changes nothing.

To add one, write a function ``(settings, client) -> AutomationCore`` and add it to
:data:`DECLARED`. The notifications (:mod:`flows.notifications`) exist only while
``YTMP3_NOTIFY_URL`` is set; without it they are removed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import timedelta
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState, RunDeployment
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

from flows import notifications
from flows.recovery import RECOVERED_FLOWS
from flows.settings import Settings, SettingsError, load_settings

CRASH_ZOMBIES = "ytmp3: crash runs whose heartbeats stopped"
RERUN_CRASHED = "ytmp3: re-run crashed runs once"
RECOVER_DEPLOYMENT = "recover/after-crash"

FLOW_RUN_ENDED = {f"prefect.flow-run.{name}" for name in ("Completed", "Failed", "Cancelled")}
YTMP3_RUN = {"prefect.resource.role": "tag", "prefect.resource.id": "prefect.tag.ytmp3"}


def crash_zombies(settings: Settings, client: SyncPrefectClient) -> AutomationCore:
    """A ytmp3 run whose heartbeats stopped while it was not finished becomes Crashed.

    After each heartbeat, the next heartbeat or a final state is expected within
    ``zombie_after_seconds``; when neither comes, the run's process is gone. The run is
    marked Crashed and, a few seconds later, ``recover/after-crash`` is started for it.
    """
    window = settings.zombie_after_seconds
    return AutomationCore(
        name=CRASH_ZOMBIES,
        description="Marks a ytmp3 flow run Crashed when its heartbeats stop, and recovers it.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Crashed", *FLOW_RUN_ENDED},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related=YTMP3_RUN,
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=window),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=(
                    f"No heartbeat for {window:g} s (one is sent every "
                    f"{settings.heartbeat_seconds} s): the process or container running "
                    "this flow run is gone. Marked Crashed by the automation "
                    f"'{CRASH_ZOMBIES}'."
                ),
            ),
            recover_action(client, after=timedelta(seconds=5)),
        ],
    )


def rerun_crashed(settings: Settings, client: SyncPrefectClient) -> AutomationCore:
    """A crashed convert, playlist-batch or cleanup run starts ``recover/after-crash``."""
    return AutomationCore(
        name=RERUN_CRASHED,
        description=(
            "Runs recover/after-crash for every crashed convert, playlist-batch or cleanup "
            "run: its leftovers are cleaned and (not cleanup) it is re-run once "
            "(flows/recovery.py)."
        ),
        trigger=EventTrigger(
            expect={"prefect.flow-run.Crashed"},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={
                "prefect.resource.role": "flow",
                "prefect.resource.name": list(RECOVERED_FLOWS),
            },
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[recover_action(client)],
    )


def recover_action(client: SyncPrefectClient, after: timedelta | None = None) -> RunDeployment:
    """Run ``recover/after-crash`` for the flow run the automation fired for."""
    deployment = client.read_deployment_by_name(RECOVER_DEPLOYMENT)
    return RunDeployment(
        source="selected",
        deployment_id=deployment.id,
        # An explicit Jinja template: a bare "{{ flow_run.id }}" is rendered through
        # `tojson`, which fails on a UUID (prefect 3.9.1), and no run is created.
        parameters={"flow_run_id": {"__prefect_kind": "jinja", "template": "{{ flow_run.id }}"}},
        schedule_after=after or timedelta(0),
    )


DECLARED: list[Callable[[Settings, SyncPrefectClient], AutomationCore]] = [
    crash_zombies,
    rerun_crashed,
]
"""Every automation ytmp3 declares: a builder per automation, from settings."""


def upsert(client: SyncPrefectClient, automation: AutomationCore) -> UUID:
    """Create ``automation``, or update the one of that name (removing any duplicates).

    One that already matches is left alone: an update gives the trigger a new id on the
    server, which forgets the trigger's open windows, e.g. the runs that stopped sending
    heartbeats while `make run` was down.
    """
    existing = client.read_automations_by_name(automation.name)
    if not existing:
        return client.create_automation(automation)
    keep, *duplicates = existing
    for duplicate in duplicates:
        client.delete_automation(duplicate.id)
    if not same(keep, automation):
        client.update_automation(keep.id, automation)
    return keep.id


def same(one: AutomationCore, other: AutomationCore) -> bool:
    """Whether two automations declare the same thing (ids and server fields aside)."""
    fields = set(AutomationCore.model_fields)
    return one.model_dump(include=fields) == other.model_dump(include=fields)


def apply(settings: Settings) -> dict[str, UUID]:
    """Create or update every declared automation; their ids by name.

    Notification automations that ``settings`` no longer call for are deleted.
    """
    with get_client(sync_client=True) as client:
        automations = [build(settings, client) for build in DECLARED]
        automations += notifications.automations(settings, client)
        ids = {automation.name: upsert(client, automation) for automation in automations}
        for name in set(notifications.NAMES) - set(ids):
            for stale in client.read_automations_by_name(name):
                client.delete_automation(stale.id)
        return ids


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"ytmp3: {exc}", file=sys.stderr)
        return 2
    for name, automation_id in apply(settings).items():
        print(f"automation {name!r}: {automation_id}")
    print(notifications.describe(settings))
    return 0


if __name__ == "__main__":  # python -m flows.automations
    sys.exit(main())
