"""Stories about an operator acting on the workflows of an application that has no
executor connected (on an SDK whose Conductor client is not open source): each action is
written into its system database, SQLite or Postgres, as the SDK writes it; the answer and
the audit record say the database path was taken; a workflow that changed in between is
reported and left as it is."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.db import connections
from django.test import Client

from conductor.models import RecoveryAttempt
from forks import native
from stepchange.models import Application, AuditRecord
from tests.conftest import make_user
from tests.workflows.family_data import CHILDREN, FAILED_CHILD, FORKS, PARENT, family_database
from workflows import jobs, systemdb
from workflows.models import BulkJob, BulkJobItem

RUNNER = "native-runner"
RUNNING_CHILD = "native-runner-child"
DONE_CHILD = "native-runner-done"
GRANDCHILD = "native-runner-grandchild"


@pytest.fixture(params=["sqlite", "postgres"])
def family(
    request: pytest.FixtureRequest,
    system_databases: None,
    sdk_fixtures: dict[str, dict[str, Any]],
    tmp_path: Path,
) -> Iterator[Application]:
    """The family of tests/workflows, plus a PENDING workflow with a PENDING child (which
    has a child of its own) and a finished one, and recorded steps for a failed child."""
    for application in family_database(request.param, sdk_fixtures, tmp_path):
        with connections[systemdb.alias_for(application)].cursor() as cursor:
            for workflow_id, status, parent in [
                (RUNNER, "PENDING", None),
                (RUNNING_CHILD, "PENDING", RUNNER),
                (DONE_CHILD, "SUCCESS", RUNNER),
                (GRANDCHILD, "ENQUEUED", RUNNING_CHILD),
            ]:
                cursor.execute(
                    "INSERT INTO workflow_status (workflow_uuid, status, name, queue_name,"
                    " parent_workflow_id, created_at, updated_at, executor_id)"
                    " VALUES (%s, %s, 'ship', 'shipping', %s, 1, 1, 'gone-executor')",
                    [workflow_id, status, parent],
                )
            for step in (1, 2, 3):
                cursor.execute(
                    "INSERT INTO operation_outputs (workflow_uuid, function_id, function_name,"
                    " output) VALUES (%s, %s, %s, %s)",
                    [FAILED_CHILD, step, f"step_{step}", f'{{"json": {step}}}'],
                )
        yield application


@pytest.fixture
def otto(system_databases: None) -> User:
    return make_user(username="otto", role="operator")


def act(user: User, workflow_id: str, action: str, **body: Any) -> Any:
    client = Client()
    client.force_login(user)
    return client.post(
        f"/api/v1/apps/family/workflows/{workflow_id}/{action}",
        {"reason": "no executor", **body},
        content_type="application/json",
    )


def rows(application: Application, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    with connections[systemdb.alias_for(application)].cursor() as cursor:
        cursor.execute(sql, params)
        return [tuple(row) for row in cursor.fetchall()]


def write(application: Application, sql: str, params: list[Any]) -> None:
    with connections[systemdb.alias_for(application)].cursor() as cursor:
        cursor.execute(sql, params)


def status(application: Application, workflow_id: str) -> tuple[Any, ...]:
    """The workflow's status, queue and recovery attempts; () when it is gone."""
    found = rows(
        application,
        "SELECT status, queue_name, recovery_attempts FROM workflow_status"
        " WHERE workflow_uuid = %s",
        [workflow_id],
    )
    return found[0] if found else ()


def test_an_operator_cancels_a_pending_workflow_and_its_children_in_the_database(
    family: Application, otto: User
) -> None:
    answer = act(otto, RUNNER, "cancel", cancel_children=True)
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["path"] == "database"
    assert body["request_id"] == body["executor_id"] == ""
    assert "written into the system database" in body["detail"]
    assert f"{DONE_CHILD} (SUCCESS)" in body["detail"]
    for workflow_id in (RUNNER, RUNNING_CHILD, GRANDCHILD):
        assert status(family, workflow_id)[:2] == ("CANCELLED", None)
    assert status(family, DONE_CHILD)[:2] == ("SUCCESS", "shipping")
    record = AuditRecord.objects.get(action="workflow.cancel")
    assert record.parameters == {"reason": "no executor", "cancel_children": True} | {
        "path": "database"
    }
    assert (record.result, record.target) == ("ok", RUNNER)


def test_without_children_only_the_workflow_is_cancelled(family: Application, otto: User) -> None:
    assert act(otto, RUNNER, "cancel").status_code == 200
    assert status(family, RUNNER)[0] == "CANCELLED"
    assert status(family, RUNNING_CHILD)[0] == "PENDING"


def test_a_cancelled_workflow_is_resumed_onto_the_internal_queue(
    family: Application, otto: User
) -> None:
    act(otto, RUNNER, "cancel")
    write(
        family,
        "UPDATE workflow_status SET recovery_attempts = 3 WHERE workflow_uuid = %s",
        [RUNNER],
    )
    answer = act(otto, RUNNER, "resume")
    assert answer.status_code == 200, answer.content
    assert answer.json()["path"] == "database"
    assert status(family, RUNNER) == ("ENQUEUED", "_dbos_internal_queue", 0)
    assert act(otto, RUNNER, "resume", queue_name="shipping").status_code == 409


def test_a_fork_copies_the_steps_before_its_start_and_marks_its_source(
    family: Application, otto: User
) -> None:
    answer = act(otto, FAILED_CHILD, "fork", start_step=3, new_workflow_id="native-fork")
    assert answer.status_code == 200, answer.content
    assert answer.json()["new_workflow_id"] == "native-fork"
    assert answer.json()["path"] == "database"
    new = rows(
        family,
        "SELECT status, queue_name, forked_from, name FROM workflow_status"
        " WHERE workflow_uuid = %s",
        ["native-fork"],
    )
    assert new == [("ENQUEUED", "_dbos_internal_queue", FAILED_CHILD, "charge_card")]
    steps = rows(
        family,
        "SELECT function_id, function_name FROM operation_outputs WHERE workflow_uuid = %s"
        " ORDER BY function_id",
        ["native-fork"],
    )
    assert steps == [(1, "step_1"), (2, "step_2")]
    marked = rows(
        family,
        "SELECT was_forked_from FROM workflow_status WHERE workflow_uuid = %s",
        [FAILED_CHILD],
    )
    assert marked[0][0] in (True, 1)
    again = act(otto, FAILED_CHILD, "fork", start_step=3, new_workflow_id="native-fork")
    assert again.status_code == 409


def test_a_restart_is_a_fork_that_copies_no_step(family: Application, otto: User) -> None:
    answer = act(otto, FAILED_CHILD, "restart")
    assert answer.status_code == 200, answer.content
    new_id = answer.json()["new_workflow_id"]
    assert status(family, new_id)[0] == "ENQUEUED"
    copied = rows(
        family, "SELECT count(*) FROM operation_outputs WHERE workflow_uuid = %s", [new_id]
    )
    assert copied == [(0,)]


def test_a_finished_workflow_is_deleted_with_its_descendants(
    family: Application, otto: User
) -> None:
    assert act(otto, RUNNER, "delete").status_code == 409  # still PENDING
    answer = act(otto, FAILED_CHILD, "delete", delete_children=True)
    assert answer.status_code == 200, answer.content
    assert answer.json()["path"] == "database"
    for workflow_id in (FAILED_CHILD, "fam-grandchild"):
        assert status(family, workflow_id) == ()
    leftovers = rows(
        family, "SELECT count(*) FROM operation_outputs WHERE workflow_uuid = %s", [FAILED_CHILD]
    )
    assert leftovers == [(0,)]
    assert status(family, PARENT) != ()
    assert status(family, CHILDREN[0]) != ()


def test_a_workflow_that_finished_since_it_was_read_is_reported_and_left_alone(
    family: Application, otto: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = native._database

    def finishing_first(application: Application) -> tuple[str, systemdb.Schema]:
        # The executor finishes the workflow between the operator's read and the write.
        found = real(application)
        write(
            application,
            "UPDATE workflow_status SET status = 'SUCCESS', queue_name = 'shipping'"
            " WHERE workflow_uuid = %s",
            [RUNNER],
        )
        return found

    monkeypatch.setattr(native, "_database", finishing_first)
    answer = act(otto, RUNNER, "cancel", cancel_children=True)
    assert answer.status_code == 409
    assert "became SUCCESS since it was read" in answer.json()["detail"]
    assert status(family, RUNNER)[:2] == ("SUCCESS", "shipping")
    assert status(family, RUNNING_CHILD)[0] == "PENDING"
    record = AuditRecord.objects.get(action="workflow.cancel")
    assert (record.result, record.parameters["path"]) == ("failed", "database")


def test_a_database_newer_than_stepchange_knows_is_not_written(
    family: Application, otto: User
) -> None:
    write(family, "UPDATE dbos_migrations SET version = %s", [systemdb.KNOWN_VERSION + 1])
    answer = act(otto, RUNNER, "cancel")
    assert answer.status_code == 409
    assert "newer than StepChange knows" in answer.json()["detail"]
    assert status(family, RUNNER)[0] == "PENDING"


def test_a_fork_from_failure_starts_at_the_step_that_failed(
    family: Application, otto: User
) -> None:
    def forked(**body: Any) -> list[int]:
        answer = act(otto, FAILED_CHILD, "fork-from-failure", **body)
        assert answer.status_code == 200, answer.content
        assert answer.json()["path"] == "database"
        [new_id] = answer.json()["new_workflow_ids"]
        assert status(family, new_id)[0] == "ENQUEUED"
        copied = rows(
            family,
            "SELECT function_id FROM operation_outputs WHERE workflow_uuid = %s"
            " ORDER BY function_id",
            [new_id],
        )
        return [step for (step,) in copied]

    # No step failed: from the last one, as the SDK does.
    assert forked() == [1, 2]
    write(
        family,
        "UPDATE operation_outputs SET error = 'boom' WHERE workflow_uuid = %s AND function_id = 2",
        [FAILED_CHILD],
    )
    assert forked() == [1]
    assert forked(mode="last_step") == [1, 2]
    assert forked(mode="step_name", step_name="step_2") == [1]
    assert forked(mode="step", start_step=1) == []
    unknown = act(otto, FAILED_CHILD, "fork-from-failure", mode="step_name", step_name="nope")
    assert unknown.status_code == 400
    assert "has no step named 'nope'" in unknown.json()["detail"]
    assert act(otto, RUNNER, "fork-from-failure").status_code == 409  # PENDING: no failure


def test_a_bulk_cancel_without_an_executor_writes_each_workflow_and_reports_a_race(
    family: Application, otto: User
) -> None:
    client = Client()
    client.force_login(otto)
    made = client.post(
        "/api/v1/apps/family/bulk-actions",
        {"action": "cancel", "workflow_ids": [RUNNER, FORKS[1]], "reason": "no executor"},
        content_type="application/json",
    )
    assert made.status_code in (200, 201), made.content
    job = BulkJob.objects.get()
    # The fork finishes after the job was made, before it runs.
    write(
        family, "UPDATE workflow_status SET status = 'SUCCESS' WHERE workflow_uuid = %s", [FORKS[1]]
    )
    assert async_to_sync(jobs.run_next)()
    job.refresh_from_db()
    assert job.state == BulkJob.State.DONE, job.detail
    items = {item.workflow_id: item for item in job.items.all()}
    assert items[RUNNER].state == BulkJobItem.State.OK
    assert "written into the system database" in items[RUNNER].detail
    assert items[FORKS[1]].state == BulkJobItem.State.FAILED
    assert "became SUCCESS since it was read" in items[FORKS[1]].detail
    assert status(family, RUNNER)[0] == "CANCELLED"
    assert status(family, FORKS[1])[0] == "SUCCESS"
    records = AuditRecord.objects.filter(action="workflow.cancel").order_by("target")
    assert [(r.target, r.result, r.parameters["path"]) for r in records] == [
        (FORKS[1], "failed", "database"),
        (RUNNER, "ok", "database"),
    ]


def test_a_gone_executors_pending_workflows_are_recovered_through_the_database(
    family: Application, otto: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = Client()
    client.force_login(otto)
    seen = client.get("/api/v1/apps/family/database-recovery").json()
    [gone] = [e for e in seen if e["executor_id"] == "gone-executor"]
    assert (gone["pending"], gone["workflow_ids"]) == (2, sorted([RUNNER, RUNNING_CHILD]))
    real = native._database

    def taken_up_first(application: Application) -> tuple[str, systemdb.Schema]:
        # Another executor takes the child up between the preview and the write.
        write(
            application,
            "UPDATE workflow_status SET executor_id = 'alive' WHERE workflow_uuid = %s",
            [RUNNING_CHILD],
        )
        return real(application)

    monkeypatch.setattr(native, "_database", taken_up_first)
    body = {"executor_id": "gone-executor", "reason": "host lost"}
    answer = client.post("/api/v1/apps/family/database-recovery", body, "application/json")
    assert answer.status_code == 200, answer.content
    recovered = answer.json()
    assert (recovered["path"], recovered["recovered"]) == ("database", [RUNNER])
    assert recovered["left"] == {RUNNING_CHILD: "PENDING"}
    assert status(family, RUNNER)[:2] == ("ENQUEUED", "shipping")
    assert status(family, RUNNING_CHILD)[0] == "PENDING"
    record = AuditRecord.objects.get(action="executor.recovery")
    assert (record.result, record.parameters["path"]) == ("ok", "database")
    monkeypatch.setattr(native, "_database", real)
    again = client.post("/api/v1/apps/family/database-recovery", body, "application/json")
    assert again.status_code == 404
    # The same workflow left pending by a second executor that died: a poison suspect.
    write(
        family,
        "UPDATE workflow_status SET status = 'PENDING', executor_id = 'gone-2'"
        " WHERE workflow_uuid = %s",
        [RUNNER],
    )
    second = {"executor_id": "gone-2", "reason": "host lost again"}
    answer = client.post("/api/v1/apps/family/database-recovery", second, "application/json")
    assert answer.status_code == 200, answer.content
    assert answer.json()["poison_suspects"] == [RUNNER]


def test_executors_are_counted_from_this_applications_rows_and_unclaimed_ones(
    family: Application, otto: User
) -> None:
    for workflow_id, owner, executor_id in [
        ("native-ours", "family", "ours"),
        ("native-theirs", "another-app", "theirs"),
    ] + [(f"native-many-{n}", "family", "many") for n in range(120)]:
        write(
            family,
            "INSERT INTO workflow_status (workflow_uuid, status, name, created_at, updated_at,"
            " executor_id, application_name) VALUES (%s, 'PENDING', 'ship', 1, 1, %s, %s)",
            [workflow_id, executor_id, owner],
        )
    client = Client()
    client.force_login(otto)
    seen = {e["executor_id"]: e for e in client.get("/api/v1/apps/family/database-recovery").json()}
    assert set(seen) - {""} == {"gone-executor", "ours", "many"}
    assert (seen["ours"]["pending"], seen["ours"]["workflow_ids"]) == (1, ["native-ours"])
    # Counted whole, shown in part.
    assert seen["many"]["pending"] == 120
    assert seen["many"]["workflow_ids"] == sorted(f"native-many-{n}" for n in range(120))[:100]
    assert native.pending_workflow_ids(family, "theirs") == []
    assert len(native.pending_workflow_ids(family, "many")) == 120


def test_a_recovery_through_the_database_is_listed_with_the_recoveries(
    family: Application, otto: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = Client()
    client.force_login(otto)
    write(
        family,
        "UPDATE workflow_status SET application_version = 'v7' WHERE workflow_uuid IN (%s, %s)",
        [RUNNER, RUNNING_CHILD],
    )
    body = {"executor_id": "gone-executor", "reason": "host lost"}
    answer = client.post("/api/v1/apps/family/database-recovery", body, "application/json")
    assert answer.status_code == 200, answer.content
    attempt = RecoveryAttempt.objects.get(application=family)
    assert (attempt.path, attempt.outcome, attempt.manual) == ("database", "sent", True)
    assert (attempt.dead_executor_id, attempt.requested_by) == ("gone-executor", "otto")
    assert attempt.application_version == "v7"
    assert sorted(attempt.pending_workflow_ids) == sorted(answer.json()["recovered"])
    assert sorted(attempt.pending_workflow_ids) == sorted([RUNNER, RUNNING_CHILD])
    # Refused (nothing pending any more, or no executor id): no attempt is listed.
    assert (
        client.post("/api/v1/apps/family/database-recovery", body, "application/json").status_code
        == 404
    )
    bad = client.post("/api/v1/apps/family/database-recovery", {}, "application/json")
    assert bad.status_code in (400, 422)
    assert RecoveryAttempt.objects.filter(application=family).count() == 1
    # A write the system database refuses is listed as failed, with what it meant to do.
    write(
        family,
        "UPDATE workflow_status SET status = 'PENDING', executor_id = 'gone-2'"
        " WHERE workflow_uuid = %s",
        [RUNNER],
    )

    def unreachable(application: Application) -> Any:
        raise systemdb.SystemDatabaseError("The system database cannot be reached.")

    monkeypatch.setattr(native, "_database", unreachable)
    body = {"executor_id": "gone-2", "reason": "host lost again"}
    answer = client.post("/api/v1/apps/family/database-recovery", body, "application/json")
    assert answer.status_code == 503
    failed = RecoveryAttempt.objects.filter(application=family).first()
    assert failed is not None
    assert (failed.dead_executor_id, failed.outcome, failed.path) == (
        "gone-2",
        "failed",
        "database",
    )
    assert failed.pending_workflow_ids == [RUNNER]
    assert "cannot be reached" in failed.detail
    assert status(family, RUNNER)[0] == "PENDING"


def test_a_system_database_that_fails_a_read_is_a_503_and_the_page_says_so(
    family: Application, otto: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The schema was read a moment ago (and is cached); the read itself fails (here: a
    # column the statement names and the table lacks, as a lost connection would fail it).
    real = native._pending_rows

    def broken(application: Application) -> tuple[str, str, list[Any]]:
        alias, where, values = real(application)
        return alias, where + " AND no_such_column = 1", values

    monkeypatch.setattr(native, "_pending_rows", broken)
    client = Client()
    client.force_login(otto)
    answer = client.get("/api/v1/apps/family/database-recovery")
    assert answer.status_code == 503
    assert "could not be read" in answer.json()["detail"]
    page = client.get("/apps/family/executors/")
    assert page.status_code == 200
    assert "The system database could not be read." in page.content.decode()
    body = {"executor_id": "gone-executor", "reason": "host lost"}
    refused = client.post("/api/v1/apps/family/database-recovery", body, "application/json")
    assert refused.status_code == 503
    assert AuditRecord.objects.get(action="executor.recovery").result == "failed"
