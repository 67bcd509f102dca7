"""dbos-mcp's get_workflow_aggregates (POST .../workflows/aggregates) is answered from the
application's system database when it has one, on SQLite and on Postgres, with DBOS's
groups and values, each checked against the rows read here with plain SQL; from an
executor only when there is none; and the StepChange-Source header says which. Bad
requests are 400 problems; an aggregate the database stops is a 504 with advice."""

import json
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from django.contrib.auth.models import User
from django.test import Client

from conductor import relay
from conductor.models import Executor
from conductor.protocol import GetWorkflowAggregatesResponse, WorkflowAggregateOutput
from stepchange.models import Application
from tests.conftest import make_app, make_user
from tests.sdk_fixtures import registered
from tests.stepchange.test_conductor_api import BASE, PROBLEM, call, token_of
from workflows.aggregates import SLOW_AGGREGATE, AggregateError, AggregateQuery
from workflows.models import WorkflowStatus

pytestmark = pytest.mark.django_db
FIXTURES = ["py320-sqlite-default", "py320-pg-default"]
Row = dict[str, Any]


@pytest.fixture
def vera(db: None) -> User:
    return make_user(username="vera", role="viewer")


def stored_rows(fixture: dict[str, Any]) -> list[Row]:
    """Every status row of the fixture's database, read with the database's own driver."""
    columns = "workflow_uuid, status, name, queue_name, created_at, started_at_epoch_ms"
    columns += ", completed_at"
    if fixture["path"]:
        with sqlite3.connect(fixture["path"]) as lite:
            lite.row_factory = sqlite3.Row
            return [dict(row) for row in lite.execute(f"SELECT {columns} FROM workflow_status")]
    schema = fixture["schema"] or "dbos"
    with psycopg.connect(fixture["url"]) as pg:
        cursor = pg.execute(f"SELECT {columns} FROM {schema}.workflow_status")
        names = [column.name for column in cursor.description or []]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def expected(rows: list[Row], key: Callable[[Row], tuple[str | None, ...]]) -> dict[Any, Row]:
    """Count, earliest creation and the longest waits per group, computed in Python."""
    groups: dict[Any, list[Row]] = defaultdict(list)
    for row in rows:
        groups[key(row)].append(row)

    def longest(rows: list[Row], column: str) -> int | None:
        spans = [r[column] - r["created_at"] for r in rows if r[column] is not None]
        return max(spans) if spans else None

    return {
        group: {
            "count": len(members),
            "minCreatedAt": min(r["created_at"] for r in members),
            "maxQueueWaitMs": longest(members, "started_at_epoch_ms"),
            "maxTotalLatencyMs": longest(members, "completed_at"),
        }
        for group, members in groups.items()
    }


def as_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def aggregates(app: str, body: dict[str, Any], token: str) -> tuple[int, Any, str]:
    return call("POST", f"{BASE}/apps/{app}/workflows/aggregates", body, token=token)


def answered(app: str, body: dict[str, Any], token: str) -> Any:
    """The whole answer, headers and all."""
    return Client().post(
        f"{BASE}/apps/{app}/workflows/aggregates",
        json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


@pytest.fixture(params=FIXTURES)
def stored(
    request: pytest.FixtureRequest, system_databases: None, sdk_fixtures: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    """A Python fixture's system database, on SQLite and on Postgres, and its application."""
    fixture = sdk_fixtures[request.param]
    return fixture, registered(fixture).name


def test_counts_and_extremes_per_status_and_name_come_from_the_system_database(
    vera: User, stored: tuple[dict[str, Any], str]
) -> None:
    fixture, app = stored
    body = {
        "groupByStatus": True,
        "groupByWorkflowName": True,
        "selectCount": True,
        "selectMinCreatedAt": True,
        "selectMaxQueueWaitMs": True,
        "selectMaxTotalLatencyMs": True,
    }
    response = answered(app, body, token_of(vera))
    assert response.status_code == 200, response.content
    assert response["StepChange-Source"] == "database"
    want = expected(stored_rows(fixture), lambda r: (r["status"], r["name"]))
    assert len(want) > 2  # the fixture holds several statuses and names
    found = {}
    for row in response.json():
        group = (row["group"]["status"], row["group"]["name"])
        values = {k: v for k, v in row.items() if k != "group"}
        values["minCreatedAt"] = as_ms(values["minCreatedAt"])
        found[group] = values
    for values in want.values():
        for name in ("maxQueueWaitMs", "maxTotalLatencyMs"):
            if values[name] is None:
                del values[name]
    assert found == want


def test_time_buckets_and_the_searchs_filters_narrow_the_groups(
    vera: User, stored: tuple[dict[str, Any], str]
) -> None:
    fixture, app = stored
    rows = stored_rows(fixture)
    size = 1000
    statuses = ["SUCCESS", "ERROR"]
    prefix = min(row["workflow_uuid"] for row in rows)[:4]
    start = min(row["created_at"] for row in rows) + 1
    body = {
        "groupByQueueName": True,
        "timeBucketSizeMs": size,
        "status": statuses,
        "workflowIdPrefix": [prefix, "no-such-prefix"],
        "startTime": datetime.fromtimestamp(start / 1000, tz=UTC).isoformat(),
    }
    status, found, _ = aggregates(app, body, token_of(vera))
    assert status == 200, found
    kept = [
        r
        for r in rows
        if r["status"] in statuses
        and r["workflow_uuid"].startswith(prefix)
        and r["created_at"] >= start
    ]
    assert kept, "the filters keep some workflows"
    assert len(kept) < len(rows), "and leave out some"
    want = expected(kept, lambda r: (r["queue_name"], str(r["created_at"] // size * size)))
    counts = {(row["group"]["queue_name"], row["group"]["time_bucket"]): row for row in found}
    assert {group: row["count"] for group, row in counts.items()} == {
        group: values["count"] for group, values in want.items()
    }
    # Only the count was asked for (none selected means the count, as DBOS has it).
    assert all(set(row) == {"group", "count"} for row in found)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"groupByColour": True}, "groupByColour"),
        ({"groupByStatus": True, "status": ["DONE"]}, "DONE"),
        ({"groupByStatus": True, "startTime": "yesterday"}, "startTime"),
        ({"groupByStatus": True, "workflowName": "greet"}, "workflowName"),
        ({"groupByStatus": True, "timeBucketSizeMs": 0}, "timeBucketSizeMs"),
        ({"selectCount": True}, "group_by"),
        (
            {
                "groupByStatus": True,
                "startTime": "2026-12-02T00:00:00Z",
                "endTime": "2026-12-01T00:00:00Z",
            },
            "before it starts",
        ),
    ],
)
def test_a_bad_aggregate_request_is_a_400_problem_naming_what_is_wrong(
    vera: User,
    system_databases: None,
    sdk_fixtures: dict[str, Any],
    body: dict[str, Any],
    says: str,
) -> None:
    app = registered(sdk_fixtures["py320-sqlite-default"]).name
    status, found, content_type = aggregates(app, body, token_of(vera))
    assert (status, content_type) == (400, PROBLEM), found
    assert says in str(found)


def test_an_unknown_group_or_value_is_refused_by_the_database_read_too() -> None:
    with pytest.raises(AggregateError, match="cannot be grouped by 'colour'"):
        AggregateQuery(group_by=("colour",)).check()
    with pytest.raises(AggregateError, match="'median' cannot be selected"):
        AggregateQuery(group_by=("status",), select=("median",)).check()


def test_an_aggregate_the_database_stops_is_a_504_with_advice(
    vera: User, system_databases: None, sdk_fixtures: dict[str, Any], settings: Any
) -> None:
    fixture = sdk_fixtures["py320-pg-default"]
    settings.SYSTEM_DB_STATEMENT_TIMEOUT_MS = 200
    app = registered(fixture).name
    token = token_of(vera)
    body = {"groupByStatus": True}
    # Once unhindered: the schema is read and cached.
    assert aggregates(app, body, token)[0] == 200
    schema = fixture["schema"] or "dbos"
    locked, release = threading.Event(), threading.Event()

    def hold_the_table() -> None:
        with psycopg.connect(fixture["url"]) as db:
            table = f"{schema}.{WorkflowStatus._meta.db_table}"
            db.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            locked.set()
            release.wait(10)
            db.rollback()

    holder = threading.Thread(target=hold_the_table)
    holder.start()
    try:
        assert locked.wait(10)
        status, found, content_type = aggregates(app, body, token)
    finally:
        release.set()
        holder.join()
    assert (status, content_type) == (504, PROBLEM), found
    assert found["detail"] == SLOW_AGGREGATE.format(timeout=200)


def test_without_a_system_database_an_executor_answers(
    vera: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_app(name="orders")
    asked: list[Any] = []

    async def ask(application: Application, message: Any, **options: Any) -> Any:
        asked.append(message)
        row = WorkflowAggregateOutput(group={"status": "SUCCESS"}, count=3)
        reply = GetWorkflowAggregatesResponse(
            type="get_workflow_aggregates", request_id="r-1", output=[row]
        )
        return relay.Answer(reply, Executor())

    monkeypatch.setattr(relay, "ask", ask)
    response = answered("orders", {"groupByStatus": True}, token_of(vera))
    assert response.status_code == 200, response.content
    assert response["StepChange-Source"] == "executor"
    assert response.json() == [{"group": {"status": "SUCCESS"}, "count": 3}]
    [message] = asked
    assert message.body.group_by_status is True


def test_without_a_system_database_or_an_executor_it_is_a_503(vera: User) -> None:
    make_app(name="orders")
    status, found, content_type = aggregates("orders", {"groupByStatus": True}, token_of(vera))
    assert (status, content_type) == (503, PROBLEM), found
