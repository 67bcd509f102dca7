"""Stories about the JSON API skeleton: authentication, error shapes, the apps list."""

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
