"""Stories about edited forks written straight into a system database: what is written,
what is refused (naming the field and the step), and that a failure between any two
writes leaves nothing behind. Over copies of databases real SDKs wrote."""

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import DatabaseError

from forks import services
from forks.models import EditedFork
from forks.plans import ForkError, ForkInvalidError, ForkRefusedError
from forks.services import Draft
from stepchange.models import Application, AuditRecord
from tests.conftest import make_user
from workflows import serialization as codec

SOURCE = "py-default-error"  # steps: 1 profile (output), 2 shout (error)
EVENTS = "py-default-events"  # events set at steps 1, 3, 4; streams at 5-8


@pytest.fixture
def otto(system_databases: None) -> User:
    return make_user(username="otto", role="operator")


@pytest.fixture
def opal(system_databases: None) -> User:
    return make_user(username="opal", role="operator")


def copied(fixture: dict[str, Any], tmp_path: Path, **fields: Any) -> tuple[Application, Path]:
    """An application over a private copy of a fixture's SQLite system database."""
    path = tmp_path / "system.sqlite"
    shutil.copy(fixture["path"], path)
    app = Application.objects.create(
        name=fixture["app_name"], system_database_url=f"sqlite:///{path}", **fields
    )
    return app, path


def rows(path: Path, sql: str, *params: Any) -> list[dict[str, Any]]:
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute(sql, params)]


def draft(**fields: Any) -> Draft:
    defaults: dict[str, Any] = {"source_workflow_id": SOURCE, "start_step": 3, "reason": "fix it"}
    return Draft(**(defaults | fields))


def of(path: Path, table: str, workflow_id: str, columns: str = "*") -> list[dict[str, Any]]:
    """One workflow's rows of a table, in order."""
    order = {"operation_outputs": "function_id", "workflow_events_history": "function_id"}
    sql = f"SELECT {columns} FROM {table} WHERE workflow_uuid = ?"
    if table in order:
        sql += f" ORDER BY {order[table]}"
    return rows(path, sql, workflow_id)


def test_a_fork_with_an_edited_input_and_a_failed_step_made_good_writes_what_dbos_would(
    otto: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    app, path = copied(sdk_fixtures["py320-sqlite-default"], tmp_path)
    fork, plan = services.edited_fork_stage(
        application=app,
        draft=draft(
            input={"args": ["zed"], "kwargs": {"times": 3}},
            input_edited=True,
            step_outputs={"2": "HELLO ZED"},
            new_workflow_id="wf-edited",
            serialization="portable_json",
        ),
        live_versions=["fixture-v1"],
        user=otto,
    )
    assert plan.warnings == []
    services.edited_fork_run(fork=fork, live_versions=["fixture-v1"], user=otto)

    [status] = of(path, "workflow_status", "wf-edited")
    assert (status["status"], status["queue_name"]) == ("ENQUEUED", "_dbos_internal_queue")
    assert (status["forked_from"], status["serialization"]) == (SOURCE, "portable_json")
    assert status["application_version"] == "fixture-v1"
    assert status["name"] == "fixture_greet"
    assert status["executor_id"] is None
    [stored] = of(path, "workflow_input", "wf-edited", "inputs")
    decoded = codec.decode(stored["inputs"], "portable_json", kind="inputs")
    assert decoded.value == {"args": ["zed"], "kwargs": {"times": 3}}
    steps = of(path, "operation_outputs", "wf-edited")
    source_steps = of(path, "operation_outputs", SOURCE)
    assert [step["function_id"] for step in steps] == [1, 2]
    # Step 1 is copied as it was; step 2 failed and now has the output given.
    assert (steps[0]["output"], steps[0]["serialization"]) == (
        source_steps[0]["output"],
        "py_pickle",
    )
    assert steps[1]["error"] is None
    assert codec.decode(steps[1]["output"], steps[1]["serialization"]).value == "HELLO ZED"
    assert steps[1]["function_name"] == source_steps[1]["function_name"]
    [source] = of(path, "workflow_status", SOURCE, "was_forked_from")
    assert source["was_forked_from"] == 1
    fork.refresh_from_db()
    assert fork.status == EditedFork.Status.DONE
    record = AuditRecord.objects.get(action="edited_fork.run")
    assert record.value_diff is not None
    assert record.value_diff["input"]["after"] == {"args": ["zed"], "kwargs": {"times": 3}}
    assert record.value_diff["steps"]["2"]["after"] == "HELLO ZED"
    assert record.value_diff["steps"]["2"]["before_error"] is not None
    assert record.reason == "fix it"


def test_events_and_streams_before_the_restart_step_are_copied_and_events_rebuilt(
    otto: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    app, path = copied(sdk_fixtures["py320-sqlite-default"], tmp_path)
    fork, _ = services.edited_fork_stage(
        application=app,
        draft=draft(source_workflow_id=EVENTS, start_step=4, new_workflow_id="wf-ev"),
        live_versions=["fixture-v1"],
        user=otto,
    )
    services.edited_fork_run(fork=fork, live_versions=["fixture-v1"], user=otto)
    history = of(path, "workflow_events_history", "wf-ev", "function_id, key")
    assert [(h["function_id"], h["key"]) for h in history] == [(1, "stage"), (3, "stage")]
    [event] = of(path, "workflow_events", "wf-ev", "key, value")
    [newest] = of(path, "workflow_events_history", EVENTS, "value")[1:2]
    assert (event["key"], event["value"]) == ("stage", newest["value"])
    # Streams were written at steps 5 to 8, after the cut: none copied.
    assert of(path, "streams", "wf-ev") == []
    assert len(of(path, "operation_outputs", "wf-ev")) == 3


def test_before_migration_109_the_input_goes_into_the_status_row(
    otto: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    app, path = copied(sdk_fixtures["py2311-sqlite-default"], tmp_path)
    fork, _ = services.edited_fork_stage(
        application=app,
        draft=draft(
            input={"args": ["old"], "kwargs": {}},
            input_edited=True,
            new_workflow_id="wf-old",
        ),
        live_versions=["fixture-v1"],
        user=otto,
    )
    services.edited_fork_run(fork=fork, live_versions=["fixture-v1"], user=otto)
    [status] = of(path, "workflow_status", "wf-old", "inputs, serialization")
    # The source's own format, py_pickle, is written: a restricted reader reads it back.
    assert status["serialization"] == "py_pickle"
    decoded = codec.decode(status["inputs"], "py_pickle", kind="inputs")
    assert decoded.value == {"args": ["old"], "kwargs": {}}


def test_every_wrong_value_is_reported_at_once_naming_the_field_and_the_step(
    otto: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    app, path = copied(sdk_fixtures["py320-sqlite-default"], tmp_path)
    with pytest.raises(ForkInvalidError) as raised:
        services.edited_fork_stage(
            application=app,
            draft=draft(
                start_step=2,
                input={"positional": ["x"]},
                input_edited=True,
                step_outputs={"2": "late", "9": "missing", "one": 1},
                new_workflow_id="py-default-success",
                serialization="java_jackson",
                reason=" ",
            ),
            live_versions=["fixture-v1"],
            user=otto,
        )
    errors = raised.value.errors
    fields = {(error["field"], error.get("step")) for error in errors}
    assert fields == {
        ("serialization", None),
        ("new_workflow_id", None),
        ("reason", None),
        ("input", None),
        ("step_outputs", 2),
        ("step_outputs", 9),
        ("step_outputs", None),
    }
    assert {
        "field": "new_workflow_id",
        "message": services.ID_TAKEN.format(new_id="py-default-success"),
    } in errors
    assert not EditedFork.objects.exists()
    assert (
        rows(path, "SELECT count(*) AS n FROM workflow_status WHERE forked_from = ?", SOURCE)[0][
            "n"
        ]
        == 0
    )


def test_a_restart_step_out_of_range_and_a_format_that_cannot_carry_kwargs(
    otto: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    app, _ = copied(sdk_fixtures["py320-sqlite-default"], tmp_path)
    with pytest.raises(ForkInvalidError) as raised:
        services.edited_fork_plan(
            app,
            draft(
                start_step=7,
                input={"args": ["x"], "kwargs": {"times": 1}},
                input_edited=True,
                serialization="js_superjson",
            ),
            live_versions=[],
        )
    messages = {error["field"]: error["message"] for error in raised.value.errors}
    assert messages["start_step"] == services.STEP_OUT_OF_RANGE.format(low=0, high=3, step=7)
    assert messages["input"] == codec.SUPERJSON_NO_KWARGS


def test_a_version_no_executor_runs_is_warned_about_not_refused(
    otto: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    app, _ = copied(sdk_fixtures["py320-sqlite-default"], tmp_path)
    plan = services.edited_fork_plan(
        app, draft(application_version="v9"), live_versions=["fixture-v1"]
    )
    assert plan.warnings == [services.VERSION_NOT_RUN.format(version="v9")]
    assert plan.application_version == "v9"
    nobody = services.edited_fork_plan(app, draft(), live_versions=[])
    assert nobody.warnings == [services.NO_EXECUTOR.format(app=app.name)]


@pytest.mark.parametrize("failing", range(len(services.WRITES)))
def test_a_failure_between_any_two_writes_leaves_no_partial_fork(
    otto: User,
    sdk_fixtures: dict[str, dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failing: int,
) -> None:
    app, path = copied(sdk_fixtures["py320-sqlite-default"], tmp_path)
    fork, _ = services.edited_fork_stage(
        application=app,
        draft=draft(
            source_workflow_id=EVENTS,
            start_step=6,
            input={"args": ["x"], "kwargs": {}},
            input_edited=True,
            step_outputs={"2": "edited"},
            new_workflow_id="wf-partial",
        ),
        live_versions=["fixture-v1"],
        user=otto,
    )
    writes = list(services.WRITES)
    real = writes[failing]

    def broken(cursor: Any, plan: Any) -> None:
        real(cursor, plan)  # this write happens, then the next step fails
        raise DatabaseError("disk on fire")

    writes[failing] = broken
    monkeypatch.setattr(services, "WRITES", writes)
    with pytest.raises(ForkError, match="Nothing was written: disk on fire"):
        services.edited_fork_run(fork=fork, live_versions=["fixture-v1"], user=otto)
    for table in (
        "workflow_status",
        "workflow_input",
        "operation_outputs",
        "workflow_events",
        "workflow_events_history",
        "streams",
    ):
        assert of(path, table, "wf-partial") == [], table
    [source] = of(path, "workflow_status", EVENTS, "was_forked_from")
    assert source["was_forked_from"] == 0
    fork.refresh_from_db()
    assert fork.status == EditedFork.Status.STAGED
    assert fork.error.startswith("Nothing was written")
    assert AuditRecord.objects.get(action="edited_fork.run").result == "failed"


def test_a_second_operator_must_approve_where_the_application_asks_for_it(
    otto: User, opal: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    app, path = copied(sdk_fixtures["py320-sqlite-default"], tmp_path, fork_approval_required=True)
    fork, _ = services.edited_fork_stage(
        application=app,
        draft=draft(new_workflow_id="wf-review"),
        live_versions=["fixture-v1"],
        user=otto,
    )
    with pytest.raises(ForkRefusedError, match="requires a second operator's approval"):
        services.edited_fork_run(fork=fork, live_versions=["fixture-v1"], user=otto)
    with pytest.raises(ForkRefusedError, match="cannot approve it"):
        services.edited_fork_approve(fork=fork, user=otto)
    services.edited_fork_approve(fork=fork, user=opal)
    services.edited_fork_run(fork=fork, live_versions=["fixture-v1"], user=otto)
    assert of(path, "workflow_status", "wf-review", "status") == [{"status": "ENQUEUED"}]
    results = list(
        AuditRecord.objects.filter(action__startswith="edited_fork.")
        .order_by("pk")
        .values_list("action", "result", "actor_name")
    )
    assert results == [
        ("edited_fork.stage", "ok", "otto"),
        ("edited_fork.run", "denied", "otto"),
        ("edited_fork.approve", "denied", "otto"),
        ("edited_fork.approve", "ok", "opal"),
        ("edited_fork.run", "ok", "otto"),
    ]
    with pytest.raises(ForkRefusedError, match="is done"):
        services.edited_fork_discard(fork=fork, user=otto)


def test_a_discarded_draft_writes_nothing_and_large_values_are_audited_by_hash(
    otto: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    app, path = copied(sdk_fixtures["py320-sqlite-default"], tmp_path)
    big = "x" * (services.AUDIT_VALUE_CHARS + 10)
    fork, _ = services.edited_fork_stage(
        application=app,
        draft=draft(step_outputs={"1": big}, new_workflow_id="wf-big"),
        live_versions=["fixture-v1"],
        user=otto,
    )
    staged = AuditRecord.objects.get(action="edited_fork.stage")
    assert staged.value_diff is not None
    after = staged.value_diff["steps"]["1"]["after"]
    assert set(after) == {"sha256", "chars"}
    services.edited_fork_discard(fork=fork, user=otto)
    with pytest.raises(ForkRefusedError):
        services.edited_fork_run(fork=fork, live_versions=["fixture-v1"], user=otto)
    assert of(path, "workflow_status", "wf-big") == []
