"""Hand-made workflows and steps in a copy of a real DBOS 3.2 system database (SQLite, or
a schema of its own beside a Postgres one), for the stories about metric roll-ups."""

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stepchange.models import Application
from tests.sdk_fixtures import empty_schema_copy
from workflows import systemdb

SCHEMA = "metrics_copy"
Row = dict[str, Any]


class SystemDatabase:
    """Rows written the way DBOS writes them, straight into the database."""

    def __init__(self, kind: str, target: str) -> None:
        self.kind, self.target = kind, target

    def _execute(self, statements: list[tuple[str, list[Any]]]) -> None:
        if self.kind == "sqlite":
            with sqlite3.connect(self.target) as db:
                for sql, params in statements:
                    db.execute(sql.replace("%s", "?"), params)
            return
        import psycopg

        with psycopg.connect(self.target, autocommit=True) as conn:
            for sql, params in statements:
                conn.execute(sql.replace("{schema}.", f"{SCHEMA}."), params)

    def _table(self, name: str) -> str:
        return name if self.kind == "sqlite" else "{schema}." + name

    def add(self, workflows: list[Row] = [], steps: list[Row] = []) -> None:  # noqa: B006
        statements = []
        for row in workflows:
            row = {"updated_at": row.get("completed_at") or row["created_at"]} | row
            marks = ", ".join(["%s"] * len(row))
            table = self._table("workflow_status")
            statements.append(
                (f"INSERT INTO {table} ({', '.join(row)}) VALUES ({marks})", list(row.values()))
            )
        for row in steps:
            marks = ", ".join(["%s"] * len(row))
            table = self._table("operation_outputs")
            statements.append(
                (f"INSERT INTO {table} ({', '.join(row)}) VALUES ({marks})", list(row.values()))
            )
        self._execute(statements)

    def finish(self, workflow_id: str, status: str, at_ms: int) -> None:
        table = self._table("workflow_status")
        self._execute(
            [
                (
                    f"UPDATE {table} SET status = %s, completed_at = %s, updated_at = %s"
                    " WHERE workflow_uuid = %s",
                    [status, at_ms, at_ms, workflow_id],
                )
            ]
        )

    def dequeue(self, workflow_id: str, at_ms: int) -> None:
        table = self._table("workflow_status")
        self._execute(
            [
                (
                    f"UPDATE {table} SET status = 'PENDING', started_at_epoch_ms = %s"
                    " WHERE workflow_uuid = %s",
                    [at_ms, workflow_id],
                )
            ]
        )


def metrics_database(
    kind: str, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> Iterator[tuple[Application, SystemDatabase]]:
    """An empty DBOS 3.2 system database of `kind`, registered as the application
    "shop"; dropped afterwards."""
    if kind == "sqlite":
        path = tmp_path / "metrics.sqlite"
        shutil.copy(sdk_fixtures["py320-sqlite-default"]["path"], path)
        with sqlite3.connect(path) as db:
            db.execute("DELETE FROM operation_outputs")
            db.execute("DELETE FROM workflow_status")
        application = Application.objects.create(
            name="shop", system_database_url=f"sqlite:///{path}"
        )
        yield application, SystemDatabase(kind, str(path))
        systemdb.forget(application)
        return
    import psycopg

    url = sdk_fixtures["py320-pg-default"]["url"]
    empty_schema_copy(url, SCHEMA)
    with psycopg.connect(url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'dbos'"
        ).fetchall()
        for (table,) in tables:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {SCHEMA}.{table} (LIKE dbos.{table} INCLUDING ALL)"
            )
    application = Application.objects.create(
        name="shop", system_database_url=url, system_database_schema=SCHEMA
    )
    yield application, SystemDatabase(kind, url)
    systemdb.forget(application)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
