"""Stories about exporting a workflow with its children to a signed file and importing it
into another application: what the file holds, what is written, and every refusal, with
nothing written. Over copies of system databases real SDKs wrote (tests/fixtures)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import override_settings

from forks import exports, transfers
from stepchange.models import Application, AuditRecord
from tests.conftest import make_user, signed_in
from tests.sdk_fixtures import registered
from workflows import serialization as codec

PY = "py320-sqlite-default"
PARENT, CHILD = "py-default-parent", "py-default-parent-child"
CANCELLED, FAILED = "py-default-cancel", "py-default-error"
TABLES: tuple[str, ...] = ("workflow_status", "workflow_input", "workflow_output")
TABLES += ("operation_outputs", "workflow_events", "workflow_events_history", "streams")


@pytest.fixture
def ada(system_databases: None) -> User:
    return make_user(username="ada", role="admin")


def copied(
    fixture: dict[str, Any], tmp_path: Path, name: str, *, empty: bool
) -> tuple[Application, Path]:
    """An application over a private copy of a fixture's SQLite system database (emptied:
    a second application's own database, on the same DBOS schema)."""
    path = tmp_path / f"{name}.sqlite"
    shutil.copy(fixture["path"], path)
    if empty:
        with sqlite3.connect(path) as db:
            for table in [*TABLES, "notifications"]:
                db.execute(f"DELETE FROM {table}")
    return Application.objects.create(name=name, system_database_url=f"sqlite:///{path}"), path


def rows(path: Path, sql: str, *params: Any) -> list[dict[str, Any]]:
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute(sql, params)]


def counts(path: Path) -> dict[str, int]:
    return {t: rows(path, f"SELECT count(*) AS n FROM {t}")[0]["n"] for t in TABLES}


def export(app: Application, workflow_id: str, user: User) -> bytes:
    return transfers.workflow_export(application=app, workflow_id=workflow_id, user=user).content


def tampered(raw: bytes) -> bytes:
    doc = json.loads(raw)
    doc["workflows"][0]["workflow_status"]["name"] = "something_else"
    return exports.dumps(doc)


def test_an_export_holds_the_workflow_and_its_child_signed_with_inputs_folded_in(
    ada: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    app, _ = copied(sdk_fixtures[PY], tmp_path, "app-a", empty=False)
    exported = transfers.workflow_export(application=app, workflow_id=PARENT, user=ada)
    file = exports.read(exported.content)
    assert file.signed
    assert file.root_id == PARENT
    assert [e.workflow_id for e in file.workflows] == [PARENT, CHILD]
    assert file.schema_version == 123
    assert file.source == exports.FROM_DATABASE
    assert file.root.status["inputs"]
    assert file.root.status["output"]
    assert any(step.get("child_workflow_id") == CHILD for step in file.root.steps)
    record = AuditRecord.objects.get(action=transfers.EXPORT_ACTION)
    assert record.parameters["sha256"] == exported.sha256 == file.sha256
    assert record.parameters["workflows"] == 2


def test_an_export_beyond_the_workflow_limit_is_refused(
    ada: User,
    sdk_fixtures: dict[str, dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, _ = copied(sdk_fixtures[PY], tmp_path, "app-a", empty=False)
    monkeypatch.setattr(exports, "MAX_WORKFLOWS", 1)
    with pytest.raises(transfers.TransferError, match=r"more than 0 descendants"):
        export(app, PARENT, ada)
    assert AuditRecord.objects.get(action=transfers.EXPORT_ACTION).result == "failed"


def test_an_export_imported_into_a_second_application_keeps_ids_and_rebuilds_pickles(
    ada: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    source, _ = copied(sdk_fixtures[PY], tmp_path, "app-a", empty=False)
    target, path = copied(sdk_fixtures[PY], tmp_path, "app-b", empty=True)
    raw = export(source, PARENT, ada)
    plan = transfers.workflow_import(
        application=target, raw=raw, copy=False, resume=False, user=ada
    )
    assert plan.new_ids == [PARENT, CHILD]
    written = rows(
        path, "SELECT workflow_uuid, parent_workflow_id, status FROM workflow_status ORDER BY 1"
    )
    assert written == [
        {"workflow_uuid": PARENT, "parent_workflow_id": None, "status": "SUCCESS"},
        {"workflow_uuid": CHILD, "parent_workflow_id": PARENT, "status": "SUCCESS"},
    ]
    assert rows(path, "SELECT inputs FROM workflow_input WHERE workflow_uuid = ?", PARENT)[0][
        "inputs"
    ]
    original = exports.read(raw).root
    assert len(
        rows(path, "SELECT * FROM operation_outputs WHERE workflow_uuid = ?", PARENT)
    ) == len(original.steps)
    record = AuditRecord.objects.get(action=transfers.IMPORT_ACTION)
    assert record.result == "ok"
    assert record.parameters["source_application"] == "app-a"
    assert record.parameters["route"] == "database"


def test_importing_as_a_copy_rewrites_every_id_consistently(
    ada: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    app, path = copied(sdk_fixtures[PY], tmp_path, "app-a", empty=False)
    plan = transfers.workflow_import(
        application=app, raw=export(app, PARENT, ada), copy=True, resume=False, user=ada
    )
    new_parent, new_child = plan.new_ids
    assert {new_parent, new_child}.isdisjoint({PARENT, CHILD})
    child = rows(
        path, "SELECT parent_workflow_id FROM workflow_status WHERE workflow_uuid = ?", new_child
    )
    assert child == [{"parent_workflow_id": new_parent}]
    links = rows(
        path,
        "SELECT child_workflow_id FROM operation_outputs"
        " WHERE workflow_uuid = ? AND child_workflow_id IS NOT NULL",
        new_parent,
    )
    # The child's start and the parent's wait for its result both name it.
    assert links
    assert {link["child_workflow_id"] for link in links} == {new_child}


def test_keeping_ids_that_exist_is_refused_naming_them_and_nothing_is_written(
    ada: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    app, path = copied(sdk_fixtures[PY], tmp_path, "app-a", empty=False)
    raw = export(app, PARENT, ada)
    before = counts(path)
    with pytest.raises(transfers.TransferError) as refused:
        transfers.workflow_import(application=app, raw=raw, copy=False, resume=False, user=ada)
    assert refused.value.status == 409
    assert PARENT in str(refused.value)
    assert CHILD in str(refused.value)
    assert counts(path) == before
    assert AuditRecord.objects.get(action=transfers.IMPORT_ACTION).result == "failed"


@pytest.mark.parametrize(
    ("change", "problem"),
    [(tampered, exports.SIGNATURE_MISMATCH), (lambda raw: _unsigned(raw), exports.NO_SIGNATURE)],
    ids=["tampered", "unsigned"],
)
def test_a_tampered_or_unsigned_file_is_refused_with_the_reason(
    ada: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path, change: Any, problem: str
) -> None:
    source, _ = copied(sdk_fixtures[PY], tmp_path, "app-a", empty=False)
    target, path = copied(sdk_fixtures[PY], tmp_path, "app-b", empty=True)
    raw = change(export(source, PARENT, ada))
    with pytest.raises(transfers.TransferError, match="Refused") as refused:
        transfers.workflow_import(application=target, raw=raw, copy=False, resume=False, user=ada)
    assert problem in str(refused.value)
    assert counts(path) == dict.fromkeys(TABLES, 0)


def _unsigned(raw: bytes) -> bytes:
    doc = json.loads(raw)
    del doc["signature"]
    return exports.dumps(doc)


def test_a_pickled_exception_is_refused_with_its_workflow_and_field(
    ada: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    source, _ = copied(sdk_fixtures[PY], tmp_path, "app-a", empty=False)
    target, path = copied(sdk_fixtures[PY], tmp_path, "app-b", empty=True)
    with pytest.raises(transfers.TransferError) as refused:
        transfers.workflow_import(
            application=target, raw=export(source, FAILED, ada), copy=False, resume=False, user=ada
        )
    assert f"Workflow {FAILED} error" in str(refused.value)
    assert "step 2 (shout) error" in str(refused.value)
    assert "names Python code" in str(refused.value)
    assert counts(path) == dict.fromkeys(TABLES, 0)


def test_a_cancelled_workflow_imported_with_resume_is_enqueued_on_the_internal_queue(
    ada: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    source, _ = copied(sdk_fixtures[PY], tmp_path, "app-a", empty=False)
    target, path = copied(sdk_fixtures[PY], tmp_path, "app-b", empty=True)
    transfers.workflow_import(
        application=target, raw=export(source, CANCELLED, ada), copy=False, resume=True, user=ada
    )
    [row] = rows(path, "SELECT status, queue_name, application_name FROM workflow_status")
    assert row == {
        "status": "ENQUEUED",
        "queue_name": "_dbos_internal_queue",
        "application_name": "app-b",
    }


def test_a_typescript_export_is_refused_by_a_python_application(
    ada: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    from conductor.models import Executor

    ts = registered(sdk_fixtures["ts502-pg-default"])
    Executor.objects.create(application=ts, executor_id="ts-1", language="typescript")
    target, path = copied(sdk_fixtures[PY], tmp_path, "app-b", empty=True)
    Executor.objects.create(application=target, executor_id="py-1", language="python")
    raw = export(ts, "ts-default-success", ada)
    assert exports.read(raw).language == "typescript"
    with pytest.raises(
        transfers.TransferError, match="typescript workflow and app-b's executors run python"
    ):
        transfers.workflow_import(application=target, raw=raw, copy=False, resume=False, user=ada)
    assert counts(path) == dict.fromkeys(TABLES, 0)


def test_a_postgres_export_imports_as_a_copy_into_the_same_application(
    ada: User, sdk_fixtures: dict[str, dict[str, Any]]
) -> None:
    app = registered(sdk_fixtures["py320-pg-default"])
    plan = transfers.workflow_import(
        application=app,
        raw=export(app, "py-default-parent", ada),
        copy=True,
        resume=False,
        user=ada,
    )
    from django.db import connections

    from workflows import systemdb

    with connections[systemdb.alias_for(app)].cursor() as cursor:
        cursor.execute(
            "SELECT parent_workflow_id FROM workflow_status WHERE workflow_uuid = %s",
            [plan.new_ids[1]],
        )
        assert cursor.fetchall() == [(plan.new_ids[0],)]
        # Leave the shared fixture as it was.
        for table in (
            "operation_outputs",
            "workflow_input",
            "workflow_output",
            "workflow_events",
            "workflow_events_history",
            "streams",
            "workflow_status",
        ):
            cursor.execute(f"DELETE FROM {table} WHERE workflow_uuid = ANY(%s)", [plan.new_ids])


# Through the API and the console.


def test_the_api_refuses_a_body_over_the_limit_with_a_413_and_writes_nothing(
    ada: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    _target, path = copied(sdk_fixtures[PY], tmp_path, "app-b", empty=True)
    with override_settings(EXPORT_FILE_MAX_BYTES=4096):
        response = signed_in(ada).post(
            "/api/v1/apps/app-b/imports", b"x" * 5000, content_type="application/json"
        )
    assert response.status_code == 413
    assert "may be at most 4,096 bytes" in response.json()["detail"]
    assert counts(path) == dict.fromkeys(TABLES, 0)
    assert AuditRecord.objects.get(action=transfers.IMPORT_ACTION).result == "failed"


def test_the_api_imports_a_file_and_refuses_a_tampered_one(
    ada: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    _source, _ = copied(sdk_fixtures[PY], tmp_path, "app-a", empty=False)
    copied(sdk_fixtures[PY], tmp_path, "app-b", empty=True)
    client = signed_in(ada)
    exported = client.get(f"/api/v1/apps/app-a/workflows/{PARENT}/export")
    assert exported.status_code == 200
    assert exported["Content-Disposition"].endswith('.stepchange.json"')
    bad = client.post(
        "/api/v1/apps/app-b/imports", tampered(exported.content), content_type="application/json"
    )
    assert bad.status_code == 400
    assert exports.SIGNATURE_MISMATCH in bad.json()["detail"]
    preview = client.post(
        "/api/v1/apps/app-b/imports?preview=true", exported.content, content_type="application/json"
    )
    assert preview.status_code == 200
    assert preview.json()["existing"] == []
    done = client.post(
        "/api/v1/apps/app-b/imports", exported.content, content_type="application/json"
    )
    assert done.status_code == 201, done.json()
    assert done.json()["workflow_ids"] == [PARENT, CHILD]
    again = client.post(
        "/api/v1/apps/app-b/imports", exported.content, content_type="application/json"
    )
    assert again.status_code == 409


def test_an_operator_may_export_but_not_import(
    ada: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    copied(sdk_fixtures[PY], tmp_path, "app-a", empty=False)
    otto = signed_in(make_user(username="otto", role="operator"))
    vera = signed_in(make_user(username="vera", role="viewer"))
    assert otto.get(f"/api/v1/apps/app-a/workflows/{PARENT}/export").status_code == 200
    assert vera.get(f"/api/v1/apps/app-a/workflows/{PARENT}/export").status_code == 403
    assert (
        otto.post("/api/v1/apps/app-a/imports", b"{}", content_type="application/json").status_code
        == 403
    )
    assert otto.get("/apps/app-a/import/").status_code == 403


def test_the_console_previews_then_imports_and_refuses_a_tampered_file(
    ada: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    _source, _ = copied(sdk_fixtures[PY], tmp_path, "app-a", empty=False)
    _, path = copied(sdk_fixtures[PY], tmp_path, "app-b", empty=True)
    client = signed_in(ada)
    page = client.get(f"/apps/app-a/workflows/{PARENT}/")
    assert b"/export/" in page.content
    raw = client.get(f"/apps/app-a/workflows/{PARENT}/export/").content
    bad = client.post(
        "/apps/app-b/import/", {"file": SimpleUploadedFile("x.json", tampered(raw)), "ids": "keep"}
    )
    assert bad.status_code == 400
    assert exports.SIGNATURE_MISMATCH.encode() in bad.content.replace(b"&#x27;", b"'").replace(
        b"&#x27;", b"'"
    )
    preview = client.post(
        "/apps/app-b/import/", {"file": SimpleUploadedFile("x.json", raw), "ids": "keep"}
    )
    assert preview.status_code == 200
    assert b"app-a" in preview.content
    assert PARENT.encode() in preview.content
    assert counts(path) == dict.fromkeys(TABLES, 0)
    upload = preview.context["upload"].pk
    done = client.post("/apps/app-b/import/", {"upload": upload, "ids": "keep", "confirm": "1"})
    assert done.status_code == 302
    assert counts(path)["workflow_status"] == 2


def test_the_console_refuses_an_upload_over_the_limit_before_reading_it(
    ada: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    _, path = copied(sdk_fixtures[PY], tmp_path, "app-b", empty=True)
    with override_settings(EXPORT_FILE_MAX_BYTES=1024):
        response = signed_in(ada).post(
            "/apps/app-b/import/", {"file": SimpleUploadedFile("big.json", b"x" * 200_000)}
        )
    assert response.status_code == 413
    assert b"may be at most 1,024 bytes" in response.content
    assert counts(path) == dict.fromkeys(TABLES, 0)


LEGACY = "py2311-sqlite-default"
LEGACY_TABLES: tuple[str, ...] = ("workflow_status", "operation_outputs", "workflow_events")
LEGACY_TABLES += ("workflow_events_history", "streams", "notifications")


def legacy_copy(fixture: dict[str, Any], tmp_path: Path, name: str) -> tuple[Application, Path]:
    """An empty system database on dbos 2.31.1's schema (108: inputs, output and error in
    workflow_status, no payload tables)."""
    path = tmp_path / f"{name}.sqlite"
    shutil.copy(fixture["path"], path)
    with sqlite3.connect(path) as db:
        for table in LEGACY_TABLES:
            db.execute(f"DELETE FROM {table}")
    return Application.objects.create(name=name, system_database_url=f"sqlite:///{path}"), path


def test_an_export_moves_between_schemas_its_values_where_each_keeps_them(
    ada: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    newer, _ = copied(sdk_fixtures[PY], tmp_path, "app-newer", empty=False)
    older, older_path = legacy_copy(sdk_fixtures[LEGACY], tmp_path, "app-older")
    raw = export(newer, PARENT, ada)
    transfers.workflow_import(application=older, raw=raw, copy=False, resume=False, user=ada)
    [row] = rows(
        older_path, "SELECT inputs, output FROM workflow_status WHERE workflow_uuid = ?", PARENT
    )
    source = exports.read(raw).root.status
    # Rebuilt by StepChange's encoder from the checked values: the same values, decoded.
    written = codec.decode(row["inputs"], "py_pickle", kind="inputs")
    assert written.value == codec.decode(source["inputs"], "py_pickle", kind="inputs").value
    written = codec.decode(row["output"], "py_pickle", kind="value")
    assert written.value == codec.decode(source["output"], "py_pickle", kind="value").value
    # And back: from the older schema into a newer one, the input in workflow_input.
    back = export(older, PARENT, ada)
    assert exports.read(back).schema_version == 108
    target, target_path = copied(sdk_fixtures[PY], tmp_path, "app-newer-2", empty=True)
    transfers.workflow_import(application=target, raw=back, copy=False, resume=False, user=ada)
    assert rows(target_path, "SELECT inputs FROM workflow_input WHERE workflow_uuid = ?", PARENT)
