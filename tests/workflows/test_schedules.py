"""Stories about an application's dynamic schedules: when they fire, what a backfill
means, the schedules read from real DBOS 3.2.0 system databases of both kinds, and the
actions sent to an executor, refused before anything is sent, or refused by it."""

import asyncio
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from stepchange.models import Application, AuditRecord
from tests.conftest import make_user, signed_in
from tests.fake_executor import FakeExecutor, connect_executor
from workflows import systemdb
from workflows.schedules import (
    MAX_BACKFILL_RUNS,
    TS_BACKFILL_MAX_DAYS,
    ScheduleError,
    backfill_plan,
    fire_times,
    runs_between,
)
from workflows.sources import Schedule, ScheduleQuery, source_for

JSON = "application/json"
NEW_YEAR = datetime(2026, 1, 1, tzinfo=UTC)

# When they fire.


def test_a_five_field_cron_fires_on_minutes_and_a_six_field_one_on_seconds() -> None:
    assert fire_times("*/15 * * * *", timezone=None, after=NEW_YEAR) == [
        NEW_YEAR + timedelta(minutes=15 * n) for n in (1, 2, 3)
    ]
    assert fire_times("*/20 * * * * *", timezone=None, after=NEW_YEAR) == [
        NEW_YEAR + timedelta(seconds=20 * n) for n in (1, 2, 3)
    ]


def test_a_schedule_fires_in_its_own_time_zone() -> None:
    [first] = fire_times("0 9 * * *", timezone="America/New_York", after=NEW_YEAR, count=1)
    # 09:00 in New York in January is 14:00 UTC.
    assert first.astimezone(UTC) == datetime(2026, 1, 1, 14, tzinfo=UTC)


def test_a_cron_or_a_zone_that_does_not_parse_is_said_so() -> None:
    with pytest.raises(ScheduleError, match="not a cron expression"):
        fire_times("every tuesday", timezone=None, after=NEW_YEAR)
    with pytest.raises(ScheduleError, match="not a time zone"):
        fire_times("0 9 * * *", timezone="Mars/Olympus", after=NEW_YEAR)


def test_a_backfill_counts_the_fire_times_strictly_inside_its_range() -> None:
    daily = Schedule(name="daily", workflow_name="report", cron="0 0 * * *", status="ACTIVE")
    # Midnight on the 1st is the start (excluded); the 2nd, 3rd and 4th are inside; the
    # 5th is the end (excluded), as DBOS backfills.
    plan = backfill_plan(daily, start=NEW_YEAR, end=NEW_YEAR + timedelta(days=4))
    assert plan.runs == 3
    assert plan.first[0] == NEW_YEAR + timedelta(days=1)
    assert not plan.needs_confirmation
    big = backfill_plan(daily, start=NEW_YEAR, end=NEW_YEAR + timedelta(days=200))
    assert (big.runs, big.needs_confirmation) == (199, True)


def test_a_backfill_over_years_is_refused_and_counting_stops_early() -> None:
    minutely = Schedule(name="m", workflow_name="tick", cron="* * * * *", status="ACTIVE")
    with pytest.raises(ScheduleError, match="more than 10,000 times"):
        backfill_plan(minutely, start=NEW_YEAR, end=NEW_YEAR + timedelta(days=3 * 365))
    counted = runs_between(
        "* * * * * *", timezone=None, start=NEW_YEAR, end=datetime(2036, 1, 1, tzinfo=UTC), cap=10
    )
    assert counted == 11


def test_a_backfill_that_ends_before_it_starts_or_holds_no_run_is_refused() -> None:
    daily = Schedule(name="daily", workflow_name="report", cron="0 0 * * *", status="ACTIVE")
    with pytest.raises(ScheduleError, match="must come after its start"):
        backfill_plan(daily, start=NEW_YEAR, end=NEW_YEAR)
    with pytest.raises(ScheduleError, match="does not fire between"):
        backfill_plan(daily, start=NEW_YEAR, end=NEW_YEAR + timedelta(hours=2))


# Read from real system databases.

PROGRAM = """
import sys
from dbos import DBOS, DBOSConfig

DBOS(config=DBOSConfig(name="orders", system_database_url=sys.argv[1]))

@DBOS.workflow()
def tick(at, context):
    return None

DBOS.launch()
DBOS.create_schedule(
    schedule_name="nightly-report", workflow_fn=tick, schedule="0 0 2 * * *",
    context={"region": "eu"}, cron_timezone="Europe/Paris", automatic_backfill=True,
)
DBOS.create_schedule(schedule_name="hourly-sync", workflow_fn=tick, schedule="0 * * * *")
DBOS.pause_schedule("hourly-sync")
DBOS.destroy()
"""
# A workflow that ran under a schedule no row stores (one an SDK declares in code).
DECLARED = (
    "INSERT INTO {table} (workflow_uuid, status, name, created_at, updated_at, schedule_name)"
    " VALUES ({marks})"
)
DECLARED_ROW = ["legacy-1", "SUCCESS", "cleanup", 1, 1, "legacy-cleanup"]


def _write(url: str) -> None:
    subprocess.run([sys.executable, "-c", PROGRAM, url], check=True, capture_output=True)


@pytest.fixture(params=["sqlite", "postgres"])
def stored(
    request: pytest.FixtureRequest, system_databases: None, tmp_path: Path
) -> Iterator[Application]:
    if request.param == "sqlite":
        path = tmp_path / "orders.sqlite"
        _write(f"sqlite:///{path}")
        with sqlite3.connect(path) as db:
            db.execute(
                DECLARED.format(table="workflow_status", marks="?, ?, ?, ?, ?, ?"), DECLARED_ROW
            )
        application = Application.objects.create(
            name="orders", system_database_url=f"sqlite:///{path}"
        )
        yield application
        systemdb.forget(application)
        return
    import psycopg

    from tests.e2e.servers import PostgresDatabases, require_postgres

    require_postgres()
    made = PostgresDatabases()
    url = made.new("sched")
    try:
        _write(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                DECLARED.format(table="dbos.workflow_status", marks="%s, %s, %s, %s, %s, %s"),
                DECLARED_ROW,
            )
        application = Application.objects.create(name="orders", system_database_url=url)
        yield application
        systemdb.forget(application)
    finally:
        made.drop_all()


@pytest.mark.django_db(transaction=True)
async def test_the_schedules_a_real_dbos_wrote_are_read_with_what_they_fire(
    stored: Application,
) -> None:
    source = await source_for(stored)
    found = await source.schedules(ScheduleQuery())
    assert found.source == "system database"
    nightly, hourly = sorted(found.items, key=lambda s: s.name, reverse=True)
    assert (nightly.name, nightly.workflow_name, nightly.cron) == (
        "nightly-report",
        "tick",
        "0 0 2 * * *",
    )
    assert (nightly.timezone, nightly.status, nightly.automatic_backfill) == (
        "Europe/Paris",
        "ACTIVE",
        True,
    )
    assert nightly.context == '{"region": "eu"}'
    assert (hourly.name, hourly.status, hourly.paused) == ("hourly-sync", "PAUSED", True)
    assert list(found.unstored or []) == ["legacy-cleanup"]
    paused = await source.schedules(ScheduleQuery(status=["PAUSED"]))
    assert [s.name for s in paused.items] == ["hourly-sync"]
    prefixed = await source.schedules(ScheduleQuery(name_prefix=["night"]))
    assert [s.name for s in prefixed.items] == ["nightly-report"]
    assert await source.schedule("nope") is None
    assert (await source.schedule("hourly-sync")) == hourly


@pytest.mark.django_db(transaction=True)
def test_the_schedules_page_shows_them_and_the_ones_declared_in_code(stored: Application) -> None:
    page = signed_in(make_user(username="vera", role="viewer")).get("/apps/orders/schedules/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "nightly-report" in text
    assert "Europe/Paris" in text
    assert "/apps/orders/workflows/?schedule_name=nightly-report" in text
    assert "Schedules declared in code" in text
    assert "legacy-cleanup" in text
    # A viewer is shown no actions.
    assert "Trigger now" not in text
    assert "bulk-schedules" not in text
    api = signed_in(make_user(username="otto", role="operator")).get(
        "/api/v1/apps/orders/schedules?status=active"
    )
    body = api.json()
    assert [item["name"] for item in body["items"]] == ["nightly-report"]
    assert len(body["items"][0]["next_fire_times"]) == 3
    assert body["unstored"] == ["legacy-cleanup"]


# Actions, through an executor.


def schedule_row(name: str = "nightly", **fields: Any) -> dict[str, Any]:
    """A schedule as get_schedule returns it (PROTOCOL.md §2.2)."""
    return {
        "schedule_id": "s-1",
        "schedule_name": name,
        "workflow_name": "report",
        "workflow_class_name": None,
        "schedule": "0 0 * * *",
        "status": "ACTIVE",
        "context": "None",
        "last_fired_at": None,
        "automatic_backfill": False,
        "cron_timezone": None,
        "queue_name": None,
        "application_name": "orders",
        **fields,
    }


async def client_for(role: str) -> AsyncClient:
    user = await sync_to_async(make_user)(username=role[:4], role=role)
    client = AsyncClient()
    await client.aforce_login(user)
    return client


async def acting(
    executor: FakeExecutor, call: Any, *replies: dict[str, Any]
) -> tuple[Any, list[dict[str, Any]]]:
    calling = asyncio.create_task(call)
    requests = [await executor.answer(**reply) for reply in replies]
    return await calling, requests


async def audits(action: str) -> list[AuditRecord]:
    def read() -> list[AuditRecord]:
        return list(AuditRecord.objects.filter(action=action).order_by("pk"))

    return await sync_to_async(read)()


@pytest.mark.django_db(transaction=True)
async def test_an_operator_pauses_a_schedule_and_the_attempt_is_audited(
    orders: Application, executor: FakeExecutor
) -> None:
    client = await client_for("operator")
    response, (lookup, pause) = await acting(
        executor,
        client.post(
            "/api/v1/apps/orders/schedules/nightly/pause",
            {"reason": "maintenance"},
            content_type=JSON,
        ),
        {"output": schedule_row()},
        {"success": True},
    )
    assert response.status_code == 200, response.content
    assert (lookup["type"], lookup["schedule_name"]) == ("get_schedule", "nightly")
    assert (pause["type"], pause["schedule_name"]) == ("pause_schedule", "nightly")
    [record] = await audits("schedule.pause")
    assert (record.result, record.target, record.reason) == ("ok", "nightly", "maintenance")
    assert record.request_id == pause["request_id"] == response.json()["request_id"]


@pytest.mark.django_db(transaction=True)
async def test_a_trigger_answers_the_workflow_it_started(
    orders: Application, executor: FakeExecutor
) -> None:
    client = await client_for("operator")
    response, (_, trigger) = await acting(
        executor,
        client.post("/api/v1/apps/orders/schedules/nightly/trigger", content_type=JSON),
        {"output": schedule_row()},
        {"workflow_id": "sched-nightly-trigger-1"},
    )
    assert response.status_code == 200, response.content
    assert trigger["type"] == "trigger_schedule"
    assert response.json()["workflow_ids"] == ["sched-nightly-trigger-1"]


@pytest.mark.django_db(transaction=True)
async def test_a_backfill_sends_its_range_and_asks_to_confirm_above_a_hundred_runs(
    orders: Application, executor: FakeExecutor
) -> None:
    client = await client_for("operator")
    url = "/api/v1/apps/orders/schedules/nightly/backfill"
    body = {"start": "2026-01-01T00:00:00Z", "end": "2026-08-01T00:00:00Z"}
    response, _ = await acting(
        executor, client.post(url, body, content_type=JSON), {"output": schedule_row()}
    )
    assert response.status_code == 409
    assert "211 times: confirm" in response.json()["detail"]
    assert await executor.communicator.receive_nothing(timeout=0.2)
    response, (_, backfill) = await acting(
        executor,
        client.post(url, {**body, "confirm": True}, content_type=JSON),
        {"output": schedule_row()},
        {"workflow_ids": ["a", "b"]},
    )
    assert response.status_code == 200, response.content
    assert backfill["type"] == "backfill_schedule"
    assert backfill["start"].startswith("2026-01-01T00:00:00")
    assert backfill["end"].startswith("2026-08-01T00:00:00")
    assert [r.result for r in await audits("schedule.backfill")] == ["failed", "ok"]


@pytest.mark.django_db(transaction=True)
async def test_bad_backfills_are_refused_before_anything_is_sent(
    orders: Application, executor: FakeExecutor
) -> None:
    client = await client_for("operator")
    url = "/api/v1/apps/orders/schedules/nightly/backfill"
    response = await client.post(url, {"start": "yesterday", "end": "now"}, content_type=JSON)
    assert response.status_code == 400
    assert "start must be an ISO 8601 time" in response.json()["detail"]
    years = {"start": "2020-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z", "confirm": True}
    response, _ = await acting(
        executor,
        client.post(url, years, content_type=JSON),
        {"output": schedule_row(schedule="*/5 * * * *")},
    )
    assert response.status_code == 400
    assert f"more than {MAX_BACKFILL_RUNS:,} times" in response.json()["detail"]
    response, _ = await acting(
        executor,
        client.post(url, years, content_type=JSON),
        {"output": schedule_row(schedule="not a cron")},
    )
    assert response.status_code == 400
    assert "not a cron expression" in response.json()["detail"]
    assert await executor.communicator.receive_nothing(timeout=0.2)
    assert [r.result for r in await audits("schedule.backfill")] == ["failed", "failed"]


@pytest.mark.django_db(transaction=True)
async def test_an_unknown_schedule_is_a_404_and_an_executor_error_a_502(
    orders: Application, executor: FakeExecutor
) -> None:
    client = await client_for("operator")
    response, _ = await acting(
        executor,
        client.post("/api/v1/apps/orders/schedules/nope/resume", content_type=JSON),
        {"output": None},
    )
    assert response.status_code == 404
    assert response.json()["detail"] == "No schedule nope in orders."
    response, _ = await acting(
        executor,
        client.post("/api/v1/apps/orders/schedules/nightly/resume", content_type=JSON),
        {"output": schedule_row(status="PAUSED")},
        {"success": False, "error_message": "database is locked"},
    )
    assert response.status_code == 502
    assert "database is locked" in response.json()["detail"]
    assert [r.result for r in await audits("schedule.resume")] == ["failed", "failed"]


@pytest.mark.django_db(transaction=True)
async def test_a_viewer_may_read_but_not_act(orders: Application, executor: FakeExecutor) -> None:
    client = await client_for("viewer")
    response = await client.post("/api/v1/apps/orders/schedules/nightly/pause", content_type=JSON)
    assert response.status_code == 403
    assert await executor.communicator.receive_nothing(timeout=0.2)
    response, (listing,) = await acting(
        executor,
        client.get("/api/v1/apps/orders/schedules?name_prefix=night"),
        {"output": [schedule_row()]},
    )
    assert response.status_code == 200
    assert listing["body"]["schedule_name_prefix"] == ["night"]
    assert response.json()["unstored"] is None


@pytest.mark.django_db(transaction=True)
async def test_a_bulk_pause_pauses_the_active_ones_and_skips_the_paused(
    orders: Application, executor: FakeExecutor
) -> None:
    client = await client_for("operator")
    rows = [schedule_row("a-1"), schedule_row("a-2", status="PAUSED"), schedule_row("a-3")]
    response, requests = await acting(
        executor,
        client.post(
            "/api/v1/apps/orders/schedule-bulk-actions",
            {"action": "pause", "name_prefix": ["a-"], "workflow_name": ["report"]},
            content_type=JSON,
        ),
        {"output": rows},
        {"output": rows[0]},
        {"success": True},
        {"output": rows[2]},
        {"success": False, "error_message": "gone"},
    )
    assert response.status_code == 200, response.content
    listing = requests[0]
    assert listing["body"]["schedule_name_prefix"] == ["a-"]
    assert listing["body"]["workflow_name"] == ["report"]
    body = response.json()
    assert (body["done"], body["skipped"]) == (["a-1"], ["a-2"])
    assert "gone" in body["failed"]["a-3"]
    [whole] = await audits("schedule.bulk_pause")
    assert whole.result == "failed"
    assert whole.parameters["done"] == ["a-1"]
    assert [r.target for r in await audits("schedule.pause")] == ["a-1", "a-3"]


def test_a_bulk_over_a_bad_status_is_refused(db: None) -> None:
    Application.objects.create(name="orders")
    client = signed_in(make_user(username="otto", role="operator"))
    response = client.post(
        "/api/v1/apps/orders/schedule-bulk-actions",
        {"action": "pause", "status": ["SLEEPING"]},
        content_type=JSON,
    )
    assert response.status_code in (400, 422)
    assert "detail" in response.json()
    assert not AuditRecord.objects.filter(action__startswith="schedule.").exists()


@pytest.fixture
async def ts_executor(orders: Application) -> Any:
    fake = await connect_executor(language="typescript", dbos_version="5.0.2")
    yield fake
    await fake.communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_typescript_executor_is_sent_a_backfill_of_a_month_at_most(
    orders: Application, ts_executor: FakeExecutor
) -> None:
    """@dbos-inc/dbos-sdk 5.0.2 walks the range a second at a time, answering nothing else:
    four years of a yearly schedule held it for minutes. StepChange says so instead."""
    client = await client_for("operator")
    url = "/api/v1/apps/orders/schedules/yearly/backfill"
    years = {"start": "2020-06-01T00:00:00Z", "end": "2024-06-01T00:00:00Z"}
    yearly = schedule_row("yearly", schedule="0 0 1 1 *")
    preview, _ = await acting(
        ts_executor,
        client.get(url, years),
        {"output": yearly},
    )
    assert preview.status_code == 400
    detail = preview.json()["detail"]
    assert "TypeScript executor (@dbos-inc/dbos-sdk 5.0.2)" in detail
    assert f"at most {TS_BACKFILL_MAX_DAYS} days at a time" in detail
    assert "this range spans 1,461 days" in detail
    response, _ = await acting(
        ts_executor, client.post(url, years, content_type=JSON), {"output": yearly}
    )
    assert response.status_code == 400
    assert response.json()["detail"] == detail
    assert await ts_executor.communicator.receive_nothing(timeout=0.2)
    [record] = await audits("schedule.backfill")
    assert (record.result, record.detail) == ("failed", detail)

    around = {"start": "2020-12-31T00:00:00Z", "end": "2021-01-02T00:00:00Z"}
    response, (_, backfill) = await acting(
        ts_executor,
        client.post(url, around, content_type=JSON),
        {"output": yearly},
        {"workflow_ids": ["sched-yearly-2021-01-01T00:00:00.000Z"]},
    )
    assert response.status_code == 200, response.content
    assert backfill["type"] == "backfill_schedule"
    assert response.json()["workflow_ids"] == ["sched-yearly-2021-01-01T00:00:00.000Z"]


@pytest.mark.django_db(transaction=True)
async def test_a_python_executor_is_sent_a_backfill_of_years(
    orders: Application, executor: FakeExecutor
) -> None:
    client = await client_for("operator")
    url = "/api/v1/apps/orders/schedules/yearly/backfill"
    years = {"start": "2020-06-01T00:00:00Z", "end": "2024-06-01T00:00:00Z"}
    response, (_, backfill) = await acting(
        executor,
        client.post(url, years, content_type=JSON),
        {"output": schedule_row("yearly", schedule="0 0 1 1 *")},
        {"workflow_ids": ["a", "b", "c", "d"]},
    )
    assert response.status_code == 200, response.content
    assert backfill["type"] == "backfill_schedule"


# The console's backfill form.


@pytest.mark.django_db(transaction=True)
async def test_the_backfill_form_counts_the_runs_and_wants_a_confirmation_above_a_hundred(
    orders: Application, executor: FakeExecutor
) -> None:
    client = await client_for("operator")
    url = "/apps/orders/schedules/backfill/"
    page, _ = await acting(
        executor,
        client.get(
            url, {"name": "nightly", "start": "2026-01-01T00:00", "end": "2026-08-01T00:00"}
        ),
        {"output": schedule_row()},
    )
    assert page.status_code == 200
    assert "<strong>211</strong> runs" in page.content.decode()
    assert "I mean it" in page.content.decode()
    posted, _ = await acting(
        executor,
        client.post(
            url, {"name": "nightly", "start": "2026-01-01T00:00", "end": "2026-08-01T00:00"}
        ),
        {"output": schedule_row()},
        {"output": schedule_row()},
    )
    assert posted.status_code == 400
    assert "211 runs" in posted.content.decode()
    assert await executor.communicator.receive_nothing(timeout=0.2)
    bad, _ = await acting(
        executor,
        client.get(url, {"name": "nightly", "start": "soon", "end": "2026-08-01T00:00"}),
        {"output": schedule_row()},
    )
    assert bad.status_code == 200
    assert "Enter a valid date/time" in bad.content.decode()


@pytest.mark.django_db(transaction=True)
async def test_the_backfill_form_says_a_typescript_executor_takes_a_month_at_a_time(
    orders: Application, ts_executor: FakeExecutor
) -> None:
    client = await client_for("operator")
    page, _ = await acting(
        ts_executor,
        client.get(
            "/apps/orders/schedules/backfill/",
            {"name": "nightly", "start": "2026-01-01T00:00", "end": "2026-08-01T00:00"},
        ),
        {"output": schedule_row()},
    )
    assert page.status_code == 200
    text = page.content.decode()
    assert "checks every second of a backfill&#x27;s range" in text
    assert "this range spans 212 days" in text
    # No count to confirm, no button: the range is refused as it stands.
    assert "I mean it" not in text
