"""Flow ``recover``: what happens to a crashed ytmp3 run, by itself and only once.

Two automations (:mod:`flows.automations`) start the deployment ``recover/after-crash``
with a run's id: ``ytmp3: re-run crashed runs once`` when a ``convert``,
``playlist-batch`` or ``cleanup`` run ends Crashed (its process or container was
killed), and the
zombie automation, right after it marks a run whose heartbeats stopped Crashed (after a
restart of the Prefect server, its Crashed event may wait up to 15 minutes for the event
it follows, which the old server saw; the zombie automation does not). This flow then

1. marks the crashed run's unfinished task runs Crashed, so none stays "Running";
2. applies the rules of :func:`decide`:

   - a run a person cancelled (Cancelling in its history) is set Cancelled, never re-run;
   - a run that is itself a re-run is left Crashed, with a message that says so, and
     tagged ``crashed-twice`` (count it with that tag);
   - any other ``convert`` or ``playlist-batch`` run is re-run once: the same deployment,
     parameters and job variables, tagged ``rerun`` and ``rerun-of:<id>``, with an
     idempotency key derived from the crashed run, so a second ``recover`` for the same
     crash finds that re-run instead of starting another.

The re-run redoes only what is missing: every item looks up the library first, so what
the crashed run published is reused without a request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterTags,
    TaskRunFilter,
    TaskRunFilterState,
    TaskRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, State, StateType, TaskRun
from prefect.states import Cancelled, Crashed
from pydantic import BaseModel

RERUN_TAG = "rerun"
"""On every run ytmp3 started again after a crash."""
RERUN_OF_PREFIX = "rerun-of:"
"""``rerun-of:<id of the crashed run>``: the link from a re-run back to its original."""
CRASHED_TWICE_TAG = "crashed-twice"
"""On a re-run that crashed too: left Crashed; the operator's count."""

UNFINISHED = [
    StateType.SCHEDULED,
    StateType.PENDING,
    StateType.RUNNING,
    StateType.PAUSED,
    StateType.CANCELLING,
]
"""State types a task run of a crashed flow run can be stuck in (the filter has no "not")."""
PAGE = 200  # the API's largest page

RERUN_FLOWS = ("convert", "playlist-batch")
"""Flows whose crashed runs are re-run."""
RECOVERED_FLOWS = (*RERUN_FLOWS, "cleanup")
"""Flows whose crashed runs get ``recover`` (cleanup: leftovers only; it runs again on its
own schedule)."""
SETTLE_SECONDS = 30.0
"""How long ``recover`` waits for a run it was started for to reach a final state."""

Action = Literal["rerun", "give-up", "cancelled", "nothing"]


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str


@dataclass(frozen=True)
class Facts:
    """What :func:`decide` goes by, as read from the API."""

    run: FlowRun
    flow_name: str
    history: list[State]
    """The run's states, oldest first."""
    rerun: FlowRun | None = None
    """A re-run of this run that already exists."""


class RecoveryResult(BaseModel):
    """What one ``recover`` run did about one crashed run."""

    crashed_run: UUID
    action: Action
    reason: str
    rerun: UUID | None = None
    task_runs_crashed: int = 0


def decide(facts: Facts) -> Decision:
    """What to do about a run that was reported Crashed (plain rules, no I/O)."""
    run, state = facts.run, facts.run.state
    if state is None or state.type != StateType.CRASHED:
        now = state.name if state else "without a state"
        return Decision("nothing", f"{run.name} is {now} now, not Crashed: nothing to do")
    if any(s.type in (StateType.CANCELLING, StateType.CANCELLED) for s in facts.history):
        return Decision(
            "cancelled",
            f"{run.name} was being cancelled by a person when its process went away; "
            "it is set Cancelled, not re-run",
        )
    if facts.flow_name not in RERUN_FLOWS:
        return Decision("nothing", f"{run.name} crashed; {facts.flow_name} runs are not re-run")
    if CRASHED_TWICE_TAG in run.tags:
        return Decision("nothing", f"{run.name} was already left Crashed after its re-run")
    if (original := rerun_of(run)) is not None:
        return Decision(
            "give-up",
            f"{run.name} crashed again after ytmp3 re-ran crashed run {original}; "
            "a crashed run is re-run only once, so this one stays Crashed",
        )
    if facts.rerun is not None:
        return Decision("nothing", f"{run.name} was already re-run as {facts.rerun.id}")
    if run.deployment_id is None:
        return Decision("nothing", f"{run.name} was not started from a deployment: not re-run")
    return Decision("rerun", f"{run.name} crashed: re-run once with the same parameters")


def rerun_of(run: FlowRun) -> UUID | None:
    """The id of the crashed run that ``run`` re-runs, if it is a re-run."""
    for tag in run.tags:
        if tag.startswith(RERUN_OF_PREFIX):
            return UUID(tag.removeprefix(RERUN_OF_PREFIX))
    return None


def idempotency_key(crashed: FlowRun) -> str:
    """One key per crashed run: creating its re-run twice gives the same run back."""
    return f"ytmp3-rerun-of-{crashed.id}"


def start_rerun(client: SyncPrefectClient, crashed: FlowRun) -> FlowRun:
    """A new run of the crashed run's deployment with its parameters and job variables."""
    assert crashed.deployment_id is not None
    return client.create_flow_run_from_deployment(
        crashed.deployment_id,
        parameters=crashed.parameters,
        job_variables=crashed.job_variables or None,
        name=f"{crashed.name} (re-run)",
        tags=sorted({*crashed.tags, RERUN_TAG, f"{RERUN_OF_PREFIX}{crashed.id}"}),
        idempotency_key=idempotency_key(crashed),
        work_queue_name=crashed.work_queue_name,
    )


def leave_crashed(client: SyncPrefectClient, run: FlowRun, decision: Decision) -> None:
    """Tag a run that crashed twice and say in its state why it is not re-run."""
    client.update_flow_run(run.id, tags=sorted({*run.tags, CRASHED_TWICE_TAG}))
    before = run.state.message if run.state and run.state.message else "no message"
    message = f"{decision.reason}. Start it again by hand once the cause is fixed ({before})"
    client.set_flow_run_state(run.id, Crashed(message=message), force=True)


def mark_cancelled(client: SyncPrefectClient, run: FlowRun, decision: Decision) -> None:
    client.set_flow_run_state(run.id, Cancelled(message=decision.reason), force=True)


def crash_leftover_task_runs(client: SyncPrefectClient, run: FlowRun) -> list[TaskRun]:
    """Set every task run of ``run`` that is not in a final state to Crashed."""
    leftovers = unfinished_task_runs(client, run.id)
    why = run.state.message if run.state and run.state.message else "no message"
    for task_run in leftovers:
        state = Crashed(message=f"Its flow run crashed ({why}); this task run never finished.")
        client.set_task_run_state(task_run.id, state, force=True)
    return leftovers


def unfinished_task_runs(client: SyncPrefectClient, flow_run_id: UUID) -> list[TaskRun]:
    runs: list[TaskRun] = []
    while True:
        page = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            task_run_filter=TaskRunFilter(
                state=TaskRunFilterState(type=TaskRunFilterStateType(any_=UNFINISHED))
            ),
            limit=PAGE,
            offset=len(runs),
        )
        runs += page
        if len(page) < PAGE:
            return runs


def settled(client: SyncPrefectClient, flow_run_id: UUID, timeout: float) -> FlowRun:
    """The run once it is in a final state, or as it is after ``timeout`` seconds.

    The zombie automation starts ``recover`` a few seconds after it marks the run
    Crashed; this covers the case where its two actions run out of order.
    """
    deadline = time.monotonic() + timeout
    while True:
        run = client.read_flow_run(flow_run_id)
        if (run.state and run.state.is_final()) or time.monotonic() > deadline:
            return run
        time.sleep(1)


def read_facts(client: SyncPrefectClient, run: FlowRun) -> Facts:
    reruns = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"{RERUN_OF_PREFIX}{run.id}"])),
        limit=1,
    )
    return Facts(
        run=run,
        flow_name=client.read_flow(run.flow_id).name,
        history=sorted(client.read_flow_run_states(run.id), key=lambda s: s.timestamp),
        rerun=reruns[0] if reruns else None,
    )


@flow(name="recover", flow_run_name="recover {flow_run_id}", log_prints=False)
def recover(flow_run_id: UUID) -> RecoveryResult:
    """Clean up after a crashed run and re-run it once (see the module's docstring)."""
    logger = get_run_logger()
    with get_client(sync_client=True) as client:
        run = settled(client, flow_run_id, SETTLE_SECONDS)
        crashed = run.state_type == StateType.CRASHED
        leftovers = crash_leftover_task_runs(client, run) if crashed else []
        decision = decide(read_facts(client, run))
        rerun = None
        if decision.action == "rerun":
            rerun = start_rerun(client, run)
        elif decision.action == "give-up":
            leave_crashed(client, run, decision)
        elif decision.action == "cancelled":
            mark_cancelled(client, run, decision)
    logger.info("%s; %d unfinished task run(s) set Crashed", decision.reason, len(leftovers))
    result = RecoveryResult(
        crashed_run=run.id,
        action=decision.action,
        reason=decision.reason,
        rerun=rerun.id if rerun else None,
        task_runs_crashed=len(leftovers),
    )
    _report(result, rerun)
    return result


def _report(result: RecoveryResult, rerun: FlowRun | None) -> None:
    lines = [f"**{result.action}**: {result.reason}."]
    if rerun is not None:
        lines.append(f"Re-run: `{rerun.name}` ({rerun.id}), tagged `{RERUN_TAG}`.")
    if result.task_runs_crashed:
        lines.append(f"{result.task_runs_crashed} unfinished task run(s) set Crashed.")
    create_markdown_artifact(
        "\n\n".join(lines), key="recovery", description=f"after crash of {result.crashed_run}"
    )
