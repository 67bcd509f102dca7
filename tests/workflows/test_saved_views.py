"""Saved views: a viewer keeps views for themself; sharing one with the team takes the
operator role; making, changing, sharing and deleting a view are audited."""

import pytest
from django.contrib.auth.models import User

from stepchange.models import AuditRecord, SavedView
from stepchange.services import SHARING_NEEDS_OPERATOR
from tests.conftest import make_app, signed_in

FAILURES = {"name": "failures", "query": "status=ERROR"}


@pytest.fixture
def orders(db: None) -> str:
    return make_app(name="orders").name


def test_a_viewer_may_not_share_a_view_and_the_refusal_is_audited(
    orders: str, viewer: User
) -> None:
    client = signed_in(viewer)
    response = client.post(f"/apps/{orders}/views/", {**FAILURES, "shared": "on"})
    assert response.status_code == 403
    assert not SavedView.objects.exists()
    refusal = AuditRecord.objects.get(action="access.denied")
    assert (refusal.actor_name, refusal.application_name) == ("vera", orders)
    assert refusal.detail == SHARING_NEEDS_OPERATOR


def test_a_viewer_keeps_a_view_for_themself_audited(orders: str, viewer: User) -> None:
    client = signed_in(viewer)
    assert client.post(f"/apps/{orders}/views/", FAILURES).status_code == 302
    view = SavedView.objects.get()
    assert not view.shared
    record = AuditRecord.objects.get(action="saved_view.create")
    assert (record.actor_name, record.application_name) == ("vera", orders)
    assert record.parameters == {**FAILURES, "shared": False}


def test_sharing_changing_and_deleting_a_view_are_audited(orders: str, operator: User) -> None:
    client = signed_in(operator)
    client.post(f"/apps/{orders}/views/", FAILURES)
    client.post(f"/apps/{orders}/views/", {**FAILURES, "shared": "on"})
    view = SavedView.objects.get()
    assert view.shared
    shared = AuditRecord.objects.get(action="saved_view.update")
    assert shared.value_diff == {"shared": {"before": False, "after": True}}
    assert client.post(f"/apps/{orders}/views/{view.pk}/delete/").status_code == 302
    deleted = AuditRecord.objects.get(action="saved_view.delete")
    assert deleted.target == f"view {view.pk} (failures)"
    assert deleted.parameters["shared"] is True
