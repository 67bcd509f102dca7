"""Stories about scoped API keys: made by an admin for an owner, shown once, stored hashed,
acting with the narrower of their scope and their owner's role and access, expiring,
revocable, and audited under the key and its owner at every use."""

import io
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from conductor.models import Executor
from stepchange.access import KEY_NOT_ALLOWED, KEY_NOT_FOR_APP, NOT_ALLOWED
from stepchange.models import ApiKey, Application, AuditRecord, KeyHolder
from stepchange.roles import PERM_ADMINISTER, PERM_INSPECT, PERM_OPERATE
from stepchange.services import (
    KEY_ALL_APPS_NEEDS_ALL,
    KEY_APPS_OUT_OF_REACH,
    KEY_BEYOND_CALLER,
    KEY_EXPIRY_PAST,
    KEY_OWNER_OUT_OF_REACH,
    LAST_USED_RESOLUTION_SECONDS,
    api_key_create,
    hash_secret,
)
from tests.conftest import make_app, make_user, signed_in

GONE = "exec-gone"


def bearer(raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}


class AsAdmin:
    """A request as `api_key_create` needs one: the admin making the key."""

    def __init__(self, user: User) -> None:
        self.user = user
        self.method = "POST"
        self.path = "/keys/"
        self.META: dict[str, str] = {"REMOTE_ADDR": "10.1.2.3"}
        self.headers: dict[str, str] = {}


def make_key(
    maker: User,
    *,
    owner: User,
    permissions: tuple[str, ...] = (),
    apps: list[Application] | None = None,
    expires_in: timedelta | None = None,
) -> tuple[ApiKey, str]:
    return api_key_create(
        name="script",
        owner=owner,
        permissions=permissions,
        applications=apps,
        expires_at=timezone.now() + expires_in if expires_in else None,
        request=AsAdmin(maker),  # type: ignore[arg-type]
    )


def recover(raw: str, app: str = "orders") -> Any:
    """An act that needs the operate permission (executor recovery)."""
    return Client().post(
        f"/api/v1/apps/{app}/recovery",
        {"executor_ids": [GONE]},
        "application/json",
        headers=bearer(raw),
    )


@pytest.fixture
def orders(db: None) -> Application:
    orders = make_app(name="orders")
    Executor.objects.create(
        application=orders,
        executor_id=GONE,
        state=Executor.State.DISCONNECTED,
        application_version="v1",
        disconnected_at=timezone.now(),
    )
    return orders


def test_an_admin_makes_a_key_on_the_console_shown_once_and_stored_hashed(
    admin: User, orders: Application
) -> None:
    client = signed_in(admin)
    response = client.post(
        reverse("api-keys"),
        {
            "name": "nightly report",
            "owner": admin.pk,
            "permissions": [PERM_OPERATE],
            "applications": [orders.pk],
            "expires_on": (timezone.now() + timedelta(days=30)).date().isoformat(),
        },
    )
    assert response.status_code == 200
    raw = response.context["created"]
    assert raw.startswith("sck_")
    assert raw.encode() in response.content
    again = client.get(reverse("api-keys"))
    assert raw.encode() not in again.content
    assert b"nightly report" in again.content
    key = ApiKey.objects.get()
    assert key.key_hash == hash_secret(raw)
    assert key.permissions == [PERM_INSPECT, PERM_OPERATE]
    assert key.scope == ["read", "act"]
    assert [app.name for app in key.applications.all()] == ["orders"]
    assert key.expires_at is not None
    # Nowhere in the database: neither the key's row nor the audit record of its making.
    dump = io.StringIO()
    call_command("dumpdata", "stepchange", "auth", stdout=dump)
    assert raw not in dump.getvalue()
    assert raw[4:] not in dump.getvalue()
    record = AuditRecord.objects.get(action="api_key.create")
    assert record.parameters["permissions"] == [PERM_INSPECT, PERM_OPERATE]
    assert record.parameters["applications"] == ["orders"]
    assert Client().get("/api/v1/apps", headers=bearer(raw)).status_code == 200


def test_a_key_wider_than_its_owner_does_only_what_the_owner_may(
    admin: User, viewer: User, orders: Application
) -> None:
    _, raw = make_key(admin, owner=viewer, permissions=(PERM_OPERATE, PERM_ADMINISTER))
    response = recover(raw)
    assert response.status_code == 403
    assert response.json()["detail"] == NOT_ALLOWED
    refused = AuditRecord.objects.get(action="access.denied")
    assert (refused.actor_name, refused.api_key_name, refused.role) == ("vera", "script", "viewer")
    assert Client().get("/api/v1/audit", headers=bearer(raw)).status_code == 403


def test_an_owner_wider_than_the_key_acts_only_within_the_key(
    admin: User, operator: User, orders: Application
) -> None:
    _, raw = make_key(admin, owner=operator)
    assert Client().get("/api/v1/apps/orders/executors", headers=bearer(raw)).status_code == 200
    response = recover(raw)
    assert response.status_code == 403
    assert response.json()["detail"] == KEY_NOT_ALLOWED
    refused = AuditRecord.objects.get(action="access.denied")
    assert refused.actor_name == "otto"
    assert refused.api_key_name == "script"
    # What the owner amounts to through this key: a viewer.
    assert refused.role == "viewer"
    _, acting = make_key(admin, owner=operator, permissions=(PERM_OPERATE,))
    assert recover(acting).status_code == 200


def test_an_owner_demoted_loses_it_through_the_key_at_once(
    admin: User, operator: User, orders: Application
) -> None:
    _, raw = make_key(admin, owner=operator, permissions=(PERM_OPERATE,))
    assert recover(raw).status_code == 200
    operator.groups.set([Group.objects.get(name="viewer")])
    assert recover(raw).status_code == 403
    operator.is_active = False
    operator.save()
    assert Client().get("/api/v1/apps", headers=bearer(raw)).status_code == 401
    rejected = AuditRecord.objects.get(action="api_key.rejected")
    assert rejected.detail == "the key's owner is inactive"


def test_a_key_reaches_only_its_applications_and_says_so(
    admin: User, operator: User, orders: Application
) -> None:
    billing = make_app(name="billing")
    _, raw = make_key(admin, owner=operator, permissions=(PERM_OPERATE,), apps=[billing])
    listed = Client().get("/api/v1/apps", headers=bearer(raw)).json()
    assert [app["name"] for app in listed] == ["billing"]
    response = Client().get("/api/v1/apps/orders/executors", headers=bearer(raw))
    assert response.status_code == 403
    assert response.json()["detail"] == KEY_NOT_FOR_APP.format(name="orders")
    assert recover(raw).status_code == 403
    refusals = AuditRecord.objects.filter(action="access.denied").order_by("pk")
    assert [(r.application_name, r.api_key_name, r.actor_name) for r in refusals] == [
        ("orders", "script", "otto"),
        ("orders", "script", "otto"),
    ]
    # An application the owner may not see stays hidden behind a 404, key or no key.
    limited = make_user(username="lena", role="operator", apps=[billing])
    _, theirs = make_key(admin, owner=limited, apps=[billing])
    assert Client().get("/api/v1/apps/orders/executors", headers=bearer(theirs)).status_code == 404


def test_a_superusers_key_is_narrowed_too(orders: Application) -> None:
    root = User.objects.create_superuser("root", password="x" * 20)
    billing = make_app(name="billing")
    _, raw = make_key(root, owner=root, apps=[billing])
    listed = Client().get("/api/v1/apps", headers=bearer(raw)).json()
    assert [app["name"] for app in listed] == ["billing"]
    assert recover(raw, "billing").json()["detail"] == KEY_NOT_ALLOWED
    assert recover(raw).status_code == 403


def test_an_expired_key_is_refused_and_the_refusal_names_key_and_owner(
    admin: User, operator: User, orders: Application
) -> None:
    key, raw = make_key(admin, owner=operator, expires_in=timedelta(hours=1))
    assert Client().get("/api/v1/apps", headers=bearer(raw)).status_code == 200
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = Client().get("/api/v1/apps", headers=bearer(raw), REMOTE_ADDR="10.9.8.7")
    assert response.status_code == 401
    record = AuditRecord.objects.get(action="api_key.rejected")
    assert (record.result, record.detail) == ("denied", "the key has expired")
    assert (record.actor_name, record.api_key_id, record.api_key_name) == ("otto", key.pk, "script")
    assert record.source_address == "10.9.8.7"
    assert raw not in record.target


def test_an_unknown_key_is_refused_and_audited_without_its_secret(db: None) -> None:
    raw = "sck_not-a-real-key-at-all"
    assert Client().get("/api/v1/apps", headers=bearer(raw)).status_code == 401
    record = AuditRecord.objects.get(action="api_key.rejected")
    assert record.detail == "unknown key"
    assert record.actor is None
    assert "real-key-at-all" not in record.target


def test_a_revoked_key_stops_working_and_the_revocation_is_audited(
    admin: User, operator: User, orders: Application
) -> None:
    key, raw = make_key(admin, owner=operator)
    assert Client().get("/api/v1/apps", headers=bearer(raw)).status_code == 200
    response = signed_in(admin).post(reverse("api-key-revoke", args=[key.pk]))
    assert response.status_code == 302
    assert Client().get("/api/v1/apps", headers=bearer(raw)).status_code == 401
    assert AuditRecord.objects.get(action="api_key.rejected").detail == "the key is revoked"
    revoked = AuditRecord.objects.get(action="api_key.revoke")
    assert revoked.actor_name == "ada"
    assert "otto" in revoked.target


def test_every_use_is_audited_under_the_key_and_its_owner(
    admin: User, operator: User, orders: Application
) -> None:
    key, raw = make_key(admin, owner=operator, permissions=(PERM_OPERATE,))
    Client().get("/api/v1/apps", headers=bearer(raw), HTTP_USER_AGENT="report/1.0")
    recover(raw)
    uses = AuditRecord.objects.filter(action="api_key.use").order_by("pk")
    assert [use.target for use in uses] == [
        "GET /api/v1/apps",
        "POST /api/v1/apps/orders/recovery",
    ]
    first = uses[0]
    assert (first.actor_id, first.actor_name, first.role) == (operator.pk, "otto", "operator")
    assert (first.api_key_id, first.api_key_name) == (key.pk, "script")
    assert first.user_agent == "report/1.0"
    action = AuditRecord.objects.get(action="executor.recovery")
    assert (action.actor_name, action.api_key_name) == ("otto", "script")
    # The audit log shows both, on the page and through the API.
    page = signed_in(admin).get(reverse("audit")).content.decode()
    assert "with key “script”" in page
    item = Client().get("/api/v1/audit?action=executor.", headers=bearer(make_admin_key(admin)))
    assert item.json()["items"][0]["api_key_name"] == "script"


def make_admin_key(admin: User) -> str:
    return make_key(admin, owner=admin, permissions=(PERM_OPERATE, PERM_ADMINISTER))[1]


def test_last_used_is_written_at_most_once_a_minute(
    admin: User, operator: User, orders: Application
) -> None:
    key, raw = make_key(admin, owner=operator)
    Client().get("/api/v1/apps", headers=bearer(raw))
    key.refresh_from_db()
    first = key.last_used_at
    assert first is not None
    with CaptureQueriesContext(connection) as queries:
        Client().get("/api/v1/apps", headers=bearer(raw))
    assert not [q for q in queries if q["sql"].startswith('UPDATE "stepchange_apikey"')]
    key.refresh_from_db()
    assert key.last_used_at == first
    earlier = first - timedelta(seconds=LAST_USED_RESOLUTION_SECONDS + 1)
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=earlier)
    Client().get("/api/v1/apps", headers=bearer(raw))
    key.refresh_from_db()
    assert key.last_used_at is not None
    assert key.last_used_at > first


def test_the_api_makes_lists_and_revokes_keys(
    admin: User, operator: User, orders: Application
) -> None:
    token = make_admin_key(admin)
    body = {
        "name": "deploy",
        "owner": "otto",
        "permissions": ["act"],
        "applications": ["orders"],
        "expires_at": (timezone.now() + timedelta(days=7)).isoformat(),
    }
    made = Client().post("/api/v1/api-keys", body, "application/json", headers=bearer(token))
    assert made.status_code == 201, made.content
    answer = made.json()
    raw = answer["key"]
    assert (answer["owner"], answer["permissions"], answer["applications"]) == (
        "otto",
        ["read", "act"],
        ["orders"],
    )
    assert recover(raw).status_code == 200
    listed = Client().get("/api/v1/api-keys", headers=bearer(token)).json()
    assert raw not in str(listed)
    assert {key["name"] for key in listed} == {"deploy", "script"}
    revoked = Client().post(f"/api/v1/api-keys/{answer['id']}/revoke", headers=bearer(token)).json()
    assert revoked["active"] is False
    assert recover(raw).status_code == 401


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"owner": "nobody"}, "No user named 'nobody' that you manage."),
        ({"applications": ["orders", "nowhere"]}, "No applications named 'nowhere'"),
        ({"expires_at": "2001-01-01T00:00:00Z"}, KEY_EXPIRY_PAST),
        ({"permissions": ["root"]}, "permissions"),
        ({"name": "   "}, "name"),
    ],
)
def test_the_api_refuses_a_bad_key_and_makes_nothing(
    admin: User, orders: Application, change: dict[str, Any], message: str
) -> None:
    token = make_admin_key(admin)
    body = {"name": "deploy", "applications": None, "expires_at": None, **change}
    response = Client().post("/api/v1/api-keys", body, "application/json", headers=bearer(token))
    assert response.status_code == 400
    assert message in str(response.json()["detail"])
    assert ApiKey.objects.count() == 1


def test_nobody_puts_into_a_key_more_than_they_hold_or_see(
    admin: User, orders: Application
) -> None:
    billing = make_app(name="billing")
    limited_admin = make_user(username="lia", role="admin", apps=[billing])
    operator_elsewhere = make_user(username="oona", role="operator")
    with pytest.raises(ValidationError, match=KEY_ALL_APPS_NEEDS_ALL):
        make_key(limited_admin, owner=limited_admin)
    with pytest.raises(ValidationError, match=KEY_APPS_OUT_OF_REACH.format(names="orders")):
        make_key(limited_admin, owner=limited_admin, apps=[orders])
    with pytest.raises(ValidationError, match=KEY_OWNER_OUT_OF_REACH):
        make_key(limited_admin, owner=operator_elsewhere, apps=[billing])
    # Through a key, its narrower scope is what the caller holds.
    admin_key = make_key(admin, owner=admin, permissions=(PERM_ADMINISTER,), apps=[orders])[0]
    holder = KeyHolder.objects.get(pk=admin.pk)
    holder.api_key = admin_key
    with pytest.raises(ValidationError, match=KEY_BEYOND_CALLER.format(names=PERM_OPERATE)):
        make_key(holder, owner=admin, permissions=(PERM_OPERATE,), apps=[orders])
    with pytest.raises(ValidationError, match=KEY_ALL_APPS_NEEDS_ALL):
        make_key(holder, owner=admin)
    assert ApiKey.objects.count() == 1


def test_the_console_form_says_what_is_wrong_and_makes_nothing(
    admin: User, orders: Application
) -> None:
    client = signed_in(admin)
    yesterday = (timezone.now() - timedelta(days=1)).date().isoformat()
    response = client.post(
        reverse("api-keys"),
        {"name": "late", "owner": admin.pk, "all_applications": "on", "expires_on": yesterday},
    )
    assert response.status_code == 400
    assert KEY_EXPIRY_PAST in response.content.decode()
    response = client.post(reverse("api-keys"), {"name": "nowhere", "owner": admin.pk})
    assert response.status_code == 400
    assert "Choose the applications" in response.content.decode()
    assert not ApiKey.objects.exists()


def test_only_admins_see_the_keys_page(viewer: User, operator: User) -> None:
    assert signed_in(viewer).get(reverse("api-keys")).status_code == 403
    assert signed_in(operator).get(reverse("api-keys")).status_code == 403
