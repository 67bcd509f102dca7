"""A database-managed application on Python dbos 3.4.0 (SQLite and Postgres system
databases) and TypeScript @dbos-inc/dbos-sdk 5.3.0 (Postgres), with no conductor setting:
retention written into its system database by
StepChange deletes the old finished workflows and nothing the executor still needs, and
cancels one pending past the timeout, which then stops at its next step; a
finished workflow rewound there is run again by the executor from the chosen step, and a
bulk fork onto a version the database has seen is run by the executor of that version."""

import contextlib
import sqlite3
import time
from typing import Any

import psycopg
import pytest

from conductor import retention
from tests.e2e.servers import eventually
from tests.e2e.test_database_managed import (  # the module's fixtures, for these stories
    TABLES,
    Deployment,
    databases,
    deployment,
    stepchange,
)

pytestmark = pytest.mark.e2e
PYTHON = pytest.mark.parametrize("deployment", ["python-sqlite", "python-postgres"], indirect=True)
EVERY = pytest.mark.parametrize(
    "deployment", ["python-sqlite", "python-postgres", "typescript-postgres"], indirect=True
)
DAY_MS = 86_400_000
__all__ = ["databases", "deployment", "stepchange"]


def backdate(deployment: Deployment, workflow_ids: list[str], days: float) -> None:
    """Make workflows look `days` older, as if they had started (and finished) then."""
    marks = ", ".join(["%s"] * len(workflow_ids))
    sql = (
        "UPDATE workflow_status SET created_at = created_at - %s, completed_at = completed_at - %s"
        f" WHERE workflow_uuid IN ({marks})"
    )
    params: list[Any] = [int(days * DAY_MS), int(days * DAY_MS), *workflow_ids]
    url = deployment.db.url
    if url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"), timeout=10)) as db:
            db.execute(sql.replace("%s", "?"), params)
            db.commit()
        return
    with psycopg.connect(url, options="-c search_path=dbos") as db:
        db.execute(sql.encode(), params)


@EVERY
def test_retention_deletes_old_finished_workflows_and_the_executor_carries_on(
    deployment: Deployment,
) -> None:
    old = [deployment.slow(0.2) for _ in range(3)]
    for workflow_id in old:
        deployment.db.wait_status(workflow_id, "SUCCESS")
    recent = deployment.slow(0.2)
    deployment.db.wait_status(recent, "SUCCESS")
    backdate(deployment, old, days=3)
    running = deployment.slow(6)
    deployment.db.wait_status(running, "PENDING")

    rules = {"retention_days": 2, "retention_rows": None, "retention_timeout_hours": None}
    path = f"/apps/{deployment.app}/retention"
    assert deployment.server.api("PUT", path, rules)[0] == 200
    status, answer = deployment.server.api("POST", f"{path}/send")
    assert status == 200, answer
    assert answer["path"] == "database"
    assert answer["cancelled"] == 0

    for workflow_id in old:
        for table in TABLES:
            assert deployment.db.count(table, workflow_id) == 0, (workflow_id, table)
    assert deployment.db.status(recent) == "SUCCESS"
    # The workflow in flight finishes; a new one still runs.
    deployment.db.wait_status(running, "SUCCESS", timeout=40)
    assert deployment.step_names(running) == ["nap", "DBOS.sleep", "finish"]
    fresh = deployment.slow(0.2)
    deployment.db.wait_status(fresh, "SUCCESS")
    status, audit = deployment.server.api(
        "GET", f"/audit?action=application.retention&app={deployment.app}"
    )
    assert status == 200, audit
    # The periodic sender may have found the new rules due and sent them too, before the
    # operator's send or beside it: the two delete the old workflows between them.
    records = [r for r in audit["items"] if r["application_name"] == deployment.app]
    assert {(r["result"], r["parameters"]["path"]) for r in records} == {("ok", "database")}
    assert [r["actor_name"] for r in records].count(retention.AUTOMATIC) == len(records) - 1
    assert sum(r["parameters"]["deleted"] for r in records) >= 3


@EVERY
def test_a_workflow_pending_past_the_timeout_is_cancelled_and_stops_at_its_next_step(
    deployment: Deployment,
) -> None:
    stuck = deployment.slow(8)
    deployment.db.wait_status(stuck, "PENDING")
    backdate(deployment, [stuck], days=2 / 24)
    rules = {"retention_days": None, "retention_rows": None, "retention_timeout_hours": 1}
    path = f"/apps/{deployment.app}/retention"
    assert deployment.server.api("PUT", path, rules)[0] == 200
    status, answer = deployment.server.api("POST", f"{path}/send")
    assert status == 200, answer
    assert (answer["path"], answer["deleted"], answer["cancelled"]) == ("database", 0, 1)
    assert deployment.db.wait_status(stuck, "CANCELLED")["queue_name"] is None
    # The nap (4 s) ends; the durable sleep after it and the finish are never started.
    time.sleep(6)
    assert deployment.step_names(stuck) in ([], ["nap"])
    assert deployment.db.status(stuck) == "CANCELLED"


@EVERY
def test_a_finished_workflow_rewound_in_the_database_runs_again_from_its_step(
    deployment: Deployment,
) -> None:
    workflow_id = deployment.slow(2)
    deployment.db.wait_status(workflow_id, "SUCCESS")
    recorded = deployment.db.steps(workflow_id)
    finish = recorded[2]["function_id"]
    time.sleep(0.05)  # the rerun's finish starts on a later millisecond

    status, answer = deployment.act(workflow_id, "rewind", start_step=finish)
    assert status == 200, answer
    assert answer["path"] == "database"
    deployment.db.wait_status(workflow_id, "SUCCESS", timeout=40)
    steps = deployment.db.steps(workflow_id)
    # The nap and the sleep are kept as they were; the finish ran again.
    assert [s["started_at_epoch_ms"] for s in steps[:2]] == [
        s["started_at_epoch_ms"] for s in recorded[:2]
    ]
    assert steps[2]["function_name"] == "finish"
    assert steps[2]["started_at_epoch_ms"] > recorded[2]["started_at_epoch_ms"]
    assert deployment.output(workflow_id) == "slept 2s"
    # A workflow in flight is not rewound.
    running = deployment.slow(6)
    deployment.db.wait_status(running, "PENDING")
    assert deployment.act(running, "rewind", start_step=finish)[0] == 409


@EVERY
def test_workflows_forked_onto_a_version_the_database_has_seen_are_run_by_the_executor(
    deployment: Deployment,
) -> None:
    source = deployment.slow(1)
    deployment.db.wait_status(source, "SUCCESS")
    bulk = f"/apps/{deployment.app}/bulk-actions"
    body = {"action": "fork_to_version", "workflow_ids": [source], "mode": "last_step"}
    status, refused = deployment.server.api("POST", bulk, body | {"application_version": "v9"})
    assert status == 409, refused
    assert "never seen in the system database" in refused["detail"]
    # The executor runs v1: its workflows (and its application_versions row) show it.
    status, made = deployment.server.api(
        "POST", bulk, body | {"application_version": "v1", "reason": "onto v1"}
    )
    assert status in (200, 201, 202), made

    def forked() -> dict[str, Any] | None:
        found = deployment.db.rows(
            "SELECT workflow_uuid, status, application_version FROM workflow_status"
            " WHERE forked_from = %s",
            source,
        )
        return found[0] if found and found[0]["status"] == "SUCCESS" else None

    fork = eventually(forked, timeout=40, what=f"a fork of {source} to succeed")
    assert fork["application_version"] == "v1"
    steps = deployment.db.steps(str(fork["workflow_uuid"]))
    assert [s["function_name"] for s in steps] == ["nap", "DBOS.sleep", "finish"]
