"""Stories about the audit log: append-only at every layer, readable only by admins."""

import pytest
from django.contrib.auth.models import User
from django.db import DatabaseError, connection, transaction
from django.urls import reverse

from stepchange.audit import audit_record
from stepchange.models import AUDIT_IMMUTABLE, AuditImmutableError, AuditRecord
from tests.conftest import AUDIT_MIGRATION, make_app, signed_in


def test_a_record_cannot_be_changed_or_deleted_through_the_orm(operator: User) -> None:
    record = audit_record(action="workflow.cancel", actor=operator, target="wf-1")
    record.target = "wf-2"
    with pytest.raises(AuditImmutableError, match=AUDIT_IMMUTABLE):
        record.save()
    with pytest.raises(AuditImmutableError):
        record.delete()
    with pytest.raises(AuditImmutableError):
        AuditRecord.objects.filter(pk=record.pk).update(target="wf-3")
    with pytest.raises(AuditImmutableError):
        AuditRecord.objects.all().delete()
    assert AuditRecord.objects.get(pk=record.pk).target == "wf-1"


def test_the_database_itself_refuses_changes_to_audit_records(db: None) -> None:
    record = audit_record(action="workflow.cancel", target="wf-1")
    table = AuditRecord._meta.db_table
    guards = AUDIT_MIGRATION.SQLITE if connection.vendor == "sqlite" else AUDIT_MIGRATION.POSTGRES
    with connection.cursor() as cursor:
        # Restore the delete guard the suite drops (see conftest); the test transaction undoes it.
        cursor.execute(next(sql for sql in guards if "_no_delete" in sql))
    for statement in [f"UPDATE {table} SET target = 'x'", f"DELETE FROM {table}"]:
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(statement)
    assert AuditRecord.objects.get(pk=record.pk).target == "wf-1"


def test_deleting_a_user_or_an_application_keeps_their_history(operator: User) -> None:
    orders = make_app(name="orders")
    audit_record(action="workflow.cancel", actor=operator, application=orders)
    operator.delete()
    orders.delete()
    record = AuditRecord.objects.get(action="workflow.cancel")
    assert (record.actor_name, record.application_name) == ("otto", "orders")


def test_the_admin_site_offers_no_way_to_change_a_record(admin: User) -> None:
    record = audit_record(action="workflow.cancel", target="wf-1")
    client = signed_in(admin)
    assert client.get(reverse("admin:stepchange_auditrecord_changelist")).status_code == 200
    change_url = reverse("admin:stepchange_auditrecord_change", args=[record.pk])
    page = client.get(change_url)
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    assert client.post(change_url, {"target": "x"}).status_code == 403
    delete_url = reverse("admin:stepchange_auditrecord_delete", args=[record.pk])
    assert client.post(delete_url, {"post": "yes"}).status_code == 403
    assert AuditRecord.objects.get(pk=record.pk).target == "wf-1"


def test_an_admin_filters_the_audit_log_on_the_console(admin: User, operator: User) -> None:
    audit_record(action="workflow.cancel", actor=operator, target="wf-cancelled")
    audit_record(action="workflow.fork", actor=admin, target="wf-forked")
    client = signed_in(admin)
    page = client.get(reverse("audit"), {"actor": "otto"})
    assert page.status_code == 200
    assert b"wf-cancelled" in page.content
    assert b"wf-forked" not in page.content
    partial = client.get(reverse("audit"), {"action": "workflow.fork"}, HTTP_HX_REQUEST="true")
    assert b"wf-forked" in partial.content
    assert b"<html" not in partial.content


def test_the_audit_log_pages_by_keyset(admin: User) -> None:
    for number in range(60):
        audit_record(action="workflow.cancel", target=f"wf-{number:03}")
    client = signed_in(admin)
    first = client.get(reverse("audit"), {"action": "workflow."})
    assert b"wf-059" in first.content
    assert b"wf-009" not in first.content
    older = client.get(
        reverse("audit"), {"action": "workflow.", "before": first.context["next_before"]}
    )
    assert b"wf-009" in older.content
    assert b"wf-059" not in older.content


def test_an_operator_is_refused_the_audit_log_and_the_attempt_is_audited(operator: User) -> None:
    response = signed_in(operator).get(reverse("audit"))
    assert response.status_code == 403
    denied = AuditRecord.objects.get(action="access.denied")
    assert denied.actor_name == "otto"
    assert denied.result == "denied"
    assert denied.target == "GET /audit/"


def test_an_invalid_filter_is_reported_not_ignored(admin: User) -> None:
    response = signed_in(admin).get(reverse("audit"), {"since": "not a date"})
    assert response.status_code == 200
    assert b"Enter a valid date" in response.content


@pytest.mark.parametrize(
    ("remote", "kept"),
    [("203.0.113.9", "203.0.113.9"), ("2001:db8::1", "2001:db8::1"), ("testclient", None)],
)
def test_a_client_address_that_is_not_an_address_is_left_out_not_fatal(
    operator: User, remote: str, kept: str | None
) -> None:
    # Postgres's inet column refuses anything else; the record must still be written.
    response = signed_in(operator).get(reverse("audit"), REMOTE_ADDR=remote)
    assert response.status_code == 403
    assert AuditRecord.objects.get(action="access.denied").source_address == kept
