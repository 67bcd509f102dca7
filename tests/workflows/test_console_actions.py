"""Stories about acting on a workflow from its console page."""

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.test import AsyncClient

from stepchange.models import Application, AuditRecord
from tests.conftest import make_user, signed_in
from tests.fake_executor import FakeExecutor
from tests.sdk_fixtures import by_role, registered
from workflows import actions


@pytest.fixture
def otto(system_databases: None) -> User:
    return make_user(username="otto", role="operator")


def test_a_viewer_sees_no_actions_and_an_operator_sees_those_that_make_sense(
    vera: User, otto: User, sdk_fixtures: dict[str, dict[str, Any]]
) -> None:
    fixture = sdk_fixtures["py320-sqlite-default"]
    app = registered(fixture).name
    failed = f"/apps/{app}/workflows/{by_role(fixture, 'error')}/"
    as_viewer = signed_in(vera).get(failed).content.decode()
    assert 'aria-label="Actions"' not in as_viewer
    assert "What was done to it" in as_viewer
    as_operator = signed_in(otto).get(failed).content.decode()
    assert 'aria-label="Actions"' in as_operator
    assert 'data-action="fork"' in as_operator
    assert 'data-action="fork_from_failure"' in as_operator
    assert 'data-action="delete"' in as_operator
    # Resume would do nothing for an ERROR workflow: shown disabled, with the reason.
    assert 'data-action="resume"' not in as_operator
    assert "Resuming a workflow in ERROR does nothing in DBOS" in as_operator
    # With no executor connected, a rewind is written into the system database.
    assert 'data-action="rewind"' in as_operator


def test_a_viewer_posting_an_action_is_refused_and_audited(
    vera: User, sdk_fixtures: dict[str, dict[str, Any]]
) -> None:
    fixture = sdk_fixtures["py320-sqlite-default"]
    app = registered(fixture).name
    workflow_id = by_role(fixture, "error")
    response = signed_in(vera).post(f"/apps/{app}/workflows/{workflow_id}/act/delete/")
    assert response.status_code == 403
    record = AuditRecord.objects.get(action="access.denied")
    assert (record.actor_name, record.application_name) == ("vera", app)


def test_an_action_with_no_executor_is_written_into_the_system_database_and_says_so(
    otto: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    fixture = sdk_fixtures["py320-sqlite-default"]
    # A copy: the fork is written into it, and the fixture is the session's.
    copy = tmp_path / "copy.sqlite"
    shutil.copy(fixture["path"], copy)
    app = registered(fixture | {"url": f"sqlite:///{copy}"}).name
    workflow_id = by_role(fixture, "error")
    client = signed_in(otto)
    response = client.post(
        f"/apps/{app}/workflows/{workflow_id}/act/fork/",
        {"start_step": "1", "reason": "try again"},
        follow=True,
    )
    record = AuditRecord.objects.get(action="workflow.fork")
    assert (record.result, record.reason, record.target) == ("ok", "try again", workflow_id)
    assert record.parameters["path"] == "database"
    new_id = record.detail.removesuffix(".").rsplit(" ", 1)[-1]
    assert response.redirect_chain[0][0] == f"/apps/{app}/workflows/{new_id}/"
    page = response.content.decode()
    assert "Fork written into the system database (no executor is connected)" in page


def test_an_invalid_form_is_reported_and_nothing_is_attempted(
    otto: User, sdk_fixtures: dict[str, dict[str, Any]]
) -> None:
    fixture = sdk_fixtures["py320-sqlite-default"]
    app = registered(fixture).name
    workflow_id = by_role(fixture, "error")
    response = signed_in(otto).post(
        f"/apps/{app}/workflows/{workflow_id}/act/fork/", {"start_step": "-3"}, follow=True
    )
    assert "Fork: start_step: Ensure this value is greater than or equal to 0." in (
        response.content.decode()
    )
    assert not AuditRecord.objects.filter(action="workflow.fork").exists()


def test_an_unknown_action_is_a_404(otto: User, sdk_fixtures: dict[str, dict[str, Any]]) -> None:
    app = registered(sdk_fixtures["py320-sqlite-default"]).name
    response = signed_in(otto).post(f"/apps/{app}/workflows/x/act/explode/")
    assert response.status_code == 404


@pytest.mark.django_db(transaction=True)
async def test_a_fork_from_the_console_leads_to_the_new_workflow(
    orders: Application, executor: FakeExecutor
) -> None:
    operator = await sync_to_async(make_user)(username="otto", role="operator")
    client = AsyncClient()
    await client.aforce_login(operator)
    posting = asyncio.create_task(
        client.post(
            "/apps/orders/workflows/wf-1/act/fork/",
            {"start_step": "2", "new_workflow_id": "wf-1-again", "reason": "bad data fixed"},
        )
    )
    await executor.answer("get_workflow", output={"WorkflowUUID": "wf-1", "Status": "ERROR"})
    await executor.answer("get_workflow", output=None)
    fork = await executor.answer("fork_workflow", new_workflow_id="wf-1-again")
    response = await posting
    assert response.status_code == 302
    assert response["Location"] == "/apps/orders/workflows/wf-1-again/"
    assert fork["body"]["start_step"] == 2
    record = await AuditRecord.objects.aget(action="workflow.fork")
    assert (record.result, record.request_id) == ("ok", fork["request_id"])


@pytest.mark.django_db(transaction=True)
async def test_a_repeated_fork_from_the_console_points_at_the_first(
    orders: Application, executor: FakeExecutor
) -> None:
    operator = await sync_to_async(make_user)(username="otto", role="operator")
    client = AsyncClient()
    await client.aforce_login(operator)
    posting = asyncio.create_task(
        client.post(
            "/apps/orders/workflows/wf-1/act/fork/",
            {"start_step": "2", "new_workflow_id": "wf-1-again"},
        )
    )
    await executor.answer("get_workflow", output={"WorkflowUUID": "wf-1", "Status": "ERROR"})
    await executor.answer(
        "get_workflow", output={"WorkflowUUID": "wf-1-again", "Status": "PENDING"}
    )
    response = await posting
    assert response["Location"] == "/apps/orders/workflows/wf-1/"
    assert await executor.communicator.receive_nothing(timeout=0.2)
    record = await AuditRecord.objects.aget(action="workflow.fork")
    assert record.detail.startswith("Workflow wf-1-again already exists")
    assert actions.ALREADY_EXISTS.split("{")[0] in record.detail
