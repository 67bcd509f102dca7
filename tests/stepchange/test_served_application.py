"""The application as Daphne serves it (stepchange.asgi): signing in keeps a session, and
a refused anonymous change is on record."""

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import HttpCommunicator
from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session

from stepchange.asgi import application
from stepchange.models import AuditRecord
from tests.conftest import PASSWORD, make_user, signed_in

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
