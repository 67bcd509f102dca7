"""Stories about the JSON API skeleton: authentication, error shapes, the apps list."""

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tests.conftest import make_app, make_user, signed_in


def test_the_openapi_document_describes_the_api(db: None) -> None:
    response = Client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["info"]["title"] == "StepChange API"
    assert "/api/v1/apps" in document["paths"]
    schemes = document["components"]["securitySchemes"]
    assert {scheme["type"] for scheme in schemes.values()} >= {"http", "apiKey"}


def test_an_anonymous_caller_gets_401_with_a_detail(db: None) -> None:
    response = Client().get("/api/v1/apps")
    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication required: a session or a bearer token."}


def test_a_signed_in_viewer_lists_applications_with_their_settings(viewer: User) -> None:
    make_app(name="orders", system_database_url="sqlite:///x.sqlite", recovery_grace_seconds=30)
    make_app(name="billing")
    response = signed_in(viewer).get("/api/v1/apps")
    assert response.status_code == 200
    apps = {app["name"]: app for app in response.json()}
    assert set(apps) == {"orders", "billing"}
    assert apps["orders"]["has_system_database"] is True
    assert apps["orders"]["recovery_grace_seconds"] == 30
    assert apps["billing"]["has_system_database"] is False
    assert "system_database_url" not in apps["orders"]


def test_a_user_without_access_never_sees_an_application(stranger: User) -> None:
    make_app(name="orders")
    limited = make_user(username="lena", role="admin", apps=[make_app(name="billing")])
    assert signed_in(stranger).get("/api/v1/apps").json() == []
    assert [app["name"] for app in signed_in(limited).get("/api/v1/apps").json()] == ["billing"]
    page = signed_in(limited).get("/")
    assert b"billing" in page.content
    assert b"orders" not in page.content


def test_an_unknown_api_path_is_a_404_with_a_detail(viewer: User) -> None:
    response = signed_in(viewer).get("/api/v1/nothing-here")
    assert response.status_code == 404


@pytest.mark.django_db(transaction=True)
async def test_the_api_and_the_console_are_served_with_the_same_protections() -> None:
    from channels.testing import HttpCommunicator

    from stepchange.asgi import application

    async def fetch(path: str) -> dict[str, Any]:
        communicator = HttpCommunicator(application, "GET", path, headers=[(b"host", b"127.0.0.1")])
        response = await communicator.get_response()
        await communicator.wait()  # let Django finish and close the request body
        return response

    api = await fetch("/api/v1/apps")
    headers = dict(api["headers"])
    assert api["status"] == 401
    assert headers[b"Cache-Control"] == b"no-store"
    assert headers[b"X-Content-Type-Options"] == b"nosniff"
    # One chain for both: clickjacking protection on each, no caching of the API's answers.
    console = await fetch("/accounts/login/")
    assert dict(console["headers"])[b"X-Frame-Options"] == b"DENY"
    assert headers[b"X-Frame-Options"] == b"DENY"


def test_a_body_over_the_limit_is_a_400_that_names_the_setting(admin: User, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    make_app(name="orders")
    response = signed_in(admin).post(
        "/api/v1/apps/orders/workflows/wf-1/edited-forks",
        {"start_step": 1, "reason": "x" * 2000},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.json() == {
        "detail": "The request body is larger than 1024 bytes, the MAX_REQUEST_BODY_BYTES "
        "setting of this StepChange."
    }


def test_an_edited_fork_of_five_megabytes_is_read(admin: User) -> None:
    make_app(name="orders")
    big = {"args": ["x" * (5 * 1024 * 1024)], "kwargs": {}}
    response = signed_in(admin).post(
        "/api/v1/apps/orders/workflows/wf-1/edited-forks",
        {"start_step": 1, "input": big, "reason": "a large input"},
        content_type="application/json",
    )
    # Read and checked: the source workflow is what is missing, not room for the body.
    assert response.status_code in (404, 503), response.content
    assert "larger than" not in response.json()["detail"]
