"""The rules read from an application's system database, on a copy of a real DBOS 3.2
database of either kind: failures of a name in a window, workflows waiting too long, a
deep queue, and workflows stranded on a version nobody runs."""

import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alerts.evaluator import evaluate
from alerts.models import Alert, AlertRule
from stepchange.asyncdb import db_async
from stepchange.models import Application
from tests.alerts.helpers import make_rule
from tests.sdk_fixtures import RUN, empty_schema_copy
from workflows import systemdb

Kind = AlertRule.Kind
SCHEMA = f"alerts_{RUN}"
pytestmark = pytest.mark.django_db(transaction=True)


def _rows() -> list[dict[str, Any]]:
    now = int(time.time() * 1000)
    rows = []

    def add(
        n: int, status: str, name: str, age_s: int, *, failed_s: int | None = None, **extra: Any
    ) -> None:
        # A failed workflow ends `failed_s` seconds ago (DBOS stamps completed_at then),
        # by default when it was created.
        ended = now - (age_s if failed_s is None else failed_s) * 1000
        for i in range(n):
            rows.append(
                {
                    "workflow_uuid": f"{name}-{status.lower()}-{age_s}-{i}"
                    + (f"-failed-{failed_s}" if failed_s is not None else ""),
                    "status": status,
                    "name": name,
                    "created_at": now - age_s * 1000,
                    "updated_at": ended if status == "ERROR" else now - age_s * 1000,
                    "completed_at": ended if status == "ERROR" else None,
                    "application_version": "v1",
                    **extra,
                }
            )

    add(3, "ERROR", "ship", 10)
    add(5, "ERROR", "ship", 7200)  # started and failed long before any window
    add(1, "ERROR", "ship", 7200, failed_s=10)  # started long ago, failed just now
    add(1, "ERROR", "bill", 10)
    add(1, "PENDING", "ship", 300)
    add(3, "ENQUEUED", "pack", 5, queue_name="packing")
    return rows


def _insert(execute: Any, table: str, rows: list[dict[str, Any]], mark: str) -> None:
    for row in rows:
        marks = ", ".join([mark] * len(row))
        execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({marks})", list(row.values()))


@pytest.fixture(params=["sqlite", "postgres"])
def orders(
    request: pytest.FixtureRequest,
    system_databases: None,
    sdk_fixtures: dict[str, dict[str, Any]],
    tmp_path: Path,
) -> Iterator[Application]:
    if request.param == "sqlite":
        path = tmp_path / "alerts.sqlite"
        shutil.copy(sdk_fixtures["py320-sqlite-default"]["path"], path)
        with sqlite3.connect(path) as db:
            db.execute("DELETE FROM workflow_status")
            db.execute("DELETE FROM application_versions")
            _insert(db.execute, "workflow_status", _rows(), "?")
        application = Application.objects.create(
            name="orders", system_database_url=f"sqlite:///{path}"
        )
        yield application
        systemdb.forget(application)
        return
    import psycopg

    url = sdk_fixtures["py320-pg-default"]["url"]
    empty_schema_copy(url, SCHEMA)
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {SCHEMA}.application_versions"
            " (LIKE dbos.application_versions INCLUDING ALL)"
        )
        _insert(cursor.execute, f"{SCHEMA}.workflow_status", _rows(), "%s")
    application = Application.objects.create(
        name="orders", system_database_url=url, system_database_schema=SCHEMA
    )
    yield application
    systemdb.forget(application)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {SCHEMA} CASCADE")


async def _alerts(rule: AlertRule) -> list[tuple[str, str]]:
    def read() -> list[tuple[str, str]]:
        return list(Alert.objects.filter(rule=rule).values_list("key", "state").order_by("key"))

    return await db_async(read)()


async def _rule(app: Application, kind: str, **parameters: Any) -> AlertRule:
    return await db_async(make_rule)(
        application=app,
        kind=kind,
        parameters=parameters,
        name=f"{kind} {sorted(parameters.items())}",
    )


async def test_failures_above_the_threshold_in_the_window_fire(orders: Application) -> None:
    three = await _rule(orders, Kind.FAILURES, workflow_name="ship", threshold=3, window_seconds=60)
    await evaluate()
    assert await _alerts(three) == [("ship", "firing")]
    alert = await db_async(Alert.objects.get)(rule=three)
    assert alert.link == "/apps/orders/workflows/?status=ERROR&workflow_name=ship"
    # The three made and failed just now, and the one made two hours ago that failed just
    # now: a failure counts when it happened, not when its workflow started.
    assert sorted(alert.details["workflow_ids"]) == [
        "ship-error-10-0",
        "ship-error-10-1",
        "ship-error-10-2",
        "ship-error-7200-0-failed-10",
    ]


async def test_failures_at_the_threshold_or_outside_the_window_do_not(
    orders: Application,
) -> None:
    # Four failed in the window; the five that failed two hours ago are not counted.
    at = await _rule(orders, Kind.FAILURES, workflow_name="ship", threshold=4, window_seconds=60)
    other = await _rule(orders, Kind.FAILURES, workflow_name="bill", threshold=1, window_seconds=60)
    await evaluate()
    assert await _alerts(at) == []
    assert await _alerts(other) == []


async def test_a_workflow_waiting_too_long_fires(orders: Application) -> None:
    stuck = await _rule(orders, Kind.STUCK, status="PENDING", older_than_seconds=120)
    patient = await _rule(orders, Kind.STUCK, status="PENDING,ENQUEUED", older_than_seconds=600)
    await evaluate()
    assert await _alerts(stuck) == [("", "firing")]
    assert await _alerts(patient) == []
    alert = await db_async(Alert.objects.get)(rule=stuck)
    assert alert.details["workflow_ids"] == ["ship-pending-300-0"]


async def test_a_deep_queue_fires(orders: Application) -> None:
    deep = await _rule(orders, Kind.QUEUE_DEPTH, threshold=2)
    named = await _rule(orders, Kind.QUEUE_DEPTH, threshold=2, queue_name="other")
    await evaluate()
    assert await _alerts(deep) == [("packing", "firing")]
    assert await _alerts(named) == []


async def test_workflows_stranded_on_a_version_nobody_runs_fire(orders: Application) -> None:
    stranded = await db_async(make_rule)(application=orders, kind=Kind.STRANDED)
    await evaluate()
    assert await _alerts(stranded) == [("v1", "firing")]
