"""Every Prefect automation ytmp3 declares, built from settings, and their upsert by name.

``python -m flows.automations`` creates or updates them on ``$PREFECT_API_URL``; ``make
run`` and ``make deploy`` call it after the deployments exist. It is idempotent: an
automation is found by its name and updated in place, and duplicates of a name are
removed, so calling it again changes nothing.

To add one, write a function ``(settings, client) -> AutomationCore`` and add it to
:data:`DECLARED`.
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

from flows.settings import Settings, SettingsError, load_settings

CRASH_ZOMBIES = "ytmp3: crash runs whose heartbeats stopped"
RERUN_CRASHED = "ytmp3: re-run crashed runs once"
RECOVER_DEPLOYMENT = "recover/after-crash"
RERUN_FLOWS = ["convert", "playlist-batch"]
"""Flows whose crashed runs are re-run (cleanup runs again on its own schedule)."""

FLOW_RUN_ENDED = {f"prefect.flow-run.{name}" for name in ("Completed", "Failed", "Cancelled")}
YTMP3_RUN = {"prefect.resource.role": "tag", "prefect.resource.id": "prefect.tag.ytmp3"}


def crash_zombies(settings: Settings, client: SyncPrefectClient) -> AutomationCore:
    """A ytmp3 run whose heartbeats stopped while it was not finished becomes Crashed.

    After each heartbeat, the next heartbeat or a final state is expected within
    ``zombie_after_seconds``; when neither comes, the run's process is gone.
    """
    window = settings.zombie_after_seconds
    return AutomationCore(
        name=CRASH_ZOMBIES,
        description="Marks a ytmp3 flow run Crashed when its heartbeats stop.",
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
            )
        ],
    )


def rerun_crashed(settings: Settings, client: SyncPrefectClient) -> AutomationCore:
    """A crashed convert or playlist-batch run starts ``recover/after-crash`` for it."""
    deployment = client.read_deployment_by_name(RECOVER_DEPLOYMENT)
    return AutomationCore(
        name=RERUN_CRASHED,
        description=(
            "Runs recover/after-crash for every crashed convert or playlist-batch run: "
            "its leftovers are cleaned and it is re-run once (flows/recovery.py)."
        ),
        trigger=EventTrigger(
            expect={"prefect.flow-run.Crashed"},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "flow", "prefect.resource.name": RERUN_FLOWS},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[
            RunDeployment(
                source="selected",
                deployment_id=deployment.id,
                # An explicit Jinja template: a bare "{{ flow_run.id }}" is rendered through
                # `tojson`, which fails on a UUID (prefect 3.9.1) and no run is created.
                parameters={
                    "flow_run_id": {"__prefect_kind": "jinja", "template": "{{ flow_run.id }}"}
                },
            )
        ],
    )


DECLARED: list[Callable[[Settings, SyncPrefectClient], AutomationCore]] = [
    crash_zombies,
    rerun_crashed,
]
"""Every automation ytmp3 declares: a builder per automation, from settings."""


def upsert(client: SyncPrefectClient, automation: AutomationCore) -> UUID:
    """Create ``automation``, or update the one of that name (removing any duplicates)."""
    existing = client.read_automations_by_name(automation.name)
    if not existing:
        return client.create_automation(automation)
    keep, *duplicates = existing
    for duplicate in duplicates:
        client.delete_automation(duplicate.id)
    client.update_automation(keep.id, automation)
    return keep.id


def apply(settings: Settings) -> dict[str, UUID]:
    """Create or update every declared automation; their ids by name."""
    with get_client(sync_client=True) as client:
        automations = [build(settings, client) for build in DECLARED]
        return {automation.name: upsert(client, automation) for automation in automations}


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"ytmp3: {exc}", file=sys.stderr)
        return 2
    for name, automation_id in apply(settings).items():
        print(f"automation {name!r}: {automation_id}")
    return 0


if __name__ == "__main__":  # python -m flows.automations
    sys.exit(main())
