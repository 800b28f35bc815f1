"""The ``cleanup`` flow and its deployment on a real Prefect server (the session harness).

The deciding and deleting are tested without Prefect in tests/unit/test_cleanup.py; here
the flow runs for real (settings from the environment, artifact on the server), and the
deployment declared in prefect.yaml is registered through flows.deployments, as
``make run`` does, and read back from the API.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.client.schemas.objects import ConcurrencyLimitStrategy
from prefect.client.schemas.schedules import CronSchedule
from prefect.exceptions import ObjectNotFound
from prefect.states import State

from flows.cleanup import EXPIRED, ORPHAN, Report, clean, cleanup
from flows.deployments import load_specs
from flows.library import Library, Sidecar
from flows.settings import Settings, get_settings

pytestmark = pytest.mark.flow


def add_entry(
    root: Path, media_id: str, age: timedelta, *, mp3: bool = True, size: int = 64
) -> str:
    """A published-looking entry created ``age`` ago under an 8 h retention."""
    key = f"youtube.{media_id}.192"
    created = datetime.now(UTC) - age
    root.mkdir(parents=True, exist_ok=True)
    if mp3:
        (root / f"{key}.mp3").write_bytes(b"ID3" + b"\0" * (size - 3))
        os.utime(root / f"{key}.mp3", (created.timestamp(), created.timestamp()))
    sidecar = Sidecar(
        key=key,
        title=media_id,
        source_url=f"https://www.youtube.com/watch?v={media_id}",
        extractor="youtube",
        media_id=media_id,
        bytes=size,
        quality="192",
        created_at=created,
        expires_at=created + timedelta(hours=8),
    )
    (root / f"{key}.json").write_text(sidecar.model_dump_json(indent=2))
    return key


def markdown_artifacts(state: State) -> list[str]:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    return [str(artifact.data) for artifact in found if artifact.type == "markdown"]


def test_the_flow_deletes_what_expired_and_reports_it(settings_env: Settings):
    root = settings_env.data_dir
    expired = add_entry(root, "expiredAAAA", timedelta(hours=8, minutes=1))
    fresh = add_entry(root, "freshBBBBBB", timedelta(hours=7, minutes=59))
    orphan = add_entry(root, "orphanCCCCC", timedelta(hours=1), mp3=False)
    (root / "notes.txt").write_text("not the library's")
    before = sorted(path.name for path in root.iterdir())

    dry_state = cleanup(dry_run=True, return_state=True)
    assert dry_state.is_completed()
    dry = dry_state.result()
    assert isinstance(dry, Report) and dry.dry_run
    assert sorted(dry.removed) == [(expired, EXPIRED, 64), (orphan, ORPHAN, 0)]
    assert sorted(path.name for path in root.iterdir()) == before

    state = cleanup(return_state=True)
    assert state.is_completed()
    report = state.result()
    assert isinstance(report, Report) and not report.dry_run
    assert sorted(report.removed) == sorted(dry.removed)
    assert [key for _, key, _ in report.remaining] == [fresh]
    assert report.left_alone == [("notes.txt", "name outside the library's scheme")]
    left = {path.name for path in root.iterdir()}
    assert {f"{fresh}.mp3", f"{fresh}.json", "notes.txt"} <= left
    assert not {f"{expired}.mp3", f"{expired}.json", f"{orphan}.json"} & left

    (markdown,) = markdown_artifacts(state)
    assert "removed 2 entries" in markdown and "1 entries remain" in markdown
    assert f"| `{expired}` | expired | 64 |" in markdown
    assert f"Next to go: `{fresh}`" in markdown
    assert "name outside the library's scheme: 1 (`notes.txt`)" in markdown
    (dry_markdown,) = markdown_artifacts(dry_state)
    assert "dry run: nothing removed" in dry_markdown


def test_max_age_overrides_the_sidecar_expiry(settings_env: Settings):
    root = settings_env.data_dir
    young = add_entry(root, "youngDDDDDD", timedelta(minutes=30))
    old = add_entry(root, "oldEEEEEEEE", timedelta(hours=2))

    report = cleanup(max_age_hours=1.0)
    assert isinstance(report, Report) and [key for key, _, _ in report.removed] == [old]
    assert (root / f"{young}.mp3").exists() and not (root / f"{old}.mp3").exists()


def test_a_max_age_below_the_floor_is_refused_unless_forced(settings_env: Settings):
    root = settings_env.data_dir
    recent = add_entry(root, "recentHHHHH", timedelta(minutes=1))

    refused = cleanup(max_age_hours=0.001, return_state=True)
    assert refused.is_failed()
    assert refused.message == (
        "max_age_hours=0.001 is below the floor of 0.5 hours and would remove nearly every "
        "file. Nothing was removed; run again with force=true if that is what you want."
    )
    assert (root / f"{recent}.mp3").exists()
    assert markdown_artifacts(refused) == []

    forced = cleanup(max_age_hours=0.001, force=True, return_state=True)
    assert forced.is_completed()
    assert not (root / f"{recent}.mp3").exists()
    (markdown,) = markdown_artifacts(forced)
    assert f"| `{recent}` | older than max_age_hours | 64 |" in markdown


def test_the_size_cap_setting_evicts_the_oldest_entries(
    settings_env: Settings, monkeypatch: pytest.MonkeyPatch
):
    root = settings_env.data_dir
    oldest = add_entry(root, "capOldestII", timedelta(hours=3), size=600_000)
    newest = add_entry(root, "capNewestJJ", timedelta(hours=1), size=600_000)
    monkeypatch.setenv("YTMP3_MAX_LIBRARY_MB", "1")
    get_settings.cache_clear()

    state = cleanup(return_state=True)
    assert state.is_completed()
    assert not (root / f"{oldest}.mp3").exists() and (root / f"{newest}.mp3").exists()
    (markdown,) = markdown_artifacts(state)
    assert f"| `{oldest}` | library over its size cap of 1 MB | 600,000 |" in markdown


def test_the_deployment_has_its_cron_schedule_and_a_concurrency_limit_of_one():
    (spec,) = [spec for spec in load_specs() if spec.entrypoint == "flows/cleanup.py:cleanup"]
    assert spec.name == "every-5-minutes"
    deployment_id = spec.to_runner_deployment().apply()
    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment(deployment_id)
            assert client.read_flow(deployment.flow_id).name == "cleanup"
            assert deployment.name == "every-5-minutes"
            assert deployment.parameters == {
                "max_age_hours": None,
                "dry_run": False,
                "force": False,
            }
            schedules = [entry.schedule for entry in deployment.schedules if entry.active]
            assert len(schedules) == 1 and isinstance(schedules[0], CronSchedule)
            assert schedules[0].cron == "*/5 * * * *"
            assert deployment.global_concurrency_limit is not None
            assert deployment.global_concurrency_limit.limit == 1
            assert deployment.concurrency_options is not None
            assert (
                deployment.concurrency_options.collision_strategy
                == ConcurrencyLimitStrategy.CANCEL_NEW
            )
        finally:
            # The schedule is live on the session's server: don't leave runs piling up.
            client.delete_deployment(deployment_id)


def test_make_run_serves_the_schedule_and_the_run_works(settings_env: Settings, served_deployments):
    """prefect.yaml served as `make run` serves it: the schedule is live, and a run of the
    deployment (what the schedule triggers) cleans this test's data dir."""
    from prefect.deployments import run_deployment

    root = settings_env.data_dir
    expired = add_entry(root, "servedFFFFF", timedelta(hours=9))
    fresh = add_entry(root, "servedGGGGG", timedelta(hours=1))
    deadline = time.monotonic() + 60
    with get_client(sync_client=True) as client:
        while True:  # the fixture waits for the first deployment; the rest follow
            try:
                deployment = client.read_deployment_by_name("cleanup/every-5-minutes")
                break
            except ObjectNotFound:
                assert time.monotonic() < deadline, "cleanup/every-5-minutes was not served"
                time.sleep(0.5)
    crons = [entry.schedule.cron for entry in deployment.schedules if entry.active]
    assert crons == ["*/5 * * * *"]

    flow_run = run_deployment("cleanup/every-5-minutes", timeout=90)
    assert flow_run.state is not None and flow_run.state.is_completed(), flow_run.state
    assert not (root / f"{expired}.mp3").exists()
    assert (root / f"{fresh}.mp3").exists()

    # What a person sends by hand: refused with a message, or forced.
    refused = run_deployment(
        "cleanup/every-5-minutes", parameters={"max_age_hours": 0.001}, timeout=90
    )
    assert refused.state is not None and refused.state.is_failed(), refused.state
    assert refused.state.message and "force=true" in refused.state.message
    assert (root / f"{fresh}.mp3").exists()
    forced = run_deployment(
        "cleanup/every-5-minutes", parameters={"max_age_hours": 0.001, "force": True}, timeout=90
    )
    assert forced.state is not None and forced.state.is_completed(), forced.state
    assert not (root / f"{fresh}.mp3").exists()


def test_a_file_the_convert_flow_published_goes_exactly_at_its_expiry(
    media_server, settings_env: Settings
):
    """The real publish path (sidecar as convert writes it, lock file left behind)."""
    from flows.convert import convert

    state = convert(url=media_server.url("clip.m4a"), quality="128", return_state=True)
    assert state.is_completed(), state.message
    (sidecar_path,) = settings_env.data_dir.glob("*.json")
    published = Sidecar.model_validate_json(sidecar_path.read_text())
    expires = published.expires_at
    assert expires - published.created_at == timedelta(hours=settings_env.retention_hours)

    library = Library.from_settings(settings_env)
    early = clean(library, now=expires - timedelta(microseconds=1))
    assert early.removed == [] and len(early.remaining) == 1
    late = clean(library, now=expires)
    assert late.removed == [(published.key, EXPIRED, published.bytes)]
    assert late.locks == [published.key]
    assert sorted(path.name for path in settings_env.data_dir.iterdir()) == [".locks", ".tmp"]
