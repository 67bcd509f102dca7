"""Stories about an admin limited to some applications: Bea administers `billing` only. She
never sees `orders` in the audit log, its export or the admin, cannot lift her own limit,
and cannot make a key for `orders`. Nobody sees a system database's password in the admin.
"""

import csv
import io
import json
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from stepchange.audit import audit_record
from stepchange.models import Application, ApplicationAccess, AuditRecord, ExecutorKey
from stepchange.services import api_token_create, executor_key_create
from tests.conftest import make_app, make_user, signed_in

SECRET_URL = "postgresql://dbos:s3cret-pw@db.internal:5432/orders_sys"


@pytest.fixture
def orders(db: None) -> Application:
    return make_app(name="orders", system_database_url=SECRET_URL)


@pytest.fixture
def billing(db: None) -> Application:
    return make_app(name="billing")


@pytest.fixture
def bea(orders: Application, billing: Application) -> User:
    bea = make_user(username="bea", role="admin", apps=[billing])
    audit_record(action="workflow.cancel", application=orders, target="wf-orders")
    audit_record(action="workflow.cancel", application=billing, target="wf-billing")
    audit_record(action="auth.login", actor_name="someone")
    return bea


def _targets(records: list[dict[str, str]]) -> set[str]:
    return {record["target"] for record in records}


def test_a_limited_admin_reads_only_her_applications_records_through_the_api(
    bea: User,
) -> None:
    _, raw = api_token_create(user=bea, name="reader")
    client = Client(headers={"Authorization": f"Bearer {raw}"})
    items = client.get("/api/v1/audit").json()["items"]
    assert _targets(items) == {"wf-billing"}
    assert {item["application_name"] for item in items} == {"billing"}
    export = client.get("/api/v1/audit/export", {"format": "json"})
    exported = json.loads(b"".join(export.streaming_content))  # type: ignore[attr-defined]
    assert _targets(exported) == {"wf-billing"}


def test_a_limited_admin_sees_only_her_applications_records_on_the_console(
    bea: User,
) -> None:
    client = signed_in(bea)
    page = client.get(reverse("audit")).content.decode()
    assert "wf-billing" in page
    assert "wf-orders" not in page
    assert "someone" not in page
    export = client.post(reverse("audit-export"), {"export": "csv"})
    content = b"".join(export.streaming_content).decode()  # type: ignore[attr-defined]
    assert _targets(list(csv.DictReader(io.StringIO(content)))) == {"wf-billing"}


def test_an_unlimited_admin_reads_every_record(bea: User, admin: User) -> None:
    page = signed_in(admin).get(reverse("audit")).content.decode()
    assert "wf-billing" in page
    assert "wf-orders" in page
    assert "someone" in page


def test_a_limited_admin_sees_only_her_applications_in_the_admin(
    bea: User, orders: Application, billing: Application
) -> None:
    executor_key_create(application=orders, name="orders-key")
    executor_key_create(application=billing, name="billing-key")
    client = signed_in(bea)
    applications = client.get(reverse("admin:stepchange_application_changelist")).content
    assert b"billing" in applications
    assert b"orders" not in applications
    assert (
        client.get(reverse("admin:stepchange_application_change", args=[orders.pk])).status_code
        == 302  # Django's admin sends an unknown object back to the list
    )
    keys = client.get(reverse("admin:stepchange_executorkey_changelist")).content
    assert b"billing-key" in keys
    assert b"orders" not in keys
    records = client.get(reverse("admin:stepchange_auditrecord_changelist")).content
    assert b"wf-billing" in records
    assert b"wf-orders" not in records
    assert b"orders" not in records  # not even as a filter choice
    new_key = client.get(reverse("admin:stepchange_executorkey_add")).content
    assert b">billing<" in new_key
    assert b">orders<" not in new_key


def test_a_limited_admin_cannot_make_a_key_for_another_application(
    bea: User, orders: Application
) -> None:
    response = signed_in(bea).post(
        reverse("admin:stepchange_executorkey_add"), {"application": orders.pk, "name": "mine"}
    )
    assert response.status_code == 200  # the form again, with its error
    assert not ExecutorKey.objects.filter(application=orders).exists()


def test_a_limited_admin_cannot_lift_her_own_limit(bea: User, orders: Application) -> None:
    client = signed_in(bea)
    access = ApplicationAccess.objects.get(user=bea)
    listing = client.get(reverse("admin:stepchange_applicationaccess_changelist")).content
    assert b"access of bea" not in listing
    change = reverse("admin:stepchange_applicationaccess_change", args=[access.pk])
    client.post(change, {"user": bea.pk, "applications": [orders.pk]})
    access.refresh_from_db()
    assert access.limited
    assert list(access.applications.values_list("name", flat=True)) == ["billing"]


def test_a_limited_admin_limits_others_only_within_her_applications(
    bea: User, orders: Application, billing: Application
) -> None:
    olga = make_user(username="olga", role="operator", apps=[billing])
    client = signed_in(bea)
    access = ApplicationAccess.objects.get(user=olga)
    change = reverse("admin:stepchange_applicationaccess_change", args=[access.pk])
    form = client.get(change).content
    assert b">billing<" in form
    assert b">orders<" not in form
    # An unlimited user is out of her reach: she could otherwise take over their account.
    make_user(username="otto", role="operator")
    users = client.get(reverse("admin:auth_user_changelist")).content
    assert b"olga" in users
    assert b"otto" not in users


def test_a_user_a_limited_admin_makes_is_limited_to_her_applications(bea: User) -> None:
    client = signed_in(bea)
    client.post(
        reverse("admin:auth_user_add"),
        {"username": "nia", "password1": "x-Long-password-1", "password2": "x-Long-password-1"},
    )
    access = ApplicationAccess.objects.get(user__username="nia")
    assert access.limited
    assert list(access.applications.values_list("name", flat=True)) == ["billing"]


def test_no_one_sees_a_system_database_password_in_the_admin(
    orders: Application, admin: User
) -> None:
    client = signed_in(admin)
    change = reverse("admin:stepchange_application_change", args=[orders.pk])
    page = client.get(change).content.decode()
    assert "s3cret-pw" not in page
    assert "postgresql://dbos:***@db.internal:5432/orders_sys" in page
    # Saving the form as shown keeps the password.
    client.post(
        change,
        {
            "name": "orders",
            "system_database_url": "postgresql://dbos:***@db.internal:5432/orders_sys",
            "system_database_schema": "dbos",
            "recovery_grace_seconds": "60",
            "notes": "edited",
            "keys-TOTAL_FORMS": "0",
            "keys-INITIAL_FORMS": "0",
        },
    )
    orders.refresh_from_db()
    assert orders.notes == "edited"
    assert orders.system_database_url == SECRET_URL
    assert all("s3cret" not in json.dumps(r.parameters) for r in AuditRecord.objects.all())


def _refusals(user: User) -> list[AuditRecord]:
    return list(AuditRecord.objects.filter(actor_name=user.username, action="access.denied"))


def test_a_key_she_may_not_make_is_refused_and_audited_once(bea: User, orders: Application) -> None:
    signed_in(bea).post(
        reverse("admin:stepchange_executorkey_add"), {"application": orders.pk, "name": "mine"}
    )
    [refusal] = _refusals(bea)
    assert refusal.result == "denied"
    assert "application" in refusal.detail


def test_a_group_she_is_not_offered_is_refused_and_audited_once(
    bea: User, billing: Application
) -> None:
    olga = make_user(username="olga", role="operator", apps=[billing])
    admins = Group.objects.get(name="admin")
    _post_user(signed_in(bea), olga, groups=[admins.pk])
    assert not olga.groups.filter(pk=admins.pk).exists()
    [refusal] = _refusals(bea)
    assert "groups" in refusal.detail


def test_making_herself_a_superuser_is_refused_and_audited_once(bea: User) -> None:
    _post_user(signed_in(bea), bea, is_superuser="on")
    bea.refresh_from_db()
    assert not bea.is_superuser
    [refusal] = _refusals(bea)
    assert "is_superuser" in refusal.detail


def test_a_change_she_may_make_records_no_refusal(bea: User, billing: Application) -> None:
    olga = make_user(username="olga", role="operator", apps=[billing])
    _post_user(signed_in(bea), olga, first_name="Olga")
    olga.refresh_from_db()
    assert olga.first_name == "Olga"
    assert _refusals(bea) == []


def _post_user(client: Client, user: User, **fields: Any) -> Any:
    """Post the user's change form as the admin shows it, with `fields` changed."""
    data: dict[str, Any] = {
        "username": user.username,
        "is_active": "on",
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
        "groups": [group.pk for group in user.groups.all()],
        **fields,
    }
    return client.post(reverse("admin:auth_user_change", args=[user.pk]), data)
