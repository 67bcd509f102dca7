"""Stories about retention for an application with no executor connected: the age, row and
timeout rules written into its system database (SQLite and Postgres) in batches, as DBOS's
garbage collection and global timeout do; a batch past its statement timeout stops the
sweep with the batches before it done; a workflow that changed in between is reported and
left as it is; the send and the sweeper audit it with path "database"."""

import time
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.test import Client

from conductor import retention
from forks import native, native_retention
from stepchange.models import Application, AuditRecord
from tests.conftest import make_user
from tests.forks.test_native import family, rows, write  # noqa: F401 (a fixture)
from workflows import systemdb

DAY = 86_400_000
NOW = int(time.time() * 1000)  # the cutoffs below count back from here
OLD = [f"old-{n}" for n in range(5)]  # finished 10 days ago, a millisecond apart
RECENT = "recent-done"
RUNNING = "still-running"
STUCK = [f"stuck-{n}" for n in range(3)]  # in flight, created 10 days ago
OTHERS = "other-apps-stuck"


@pytest.fixture
def swept_family(family: Application) -> Application:  # noqa: F811
    """The family emptied, then: five workflows finished ten days ago (each with an input,
    an output, a step and an event), one finished an hour ago, one running, three stuck
    in flight for ten days and one of another application stuck as long."""
    for table in ("workflow_events", "operation_outputs", "workflow_input", "workflow_output"):
        write(family, f"DELETE FROM {table}", [])
    write(family, "DELETE FROM workflow_status", [])
    if family.system_database_schema and not family.system_database_url.startswith("sqlite"):
        # The test's copy of the tables (LIKE ... INCLUDING ALL) leaves out DBOS's foreign
        # keys: the one the events hang on is put back, as DBOS's migrations make it.
        write(
            family,
            "ALTER TABLE workflow_events ADD FOREIGN KEY (workflow_uuid)"
            " REFERENCES workflow_status (workflow_uuid) ON DELETE CASCADE",
            [],
        )
    specs: list[tuple[str, str, int, int | None, str | None]] = [
        *((wid, "SUCCESS", NOW - 11 * DAY, NOW - 10 * DAY + n, "family")
          for n, wid in enumerate(OLD)),
        (RECENT, "ERROR", NOW - 2 * DAY, NOW - DAY // 24, "family"),
        (RUNNING, "PENDING", NOW - DAY // 24, None, "family"),
        *((wid, status, NOW - 10 * DAY + n, None, None) for n, (wid, status) in
          enumerate(zip(STUCK, ["PENDING", "ENQUEUED", "DELAYED"], strict=True))),
        (OTHERS, "PENDING", NOW - 10 * DAY, None, "someone-else"),
    ]  # fmt: skip
    for workflow_id, status, created, completed, owner in specs:
        write(
            family,
            "INSERT INTO workflow_status (workflow_uuid, status, name, queue_name, created_at,"
            " updated_at, completed_at, application_name) VALUES (%s, %s, 'ship', 'q', %s, %s,"
            " %s, %s)",
            [workflow_id, status, created, created, completed, owner],
        )
        write(
            family,
            "INSERT INTO operation_outputs (workflow_uuid, function_id, function_name, output)"
            " VALUES (%s, 1, 'step_1', '1')",
            [workflow_id],
        )
        write(
            family,
            "INSERT INTO workflow_events (workflow_uuid, key, value) VALUES (%s, 'k', 'v')",
            [workflow_id],
        )
        for table in ("workflow_input", "workflow_output"):
            if systemdb.writable_schema(family).has(table):
                column = "inputs" if table == "workflow_input" else "output"
                write(
                    family,
                    f"INSERT INTO {table} (workflow_uuid, {column}, retention_timestamp)"
                    " VALUES (%s, 'x', %s)",
                    [workflow_id, created],
                )
    return family


def sweep(
    application: Application, batch_rows: int = 2, timeout_ms: int = 5000, **rules: Any
) -> native_retention.Swept:
    given = {"gc_cutoff_epoch_ms": None, "gc_rows_threshold": None, "timeout_cutoff_epoch_ms": None}
    return native_retention.native_retention(
        application=application,
        **(given | rules),
        batch_rows=batch_rows,
        statement_timeout_ms=timeout_ms,
    )


def present(application: Application, table: str = "workflow_status") -> set[str]:
    return {wid for (wid,) in rows(application, f"SELECT workflow_uuid FROM {table}", [])}


def status_of(application: Application, workflow_id: str) -> tuple[Any, ...]:
    return rows(
        application,
        "SELECT status, queue_name, completed_at FROM workflow_status WHERE workflow_uuid = %s",
        [workflow_id],
    )[0]


def test_old_finished_workflows_go_in_batches_with_their_steps_inputs_outputs_and_events(
    swept_family: Application,
) -> None:
    swept = sweep(swept_family, gc_cutoff_epoch_ms=NOW - 5 * DAY)
    assert (swept.deleted, swept.cancelled, swept.left, swept.stopped) == (5, 0, {}, "")
    # Five rows two at a time: 2, 2, 1, the short one ending the sweep.
    assert swept.batches == 3
    kept = {RECENT, RUNNING, OTHERS, *STUCK}
    assert present(swept_family) == kept
    assert present(swept_family, "operation_outputs") == kept
    assert present(swept_family, "workflow_events") == kept
    for table in ("workflow_input", "workflow_output"):
        if systemdb.writable_schema(swept_family).has(table):
            assert present(swept_family, table) == kept


def test_a_batch_boundary_on_the_last_row_takes_one_empty_batch_more(
    swept_family: Application,
) -> None:
    # Four of the five old ones are before the cutoff: 2, 2, then an empty batch.
    swept = sweep(swept_family, gc_cutoff_epoch_ms=NOW - 10 * DAY + 4)
    assert (swept.deleted, swept.batches) == (4, 3)
    assert OLD[4] in present(swept_family)
    assert not set(OLD[:4]) & present(swept_family)


def test_the_rows_rule_keeps_the_newest_finished_workflows(swept_family: Application) -> None:
    # Keep three: the newest finished are RECENT, OLD[4], OLD[3]; the rest go.
    swept = sweep(swept_family, batch_rows=10, gc_rows_threshold=3)
    assert swept.deleted == 3
    assert swept.gc_cutoff_epoch_ms == NOW - 10 * DAY + 3
    assert {RECENT, OLD[3], OLD[4]} <= present(swept_family)
    assert not set(OLD[:3]) & present(swept_family)
    # The age rule, when it is the stricter, wins.
    assert sweep(swept_family, gc_rows_threshold=100, gc_cutoff_epoch_ms=NOW).deleted == 3


def test_workflows_in_flight_past_the_timeout_are_cancelled_and_nothing_is_deleted(
    swept_family: Application,
) -> None:
    swept = sweep(swept_family, timeout_cutoff_epoch_ms=NOW - 5 * DAY)
    assert (swept.cancelled, swept.deleted, swept.batches) == (3, 0, 2)
    for workflow_id in STUCK:
        state, queue, completed = status_of(swept_family, workflow_id)
        assert (state, queue) == ("CANCELLED", None)
        assert completed is not None
    # Another application's workflow, a recent one and finished ones are left alone.
    assert status_of(swept_family, OTHERS)[0] == "PENDING"
    assert status_of(swept_family, RUNNING)[0] == "PENDING"
    assert status_of(swept_family, OLD[0])[0] == "SUCCESS"
    assert len(present(swept_family)) == 11


def test_a_workflow_resumed_between_the_read_and_the_delete_is_reported_and_kept(
    swept_family: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    def resumed_in_between(cursor: Any, ids: list[str]) -> list[str]:
        if OLD[1] in ids:
            cursor.execute(
                "UPDATE workflow_status SET status = 'ENQUEUED', completed_at = NULL"
                " WHERE workflow_uuid = %s",
                [OLD[1]],
            )
        return ids

    monkeypatch.setattr(native_retention, "_batch_chosen", resumed_in_between)
    swept = sweep(swept_family, gc_cutoff_epoch_ms=NOW - 5 * DAY)
    assert swept.deleted == 4
    assert swept.left == {OLD[1]: "ENQUEUED"}
    assert status_of(swept_family, OLD[1])[:1] == ("ENQUEUED",)
    assert OLD[1] in present(swept_family, "operation_outputs")


def test_a_workflow_that_finished_before_its_timeout_cancel_is_reported_and_kept(
    swept_family: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    def finished_in_between(cursor: Any, ids: list[str]) -> list[str]:
        cursor.execute(
            "UPDATE workflow_status SET status = 'SUCCESS', completed_at = %s"
            " WHERE workflow_uuid = %s",
            [NOW, STUCK[0]],
        )
        return ids

    monkeypatch.setattr(native_retention, "_batch_chosen", finished_in_between)
    swept = sweep(swept_family, timeout_cutoff_epoch_ms=NOW - 5 * DAY)
    assert swept.cancelled == 2
    assert swept.left == {STUCK[0]: "SUCCESS"}
    assert status_of(swept_family, STUCK[0])[:2] == ("SUCCESS", "q")


def test_a_batch_past_its_statement_timeout_stops_the_sweep_with_the_batches_before_it_done(
    swept_family: Application,
) -> None:
    if swept_family.system_database_url.startswith("sqlite"):
        pytest.skip("SQLite has no statement timeout: batches only")
    import psycopg

    schema = swept_family.system_database_schema
    with psycopg.connect(swept_family.system_database_url) as holder:
        # Another session holds the third old workflow's row: the second batch waits on it.
        holder.execute(
            f"SELECT 1 FROM {schema}.workflow_status WHERE workflow_uuid = %s FOR UPDATE",
            [OLD[2]],
        )
        swept = sweep(swept_family, timeout_ms=300, gc_cutoff_epoch_ms=NOW - 5 * DAY)
        assert swept.stopped == native_retention.TIMED_OUT.format(ms=300)
        assert (swept.deleted, swept.batches) == (2, 1)
        # The stopped batch was rolled back whole: OLD[3] is still there with OLD[2].
        assert set(OLD[2:]) <= present(swept_family)
        holder.rollback()
    again = sweep(swept_family, gc_cutoff_epoch_ms=NOW - 5 * DAY)
    assert (again.deleted, again.stopped) == (3, "")
    assert not set(OLD) & present(swept_family)


def test_a_database_newer_than_stepchange_knows_is_not_swept(swept_family: Application) -> None:
    write(swept_family, "UPDATE dbos_migrations SET version = %s", [systemdb.KNOWN_VERSION + 1])
    with pytest.raises(native.NativeError, match="newer than StepChange knows") as refused:
        sweep(swept_family, gc_cutoff_epoch_ms=NOW, timeout_cutoff_epoch_ms=NOW)
    assert refused.value.status == 409
    assert len(present(swept_family)) == 11


# Through the send and the sweeper.


@pytest.fixture
def ada(swept_family: Application) -> User:
    return make_user(username="ada", role="admin")


def send(user: User) -> Any:
    client = Client()
    client.force_login(user)
    return client.post("/api/v1/apps/family/retention/send")


def test_an_admin_sends_retention_and_it_is_written_into_the_database_and_audited(
    swept_family: Application, ada: User
) -> None:
    # Ten days old is past both rules: 1 day and 24 hours.
    Application.objects.filter(pk=swept_family.pk).update(
        retention_days=1, retention_timeout_hours=24
    )
    answer = send(ada)
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert (body["path"], body["deleted"], body["cancelled"]) == ("database", 5, 3)
    assert "5 finished workflows deleted, 3 timed-out workflows cancelled" in body["detail"]
    assert present(swept_family) == {RECENT, RUNNING, OTHERS, *STUCK}
    record = AuditRecord.objects.get(action=retention.ACTION)
    assert (record.result, record.actor_name) == ("ok", "ada")
    assert record.parameters["path"] == "database"
    assert (record.parameters["deleted"], record.parameters["cancelled"]) == (5, 3)
    assert Application.objects.get(pk=swept_family.pk).retention_sent_at is not None


def test_a_send_refused_by_a_newer_schema_says_why_and_is_audited(
    swept_family: Application, ada: User
) -> None:
    Application.objects.filter(pk=swept_family.pk).update(retention_days=1)
    write(swept_family, "UPDATE dbos_migrations SET version = %s", [systemdb.KNOWN_VERSION + 1])
    answer = send(ada)
    assert answer.status_code == 409
    assert "newer than StepChange knows" in answer.json()["detail"]
    record = AuditRecord.objects.get(action=retention.ACTION)
    assert (record.result, record.parameters["path"]) == ("failed", "database")
    assert Application.objects.get(pk=swept_family.pk).retention_sent_at is None
    assert len(present(swept_family)) == 11


def test_the_sweeper_claims_a_database_managed_application_once_per_interval(
    swept_family: Application,
) -> None:
    Application.objects.filter(pk=swept_family.pk).update(retention_rows=2)
    [sent] = async_to_sync(retention.retention_sweep)()
    assert (sent.path, sent.deleted, sent.cancelled) == ("database", 4, 0)
    # OLD[4] and RECENT are the two newest finished workflows.
    assert {OLD[4], RECENT} <= present(swept_family)
    assert async_to_sync(retention.retention_sweep)() == []
    record = AuditRecord.objects.get(action=retention.ACTION)
    assert (record.actor_name, record.parameters["path"]) == (retention.AUTOMATIC, "database")


def test_save_and_send_now_on_the_page_writes_into_the_database_and_says_what_it_did(
    swept_family: Application, ada: User
) -> None:
    client = Client()
    client.force_login(ada)
    page = client.get("/apps/family/retention/").content.decode()
    assert "writes them into the\n  system database itself" in page
    answer = client.post(
        "/apps/family/retention/",
        {"retention_days": "1", "retention_rows": "", "retention_timeout_hours": "", "send": "1"},
        follow=True,
    )
    html = answer.content.decode()
    assert "Saved. Written into the system database: 5 finished workflows deleted" in html
    assert not set(OLD) & present(swept_family)
