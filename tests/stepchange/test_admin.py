"""Stories about the Django admin: Ada (an admin, not a superuser) cannot make herself or
anyone a superuser or an admin; Root (a superuser) can. Every change made there is in
StepChange's audit log, as on the console, with its before and after and no secret."""

import json
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.test import Client
from django.urls import reverse

from stepchange.models import ApplicationAccess, AuditRecord
from tests.conftest import make_app, make_user, signed_in


def _change(client: Client, user: User, **fields: Any) -> Any:
    """Post the user's change form as the admin shows it, with `fields` changed."""
    data: dict[str, Any] = {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
        "groups": [group.pk for group in user.groups.all()],
    }
    if user.is_active:
        data["is_active"] = "on"
    data.update(fields)
    return client.post(reverse("admin:auth_user_change", args=[user.pk]), data)


def _group(name: str) -> int:
    return Group.objects.get(name=name).pk


@pytest.fixture
def root(db: None) -> User:
    return User.objects.create_superuser(username="root", password="x")


def test_an_admin_cannot_make_herself_a_superuser(admin: User) -> None:
    permission = Permission.objects.get(codename="delete_user")
    response = _change(
        signed_in(admin),
        admin,
        is_superuser="on",
        is_staff="on",
        user_permissions=[permission.pk],
        groups=[],  # her admin group is not offered to her
    )
    assert response.status_code == 302
    admin.refresh_from_db()
    assert not admin.is_superuser
    assert not admin.user_permissions.exists()
    # Her own admin group, which she may not take away either, is still hers.
    assert list(admin.groups.values_list("name", flat=True)) == ["admin"]


def test_an_admin_cannot_make_anyone_an_admin(admin: User, viewer: User) -> None:
    client = signed_in(admin)
    form = client.get(reverse("admin:auth_user_change", args=[viewer.pk])).content.decode()
    assert f'value="{_group("admin")}"' not in form
    _change(client, viewer, groups=[_group("viewer"), _group("admin")])
    assert list(viewer.groups.values_list("name", flat=True)) == ["viewer"]
    _change(client, viewer, groups=[_group("operator")])
    assert list(viewer.groups.values_list("name", flat=True)) == ["operator"]


def test_an_admin_cannot_change_a_superuser(admin: User, root: User) -> None:
    client = signed_in(admin)
    assert b"root" not in client.get(reverse("admin:auth_user_changelist")).content
    _change(client, root, is_active="")
    root.refresh_from_db()
    assert root.is_active


def test_a_superuser_makes_an_admin_and_it_is_audited(root: User, viewer: User) -> None:
    response = _change(signed_in(root), viewer, groups=[_group("admin")])
    assert response.status_code == 302
    assert list(viewer.groups.values_list("name", flat=True)) == ["admin"]
    record = AuditRecord.objects.get(action="user.update")
    assert record.actor_name == "root"
    assert record.target == f"user {viewer.pk} (vera)"
    assert record.value_diff == {"groups": {"before": ["viewer"], "after": ["admin"]}}


def test_every_user_change_in_the_admin_is_audited_without_a_password(root: User) -> None:
    client = signed_in(root)
    client.post(
        reverse("admin:auth_user_add"),
        {"username": "nia", "password1": "x-Long-password-1", "password2": "x-Long-password-1"},
    )
    nia = User.objects.get(username="nia")
    client.post(
        reverse("admin:auth_user_password_change", args=[nia.pk]),
        {"password1": "y-Long-password-2", "password2": "y-Long-password-2"},
    )
    client.post(reverse("admin:auth_user_delete", args=[nia.pk]), {"post": "yes"})
    records = AuditRecord.objects.filter(action__startswith="user.").order_by("pk")
    assert [record.action for record in records] == ["user.create", "user.update", "user.delete"]
    assert records[0].parameters["username"] == "nia"
    assert "password" in json.dumps(records[1].parameters)  # "Changed password."
    dumped = json.dumps([r.parameters for r in records] + [r.value_diff for r in records])
    assert "Long-password" not in dumped
    assert "md5$" not in dumped


def test_access_keys_applications_and_groups_changed_in_the_admin_are_audited(
    admin: User, root: User
) -> None:
    orders = make_app(name="orders")
    billing = make_app(name="billing")
    olga = make_user(username="olga", role="operator", apps=[orders])
    access = ApplicationAccess.objects.get(user=olga)
    client = signed_in(admin)
    client.post(
        reverse("admin:stepchange_applicationaccess_change", args=[access.pk]),
        {"user": olga.pk, "limited": "on", "applications": [orders.pk, billing.pk]},
    )
    record = AuditRecord.objects.get(action="application_access.update")
    assert record.value_diff == {
        "applications": {"before": ["orders"], "after": ["billing", "orders"]}
    }
    client.post(
        reverse("admin:stepchange_application_change", args=[orders.pk]),
        {
            "name": "orders",
            "system_database_schema": "dbos",
            "recovery_grace_seconds": "30",
            "keys-TOTAL_FORMS": "0",
            "keys-INITIAL_FORMS": "0",
        },
    )
    changed = AuditRecord.objects.get(action="application.update")
    assert changed.application_name == "orders"
    assert changed.value_diff == {"recovery_grace_seconds": {"before": 60, "after": 30}}
    signed_in(root).post(reverse("admin:auth_group_add"), {"name": "auditors"})
    assert AuditRecord.objects.get(action="group.create").parameters["name"] == "auditors"


def test_the_liveness_url_field_is_labelled_as_it_is_written(admin: User) -> None:
    orders = make_app(name="orders")
    page = signed_in(admin).get(reverse("admin:stepchange_application_change", args=[orders.pk]))
    assert b"Liveness URL template" in page.content
    assert b"Liveness url template" not in page.content
