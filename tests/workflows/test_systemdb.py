"""Stories about reaching an application's system database: aliases, the schema it is
on, older schemas, and clear errors when it is not there."""

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext

from stepchange.models import Application
from workflows import systemdb
from workflows.models import OperationOutput, WorkflowStatus

# A real dbos==3.2.0 program writes the database these stories read.
PROGRAM = """
import sys
from dbos import DBOS, DBOSConfig, SetWorkflowID

DBOS(config=DBOSConfig(name="orders", system_database_url=sys.argv[1]))

@DBOS.step()
def fetch(n):
    return {"n": n}

@DBOS.workflow()
def greet(name):
    fetch(1)
    fetch(2)
    return name.upper()

DBOS.launch()
with SetWorkflowID("wf-real"):
    greet("alice")
DBOS.destroy()
"""


@pytest.fixture(scope="module")
def real_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sysdb") / "orders.sqlite"
    subprocess.run(
        [sys.executable, "-c", PROGRAM, f"sqlite:///{path}"], check=True, capture_output=True
    )
    return path


def app_with(url: str) -> Application:
    return Application.objects.create(name="orders", system_database_url=url)


def test_a_real_dbos_database_is_read_through_its_alias(
    system_databases: None, real_sqlite: Path
) -> None:
    orders = app_with(f"sqlite:///{real_sqlite}")
    schema = systemdb.schema_of(orders)
    assert schema.version == 123
    assert schema.known
    assert schema.has_payload_tables
    workflow = systemdb.workflows(orders).get(workflow_uuid="wf-real")
    assert (workflow.status, workflow.name, workflow.serialization) == (
        "SUCCESS",
        "greet",
        "py_pickle",
    )
    assert workflow.created_at is not None
    assert workflow.created_at.tzinfo is not None
    steps = list(
        systemdb.rows(orders, OperationOutput)
        .filter(workflow_uuid="wf-real")
        .order_by("function_id")
        .values_list("function_id", "function_name")
    )
    assert steps == [(1, "fetch"), (2, "fetch")]


def test_a_column_an_older_schema_lacks_reads_as_none(
    system_databases: None, real_sqlite: Path, tmp_path: Path
) -> None:
    older = tmp_path / "older.sqlite"
    older.write_bytes(real_sqlite.read_bytes())
    with sqlite3.connect(older) as conn:
        conn.execute("ALTER TABLE workflow_status DROP COLUMN creator_xid")
    orders = app_with(f"sqlite:///{older}")
    workflow = systemdb.workflows(orders).get(workflow_uuid="wf-real")
    with CaptureQueriesContext(connections[systemdb.alias_for(orders)]) as reads:
        assert workflow.creator_xid is None
    assert len(reads) == 0
    assert workflow.status == "SUCCESS"


def test_an_unreachable_or_foreign_database_says_so(system_databases: None, tmp_path: Path) -> None:
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).close()
    orders = app_with(f"sqlite:///{empty}")
    with pytest.raises(systemdb.SystemDatabaseError, match="has no DBOS tables"):
        systemdb.schema_of(orders)
    orders.system_database_url = "postgresql://nobody@127.0.0.1:1/nothing"
    orders.save()
    with pytest.raises(systemdb.SystemDatabaseError, match="cannot be reached"):
        systemdb.schema_of(orders)


def test_an_application_without_a_system_database_has_no_alias(db: None) -> None:
    orders = Application.objects.create(name="orders")
    with pytest.raises(systemdb.SystemDatabaseError, match="no system database configured"):
        systemdb.alias_for(orders)


def test_the_router_never_sends_system_tables_to_the_default_database() -> None:
    with pytest.raises(systemdb.SystemDatabaseError, match="never on the default database"):
        list(WorkflowStatus.objects.all())
    router = systemdb.SystemDatabaseRouter()
    assert router.allow_migrate("dbos_1", "stepchange") is False
    assert router.allow_migrate("default", "workflows", "workflowstatus") is False
    assert router.allow_migrate("default", "stepchange", "application") is None


def test_inputs_and_outputs_come_from_the_payload_tables_or_the_legacy_columns(
    system_databases: None, real_sqlite: Path, tmp_path: Path
) -> None:
    orders = app_with(f"sqlite:///{real_sqlite}")
    schema = systemdb.schema_of(orders)
    workflow = (
        systemdb.workflows(orders)
        .with_payloads(payload_tables=schema.has_payload_tables)
        .get(workflow_uuid="wf-real")
    )
    assert workflow.inputs is None  # 3.2.0 leaves the legacy column empty
    assert str(workflow.payload("input")).startswith("gAS")  # base64 pickle, workflow_input
    assert str(workflow.payload("output")).startswith("gAS")
    assert workflow.payload("error") is None
    # A pre-109 database keeps them in workflow_status itself.
    legacy = tmp_path / "legacy.sqlite"
    legacy.write_bytes(real_sqlite.read_bytes())
    with sqlite3.connect(legacy) as conn:
        conn.execute(
            "UPDATE workflow_status SET inputs = 'legacy-in', output = 'legacy-out' "
            "WHERE workflow_uuid = 'wf-real'"
        )
        conn.execute("DROP TABLE workflow_input")
        conn.execute("DROP TABLE workflow_output")
    orders.system_database_url = f"sqlite:///{legacy}"
    orders.save()
    schema = systemdb.schema_of(orders)
    assert not schema.has_payload_tables
    workflow = (
        systemdb.workflows(orders)
        .with_payloads(payload_tables=schema.has_payload_tables)
        .get(workflow_uuid="wf-real")
    )
    assert (workflow.payload("input"), workflow.payload("output")) == ("legacy-in", "legacy-out")


def test_keyset_pages_walk_the_list_newest_first(
    system_databases: None, real_sqlite: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "many.sqlite"
    copy.write_bytes(real_sqlite.read_bytes())
    with sqlite3.connect(copy) as conn:
        for number in range(25):
            conn.execute(
                "INSERT INTO workflow_status (workflow_uuid, status, name, created_at, "
                "updated_at) VALUES (?, ?, 'greet', ?, ?)",
                (f"wf-{number:02}", "SUCCESS" if number % 2 else "ERROR", 1000 + number // 2, 1),
            )
    orders = app_with(f"sqlite:///{copy}")
    base = systemdb.workflows(orders).filtered(name=["greet"], workflow_id_prefix="wf-0")
    seen: list[str] = []
    cursor = None
    while True:
        page = list(base.newest_first().after(cursor)[:4])
        if not page:
            break
        seen += [row.workflow_uuid for row in page]
        cursor = (page[-1].created_at_ms, page[-1].workflow_uuid)
    expected = sorted(
        (f"wf-{n:02}" for n in range(10)), key=lambda w: (1000 + int(w[3:]) // 2, w), reverse=True
    )
    assert seen == expected
    errors = base.filtered(status=["ERROR"]).values_list("workflow_uuid", flat=True)
    assert sorted(errors) == ["wf-00", "wf-02", "wf-04", "wf-06", "wf-08"]


def test_the_api_and_console_report_a_database_problem_instead_of_failing(
    system_databases: None, tmp_path: Path
) -> None:
    from django.contrib.auth.models import Group, User
    from django.test import Client

    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).close()
    app_with(f"sqlite:///{empty}")
    viewer = User.objects.create_user("vera")
    viewer.groups.add(Group.objects.get(name="viewer"))
    client = Client()
    client.force_login(viewer)
    status = client.get("/api/v1/apps/orders/system-database").json()
    assert status["configured"] is True
    assert status["reachable"] is False
    assert "has no DBOS tables" in status["detail"]
    page = client.get("/apps/orders/executors/")
    assert page.status_code == 200
    assert b"System database unavailable" in page.content


def test_a_newer_schema_version_is_read_and_reported(
    system_databases: None, real_sqlite: Path, tmp_path: Path
) -> None:
    newer = tmp_path / "newer.sqlite"
    newer.write_bytes(real_sqlite.read_bytes())
    with sqlite3.connect(newer) as conn:
        conn.execute("UPDATE dbos_migrations SET version = 140")
        conn.execute("ALTER TABLE workflow_status ADD COLUMN shiny_new TEXT")
    orders = app_with(f"sqlite:///{newer}")
    status = systemdb.status_of(orders)
    assert (status.reachable, status.migration_version, status.known_version) == (True, 140, False)
    assert "newer than StepChange knows" in status.detail
    assert systemdb.workflows(orders).get(workflow_uuid="wf-real").status == "SUCCESS"


def test_a_newer_schema_refuses_every_write_with_the_reason(
    system_databases: None, real_sqlite: Path, tmp_path: Path
) -> None:
    from forks import services, starts
    from forks.plans import ForkRefusedError

    newer = tmp_path / "newer.sqlite"
    newer.write_bytes(real_sqlite.read_bytes())
    with sqlite3.connect(newer) as conn:
        conn.execute(f"UPDATE dbos_migrations SET version = {systemdb.KNOWN_VERSION + 1}")
    orders = app_with(f"sqlite:///{newer}")
    with pytest.raises(systemdb.SchemaTooNewError, match="nothing is written to it"):
        systemdb.writable_schema(orders)
    draft = services.Draft(source_workflow_id="wf-real", start_step=2, reason="retry")
    plan = services.edited_fork_plan(orders, draft, live_versions=[])
    with pytest.raises(ForkRefusedError, match=f"migration {systemdb.KNOWN_VERSION + 1}, newer"):
        services.plan_write(orders, plan)
    with pytest.raises(ForkRefusedError, match="newer than StepChange knows"):
        starts.start_database(orders)
    with sqlite3.connect(newer) as conn:
        assert conn.execute("SELECT count(*) FROM workflow_status").fetchone() == (1,)
    # The newest migration StepChange has read is written to as before.
    with sqlite3.connect(newer) as conn:
        conn.execute(f"UPDATE dbos_migrations SET version = {systemdb.KNOWN_VERSION}")
    assert systemdb.writable_schema(orders).version == systemdb.KNOWN_VERSION
    services.plan_write(orders, services.edited_fork_plan(orders, draft, live_versions=[]))
    with sqlite3.connect(newer) as conn:
        assert conn.execute("SELECT count(*) FROM workflow_status").fetchone() == (2,)
