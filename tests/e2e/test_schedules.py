"""A real dynamic schedule of a real dbos==3.2.0 executor, steered through StepChange:
paused, resumed, triggered and backfilled, each checked in the system database, with the
runs it started appearing and running to their end.

StepChange is given no system database here: it reads the schedule through the executor
(`list_schedules`, `get_schedule`), so the whole path is the executor's.
"""

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.servers import Executor, StepChange, SystemDatabase, eventually

pytestmark = pytest.mark.e2e

# Once a year, at a moment no test run reaches: every run here is one StepChange asked for.
YEARLY = "0 0 1 1 *"


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


def _status(db: SystemDatabase, name: str) -> str:
    [row] = db.rows("SELECT status FROM workflow_schedules WHERE schedule_name = %s", name)
    return str(row["status"])


def _runs(db: SystemDatabase, name: str) -> list[dict[str, Any]]:
    return db.rows(
        "SELECT workflow_uuid, status FROM workflow_status WHERE schedule_name = %s"
        " ORDER BY workflow_uuid",
        name,
    )


def test_a_real_schedule_is_paused_resumed_triggered_and_backfilled(
    stepchange: StepChange, deployment: tuple[str, SystemDatabase]
) -> None:
    app, db = deployment
    name = f"yearly-{uuid.uuid4().hex[:6]}"
    create_schedule(db.url, app, name)
    base = f"/apps/{app}/schedules/{name}"

    status, listing = stepchange.api("GET", f"/apps/{app}/schedules?name_prefix=yearly-")
    assert status == 200, listing
    [shown] = listing["items"]
    assert (shown["name"], shown["workflow_name"], shown["cron"]) == (name, "tick", YEARLY)
    assert shown["status"] == "ACTIVE"
    assert shown["next_fire_times"][0].endswith("-01-01T00:00:00Z")
    assert listing["source"] == "executor"

    status, paused = stepchange.api("POST", f"{base}/pause", {"reason": "e2e"})
    assert status == 200, paused
    assert _status(db, name) == "PAUSED"
    status, resumed = stepchange.api("POST", f"{base}/resume")
    assert status == 200, resumed
    assert _status(db, name) == "ACTIVE"

    status, triggered = stepchange.api("POST", f"{base}/trigger")
    assert status == 200, triggered
    [started] = triggered["workflow_ids"]
    assert started.startswith(f"sched-{name}-trigger-")

    # Once a year never fires inside three days: refused, nothing sent.
    window = {"start": "2024-01-01T00:00:00Z", "end": "2024-01-04T00:00:00Z"}
    status, refused = stepchange.api("POST", f"{base}/backfill", window)
    assert status == 400, refused
    assert "does not fire between" in refused["detail"]

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

    def all_done() -> list[dict[str, Any]] | None:
        runs = _runs(db, name)
        return runs if len(runs) == 5 and {r["status"] for r in runs} == {"SUCCESS"} else None

    runs = eventually(all_done, timeout=60, what="the five scheduled runs to succeed")
    assert started in {r["workflow_uuid"] for r in runs}

    status, audit = stepchange.api("GET", f"/audit?app={app}&target={name}")
    assert status == 200, audit
    actions = sorted(item["action"] for item in audit["items"])
    assert actions == [
        "schedule.backfill",
        "schedule.backfill",
        "schedule.pause",
        "schedule.resume",
        "schedule.trigger",
    ]


def test_an_unknown_schedule_is_a_404_from_a_real_executor(
    stepchange: StepChange, deployment: tuple[str, SystemDatabase]
) -> None:
    app, _ = deployment
    status, body = stepchange.api("POST", f"/apps/{app}/schedules/no-such-schedule/trigger")
    assert status == 404, body
    assert body["detail"] == f"No schedule no-such-schedule in {app}."
