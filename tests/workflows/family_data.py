"""A family of workflows in a real DBOS system database, for the stories about the family
graph and the dashboard's headline numbers: a parent with fifteen children, one of which
failed, has a child of its own and was forked twice; a workflow whose parent is gone; and
workflows pending, enqueued and failed today and long ago."""

import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from stepchange.models import Application
from tests.sdk_fixtures import RUN, empty_schema_copy
from workflows import systemdb

NOW = datetime.now(tz=UTC)
HOUR = 3_600_000
SECOND = 1000
PARENT = "fam-parent"
FAILED_CHILD = "fam-child-03"
GRANDCHILD = "fam-grandchild"
FORKS = ["fam-fork-a", "fam-fork-b"]
ORPHAN = "fam-orphan"
GONE_PARENT = "fam-gone"
CHILDREN = [f"fam-child-{n:02d}" for n in range(15)]
# A status for each child: the failed one, one that exhausted its recoveries, the rest done.
CHILD_STATUS = {FAILED_CHILD: "ERROR", "fam-child-05": "MAX_RECOVERY_ATTEMPTS_EXCEEDED"}
Row = dict[str, Any]


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def family_rows() -> list[Row]:
    """The workflows, each as its workflow_status row's columns."""
    start = _ms(NOW) - 2 * HOUR
    rows: list[Row] = [
        {"workflow_uuid": PARENT, "status": "SUCCESS", "name": "checkout", "created_at": start}
        | {"completed_at": start + 90 * SECOND},
    ]
    for n, child in enumerate(CHILDREN):
        created = start + (n + 1) * SECOND
        status = CHILD_STATUS.get(child, "SUCCESS")
        rows.append(
            {"workflow_uuid": child, "status": status, "name": "charge_card"}
            | {"created_at": created, "completed_at": created + 250, "parent_workflow_id": PARENT}
        )
    failed = start + 4 * SECOND
    rows += [
        {"workflow_uuid": GRANDCHILD, "status": "SUCCESS", "name": "notify"}
        | {"created_at": failed + 100, "completed_at": failed + 150}
        | {"parent_workflow_id": FAILED_CHILD},
        {"workflow_uuid": FORKS[0], "status": "SUCCESS", "name": "charge_card"}
        | {"created_at": failed + HOUR, "completed_at": failed + HOUR + 300}
        | {"forked_from": FAILED_CHILD},
        {"workflow_uuid": FORKS[1], "status": "PENDING", "name": "charge_card"}
        | {"created_at": failed + HOUR + 60 * SECOND, "forked_from": FAILED_CHILD},
        {"workflow_uuid": ORPHAN, "status": "SUCCESS", "name": "refund"}
        | {"created_at": start, "completed_at": start + 10, "parent_workflow_id": GONE_PARENT},
        {"workflow_uuid": "fam-queued-1", "status": "ENQUEUED", "name": "ship"}
        | {"created_at": start, "queue_name": "shipping"},
        {"workflow_uuid": "fam-queued-2", "status": "ENQUEUED", "name": "ship"}
        | {"created_at": start + 1, "queue_name": "shipping"},
        {"workflow_uuid": "fam-old-failure", "status": "ERROR", "name": "charge_card"}
        | {
            "created_at": _ms(NOW - timedelta(days=3)),
            "completed_at": _ms(NOW - timedelta(days=3)),
        },
    ]
    return rows


# What the dashboard counts in that database: in flight (PENDING), queued (ENQUEUED), and
# failed (ERROR or MAX_RECOVERY_ATTEMPTS_EXCEEDED) created in the last 24 hours.
IN_FLIGHT, QUEUED, FAILED_TODAY = 1, 2, 2


def _insert(execute: Any, rows: list[Row], table: str, columns: set[str], mark: str) -> None:
    for row in rows:
        row = {"updated_at": row.get("completed_at") or row["created_at"]} | row
        row = {key: value for key, value in row.items() if key in columns}
        marks = ", ".join([mark] * len(row))
        execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({marks})", list(row.values()))


def family_database(
    kind: str, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> Iterator[Application]:
    """The family in a copy of a real DBOS 3.2 system database ("sqlite" or "postgres"),
    registered as the application "family"; dropped afterwards."""
    if kind == "sqlite":
        fixture = sdk_fixtures["py320-sqlite-default"]
        path = tmp_path / "family.sqlite"
        shutil.copy(fixture["path"], path)
        with sqlite3.connect(path) as db:
            db.execute("DELETE FROM workflow_status")
            columns = {row[1] for row in db.execute("PRAGMA table_info(workflow_status)")}
            _insert(db.execute, family_rows(), "workflow_status", columns, "?")
        application = Application.objects.create(
            name="family", system_database_url=f"sqlite:///{path}"
        )
        yield application
        systemdb.forget(application)
        return
    url, schema = family_schema(sdk_fixtures)
    application = Application.objects.create(
        name="family", system_database_url=url, system_database_schema=schema
    )
    yield application
    systemdb.forget(application)
    drop_family_schema(url, schema)


def family_schema(sdk_fixtures: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """The family in a schema of its own beside a real DBOS 3.2 Postgres system database
    (with DBOS's indexes): its URL and the schema's name (`drop_family_schema` drops it).
    The name is this run's and this call's alone: runs may share the fixture database."""
    import psycopg

    url = sdk_fixtures["py320-pg-default"]["url"]
    schema = f"family_{RUN}_{uuid.uuid4().hex[:8]}"
    empty_schema_copy(url, schema)
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cursor:
        # The rest of DBOS's tables, empty, so that the workflows' pages read as they do.
        cursor.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'dbos'"
        )
        for (table,) in cursor.fetchall():
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {schema}.{table} (LIKE dbos.{table} INCLUDING ALL)"
            )
        cursor.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = 'workflow_status'",
            [schema],
        )
        columns = {name for (name,) in cursor.fetchall()}
        _insert(cursor.execute, family_rows(), f"{schema}.workflow_status", columns, "%s")
    return url, schema


def drop_family_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
