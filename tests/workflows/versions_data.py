"""An application's versions in a real DBOS 3.2 system database of either kind, for the
stories of the Versions page: three versions DBOS registered (one of another application),
workflows waiting on each, on a version with no row, and on no version at all."""

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stepchange.models import Application
from tests.sdk_fixtures import empty_schema_copy
from workflows import systemdb

SCHEMA = "versions_copy"
APP = "orders"
# name, version_timestamp, application_name: v2 is the latest of orders; "theirs" belongs
# to another application and is not shown, though its timestamp is the newest.
VERSIONS = [("v1", 1_000, APP), ("v2", 2_000, APP), ("v0", 500, None), ("theirs", 9_000, "x")]
# version, status, how many
WAITING = [
    ("v1", "PENDING", 2),
    ("v1", "ENQUEUED", 1),
    ("v1", "SUCCESS", 4),
    ("v2", "ENQUEUED", 1),
    ("gone", "PENDING", 4),
    ("gone", "ENQUEUED", 1),
    (None, "ENQUEUED", 2),
]


def version_rows() -> list[dict[str, Any]]:
    return [
        {
            "version_id": f"id-{name}",
            "version_name": name,
            "version_timestamp": stamp,
            "created_at": stamp,
            "application_name": owner,
        }
        for name, stamp, owner in VERSIONS
    ]


def workflow_rows() -> list[dict[str, Any]]:
    rows = []
    for version, status, count in WAITING:
        for n in range(count):
            rows.append(
                {
                    "workflow_uuid": f"wf-{version}-{status.lower()}-{n}",
                    "status": status,
                    "name": "ship",
                    "application_version": version,
                    "queue_name": "shipping" if status == "ENQUEUED" else None,
                    "created_at": 1_000 + n,
                    "updated_at": 1_000 + n,
                }
            )
    return rows


def _insert(execute: Any, table: str, rows: list[dict[str, Any]], mark: str) -> None:
    for row in rows:
        marks = ", ".join([mark] * len(row))
        execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({marks})", list(row.values()))


def versions_database(
    kind: str, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path, **fields: Any
) -> Iterator[Application]:
    """The versions in a copy of a real DBOS 3.2 system database ("sqlite" or "postgres"),
    registered as the application "orders"; dropped afterwards."""
    if kind == "sqlite":
        path = tmp_path / "versions.sqlite"
        shutil.copy(sdk_fixtures["py320-sqlite-default"]["path"], path)
        with sqlite3.connect(path) as db:
            db.execute("DELETE FROM workflow_status")
            db.execute("DELETE FROM application_versions")
            _insert(db.execute, "application_versions", version_rows(), "?")
            _insert(db.execute, "workflow_status", workflow_rows(), "?")
        application = Application.objects.create(
            name=APP, system_database_url=f"sqlite:///{path}", **fields
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
        _insert(cursor.execute, f"{SCHEMA}.application_versions", version_rows(), "%s")
        _insert(cursor.execute, f"{SCHEMA}.workflow_status", workflow_rows(), "%s")
    application = Application.objects.create(
        name=APP, system_database_url=url, system_database_schema=SCHEMA, **fields
    )
    yield application
    systemdb.forget(application)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
