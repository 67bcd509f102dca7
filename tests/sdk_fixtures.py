"""The system databases real SDKs wrote (tests/fixtures/generate.py), once per session,
and how stories register one as an application."""

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stepchange.models import Application

ROOT = Path(__file__).resolve().parents[1]
# This run's name for what it makes on shared servers (tests/conftest.py sets it).
RUN = os.environ.setdefault("STEPCHANGE_TEST_RUN", uuid.uuid4().hex[:10])
OUT = Path(os.environ.get("STEPCHANGE_SDK_FIXTURES", ROOT / "var" / "sdk-fixtures" / RUN))
NAMES = [
    "py320-sqlite-default",
    "py320-sqlite-portable",
    "py320-pg-default",
    "py320-pg-portable",
    "py2311-sqlite-default",
    "py2311-sqlite-portable",
    "py2311-pg-default",
    "py2311-pg-portable",
    "ts502-pg-default",
    "ts502-pg-portable",
]


@pytest.fixture(scope="session")
def sdk_fixtures() -> Iterator[dict[str, dict[str, Any]]]:
    from tests.e2e.servers import PostgresDatabases, require_postgres

    require_postgres()
    made = PostgresDatabases()
    try:
        subprocess.run(
            [sys.executable, "tests/fixtures/generate.py", "--out", str(OUT)],
            cwd=ROOT,
            check=True,
            capture_output=True,
            timeout=600,
        )
        manifest = json.loads((OUT / "manifest.json").read_text())
        # Dropped at the end: the databases this run made, under this run's name only.
        made.names += [f["database"] for f in manifest["fixtures"] if f.get("database")]
        assert manifest["complete"], manifest["errors"]
        yield {fixture["name"]: fixture for fixture in manifest["fixtures"]}
    finally:
        made.drop_all()
        shutil.rmtree(OUT, ignore_errors=True)


def registered(fixture: dict[str, Any]) -> Application:
    return Application.objects.create(
        name=fixture["app_name"],
        system_database_url=fixture["url"],
        system_database_schema=fixture["schema"] or "dbos",
    )


def by_role(fixture: dict[str, Any], role: str) -> str:
    return next(w["workflow_id"] for w in fixture["workflows"] if w["role"] == role)


def empty_schema_copy(url: str, schema: str) -> None:
    """A schema `schema` beside `dbos` in the Postgres database at `url`, holding empty
    copies of its workflow_status table (indexes and all) and its migration record: a real
    DBOS system database to fill with rows of a test's own. Made anew if it is there."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
        for table in ("workflow_status", "dbos_migrations"):
            conn.execute(f"CREATE TABLE {schema}.{table} (LIKE dbos.{table} INCLUDING ALL)")
        conn.execute(f"INSERT INTO {schema}.dbos_migrations SELECT * FROM dbos.dbos_migrations")
