"""The console's middleware runs on the event loop (stepchange/middleware.py): a page
costs a couple of trips to the database thread, not two per middleware, and what does
need the database (saving a session, auditing a refusal) still gets there."""

from typing import Any
from unittest import mock

import pytest
from asgiref.sync import SyncToAsync, sync_to_async
from channels.testing import HttpCommunicator
from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session

from stepchange.asgi import application, quiet_request_start
from stepchange.models import Application, AuditRecord
from tests.conftest import PASSWORD, make_user, signed_in
from tests.sdk_fixtures import by_role, registered

pytestmark = pytest.mark.django_db(transaction=True)


async def fetch(
    path: str, *, method: str = "GET", cookie: str = "", body: bytes = b""
) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    if body:
        headers.append((b"content-type", b"application/x-www-form-urlencoded"))
    communicator = HttpCommunicator(application, method, path, body=body, headers=headers)
    response = await communicator.get_response()
    await communicator.wait()
    return response


def _session_of(user: User) -> str:
    client = signed_in(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


async def test_a_signed_in_page_takes_three_trips_to_the_database_thread() -> None:
    viewer = await sync_to_async(make_user)(username="vic", role="viewer")
    await Application.objects.acreate(name="orders")
    cookie = await sync_to_async(_session_of)(viewer)
    trips = 0
    real = SyncToAsync.__call__

    async def counted(self: SyncToAsync[Any, Any], *args: Any, **kwargs: Any) -> Any:
        nonlocal trips
        trips += 1
        return await real(self, *args, **kwargs)

    with mock.patch.object(SyncToAsync, "__call__", counted):
        response = await fetch("/apps/orders/executors/", cookie=cookie)
    assert response["status"] == 200, response["body"][:300]
    assert b"orders" in response["body"]
    # The user (session and user in one trip), the view, and Django closing the request.
    # Django's own chain made two more per middleware (nine with just three of them back).
    assert trips <= 3, trips


def _counting_trips() -> tuple[Any, list[int]]:
    # As in production: Django's test client puts back a receiver that stepchange.asgi
    # takes away.
    quiet_request_start()
    trips = [0]
    real = SyncToAsync.__call__

    async def counted(self: SyncToAsync[Any, Any], *args: Any, **kwargs: Any) -> Any:
        trips[0] += 1
        return await real(self, *args, **kwargs)

    return mock.patch.object(SyncToAsync, "__call__", counted), trips


@pytest.mark.parametrize("page", ["detail", "list", "queued"])
async def test_a_workflows_page_and_the_list_take_two_trips(
    system_databases: None, sdk_fixtures: dict[str, dict[str, Any]], page: str
) -> None:
    fixture = sdk_fixtures["py320-sqlite-default"]
    app = await sync_to_async(registered)(fixture)
    viewer = await sync_to_async(make_user)(username="vic", role="viewer")
    cookie = await sync_to_async(_session_of)(viewer)
    workflow_id = by_role(fixture, "success")
    path = {
        "detail": f"/apps/{app.name}/workflows/{workflow_id}/",
        "list": f"/apps/{app.name}/workflows/?status=SUCCESS",
        "queued": f"/apps/{app.name}/queued/",
    }[page]
    assert (await fetch(path, cookie=cookie))["status"] == 200  # the schema, read once
    counting, trips = _counting_trips()
    with counting:
        response = await fetch(path, cookie=cookie)
    assert response["status"] == 200, response["body"][:300]
    if page != "queued":
        assert workflow_id.encode() in response["body"]
    # The user with the application, the system database's rows and the page made from
    # them, all in one; Django closing the request.
    assert trips[0] <= 2, trips
    # Someone not signed in is sent to sign in, with no trip for the application.
    counting, trips = _counting_trips()
    with counting:
        response = await fetch(path)
    assert response["status"] == 302
    assert dict(response["headers"])[b"Location"].startswith(b"/accounts/login/?next=")
    assert trips[0] <= 2, trips


@pytest.mark.parametrize("endpoint", ["workflow", "steps", "list", "queued"])
async def test_an_api_read_of_the_system_database_takes_one_trip(
    system_databases: None, sdk_fixtures: dict[str, dict[str, Any]], endpoint: str
) -> None:
    """The bearer token, the application's check and the read itself in one trip (not one
    for each); and Django closing the request."""
    from stepchange.services import api_token_create

    fixture = sdk_fixtures["py320-sqlite-default"]
    app = await sync_to_async(registered)(fixture)
    viewer = await sync_to_async(make_user)(username="vic", role="viewer")
    _, token = await sync_to_async(api_token_create)(user=viewer, name="t")
    workflow_id = by_role(fixture, "success")
    base = f"/api/v1/apps/{app.name}"
    path = {
        "workflow": f"{base}/workflows/{workflow_id}",
        "steps": f"{base}/workflows/{workflow_id}/steps",
        "list": f"{base}/workflows?status=SUCCESS",
        "queued": f"{base}/queued-workflows",
    }[endpoint]

    async def get() -> dict[str, Any]:
        headers = [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {token}".encode())]
        communicator = HttpCommunicator(application, "GET", path, headers=headers)
        response = await communicator.get_response()
        await communicator.wait()
        return response

    assert (await get())["status"] == 200  # the schema, read once
    counting, trips = _counting_trips()
    with counting:
        response = await get()
    assert response["status"] == 200, response["body"][:300]
    if endpoint in ("workflow", "list"):
        assert workflow_id.encode() in response["body"]
    assert trips[0] <= 2, trips


async def test_signing_in_saves_the_session_and_an_anonymous_post_is_audited() -> None:
    await sync_to_async(make_user)(username="vic", role="viewer")
    page = await fetch("/accounts/login/")
    csrf = next(
        value.decode().split(";")[0]
        for name, value in page["headers"]
        if name == b"Set-Cookie" and value.startswith(b"csrftoken=")
    )
    token = csrf.split("=", 1)[1]
    signed = await fetch(
        "/accounts/login/",
        method="POST",
        cookie=csrf,
        body=f"username=vic&password={PASSWORD}&csrfmiddlewaretoken={token}".encode(),
    )
    assert signed["status"] == 302
    cookies = [v.decode() for n, v in signed["headers"] if n == b"Set-Cookie"]
    session = next(c.split(";")[0] for c in cookies if c.startswith(settings.SESSION_COOKIE_NAME))
    assert await Session.objects.filter(session_key=session.split("=", 1)[1]).aexists()
    home = await fetch("/", cookie=session)
    assert home["status"] == 200
    assert b"vic" in home["body"]

    refused = await fetch("/tokens/", method="POST", body=b"name=x")
    assert refused["status"] == 403
    record = await AuditRecord.objects.filter(action="access.denied").alast()
    assert record is not None
    assert record.target == "POST /tokens/"
