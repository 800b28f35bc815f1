"""The page with a busy Prefect database: 1,000 convert runs, 200 of them running.

The page asks for the runs it shows (the newest 20) and their item tables, within the
API's limit of 200 per request; a query sized by the database's contents would be
refused (HTTP 422) or slow. The runs are deleted afterwards: the Prefect server is
shared by the whole session.
"""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.states import Completed, Running, Scheduled, State

from flows.progress import ItemPhase, ItemRow
from tests.support.page import item_table, register_on_demand

pytestmark = pytest.mark.timeout(900)  # 1,000 runs made one request at a time

RUNS, ACTIVE, ITEMS_PER_ACTIVE_RUN = 1000, 200, 12
TAG = "ytmp3-load-test"


def _create(deployment_id: UUID, numbers: range) -> list[UUID]:
    made = []
    with get_client(sync_client=True) as client:
        for number in numbers:
            state: State = Running() if number >= RUNS - ACTIVE else Completed()
            if number % 7 == 0 and number < RUNS - ACTIVE:
                state = Scheduled()
            run = client.create_flow_run_from_deployment(
                deployment_id,
                parameters={"url": f"https://www.youtube.com/watch?v=load{number:07d}"},
                state=state,
                tags=[TAG],
            )
            made.append(run.id)
    return made


def _delete_all() -> None:
    """Every run tagged TAG, 50 at a time (the API's bulk limit)."""
    with get_client(sync_client=True) as client:
        while True:
            response = client.request(
                "POST", "/flow_runs/bulk_delete",
                json={"flow_runs": {"tags": {"all_": [TAG]}}, "limit": 50},
            )  # fmt: skip
            response.raise_for_status()
            if not response.json()["deleted"]:
                return


@pytest.fixture
def busy_database(prefect_api: str) -> Iterator[None]:
    """1,000 runs of convert/on-demand, the newest 200 Running, the newest 20 with an item
    table of 12 items."""
    deployment_id = register_on_demand()
    try:
        ids = _create(deployment_id, range(RUNS))  # one at a time: the server's SQLite
        for run_id in ids[-20:]:  # the runs the page shows, each with its item table
            item_table(run_id, *(
                ItemRow(position=i, title=f"Song {i}",
                        phase=ItemPhase.RUNNING if i < 2 else ItemPhase.QUEUED)
                for i in range(ITEMS_PER_ACTIVE_RUN)
            ))  # fmt: skip
        yield
    finally:
        _delete_all()


def test_the_page_renders_with_1000_runs_200_running(app, busy_database):
    at = app.run()

    assert not at.exception, [e.value for e in at.exception]
    problems = [e.value for e in (*at.error, *at.warning)]
    assert not problems, problems
    shown = [m.value for m in at.markdown if "load0" in m.value]
    assert len(shown) == 20, shown  # the newest 20 runs, not the 1,000
    assert "load0000999" in shown[0]
    assert all("Running" in title for title in shown), shown[:3]
    items = [e.label for e in at.expander if e.label.startswith(f"{ITEMS_PER_ACTIVE_RUN} items")]
    assert len(items) == 20, items  # every shown run lists its items
