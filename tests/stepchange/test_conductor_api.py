"""The Conductor-compatible API (/conductor/v2/orgs/{org}/...) answers as DBOS Conductor
does, and refuses as /api/v1 does: a missing or wrong token, an organisation or an
application that is not there, a role that does not allow the action. Every refusal to
change something is audited once; errors are problem details."""

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from stepchange.access import NOT_ALLOWED
from stepchange.api import conductor_v2
from stepchange.models import Application, AuditRecord
from stepchange.services import api_token_create
from tests.conftest import make_app, make_user
from tests.forks.test_services import SOURCE, copied
from workflows.sources import Listing, ListQuery, StoredValue, Workflow

pytestmark = pytest.mark.django_db
BASE = "/conductor/v2/orgs/acme"
PROBLEM = "application/problem+json"


def token_of(user: User) -> str:
    _, raw = api_token_create(user=user, name="dbos-mcp")
    return raw


def call(
    method: str, path: str, body: Any = None, *, token: str | None = None
) -> tuple[int, Any, str]:
    headers: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token is not None else {}
    response = Client().generic(
        method,
        path,
        "" if body is None else json.dumps(body),
        content_type="application/json",
        **headers,
    )
    content = response.json() if response.content else None
    return response.status_code, content, response.get("Content-Type", "")


@pytest.fixture
def orders(db: None) -> Application:
    return make_app(name="orders")


class _TwoWorkflows:
    """A source holding two workflows, one with its values."""

    def __init__(self) -> None:
        self.queries: list[ListQuery] = []

    async def list(self, query: ListQuery, *, actor: str = "") -> Listing[Workflow]:
        self.queries.append(query)
        rows = [Workflow("wf-1", status="SUCCESS", name="greet"), Workflow("wf-2", status="ERROR")]
        return Listing(rows[: query.limit], None, "stub")

    async def get(self, workflow_id: str, *, actor: str = "") -> Workflow | None:
        if workflow_id != "wf/1":
            return None
        return Workflow(
            "wf/1",
            status="SUCCESS",
            name="greet",
            input=StoredValue({"args": ["ada"]}, "portable_json"),
            output=StoredValue("HELLO ADA", "portable_json"),
        )


@pytest.fixture
def two_workflows(monkeypatch: pytest.MonkeyPatch) -> _TwoWorkflows:
    source = _TwoWorkflows()

    async def stub(application: Application) -> Any:
        return source

    monkeypatch.setattr(conductor_v2, "source_for", stub)
    return source


def test_the_applications_list_is_conductors_shape(orders: Application) -> None:
    token = token_of(make_user(username="vera", role="viewer"))
    status, body, _ = call("GET", f"{BASE}/apps", token=token)
    assert status == 200, body
    [shown] = body
    assert shown["name"] == "orders"
    assert shown["orgId"] == "acme"
    assert shown["status"] == "UNAVAILABLE"  # no executor, no system database
    assert shown["executorTimeoutSecs"] == orders.recovery_grace_seconds


def test_a_search_translates_filters_and_answers_in_camel_case(
    orders: Application, two_workflows: _TwoWorkflows
) -> None:
    token = token_of(make_user(username="vera", role="viewer"))
    body = {"status": ["SUCCESS"], "workflowName": ["greet"], "limit": 1, "sortDesc": True}
    status, found, _ = call("POST", f"{BASE}/apps/orders/workflows/search", body, token=token)
    assert status == 200, found
    assert found == [{"workflowId": "wf-1", "status": "SUCCESS", "workflowName": "greet"}]
    [query] = two_workflows.queries
    assert (query.status, query.workflow_name, query.limit, query.sort_desc) == (
        ["SUCCESS"],
        ["greet"],
        1,
        True,
    )


def test_a_search_skips_offset_rows(orders: Application, two_workflows: _TwoWorkflows) -> None:
    token = token_of(make_user(username="vera", role="viewer"))
    body = {"offset": 1, "limit": 5}
    status, found, _ = call("POST", f"{BASE}/apps/orders/workflows/search", body, token=token)
    assert status == 200, found
    assert [row["workflowId"] for row in found] == ["wf-2"]


def test_a_workflow_id_with_a_slash_is_read_with_its_values_as_text(
    orders: Application, two_workflows: _TwoWorkflows
) -> None:
    token = token_of(make_user(username="vera", role="viewer"))
    status, found, _ = call("GET", f"{BASE}/apps/orders/workflows/wf%2F1", token=token)
    assert status == 200, found
    assert found["workflowId"] == "wf/1"
    assert found["input"] == '{"args": ["ada"]}'
    assert found["output"] == "HELLO ADA"


def test_an_unknown_workflow_is_a_404_problem(
    orders: Application, two_workflows: _TwoWorkflows
) -> None:
    token = token_of(make_user(username="vera", role="viewer"))
    status, found, content_type = call("GET", f"{BASE}/apps/orders/workflows/nope", token=token)
    assert status == 404
    assert content_type == PROBLEM
    assert found == {
        "title": "Not Found",
        "status": 404,
        "detail": "No workflow nope in orders.",
    }


# Refusals.


def test_no_token_is_a_401_and_a_refused_action_is_audited(orders: Application) -> None:
    status, body, content_type = call("GET", f"{BASE}/apps")
    assert (status, content_type, body["status"]) == (401, PROBLEM, 401)
    status, _, _ = call("POST", f"{BASE}/apps/orders/workflows/wf-1/cancel", {})
    assert status == 401
    [record] = AuditRecord.objects.filter(action="access.denied")
    assert record.target == f"POST {BASE}/apps/orders/workflows/wf-1/cancel"


def test_a_wrong_token_is_a_401_audited(orders: Application) -> None:
    status, body, _ = call("GET", f"{BASE}/apps", token="sc_not-a-token")
    assert status == 401
    assert body["detail"] == conductor_v2.UNAUTHENTICATED
    assert AuditRecord.objects.filter(action="api_token.rejected").count() == 1


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_organisation_not_served_is_a_404_and_an_attempt_on_it_is_audited(
    orders: Application, settings: Any, method: str
) -> None:
    settings.CONDUCTOR_API_ORGS = ["acme"]
    token = token_of(make_user(username="otto", role="operator"))
    path = (
        "/conductor/v2/orgs/other/apps"
        if method == "GET"
        else ("/conductor/v2/orgs/other/apps/orders/workflows/wf-1/cancel")
    )
    status, body, content_type = call(method, path, {} if method == "POST" else None, token=token)
    assert (status, content_type) == (404, PROBLEM)
    assert body["detail"] == conductor_v2.ORG_NOT_FOUND.format(name="other")
    refused = AuditRecord.objects.filter(action="access.denied", result="denied")
    assert refused.count() == (1 if method == "POST" else 0)


def test_any_organisation_is_served_when_none_is_named(orders: Application) -> None:
    token = token_of(make_user(username="vera", role="viewer"))
    status, body, _ = call("GET", "/conductor/v2/orgs/whatever/apps", token=token)
    assert status == 200, body
    assert body[0]["orgId"] == "whatever"


def test_an_unknown_application_is_a_404_problem(db: None) -> None:
    token = token_of(make_user(username="vera", role="viewer"))
    status, body, content_type = call("GET", f"{BASE}/apps/ghost/executors", token=token)
    assert (status, content_type) == (404, PROBLEM)
    assert body["detail"] == "No application named 'ghost' that you may see."


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/workflows/wf-1/cancel", {"cancelChildren": False}),
        ("POST", "/workflows/wf-1/resume", {}),
        ("POST", "/workflows/wf-1/fork", {"startStep": 1}),
        ("DELETE", "/workflows/wf-1", None),
        ("POST", "/workflows/bulk-cancel", {"workflowIds": ["wf-1"]}),
        ("POST", "/workflows/bulk-resume", {"workflowIds": ["wf-1"]}),
        ("POST", "/workflows/bulk-delete", {"workflowIds": ["wf-1"]}),
        ("POST", "/workflows/bulk-fork-from-failure", {"workflowIds": ["wf-1"]}),
        ("POST", "/schedules/nightly/pause", None),
        ("POST", "/schedules/nightly/resume", None),
        ("POST", "/schedules/nightly/trigger", None),
        ("PATCH", "/versions/latest", {"versionName": "v2"}),
    ],
)
def test_a_viewer_is_refused_every_action_with_a_403_audited(
    orders: Application, method: str, path: str, body: Any
) -> None:
    token = token_of(make_user(username="vera", role="viewer"))
    status, answer, content_type = call(method, f"{BASE}/apps/orders{path}", body, token=token)
    assert (status, content_type) == (403, PROBLEM), answer
    assert answer["detail"] == NOT_ALLOWED
    [record] = AuditRecord.objects.filter(action="access.denied")
    assert (record.actor_name, record.application_name) == ("vera", "orders")


@pytest.mark.parametrize(
    ("body", "wrong"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": "10"}, "limit"),
        ({"workflowIdPrefix": ["a", "b"]}, "one prefix at a time"),
        ({"status": ["DONE"]}, "status must be among"),
        ({"startTime": "yesterday"}, "startTime must be an ISO 8601 time"),
        ({"offset": 9990, "limit": 100}, "offset + limit"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_a_bad_search_is_a_400_naming_what_is_wrong(
    orders: Application, two_workflows: _TwoWorkflows, body: dict[str, Any], wrong: str
) -> None:
    token = token_of(make_user(username="vera", role="viewer"))
    status, answer, content_type = call(
        "POST", f"{BASE}/apps/orders/workflows/search", body, token=token
    )
    assert (status, content_type) == (400, PROBLEM), answer
    assert wrong in str(answer)
    assert two_workflows.queries == []


@pytest.mark.parametrize(
    ("body", "wrong"),
    [
        ({"workflowIds": ["wf-1"]}, conductor_v2.ONE_START),
        ({"workflowIds": ["wf-1"], "fromLastStep": True, "fromStep": 2}, conductor_v2.ONE_START),
        (
            {"workflowIds": ["wf-1"], "fromLastFailure": True, "queuePartitionKey": "p"},
            conductor_v2.NO_PARTITIONS,
        ),
    ],
)
def test_a_fork_from_failure_needs_exactly_one_starting_point_and_nothing_is_made(
    orders: Application, body: dict[str, Any], wrong: str
) -> None:
    token = token_of(make_user(username="otto", role="operator"))
    path = f"{BASE}/apps/orders/workflows/bulk-fork-from-failure"
    status, answer, _ = call("POST", path, body, token=token)
    assert status == 400, answer
    assert answer["detail"] == wrong
    assert not orders.bulk_jobs.exists()


def test_an_action_without_an_executor_is_a_503_audited_as_failed(
    orders: Application, two_workflows: _TwoWorkflows, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workflows import actions

    async def stub(application: Application) -> Any:
        return two_workflows

    monkeypatch.setattr(actions, "source_for", stub)
    token = token_of(make_user(username="otto", role="operator"))
    path = f"{BASE}/apps/orders/workflows/wf%2F1/fork"
    status, answer, content_type = call("POST", path, {"startStep": 1}, token=token)
    assert (status, content_type) == (503, PROBLEM), answer
    [record] = AuditRecord.objects.filter(action="workflow.fork")
    assert (record.result, record.actor_name, record.target) == ("failed", "otto", "wf/1")


# Read from the system database: what DBOS records of a workflow, and ids like routes.


@pytest.fixture
def stored(system_databases: None, sdk_fixtures: dict[str, Any], tmp_path: Path) -> Application:
    """A copy of a Python fixture's database: SOURCE ran as a user, with a priority, on a
    configured class, and was forked from; a copy of it is named `search`."""
    app, path = copied(sdk_fixtures["py320-sqlite-default"], tmp_path)
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE workflow_status SET authenticated_user = 'ada', assumed_role = 'clerk',"
            " authenticated_roles = '[\"clerk\"]', priority = 7, was_forked_from = 1,"
            " config_name = 'eu', deduplication_id = 'd-1' WHERE workflow_uuid = ?",
            [SOURCE],
        )
        db.execute(
            "CREATE TEMP TABLE named AS SELECT * FROM workflow_status WHERE workflow_uuid = ?",
            [SOURCE],
        )
        db.execute("UPDATE named SET workflow_uuid = 'search'")
        db.execute("INSERT INTO workflow_status SELECT * FROM named")
    return app


def test_a_workflow_carries_what_dbos_recorded_of_how_it_ran(stored: Application) -> None:
    token = token_of(make_user(username="vera", role="viewer"))
    status, found, _ = call("GET", f"{BASE}/apps/{stored.name}/workflows/{SOURCE}", token=token)
    assert status == 200, found
    assert {
        key: found.get(key)
        for key in ("user", "assumedRole", "roles", "priority", "wasForkedFrom", "workflowConfig")
    } == {
        "user": "ada",
        "assumedRole": "clerk",
        "roles": '["clerk"]',
        "priority": 7,
        "wasForkedFrom": True,
        "workflowConfig": "eu",
    }
    assert found["deduplicationId"] == "d-1"
    body = {"user": ["ada"], "limit": 10}
    status, listed, _ = call(
        "POST", f"{BASE}/apps/{stored.name}/workflows/search", body, token=token
    )
    assert status == 200, listed
    assert {row["workflowId"] for row in listed} == {SOURCE, "search"}
    assert all(row["priority"] == 7 and row["wasForkedFrom"] is True for row in listed)


def test_a_workflow_named_like_a_route_is_read_and_deleted_by_its_id(
    stored: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = token_of(make_user(username="vera", role="viewer"))
    status, found, _ = call("GET", f"{BASE}/apps/{stored.name}/workflows/search", token=token)
    assert status == 200, found
    assert (found["workflowId"], found["user"]) == ("search", "ada")
    status, missing, content_type = call(
        "GET", f"{BASE}/apps/{stored.name}/workflows/bulk-cancel", token=token
    )
    assert (status, content_type) == (404, PROBLEM), missing
    assert missing["detail"] == f"No workflow bulk-cancel in {stored.name}."
    # DELETE reaches the action for that id (refused to a viewer, audited as for any id).
    status, refused, _ = call("DELETE", f"{BASE}/apps/{stored.name}/workflows/search", token=token)
    assert status == 403, refused
    [record] = AuditRecord.objects.filter(action="access.denied")
    assert record.target.endswith("/workflows/search")
    # The search itself still answers its POST.
    status, listed, _ = call(
        "POST", f"{BASE}/apps/{stored.name}/workflows/search", {"limit": 1}, token=token
    )
    assert (status, len(listed)) == (200, 1), listed


@pytest.mark.parametrize(
    ("path", "status"),
    [("/workflows/wf%00x", 404), ("/workflows/wf-1/steps?limit=1%00", 400)],
)
def test_a_nul_is_refused_in_the_problem_shape(orders: Application, path: str, status: int) -> None:
    token = token_of(make_user(username="vera", role="viewer"))
    answer = Client().get(f"{BASE}/apps/orders{path}", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert (answer.status_code, answer["Content-Type"]) == (status, PROBLEM)
    body = answer.json()
    assert (body["status"], body["title"]) == (
        status,
        "Not Found" if status == 404 else "Bad Request",
    )
    assert "NUL" in body["detail"]
