"""Stories about custom roles: an admin defines a named set of permissions, gives it to
users beside viewer, operator and admin, changes or deletes it; the built-in roles stay
exactly as roles.py says."""

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from conductor.models import Executor
from stepchange.models import Application, AuditRecord
from stepchange.roles import (
    PERM_ADMINISTER,
    PERM_INSPECT,
    PERM_OPERATE,
    ROLE_PERMISSIONS,
    Role,
    role_label,
    role_of,
    roles_sync,
)
from stepchange.services import ROLE_ADMIN_NEEDS_SUPERUSER, ROLE_BUILT_IN, ROLE_NAME_TAKEN
from tests.conftest import make_app, make_user, signed_in


@pytest.fixture
def orders(db: None) -> Application:
    orders = make_app(name="orders")
    Executor.objects.create(
        application=orders,
        executor_id="exec-gone",
        state=Executor.State.DISCONNECTED,
        application_version="v1",
        disconnected_at=timezone.now(),
    )
    return orders


def held(role: Group) -> set[str]:
    return {f"{p.content_type.app_label}.{p.codename}" for p in role.permissions.all()}


def recover(client: Client) -> int:
    body = {"executor_ids": ["exec-gone"]}
    status: int = client.post("/api/v1/apps/orders/recovery", body, "application/json").status_code
    return status


def retention(client: Client) -> int:
    status: int = client.post(
        reverse("retention", args=["orders"]), {"retention_days": "30"}
    ).status_code
    return status


def test_a_custom_role_lets_its_holder_do_what_it_carries_and_nothing_more(
    admin: User, orders: Application
) -> None:
    response = signed_in(admin).post(
        reverse("roles"), {"name": "releaser", "permissions": [PERM_OPERATE]}
    )
    assert response.status_code == 302
    releaser = Group.objects.get(name="releaser")
    assert held(releaser) == {PERM_INSPECT, PERM_OPERATE}
    record = AuditRecord.objects.get(action="role.create")
    assert (record.actor_name, record.parameters["permissions"]) == (
        "ada",
        [PERM_INSPECT, PERM_OPERATE],
    )
    rita = make_user(username="rita")
    rita.groups.add(releaser)
    client = signed_in(rita)
    assert recover(client) == 200
    assert retention(client) == 403
    assert client.get(reverse("audit")).status_code == 403
    assert role_of(rita) is Role.OPERATOR
    assert role_label(rita) == "releaser"
    page = client.get(reverse("home")).content.decode()
    assert '<span class="role role-operator">releaser</span>' in page


def test_changing_a_role_changes_what_its_holders_may_do_at_once(
    admin: User, orders: Application
) -> None:
    releaser = Group.objects.create(name="releaser")
    releaser.permissions.set(Permission.objects.filter(codename__in=["inspect_workflows"]))
    rita = make_user(username="rita")
    rita.groups.add(releaser)
    assert recover(signed_in(rita)) == 403
    response = signed_in(admin).post(
        reverse("role", args=[releaser.pk]), {"name": "shipper", "permissions": [PERM_OPERATE]}
    )
    assert response.status_code == 302
    assert recover(signed_in(rita)) == 200
    record = AuditRecord.objects.get(action="role.update")
    assert record.value_diff == {
        "name": {"before": "releaser", "after": "shipper"},
        "permissions": {"before": [PERM_INSPECT], "after": [PERM_INSPECT, PERM_OPERATE]},
    }
    signed_in(admin).post(reverse("role-delete", args=[releaser.pk]))
    assert not Group.objects.filter(name="shipper").exists()
    assert AuditRecord.objects.get(action="role.delete").parameters["members"] == ["rita"]
    rita = User.objects.get(pk=rita.pk)
    assert role_of(rita) is Role.NONE
    assert recover(signed_in(rita)) == 404


def test_only_a_superuser_makes_or_changes_a_role_that_holds_admin(
    admin: User, orders: Application
) -> None:
    response = signed_in(admin).post(
        reverse("roles"), {"name": "auditor", "permissions": [PERM_ADMINISTER]}
    )
    assert response.status_code == 403
    assert not Group.objects.filter(name="auditor").exists()
    refused = AuditRecord.objects.get(action="access.denied")
    assert refused.detail == ROLE_ADMIN_NEEDS_SUPERUSER
    root = User.objects.create_superuser("root", password="x" * 20)
    response = signed_in(root).post(
        reverse("roles"), {"name": "auditor", "permissions": [PERM_ADMINISTER]}
    )
    assert response.status_code == 302
    auditor = Group.objects.get(name="auditor")
    assert held(auditor) == {PERM_INSPECT, PERM_ADMINISTER}
    # An admin may not take admin away from it either, nor delete it.
    edit = reverse("role", args=[auditor.pk])
    assert signed_in(admin).post(edit, {"name": "auditor"}).status_code == 403
    assert signed_in(admin).post(reverse("role-delete", args=[auditor.pk])).status_code == 403
    assert held(Group.objects.get(name="auditor")) == {PERM_INSPECT, PERM_ADMINISTER}


@pytest.mark.parametrize(
    ("name", "message"),
    [("operator", ROLE_BUILT_IN), ("releaser", ROLE_NAME_TAKEN.format(name="releaser"))],
)
def test_a_role_cannot_take_a_built_in_or_taken_name(admin: User, name: str, message: str) -> None:
    Group.objects.create(name="releaser")
    before = held(Group.objects.get(name="operator"))
    response = signed_in(admin).post(reverse("roles"), {"name": name, "permissions": []})
    assert response.status_code == 400
    assert escape(message) in response.content.decode()
    assert Group.objects.count() == 4
    assert held(Group.objects.get(name="operator")) == before


def test_the_built_in_roles_are_not_editable_here(admin: User) -> None:
    operator = Group.objects.get(name="operator")
    assert signed_in(admin).get(reverse("role", args=[operator.pk])).status_code == 404
    response = signed_in(admin).post(reverse("role-delete", args=[operator.pk]))
    assert response.status_code == 404
    assert Group.objects.filter(name="operator").exists()


def test_roles_sync_keeps_the_built_in_roles_exact_and_leaves_custom_ones_alone(
    db: None,
) -> None:
    operate = Permission.objects.get(codename="operate_workflows")
    viewer = Group.objects.get(name="viewer")
    viewer.permissions.add(operate)
    releaser = Group.objects.create(name="releaser")
    releaser.permissions.add(operate)
    roles_sync()
    assert held(viewer) == {PERM_INSPECT}
    assert held(Group.objects.get(name="releaser")) == {PERM_OPERATE}
    assert {g.name for g in Group.objects.all()} == {*ROLE_PERMISSIONS, "releaser"}


def test_the_roles_page_lists_built_in_and_custom_roles_for_admins_only(
    admin: User, viewer: User
) -> None:
    Group.objects.create(name="releaser")
    page = signed_in(admin).get(reverse("roles")).content.decode()
    assert "built in" in page
    assert "releaser" in page
    assert signed_in(viewer).get(reverse("roles")).status_code == 403
