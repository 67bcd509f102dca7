"""System databases written by real SDKs (tests/fixtures/generate.py), read through the
unmanaged models: every schema version, both database kinds, every serializer."""

from typing import Any

import pytest

from tests.sdk_fixtures import NAMES, by_role, registered
from workflows import systemdb
from workflows.models import (
    Notification,
    StreamEntry,
    WorkflowEvent,
    WorkflowEventHistory,
)
from workflows.serialization import decode


@pytest.mark.parametrize("name", NAMES)
def test_every_workflow_reads_back_as_the_sdk_left_it(
    system_databases: None, sdk_fixtures: dict[str, dict[str, Any]], name: str
) -> None:
    fixture = sdk_fixtures[name]
    application = registered(fixture)
    schema = systemdb.schema_of(application)
    assert schema.version == fixture["migration_version"]
    assert schema.has_payload_tables == (fixture["migration_version"] >= 109)
    rows = {
        row.workflow_uuid: row
        for row in systemdb.workflows(application).with_payloads(
            payload_tables=schema.has_payload_tables
        )
    }
    for expected in fixture["workflows"]:
        row = rows[expected["workflow_id"]]
        assert row.status == expected["status"], expected
        assert row.name == expected["name"]
        for field in ("queue_name", "forked_from", "parent_workflow_id"):
            if field in expected:
                assert getattr(row, field) == expected[field]
        assert row.created_at is not None
    success = rows[by_role(fixture, "success")]
    assert success.payload("input")
    assert success.payload("output")
    assert success.payload("error") is None
    assert success.serialization in fixture["serializations"]["workflow_status"]
    # And the values decode, whatever the SDK and serializer wrote.
    inputs = decode(success.payload("input"), success.serialization, kind="inputs")
    assert inputs.ok, inputs.notes
    assert inputs.value["args"][0] == "alice"  # type: ignore[index,call-overload]
    failed = rows[by_role(fixture, "error")]
    error = decode(failed.payload("error"), failed.serialization, kind="error")
    assert "bad input fail1" in str(error.value["message"])  # type: ignore[index,call-overload]


@pytest.mark.parametrize("name", NAMES)
def test_steps_events_streams_and_messages_read_back(
    system_databases: None, sdk_fixtures: dict[str, dict[str, Any]], name: str
) -> None:
    fixture = sdk_fixtures[name]
    application = registered(fixture)
    first_step = 0 if fixture["sdk"] == "typescript" else 1
    steps = list(systemdb.steps(application).of(by_role(fixture, "success")))
    assert steps
    assert steps[0].function_id == first_step
    assert [step.function_id for step in steps] == sorted(step.function_id for step in steps)
    parent = by_role(fixture, "parent")
    # Starting the child and awaiting its result both name it.
    children = systemdb.steps(application).of(parent).children()
    assert {step.child_workflow_id for step in children} == {by_role(fixture, "parent-child")}

    events = by_role(fixture, "events")
    assert systemdb.rows(application, WorkflowEvent).filter(workflow_uuid=events).exists()
    history = systemdb.rows(application, WorkflowEventHistory).filter(workflow_uuid=events)
    assert history.count() >= 2
    stream = list(
        systemdb.rows(application, StreamEntry).filter(workflow_uuid=events).order_by("offset")
    )
    assert stream
    assert StreamEntry.CLOSED in stream[-1].value
    first = decode(stream[0].value, stream[0].serialization)
    assert first.ok, first.notes
    # Three messages were sent: one received (and kept, consumed), two never read.
    messages = {
        message.topic: message.consumed
        for message in systemdb.rows(application, Notification).filter(
            destination_uuid=by_role(fixture, "recv")
        )
    }
    assert messages == {"greeting": True, "unread": False, Notification.NO_TOPIC: False}


def test_counts_and_the_chart_add_up(
    system_databases: None, sdk_fixtures: dict[str, dict[str, Any]]
) -> None:
    fixture = sdk_fixtures["py320-pg-default"]
    application = registered(fixture)
    workflows = systemdb.workflows(application)
    by_status = workflows.counts_by("status")
    assert sum(by_status.values()) == workflows.count()
    assert by_status["CANCELLED"] == 1
    buckets = workflows.histogram(bucket_ms=60_000)
    assert sum(count for _, _, count in buckets) == workflows.count()
    assert all(start % 60_000 == 0 for start, _, _ in buckets)


LIST_QUERIES = {
    "the newest page": lambda w: w.newest_first(),
    "a keyset page": lambda w: w.newest_first().after((1_900_000_000_000, "z")),
    "failed ones": lambda w: w.filtered(status=["ERROR"]).newest_first(),
    "pending ones": lambda w: w.filtered(status=["PENDING"]).newest_first(),
    "a queue's": lambda w: w.queued().filtered(queue_name=["fixture-queue"]),
    "forks of one": lambda w: w.filtered(forked_from=["py-default-success"]),
    "children of one": lambda w: w.filtered(parent_workflow_id=["py-default-parent"]),
    "one workflow": lambda w: w.filter(workflow_uuid="py-default-success"),
}


@pytest.mark.parametrize("query", LIST_QUERIES)
def test_every_list_query_can_use_dboss_own_indexes(
    system_databases: None, sdk_fixtures: dict[str, dict[str, Any]], query: str
) -> None:
    from django.db import connections

    application = registered(sdk_fixtures["py320-pg-default"])
    alias = systemdb.alias_for(application)
    with connections[alias].cursor() as cursor:
        # The fixture is tiny: forbid sequential scans, so the plan shows whether an
        # index can serve the query at all.
        cursor.execute("SET enable_seqscan = off")
    plan = LIST_QUERIES[query](systemdb.workflows(application))[:50].explain()
    assert "Index" in plan, plan
    assert "Seq Scan on workflow_status" not in plan, plan
    steps_plan = systemdb.steps(application).of("py-default-success").explain()
    assert "Seq Scan" not in steps_plan, steps_plan
