"""Stories about rewinding a finished workflow of an application with no executor
connected: the same workflow re-enqueued in its system database (SQLite and Postgres) with
its history from the chosen step on discarded, as dbos 3.4.0's `rewind_workflow` writes it;
a workflow that is in flight, or became so in between, is refused and left as it is."""

from typing import Any

import pytest
from django.contrib.auth.models import User

from forks import native
from stepchange.models import Application, AuditRecord
from tests.forks import test_native
from tests.forks.test_native import act, rows, write
from tests.workflows.family_data import FAILED_CHILD
from workflows import systemdb

SENTINEL, PORTABLE = native.STREAM_CLOSED
# The fixtures of the native actions' stories.
family, otto = test_native.family, test_native.otto


@pytest.fixture
def history(family: Application) -> Application:
    """FAILED_CHILD (ERROR, steps 1 to 3) with an output, events set at steps 1 and 3,
    messages consumed at steps 1 and 3 and one unconsumed, and a stream closed at step 3."""
    write(
        family, "UPDATE workflow_status SET error = 'boom' WHERE workflow_uuid = %s", [FAILED_CHILD]
    )
    for function_id, key, value in [(1, "stage", "early"), (3, "stage", "late"), (3, "late", "x")]:
        write(
            family,
            "INSERT INTO workflow_events_history (workflow_uuid, function_id, key, value)"
            " VALUES (%s, %s, %s, %s)",
            [FAILED_CHILD, function_id, key, value],
        )
    for key, value in [("stage", "late"), ("late", "x"), ("kept", "y")]:
        write(
            family,
            "INSERT INTO workflow_events (workflow_uuid, key, value) VALUES (%s, %s, %s)",
            [FAILED_CHILD, key, value],
        )
    for message_id, consumed, by in [("m1", True, 1), ("m3", True, 3), ("m-new", False, None)]:
        write(
            family,
            "INSERT INTO notifications (message_uuid, destination_uuid, topic, message,"
            " created_at_epoch_ms, consumed, consumed_by_function_id)"
            " VALUES (%s, %s, 't', 'hi', 1, %s, %s)",
            [message_id, FAILED_CHILD, consumed, by],
        )
    for offset, value, serialization in [(0, "1", None), (1, SENTINEL, PORTABLE)]:
        write(
            family,
            'INSERT INTO streams (workflow_uuid, key, value, "offset", function_id, serialization)'
            " VALUES (%s, 's', %s, %s, 3, %s)",
            [FAILED_CHILD, value, offset, serialization],
        )
    if systemdb.writable_schema(family).has("workflow_output"):
        write(
            family,
            "INSERT INTO workflow_output (workflow_uuid, error, retention_timestamp)"
            " VALUES (%s, 'boom', 1)",
            [FAILED_CHILD],
        )
    return family


def column(application: Application, sql: str) -> list[Any]:
    return [row[0] if len(row) == 1 else row for row in rows(application, sql, [FAILED_CHILD])]


def test_a_failed_workflow_is_rewound_to_a_step_and_enqueued_again_in_the_database(
    history: Application,
    otto: User,
) -> None:
    answer = act(otto, FAILED_CHILD, "rewind", start_step=2)
    assert answer.status_code == 200, answer.content
    assert answer.json()["path"] == "database"
    [state] = rows(
        history,
        "SELECT status, queue_name, completed_at, error, recovery_attempts FROM workflow_status"
        " WHERE workflow_uuid = %s",
        [FAILED_CHILD],
    )
    assert state == ("ENQUEUED", native.INTERNAL_QUEUE, None, None, 0)
    assert column(
        history, "SELECT function_id FROM operation_outputs WHERE workflow_uuid = %s"
    ) == [1]
    # The events roll back to what was published before step 2; one never touched stays.
    events = "SELECT key, value FROM workflow_events WHERE workflow_uuid = %s ORDER BY key"
    assert column(history, events) == [("kept", "y"), ("stage", "early")]
    assert column(
        history, "SELECT function_id FROM workflow_events_history WHERE workflow_uuid = %s"
    ) == [1]
    assert column(
        history, "SELECT message_uuid FROM notifications WHERE destination_uuid = %s"
    ) == ["m1"]
    # The stream keeps its values; only its close sentinel goes, so the replay can append.
    assert column(history, 'SELECT "offset" FROM streams WHERE workflow_uuid = %s') == [0]
    if systemdb.writable_schema(history).has("workflow_output"):
        assert column(history, "SELECT error FROM workflow_output WHERE workflow_uuid = %s") == []
    record = AuditRecord.objects.get(action="workflow.rewind")
    assert (record.result, record.parameters["path"]) == ("ok", "database")


def test_a_rewind_onto_a_version_and_queue_writes_them(history: Application, otto: User) -> None:
    answer = act(
        otto, FAILED_CHILD, "rewind", start_step=1, application_version="v9", queue_name="fast"
    )
    assert answer.status_code == 200, answer.content
    assert rows(
        history,
        "SELECT application_version, queue_name FROM workflow_status WHERE workflow_uuid = %s",
        [FAILED_CHILD],
    ) == [("v9", "fast")]
    assert (
        column(history, "SELECT function_id FROM operation_outputs WHERE workflow_uuid = %s") == []
    )


def test_a_workflow_in_flight_is_not_rewound(history: Application, otto: User) -> None:
    write(
        history,
        "UPDATE workflow_status SET status = 'PENDING' WHERE workflow_uuid = %s",
        [FAILED_CHILD],
    )
    answer = act(otto, FAILED_CHILD, "rewind", start_step=2)
    assert answer.status_code == 409
    assert "cancel it first" in answer.json()["detail"]
    assert (
        len(column(history, "SELECT function_id FROM operation_outputs WHERE workflow_uuid = %s"))
        == 3
    )


def test_a_workflow_that_was_resumed_since_it_was_read_is_reported_and_left_alone(
    history: Application,
    otto: User,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = native._database

    def resumed_first(application: Application) -> tuple[str, systemdb.Schema]:
        found = real(application)
        write(
            application,
            "UPDATE workflow_status SET status = 'ENQUEUED' WHERE workflow_uuid = %s",
            [FAILED_CHILD],
        )
        return found

    monkeypatch.setattr(native, "_database", resumed_first)
    answer = act(otto, FAILED_CHILD, "rewind", start_step=2)
    assert answer.status_code == 409
    assert "became ENQUEUED since it was read" in answer.json()["detail"]
    assert (
        len(column(history, "SELECT function_id FROM operation_outputs WHERE workflow_uuid = %s"))
        == 3
    )
    assert len(column(history, "SELECT key FROM workflow_events WHERE workflow_uuid = %s")) == 3
    record = AuditRecord.objects.get(action="workflow.rewind")
    assert (record.result, record.parameters["path"]) == ("failed", "database")


@pytest.mark.parametrize("start", [-1, None])
def test_a_rewind_without_a_step_to_start_from_is_refused(
    history: Application,
    otto: User,
    start: int | None,
) -> None:
    body = {} if start is None else {"start_step": start}
    answer = act(otto, FAILED_CHILD, "rewind", **body)
    assert answer.status_code in (400, 422)
    assert rows(
        history, "SELECT status FROM workflow_status WHERE workflow_uuid = %s", [FAILED_CHILD]
    ) == [("ERROR",)]


def test_a_database_newer_than_stepchange_knows_is_not_rewound(
    history: Application,
    otto: User,
) -> None:
    write(history, "UPDATE dbos_migrations SET version = %s", [systemdb.KNOWN_VERSION + 1])
    answer = act(otto, FAILED_CHILD, "rewind", start_step=2)
    assert answer.status_code == 409
    assert "newer than StepChange knows" in answer.json()["detail"]
    assert (
        len(column(history, "SELECT function_id FROM operation_outputs WHERE workflow_uuid = %s"))
        == 3
    )
