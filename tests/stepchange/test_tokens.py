"""Stories about personal API tokens: made once, hashed, carrying their user's permissions."""

from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from stepchange.models import ApiToken, AuditRecord
from stepchange.services import api_token_create, api_token_revoke, hash_secret
from tests.conftest import make_app, make_user, signed_in


def bearer(raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}


def test_create_api_token_prints_a_token_that_works_once_stored_hashed(
    operator: User, capsys: object
) -> None:
    make_app(name="orders")
    call_command("create_api_token", "otto")
    raw = capsys.readouterr().out.strip()  # type: ignore[attr-defined]
    assert raw.startswith("sc_")
    token = ApiToken.objects.get(user=operator)
    assert token.token_hash == hash_secret(raw)
    response = Client().get("/api/v1/apps", headers=bearer(raw))
    assert response.status_code == 200
    assert [app["name"] for app in response.json()] == ["orders"]


def test_a_wrong_token_gets_401_and_an_audit_record(db: None) -> None:
    response = Client().get(
        "/api/v1/apps", headers=bearer("sc_not-a-real-token"), REMOTE_ADDR="10.9.8.7"
    )
    assert response.status_code == 401
    assert "detail" in response.json()
    record = AuditRecord.objects.get(action="api_token.rejected")
    assert record.result == "denied"
    assert record.source_address == "10.9.8.7"
    assert "not-a-real-token" not in record.target


def test_a_revoked_token_stops_working(operator: User) -> None:
    token, raw = api_token_create(user=operator, name="deploy")
    assert Client().get("/api/v1/apps", headers=bearer(raw)).status_code == 200
    api_token_revoke(token=token, actor=operator)
    assert Client().get("/api/v1/apps", headers=bearer(raw)).status_code == 401


def test_a_token_carries_its_users_limited_access(db: None) -> None:
    orders, billing = make_app(name="orders"), make_app(name="billing")
    limited = make_user(username="lena", role="viewer", apps=[billing])
    _, raw = api_token_create(user=limited, name="script")
    names = [app["name"] for app in Client().get("/api/v1/apps", headers=bearer(raw)).json()]
    assert names == ["billing"]
    assert orders.name not in names


def test_the_token_of_a_deactivated_user_is_refused(viewer: User) -> None:
    _, raw = api_token_create(user=viewer, name="script")
    viewer.is_active = False
    viewer.save()
    assert Client().get("/api/v1/apps", headers=bearer(raw)).status_code == 401
    assert AuditRecord.objects.get(action="api_token.rejected").detail == "the user is inactive"


def test_the_console_shows_a_new_token_once_and_can_revoke_it(viewer: User) -> None:
    client = signed_in(viewer)
    response = client.post(reverse("tokens"), {"name": "laptop"})
    raw = response.context["created"]
    assert raw.encode() in response.content
    again = client.get(reverse("tokens"))
    assert raw.encode() not in again.content
    assert b"laptop" in again.content
    token = ApiToken.objects.get(user=viewer)
    client.post(reverse("token-revoke", args=[token.pk]))
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_nobody_can_revoke_someone_elses_token(viewer: User, operator: User) -> None:
    token, _ = api_token_create(user=operator, name="mine")
    response = signed_in(viewer).post(reverse("token-revoke", args=[token.pk]))
    assert response.status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None
