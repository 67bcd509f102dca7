"""Stories about guessing: wrong passwords, tokens and executor keys are throttled by
account and by address, each lockout audited once, and valid credentials never counted."""

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from conductor.consumers import CLOSE_THROTTLED
from stepchange.asgi import application as asgi_app
from stepchange.models import Application, AuditRecord
from stepchange.services import api_token_create
from tests.conftest import PASSWORD
from tests.fake_executor import KEY

LIMIT = 10


def sign_in(username: str, password: str, address: str = "10.0.0.1") -> Any:
    return Client().post(
        reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address
    )


def test_ten_wrong_passwords_lock_the_account_even_against_the_right_one(
    operator: User,
) -> None:
    for attempt in range(LIMIT - 1):
        assert sign_in("otto", f"guess-{attempt}", f"10.0.1.{attempt}").status_code == 401
    locking = sign_in("otto", "guess-last", "10.0.1.99")
    assert locking.status_code == 429
    response = sign_in("otto", PASSWORD, "10.0.2.1")
    assert response.status_code == 429
    assert int(response["Retry-After"]) == 300
    assert b"Too many failed sign-ins" in response.content
    assert AuditRecord.objects.filter(action="auth.login").count() == 0
    lockouts = AuditRecord.objects.filter(action="auth.lockout")
    assert [(record.target, record.result) for record in lockouts] == [("otto", "denied")]


def test_one_address_guessing_many_usernames_is_locked_out(operator: User) -> None:
    for attempt in range(LIMIT):
        sign_in(f"someone-{attempt}", "guess", "10.0.3.3")
    assert sign_in("otto", PASSWORD, "10.0.3.3").status_code == 429
    assert sign_in("otto", PASSWORD, "10.0.3.4").status_code == 302
    assert AuditRecord.objects.filter(action="auth.lockout").count() == 1


def test_the_admin_sign_in_is_throttled_too(admin: User) -> None:
    client = Client(REMOTE_ADDR="10.0.4.4")
    for attempt in range(LIMIT):
        client.post(reverse("admin:login"), {"username": "ada", "password": f"no-{attempt}"})
    response = client.post(reverse("admin:login"), {"username": "ada", "password": PASSWORD})
    assert response.status_code == 429
    assert "Retry-After" in response


def bearer(raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}


def test_ten_wrong_tokens_from_one_address_answer_429_with_retry_after(operator: User) -> None:
    _, raw = api_token_create(user=operator, name="deploy")
    client = Client(REMOTE_ADDR="10.0.5.5")
    for attempt in range(LIMIT):
        answer = client.get("/api/v1/apps", headers=bearer(f"sc_{attempt:04}-guess"))
        assert answer.status_code == 401
    for _ in range(5):
        response = client.get("/api/v1/apps", headers=bearer(raw))
        assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 300
    assert "Too many failed attempts" in response.json()["detail"]
    # Elsewhere the token works; only the guessing address waits.
    elsewhere = Client(REMOTE_ADDR="10.0.5.6")
    assert elsewhere.get("/api/v1/apps", headers=bearer(raw)).status_code == 200
    assert AuditRecord.objects.filter(action="api_token.rejected").count() == LIMIT
    lockout = AuditRecord.objects.get(action="api_token.lockout")
    assert (lockout.target, lockout.source_address) == ("address 10.0.5.5", "10.0.5.5")


def test_wrong_tokens_with_one_prefix_lock_that_prefix_but_not_the_real_token(
    operator: User,
) -> None:
    token, raw = api_token_create(user=operator, name="deploy")
    for attempt in range(LIMIT + 3):
        Client(REMOTE_ADDR=f"10.0.6.{attempt}").get(
            "/api/v1/apps", headers=bearer(raw[:10] + "wrong")
        )
    refused = Client(REMOTE_ADDR="10.0.7.1").get("/api/v1/apps", headers=bearer(raw[:10] + "x"))
    assert refused.status_code == 429
    client = Client(REMOTE_ADDR="10.0.7.1")
    assert client.get("/api/v1/apps", headers=bearer(raw)).status_code == 200
    assert AuditRecord.objects.filter(action="api_token.rejected").count() == LIMIT
    lockout = AuditRecord.objects.get(action="api_token.lockout")
    assert lockout.target == f"api_token {token.prefix}"


async def knock(path: str, address: str) -> tuple[bool, Any]:
    communicator = WebsocketCommunicator(asgi_app, path)
    communicator.scope["client"] = [address, 40000]
    connected, code = await communicator.connect()
    await communicator.disconnect()
    return connected, code


@pytest.mark.django_db(transaction=True)
async def test_ten_wrong_executor_keys_refuse_the_address_before_the_handshake(
    orders: Application,
) -> None:
    for attempt in range(LIMIT):
        connected, code = await knock(f"/websocket/orders/wrong-key-{attempt:04}", "10.0.8.8")
        assert (connected, code) == (False, 1000)
    connected, code = await knock(f"/websocket/orders/{KEY}", "10.0.8.8")
    assert (connected, code) == (False, CLOSE_THROTTLED)
    lockouts = AuditRecord.objects.filter(action="executor_key.lockout").order_by("pk")
    targets = await sync_to_async(lambda: [r.target for r in lockouts])()
    assert targets == ["address 10.0.8.8", "executor_key orders"]
    # The application's own executor, from its own address, still connects with its key.
    connected, _ = await knock(f"/websocket/orders/{KEY}", "10.0.9.9")
    assert connected


@pytest.mark.django_db(transaction=True)
async def test_an_executor_reconnecting_with_a_valid_key_is_never_throttled(
    orders: Application,
) -> None:
    for _ in range(3 * LIMIT):
        connected, _ = await knock(f"/websocket/orders/{KEY}", "10.0.10.10")
        assert connected
    assert not await sync_to_async(AuditRecord.objects.filter(action__endswith="lockout").exists)()
