"""Stories about forking workflows onto a version when no executor is connected: the bulk
job accepts a version the system database has seen (a row of `application_versions`, or a
recent workflow on it), refuses one it never saw, and writes each fork into the system
database as the relayed batch would have it done (a fork from failure pinned to the
version), one transaction each."""

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.test import Client

from stepchange.models import Application, AuditRecord
from tests.forks import test_native
from tests.forks.test_native import RUNNER, rows, status, write
from tests.workflows.family_data import FAILED_CHILD
from workflows import jobs
from workflows.models import BulkJob, BulkJobItem

# The fixtures of the native actions' stories.
family, otto = test_native.family, test_native.otto
STRANDED = [RUNNER, FAILED_CHILD]


@pytest.fixture
def versioned(family: Application) -> Application:
    """RUNNER (PENDING) and FAILED_CHILD (ERROR, steps 1 to 3) on the retired v1; v2 is
    registered in application_versions, nothing runs on it yet."""
    write(family, "UPDATE workflow_status SET application_version = NULL", [])
    write(
        family,
        "UPDATE workflow_status SET application_version = 'v1' WHERE workflow_uuid IN (%s, %s)",
        STRANDED,
    )
    write(
        family,
        "INSERT INTO application_versions (version_id, version_name, version_timestamp,"
        " created_at) VALUES ('id-v2', 'v2', 2, 2)",
        [],
    )
    return family


def fork_onto(user: User, version: str) -> Any:
    client = Client()
    client.force_login(user)
    return client.post(
        "/api/v1/apps/family/bulk-actions",
        {
            "action": "fork_to_version",
            "workflow_ids": STRANDED,
            "application_version": version,
            "mode": "last_step",
            "reason": "v1 is retired",
        },
        content_type="application/json",
    )


def test_stranded_workflows_are_forked_onto_a_registered_version_in_the_database(
    versioned: Application, otto: User
) -> None:
    made = fork_onto(otto, "v2")
    assert made.status_code in (200, 201), made.content
    assert async_to_sync(jobs.run_next)()
    job = BulkJob.objects.get()
    assert job.state == BulkJob.State.DONE, job.detail
    items = {item.workflow_id: item for item in job.items.all()}
    assert [items[w].state for w in STRANDED] == [BulkJobItem.State.OK] * 2
    for source in STRANDED:
        new_id = items[source].new_workflow_id
        assert new_id
        assert rows(
            versioned,
            "SELECT status, application_version, forked_from FROM workflow_status"
            " WHERE workflow_uuid = %s",
            [new_id],
        ) == [("ENQUEUED", "v2", source)]
    # From its last step, as the relayed batch asks: the failed child's steps before it.
    copied = rows(
        versioned,
        "SELECT function_id FROM operation_outputs WHERE workflow_uuid = %s ORDER BY function_id",
        [items[FAILED_CHILD].new_workflow_id],
    )
    assert copied == [(1,), (2,)]
    # The sources are left as they were.
    assert status(versioned, RUNNER)[0] == "PENDING"
    records = AuditRecord.objects.filter(action="workflow.fork", result="ok")
    assert sorted(r.parameters["path"] for r in records) == ["database", "database"]


def test_a_version_seen_only_on_workflows_is_accepted(versioned: Application, otto: User) -> None:
    write(versioned, "DELETE FROM application_versions", [])
    assert fork_onto(otto, "v1").status_code in (200, 201)


def test_a_version_the_database_never_saw_is_refused_and_no_job_is_made(
    versioned: Application, otto: User
) -> None:
    refused = fork_onto(otto, "v9")
    assert refused.status_code == 409
    detail = refused.json()["detail"]
    assert "Version 'v9' was never seen in the system database of family" in detail
    assert "Versions seen: v2, v1" in detail
    assert not BulkJob.objects.exists()


def test_a_workflow_deleted_before_the_job_runs_fails_alone(
    versioned: Application, otto: User
) -> None:
    assert fork_onto(otto, "v2").status_code in (200, 201)
    write(versioned, "DELETE FROM workflow_status WHERE workflow_uuid = %s", [RUNNER])
    assert async_to_sync(jobs.run_next)()
    items = {item.workflow_id: item for item in BulkJob.objects.get().items.all()}
    assert items[RUNNER].state == BulkJobItem.State.FAILED
    assert "no longer in the system database" in items[RUNNER].detail
    assert items[FAILED_CHILD].state == BulkJobItem.State.OK
