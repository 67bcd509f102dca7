"""A real dynamic schedule of a real dbos==3.2.0 executor, steered through StepChange:
paused, resumed, triggered and backfilled, each checked in the system database, with the
runs it started appearing and running to their end.

StepChange is given no system database here: it reads the schedule through the executor
(`list_schedules`, `get_schedule`), so the whole path is the executor's.
"""

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.schedules import YEARLY, audited, runs_succeeded, steer
from tests.e2e.servers import Executor, StepChange, SystemDatabase

pytestmark = pytest.mark.e2e


@pytest.fixture
def deployment(
    stepchange: StepChange,
    new_app: Callable[..., tuple[str, str]],
    executors: Callable[..., Executor],
    tmp_path: Path,
) -> tuple[str, SystemDatabase]:
    app, key = new_app("sched")
    url = f"sqlite:///{tmp_path / 'system.sqlite'}"
    executors("python", app=app, key=key, system_database_url=url)
    stepchange.wait_executors(app, 1)
    return app, SystemDatabase(url)


def create_schedule(url: str, app: str, name: str, *, cron: str = YEARLY) -> None:
    """The schedule, made as an application makes one: by DBOS's own client."""
    from dbos import DBOSClient

    client = DBOSClient(system_database_url=url)
    try:
        client.create_schedule(
            schedule_name=name,
            workflow_name="tick",
            schedule=cron,
            context={"team": "billing"},
            application_name=app,
        )
    finally:
        client.destroy()


def test_a_real_schedule_is_paused_resumed_triggered_and_backfilled(
    stepchange: StepChange, deployment: tuple[str, SystemDatabase]
) -> None:
    app, db = deployment
    name = f"yearly-{uuid.uuid4().hex[:6]}"
    create_schedule(db.url, app, name)
    base = f"/apps/{app}/schedules/{name}"
    started = steer(stepchange, app, db, name)

    wide = {"start": "2020-06-01T00:00:00Z", "end": "2024-06-01T00:00:00Z"}
    status, preview = stepchange.api(
        "GET", f"{base}/backfill?start={wide['start']}&end={wide['end']}"
    )
    assert status == 200, preview
    assert (preview["runs"], preview["needs_confirmation"]) == (4, False)
    status, backfilled = stepchange.api("POST", f"{base}/backfill", wide)
    assert status == 200, backfilled
    assert backfilled["workflow_ids"] == [
        f"sched-{name}-{year}-01-01T00:00:00+00:00" for year in (2021, 2022, 2023, 2024)
    ]

    runs = runs_succeeded(db, name, 5)
    assert started in {r["workflow_uuid"] for r in runs}
    assert audited(stepchange, app, name) == [
        ("schedule.backfill", "failed"),
        ("schedule.backfill", "ok"),
        ("schedule.pause", "ok"),
        ("schedule.resume", "ok"),
        ("schedule.trigger", "ok"),
    ]


def test_an_unknown_schedule_is_a_404_from_a_real_executor(
    stepchange: StepChange, deployment: tuple[str, SystemDatabase]
) -> None:
    app, _ = deployment
    status, body = stepchange.api("POST", f"/apps/{app}/schedules/no-such-schedule/trigger")
    assert status == 404, body
    assert body["detail"] == f"No schedule no-such-schedule in {app}."
