"""Stories about recovering, from the console, an executor that cannot connect (an
application on an SDK whose Conductor client is not open source): the Executors page lists
the executors seen in PENDING workflows of the system database, an operator previews what
a recovery re-enqueues and confirms it, a viewer only looks, and each refusal says why and
writes nothing."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.test import Client
from django.utils import timezone

from conductor.models import Executor, RecoveryAttempt
from stepchange.models import Application, AuditRecord
from tests.conftest import make_user
from tests.workflows.family_data import family_database
from workflows import systemdb

GONE = "gone-executor"
PAGE = "/apps/family/executors/"
RECOVER = "/apps/family/database-recovery/"


@pytest.fixture
def family(
    system_databases: None, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> Iterator[Application]:
    """A SQLite system database with two workflows left PENDING by an executor that is
    gone, one finished by it, and one PENDING on an executor that is connected here."""
    for application in family_database("sqlite", sdk_fixtures, tmp_path):
        for workflow_id, status, executor_id in [
            ("left-1", "PENDING", GONE),
            ("left-2", "PENDING", GONE),
            ("done-1", "SUCCESS", GONE),
            ("busy-1", "PENDING", "alive"),
        ]:
            write(
                application,
                "INSERT INTO workflow_status (workflow_uuid, status, name, queue_name,"
                " created_at, updated_at, executor_id, application_version)"
                " VALUES (%s, %s, 'ship', NULL, 1, 1, %s, 'v3')",
                [workflow_id, status, executor_id],
            )
        Executor.objects.create(
            application=application,
            executor_id="alive",
            application_version="v3",
            state=Executor.State.CONNECTED,
            last_seen_at=timezone.now(),
        )
        yield application


def write(application: Application, sql: str, params: list[Any]) -> None:
    with connections[systemdb.alias_for(application)].cursor() as cursor:
        cursor.execute(sql, params)


def statuses(application: Application) -> dict[str, tuple[str, str | None]]:
    with connections[systemdb.alias_for(application)].cursor() as cursor:
        cursor.execute(
            "SELECT workflow_uuid, status, queue_name FROM workflow_status"
            " WHERE workflow_uuid IN ('left-1', 'left-2', 'done-1', 'busy-1')"
        )
        return {row[0]: (row[1], row[2]) for row in cursor.fetchall()}


def signed_in(username: str, role: str) -> Client:
    client = Client()
    client.force_login(make_user(username=username, role=role))
    return client


@pytest.fixture
def otto(family: Application) -> Client:
    return signed_in("otto", "operator")


@pytest.fixture
def vera(family: Application) -> Client:
    return signed_in("vera", "viewer")


def test_an_operator_sees_the_gone_executor_with_its_pending_count_and_a_recover_button(
    otto: Client,
) -> None:
    page = otto.get(PAGE).content.decode()
    assert "Executors seen in PENDING workflows" in page
    section = page.split("Executors seen in PENDING workflows")[1].split("</section>")[0]
    assert f"<code>{GONE}</code>" in section
    assert '<td class="num">2</td>' in section
    assert f"{RECOVER}?executor_id={GONE}" in section
    # The connected executor runs its own workflows: not offered for recovery.
    assert "<code>alive</code>" not in section


def test_a_viewer_sees_the_list_without_the_button_and_cannot_preview_or_recover(
    family: Application, vera: Client
) -> None:
    page = vera.get(PAGE).content.decode()
    section = page.split("Executors seen in PENDING workflows")[1].split("</section>")[0]
    assert f"<code>{GONE}</code>" in section
    assert "Recover…" not in section
    assert RECOVER not in section
    assert vera.get(RECOVER, {"executor_id": GONE}).status_code == 403
    before = statuses(family)
    answer = vera.post(RECOVER, {"executor_id": GONE, "reason": "mine"})
    assert answer.status_code == 403
    assert statuses(family) == before
    # Both refusals are audited; no recovery is.
    denied = AuditRecord.objects.filter(action="access.denied", actor_name="vera")
    assert [record.result for record in denied] == ["denied", "denied"]
    assert not AuditRecord.objects.filter(action="executor.recovery").exists()


def test_the_preview_counts_what_will_be_reenqueued_warns_and_writes_nothing(
    family: Application, otto: Client
) -> None:
    before = statuses(family)
    answer = otto.get(RECOVER, {"executor_id": GONE})
    assert answer.status_code == 200
    page = answer.content.decode()
    assert "<strong data-recover-count>2</strong> PENDING workflows" in page
    assert "The executor must really be gone." in page
    assert 'name="reason"' in page
    assert "Recover: re-enqueue 2 workflows" in page
    assert statuses(family) == before
    assert not AuditRecord.objects.filter(action="executor.recovery").exists()


def test_confirming_reenqueues_the_pending_workflows_and_says_how_many(
    family: Application, otto: Client
) -> None:
    answer = otto.post(RECOVER, {"executor_id": GONE, "reason": "host lost"}, follow=True)
    assert answer.redirect_chain == [(PAGE, 302)]
    page = answer.content.decode()
    assert f"Re-enqueued 2 PENDING workflow(s) of executor {GONE}" in page
    assert statuses(family) == {
        "left-1": ("ENQUEUED", "_dbos_internal_queue"),
        "left-2": ("ENQUEUED", "_dbos_internal_queue"),
        "done-1": ("SUCCESS", None),
        "busy-1": ("PENDING", None),
    }
    record = AuditRecord.objects.get(action="executor.recovery")
    assert (record.result, record.reason, record.actor_name) == ("ok", "host lost", "otto")
    assert record.parameters == {"executor_ids": [GONE], "path": "database"}
    # Listed under Recovery with the automatic ones: what it re-enqueued, by whom.
    attempt = RecoveryAttempt.objects.get(application=family)
    assert (attempt.path, attempt.outcome, attempt.manual) == ("database", "sent", True)
    assert (attempt.dead_executor_id, attempt.application_version) == (GONE, "v3")
    assert (attempt.requested_by, sorted(attempt.pending_workflow_ids)) == (
        "otto",
        ["left-1", "left-2"],
    )
    recoveries = page.split("<h2>Recovery</h2>")[1]
    assert "No recoveries yet." not in recoveries
    assert f"<code>{GONE}</code>" in recoveries
    assert "<code>left-1</code>" in recoveries
    # Nothing is left for it: the row is gone from the list.
    section = page.split("Executors seen in PENDING workflows")[1].split("</section>")[0]
    assert f"<code>{GONE}</code>" not in section


def test_a_workflow_left_by_two_dead_executors_is_reported_as_a_poison_suspect(
    family: Application, otto: Client
) -> None:
    otto.post(RECOVER, {"executor_id": GONE, "reason": "host lost"})
    write(
        family,
        "UPDATE workflow_status SET status = 'PENDING', executor_id = 'gone-2'"
        " WHERE workflow_uuid = 'left-1'",
        [],
    )
    answer = otto.post(RECOVER, {"executor_id": "gone-2", "reason": "again"}, follow=True)
    page = answer.content.decode()
    assert "Re-enqueued 1 PENDING workflow(s) of executor gone-2" in page
    assert "poison suspects (left pending by executors that died in turn): left-1" in page
    assert 'class="message warning"' in page


def test_a_connected_executor_is_refused_in_the_preview_and_on_confirm(
    family: Application, otto: Client
) -> None:
    before = statuses(family)
    preview = otto.get(RECOVER, {"executor_id": "alive"})
    assert preview.status_code == 409
    assert "Executor alive is connected: it runs its own workflows." in preview.content.decode()
    assert "Recover: re-enqueue" not in preview.content.decode()
    confirm = otto.post(RECOVER, {"executor_id": "alive", "reason": "sure?"})
    assert confirm.status_code == 409
    assert "Nothing was recovered." in confirm.content.decode()
    assert statuses(family) == before
    record = AuditRecord.objects.get(action="executor.recovery")
    assert (record.result, record.target) == ("failed", "executor alive")
    assert not RecoveryAttempt.objects.exists()


def test_an_executor_with_nothing_pending_is_refused(family: Application, otto: Client) -> None:
    before = statuses(family)
    preview = otto.get(RECOVER, {"executor_id": "never-seen"})
    assert preview.status_code == 404
    assert "Executor never-seen has no PENDING workflow" in preview.content.decode()
    confirm = otto.post(RECOVER, {"executor_id": "never-seen"})
    assert confirm.status_code == 404
    assert statuses(family) == before
    assert not RecoveryAttempt.objects.exists()


def test_no_executor_named_is_a_clear_400(otto: Client) -> None:
    answer = otto.get(RECOVER)
    assert answer.status_code == 400
    assert "executor_id" in answer.content.decode()
    assert otto.post(RECOVER, {"reason": "who?"}).status_code == 400


def test_an_unreachable_system_database_is_said_on_the_page_the_preview_and_confirm(
    family: Application, otto: Client
) -> None:
    systemdb.forget(family)
    family.system_database_url = "postgresql://nobody@127.0.0.1:1/nothing"
    family.save()
    page = otto.get(PAGE)
    assert page.status_code == 200
    assert "The system database could not be read." in page.content.decode()
    preview = otto.get(RECOVER, {"executor_id": GONE})
    assert preview.status_code == 503
    assert "cannot be reached" in preview.content.decode()
    confirm = otto.post(RECOVER, {"executor_id": GONE, "reason": "host lost"})
    assert confirm.status_code == 503
    assert AuditRecord.objects.get(action="executor.recovery").result == "failed"


def test_an_application_without_a_system_database_shows_no_such_section(
    system_databases: None,
) -> None:
    Application.objects.create(name="plain")
    client = signed_in("otto", "operator")
    assert (
        "Executors seen in PENDING workflows"
        not in client.get("/apps/plain/executors/").content.decode()
    )
