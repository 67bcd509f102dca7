"""Stories about reading the audit log: the API's filters and pages, CSV and JSON exports,
and the record every refused attempt leaves, signed in or not."""

import csv
import io
import json
import re
from datetime import datetime
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import reverse

from stepchange import auditlog
from stepchange.audit import audit_record
from stepchange.middleware import ANONYMOUS_401, ANONYMOUS_403, ANONYMOUS_REDIRECT
from stepchange.models import AuditRecord
from stepchange.services import api_token_create
from tests.conftest import PASSWORD, make_app, signed_in

FILENAME = re.compile(r'^attachment; filename="stepchange-audit-\d{8}T\d{6}Z\.(csv|json)"$')
ITEM_FIELDS = {
    "id",
    "created_at",
    "actor_name",
    "role",
    "api_key_id",
    "api_key_name",
    "application_name",
    "action",
    "target",
    "parameters",
    "result",
    "detail",
    "reason",
    "source_address",
    "request_id",
    "response",
    "value_diff",
}


def at(moment: str) -> Any:
    """Make the next audit records carry this creation time (auto_now_add reads now())."""
    fixed = datetime.fromisoformat(moment)
    return lambda: fixed


def bearer(raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}


def body(response: Any) -> bytes:
    assert isinstance(response, StreamingHttpResponse)
    return b"".join(response.streaming_content)  # type: ignore[arg-type]


@pytest.fixture
def history(admin: User, operator: User, monkeypatch: pytest.MonkeyPatch) -> list[AuditRecord]:
    """Four days of an orders application: a cancel, a fork, a refusal and a failure."""
    orders, billing = make_app(name="orders"), make_app(name="billing")
    days = []
    stories: list[dict[str, Any]] = [
        {"action": "workflow.cancel", "actor": operator, "application": orders},
        {
            "action": "workflow.fork",
            "actor": operator,
            "application": orders,
            "request_id": "req-42",
            "response": {"new_workflow_id": "wf-2-fork"},
            "value_diff": {"input": {"from": 1, "to": 2}},
            "parameters": {"start_step": 3},
        },
        {"action": "access.denied", "actor": operator, "result": "denied"},
        {
            "action": "workflow.resume",
            "actor": admin,
            "application": billing,
            "result": "failed",
        },
    ]
    for day, fields in enumerate(stories, start=1):
        monkeypatch.setattr("django.utils.timezone.now", at(f"2026-03-0{day}T10:00:00+00:00"))
        days.append(audit_record(target=f"wf-{day}", detail=f"day {day}", **fields))
    monkeypatch.undo()
    return days


@pytest.fixture
def admin_token(admin: User) -> str:
    return api_token_create(user=admin, name="audit script")[1]


def test_an_admin_reads_the_audit_log_newest_first_with_every_field(
    history: list[AuditRecord], admin_token: str
) -> None:
    response = Client().get("/api/v1/audit", headers=bearer(admin_token))
    assert response.status_code == 200
    page = response.json()
    # Newest first: the token's own creation record, then day 4 back to day 1.
    assert [item["target"] for item in page["items"][1:]] == ["wf-4", "wf-3", "wf-2", "wf-1"]
    assert page["next_cursor"] is None
    fork = page["items"][3]
    assert set(fork) == ITEM_FIELDS
    assert fork["id"] == history[1].pk
    assert fork["created_at"] == "2026-03-02T10:00:00Z"
    assert (fork["actor_name"], fork["role"], fork["application_name"]) == (
        "otto",
        "operator",
        "orders",
    )
    assert fork["request_id"] == "req-42"
    assert fork["response"] == {"new_workflow_id": "wf-2-fork"}
    assert fork["value_diff"] == {"input": {"from": 1, "to": 2}}
    assert fork["parameters"] == {"start_step": 3}


@pytest.mark.parametrize(
    ("query", "targets"),
    [
        ({"actor": "OTTO"}, ["wf-3", "wf-2", "wf-1"]),
        ({"app": "orders"}, ["wf-2", "wf-1"]),
        ({"action": "workflow."}, ["wf-4", "wf-2", "wf-1"]),
        ({"action": "workflow.fork"}, ["wf-2"]),
        ({"target": "f-3"}, ["wf-3"]),
        ({"result": "failed"}, ["wf-4"]),
        ({"since": "2026-03-02T11:00:00+01:00", "until": "2026-03-03"}, ["wf-2"]),
        ({"since": "2026-03-03T10:00:00Z", "actor": "otto"}, ["wf-3"]),
    ],
)
def test_an_admin_filters_the_audit_log_through_the_api(
    history: list[AuditRecord], admin: User, query: dict[str, str], targets: list[str]
) -> None:
    response = signed_in(admin).get("/api/v1/audit", query)
    assert response.status_code == 200
    assert [item["target"] for item in response.json()["items"]] == targets


def test_a_time_with_any_offset_python_reads_filters_the_log(
    history: list[AuditRecord], admin: User
) -> None:
    """+16:00 is a time Python reads and Postgres cannot take as it is (its offsets stop at
    15:59): the filter compares the same instant in UTC."""
    client = signed_in(admin)
    everything = client.get("/api/v1/audit").json()["items"]
    response = client.get("/api/v1/audit", {"since": "2000-01-01T00:00:00+16:00"})
    assert response.status_code == 200
    assert response.json()["items"] == everything


def test_the_api_pages_the_audit_log_by_cursor(admin: User) -> None:
    for number in range(7):
        audit_record(action="workflow.cancel", target=f"wf-{number}")
    client = signed_in(admin)
    seen: list[str] = []
    query: dict[str, str | int] = {"action": "workflow.", "limit": 3}
    pages = 0
    while True:
        page = client.get("/api/v1/audit", query)
        assert page.status_code == 200
        seen += [item["target"] for item in page.json()["items"]]
        pages += 1
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str)
        query["cursor"] = cursor
    assert pages == 3
    assert seen == [f"wf-{number}" for number in reversed(range(7))]


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ({"since": "last tuesday"}, "since"),
        ({"until": "2026-13-01"}, "until"),
        ({"until": "1700000000"}, "until"),
        ({"cursor": "abc"}, "cursor"),
        ({"result": "maybe"}, "result"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
    ],
)
def test_a_bad_parameter_is_a_400_that_names_it(
    admin: User, query: dict[str, Any], detail: str
) -> None:
    response = signed_in(admin).get("/api/v1/audit", query)
    assert response.status_code == 400
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", detail]


@pytest.mark.parametrize("path", ["/api/v1/audit", "/api/v1/audit/export?format=csv"])
@pytest.mark.parametrize("persona", ["viewer", "operator", "stranger"])
def test_only_admins_read_the_audit_log_and_refusals_are_audited(
    persona: str, path: str, request: pytest.FixtureRequest
) -> None:
    user = request.getfixturevalue(persona)
    _, raw = api_token_create(user=user, name="reader")
    response = Client().get(path, headers=bearer(raw))
    assert response.status_code == 403
    # Making the token left a record; the refusal is the only other one.
    denied = AuditRecord.objects.exclude(action="api_token.create").get()
    assert (denied.action, denied.result, denied.actor_name) == (
        "access.denied",
        "denied",
        user.username,
    )
    assert denied.target == f"GET {path.split('?')[0]}"


def test_an_anonymous_reader_gets_401(db: None) -> None:
    assert Client().get("/api/v1/audit").status_code == 401
    assert Client().get("/api/v1/audit/export").status_code == 401


def test_an_admin_exports_the_filtered_log_as_csv_with_formulas_defused(
    history: list[AuditRecord], admin: User, operator: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pages of two rows, so the export crosses page boundaries.
    monkeypatch.setattr(auditlog, "EXPORT_CHUNK", 2)
    audit_record(action="workflow.cancel", actor=operator, target='=HYPERLINK("http://x")')
    audit_record(action="workflow.cancel", actor=operator, target="+1", detail="@SUM(A1)")
    audit_record(action="workflow.cancel", actor=operator, target="-2", detail="\tTAB")
    response = signed_in(admin).post(reverse("audit-export"), {"actor": "otto", "export": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert "no-store" in response["Cache-Control"]
    assert FILENAME.match(response["Content-Disposition"])
    assert response["Content-Disposition"].endswith('.csv"')
    rows = list(csv.DictReader(io.StringIO(body(response).decode())))
    assert [row["target"] for row in rows] == [
        "'-2",
        "'+1",
        '\'=HYPERLINK("http://x")',
        "wf-3",
        "wf-2",
        "wf-1",
    ]
    assert (rows[0]["detail"], rows[1]["detail"]) == ("'\tTAB", "'@SUM(A1)")
    assert list(rows[0]) == list(auditlog.EXPORT_FIELDS)
    fork = rows[4]
    assert fork["id"] == str(history[1].pk)
    assert fork["created_at"] == "2026-03-02T10:00:00+00:00"
    assert json.loads(fork["response"]) == {"new_workflow_id": "wf-2-fork"}
    assert json.loads(fork["parameters"]) == {"start_step": 3}
    assert (fork["request_id"], fork["application_name"]) == ("req-42", "orders")
    assert rows[5]["value_diff"] == ""
    exported = AuditRecord.objects.get(action="audit.export")
    assert exported.actor_name == "ada"
    assert exported.parameters == {"actor": "otto", "format": "csv"}


def test_an_admin_exports_the_filtered_log_as_one_json_array(
    history: list[AuditRecord], admin: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auditlog, "EXPORT_CHUNK", 1)
    response = signed_in(admin).post(
        reverse("audit-export"), {"action": "workflow.", "since": "2026-03-02", "export": "json"}
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"].endswith('.json"')
    items = json.loads(body(response))
    assert [item["target"] for item in items] == ["wf-4", "wf-2"]
    assert set(items[1]) == ITEM_FIELDS
    assert items[1]["value_diff"] == {"input": {"from": 1, "to": 2}}
    assert items[1]["created_at"] == "2026-03-02T10:00:00Z"
    exported = AuditRecord.objects.get(action="audit.export")
    assert exported.parameters == {
        "action": "workflow.",
        "since": "2026-03-02T00:00:00+00:00",
        "format": "json",
    }


def test_an_export_of_nothing_is_still_well_formed(admin: User) -> None:
    client = signed_in(admin)
    empty = client.post(reverse("audit-export"), {"actor": "nobody", "export": "json"})
    assert json.loads(body(empty)) == []
    header_only = client.post(reverse("audit-export"), {"actor": "nobody", "export": "csv"})
    assert body(header_only).decode().splitlines() == [",".join(auditlog.EXPORT_FIELDS)]


def test_an_export_shows_the_log_as_it_stood_when_asked(admin: User) -> None:
    audit_record(action="workflow.cancel", target="wf-1")
    client = signed_in(admin)
    first = json.loads(body(client.post(reverse("audit-export"), {"export": "json"})))
    assert [item["action"] for item in first] == ["auth.login", "workflow.cancel"]
    second = json.loads(body(client.post(reverse("audit-export"), {"export": "json"})))
    assert [item["action"] for item in second] == ["audit.export", "auth.login", "workflow.cancel"]


def test_the_audit_page_posts_exports_that_keep_its_filters(
    history: list[AuditRecord], admin: User
) -> None:
    page = signed_in(admin).get(reverse("audit"), {"actor": "otto", "action": "workflow."})
    content = page.content.decode()
    form = content[content.index(f'action="{reverse("audit-export")}"') :]
    form = form[: form.index("</form>")]
    assert 'name="csrfmiddlewaretoken"' in form
    assert '<input type="hidden" name="actor" value="otto">' in form
    assert '<input type="hidden" name="action" value="workflow.">' in form
    assert 'name="export" value="csv"' in form
    partial = signed_in(admin).get(reverse("audit"), {"result": "failed"}, HTTP_HX_REQUEST="true")
    assert b'<input type="hidden" name="result" value="failed">' in partial.content


def test_a_get_cannot_start_an_export(history: list[AuditRecord], admin: User) -> None:
    client = signed_in(admin)
    page = client.get(reverse("audit"), {"export": "csv"})
    assert page["Content-Type"].startswith("text/html")
    assert client.get(reverse("audit-export"), {"export": "csv"}).status_code == 405
    # The API's export takes a bearer token, which no other site can make a browser send.
    assert client.get("/api/v1/audit/export", {"format": "csv"}).status_code == 401
    assert not AuditRecord.objects.filter(action="audit.export").exists()


def test_a_cross_site_post_cannot_start_an_export(history: list[AuditRecord], admin: User) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)
    assert client.post(reverse("audit-export"), {"export": "csv"}).status_code == 403
    assert not AuditRecord.objects.filter(action="audit.export").exists()


def test_the_audit_page_shows_request_ids_and_folds_away_the_executors_answer(
    history: list[AuditRecord], admin: User
) -> None:
    page = signed_in(admin).get(reverse("audit"), {"action": "workflow.fork"})
    content = page.content.decode()
    assert "req-42" in content
    assert '<details class="audit-more">' in content
    assert "wf-2-fork" in content
    assert "Value diff" in content


def test_an_admin_exports_through_the_api_and_a_bad_format_is_named(
    history: list[AuditRecord], admin_token: str
) -> None:
    client = Client()
    response = client.get(
        "/api/v1/audit/export", {"format": "csv", "app": "orders"}, headers=bearer(admin_token)
    )
    assert response.status_code == 200
    assert FILENAME.match(response["Content-Disposition"])
    rows = list(csv.DictReader(io.StringIO(body(response).decode())))
    assert [row["target"] for row in rows] == ["wf-2", "wf-1"]
    exported = AuditRecord.objects.get(action="audit.export")
    assert exported.parameters == {"application": "orders", "format": "csv"}
    assert exported.actor_name == "ada"
    bad = client.get("/api/v1/audit/export", {"format": "xml"}, headers=bearer(admin_token))
    assert bad.status_code == 400
    assert [error["loc"] for error in bad.json()["detail"]] == [["query", "format"]]


def test_an_anonymous_api_post_leaves_one_denied_record(db: None) -> None:
    make_app(name="orders")
    response = Client().post(
        "/api/v1/apps/orders/recovery",
        {"executor_ids": ["gone"]},
        content_type="application/json",
        REMOTE_ADDR="10.1.2.3",
    )
    assert response.status_code == 401
    denied = AuditRecord.objects.get()
    assert (denied.action, denied.result, denied.actor, denied.actor_name) == (
        "access.denied",
        "denied",
        None,
        "",
    )
    assert denied.target == "POST /api/v1/apps/orders/recovery"
    assert denied.detail == ANONYMOUS_401
    assert denied.source_address == "10.1.2.3"


def test_a_rejected_token_on_a_post_is_recorded_once_as_such(db: None) -> None:
    response = Client().post(
        "/api/v1/apps/orders/recovery",
        {"executor_ids": ["gone"]},
        content_type="application/json",
        headers=bearer("sc_not-a-real-token"),
    )
    assert response.status_code == 401
    assert list(AuditRecord.objects.values_list("action", flat=True)) == ["api_token.rejected"]


def test_an_anonymous_read_of_the_api_is_not_an_attempt_to_change_anything(db: None) -> None:
    assert Client().get("/api/v1/apps").status_code == 401
    assert not AuditRecord.objects.exists()


def test_an_anonymous_console_post_leaves_one_denied_record(db: None) -> None:
    response = Client().post(reverse("tokens"), {"name": "sneaky"})
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    denied = AuditRecord.objects.get()
    assert (denied.action, denied.result, denied.target) == (
        "access.denied",
        "denied",
        "POST /tokens/",
    )
    assert denied.detail == ANONYMOUS_REDIRECT
    assert denied.actor is None


def test_an_anonymous_console_post_without_csrf_leaves_one_denied_record(db: None) -> None:
    response = Client(enforce_csrf_checks=True).post(reverse("tokens"), {"name": "sneaky"})
    assert response.status_code == 403
    denied = AuditRecord.objects.get()
    assert (denied.action, denied.target, denied.detail) == (
        "access.denied",
        "POST /tokens/",
        ANONYMOUS_403,
    )


def test_a_failed_login_still_leaves_exactly_one_record(operator: User) -> None:
    response = Client().post(reverse("login"), {"username": "otto", "password": "wrong"})
    assert response.status_code == 401
    failed = AuditRecord.objects.get()
    assert (failed.action, failed.result, failed.target) == ("auth.login_failed", "denied", "otto")


def test_a_login_and_an_anonymous_logout_add_no_denied_records(operator: User) -> None:
    client = Client()
    assert client.post(reverse("logout")).status_code == 302
    assert not AuditRecord.objects.exists()
    response = client.post(reverse("login"), {"username": "otto", "password": PASSWORD})
    assert response.status_code == 302
    assert list(AuditRecord.objects.values_list("action", flat=True)) == ["auth.login"]


def test_a_signed_in_refusal_is_not_recorded_twice(operator: User) -> None:
    response = signed_in(operator).post(reverse("audit"))
    assert response.status_code == 403
    records = AuditRecord.objects.exclude(action="auth.login")
    assert list(records.values_list("action", "actor_name")) == [("access.denied", "otto")]


# Through the ASGI application, as Daphne serves it: the API's own middleware chain.


async def asgi(
    method: str, path: str, *, body: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None
) -> dict[str, Any]:
    """Status, headers and the whole body. (HttpCommunicator cannot read a stream's last,
    bodiless, message.)"""
    from channels.testing import ApplicationCommunicator

    from stepchange.asgi import application

    path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "path": path,
        "query_string": query.encode(),
        "headers": [(b"host", b"127.0.0.1"), *(headers or [])],
    }
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "http.request", "body": body})
    start = await communicator.receive_output(timeout=5)
    response = {"status": start["status"], "headers": dict(start["headers"]), "body": b""}
    while True:
        message = await communicator.receive_output(timeout=5)
        response["body"] += message.get("body", b"")
        if not message.get("more_body"):
            break
    await communicator.wait()
    return response


@pytest.mark.django_db(transaction=True)
async def test_an_anonymous_api_post_through_daphnes_path_leaves_one_denied_record() -> None:
    response = await asgi(
        "POST",
        "/api/v1/apps/orders/recovery",
        body=b'{"executor_ids": ["gone"]}',
        headers=[(b"content-type", b"application/json")],
    )
    assert response["status"] == 401
    records = await sync_to_async(
        lambda: list(AuditRecord.objects.values_list("action", "target", "detail"))
    )()
    assert records == [("access.denied", "POST /api/v1/apps/orders/recovery", ANONYMOUS_401)]


@pytest.mark.django_db(transaction=True)
async def test_an_export_through_daphnes_path_streams_every_page(
    history: list[AuditRecord], admin_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auditlog, "EXPORT_CHUNK", 2)
    response = await asgi(
        "GET",
        "/api/v1/audit/export?format=json&action=workflow.",
        headers=[(b"authorization", f"Bearer {admin_token}".encode())],
    )
    assert response["status"] == 200
    assert b"no-store" in response["headers"][b"Cache-Control"]
    assert response["headers"][b"Content-Type"] == b"application/json"
    items = json.loads(response["body"])
    assert [item["target"] for item in items] == ["wf-4", "wf-2", "wf-1"]
    exported = await sync_to_async(AuditRecord.objects.get)(action="audit.export")
    assert exported.parameters == {"action": "workflow.", "format": "json"}
