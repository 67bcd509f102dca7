"""Stories about `register_app`, the command that puts a DBOS application on the map."""

import pytest
from django.core.management import CommandError, call_command

from stepchange.models import Application, AuditRecord, ExecutorKey
from stepchange.services import executor_key_check


def run(*args: str, capsys: pytest.CaptureFixture[str]) -> str:
    call_command("register_app", *args)
    return capsys.readouterr().out


def test_it_creates_an_application_and_prints_a_generated_key_once(
    db: None, capsys: pytest.CaptureFixture[str]
) -> None:
    out = run("orders", "--recovery-grace-seconds", "15", capsys=capsys)
    key = out.split("Executor key (shown once): ")[1].strip()
    assert executor_key_check(app_name="orders", key=key) is not None
    assert Application.objects.get(name="orders").recovery_grace_seconds == 15
    assert AuditRecord.objects.filter(action="application.create", target="orders").exists()
    # Running it again updates, and makes no new key unless asked.
    again = run("orders", "--schema", "dbos_orders", capsys=capsys)
    assert "Updated application orders" in again
    assert "Executor key" not in again
    assert Application.objects.get(name="orders").system_database_schema == "dbos_orders"
    assert ExecutorKey.objects.count() == 1


def test_a_given_key_is_registered_once_and_not_printed(
    db: None, capsys: pytest.CaptureFixture[str]
) -> None:
    out = run("orders", "--key", "orders-dev-key-0123456789", capsys=capsys)
    assert "orders-dev-key-0123456789" not in out
    run("orders", "--key", "orders-dev-key-0123456789", capsys=capsys)
    assert ExecutorKey.objects.count() == 1
    assert executor_key_check(app_name="orders", key="orders-dev-key-0123456789") is not None


def test_it_rejects_names_and_keys_that_cannot_travel_in_a_url(db: None) -> None:
    with pytest.raises(CommandError, match="letters, digits"):
        call_command("register_app", "my app")
    with pytest.raises(CommandError, match="at least 16"):
        call_command("register_app", "orders", "--key", "short")


def test_the_audit_record_never_holds_the_database_password(
    db: None, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgresql://dbos:s3cret@db.internal:5432/orders_sys"
    run("orders", "--system-database-url", url, capsys=capsys)
    assert Application.objects.get(name="orders").system_database_url == url
    record = AuditRecord.objects.get(action="application.create")
    assert "s3cret" not in str(record.parameters)
    assert "db.internal" in str(record.parameters)


def test_it_sets_whether_edited_forks_need_a_second_operator(
    db: None, capsys: pytest.CaptureFixture[str]
) -> None:
    run("orders", "--fork-approval", "required", capsys=capsys)
    assert Application.objects.get(name="orders").fork_approval_required is True
    run("orders", capsys=capsys)
    assert Application.objects.get(name="orders").fork_approval_required is True
    run("orders", "--fork-approval", "optional", capsys=capsys)
    assert Application.objects.get(name="orders").fork_approval_required is False


def test_it_sets_and_unsets_the_liveness_url_audited(
    db: None, capsys: pytest.CaptureFixture[str]
) -> None:
    template = "http://{executor_id}:8000/healthz"
    run("shop", "--liveness-url-template", template, capsys=capsys)
    assert Application.objects.get(name="shop").liveness_url_template == template
    changes = AuditRecord.objects.filter(
        action="application.update", target="shop", parameters__has_key="after"
    )
    assert changes.get().parameters["after"] == {"liveness_url_template": template}
    # The same URL again changes nothing and records no change of it.
    run("shop", "--liveness-url-template", template, capsys=capsys)
    assert changes.count() == 1
    run("shop", "--liveness-url-template", "", capsys=capsys)
    assert Application.objects.get(name="shop").liveness_url_template == ""
    assert changes.order_by("-pk")[0].parameters["after"] == {"liveness_url_template": ""}


@pytest.mark.parametrize(
    ("template", "why"),
    [
        ("http://shop:8000/healthz", "{executor_id}"),
        ("ftp://{executor_id}/healthz", "http"),
        ("http://{executor_id}:8000/{host}", "{executor_id}"),
    ],
)
def test_a_bad_liveness_url_is_a_clear_error_and_registers_nothing(
    db: None, template: str, why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(CommandError, match="--liveness-url-template") as raised:
        call_command("register_app", "shop", "--liveness-url-template", template)
    assert why in str(raised.value)
    assert not Application.objects.filter(name="shop").exists()
    assert not ExecutorKey.objects.exists()
    # An application already registered keeps its URL.
    run("shop", "--liveness-url-template", "http://{executor_id}/ok", capsys=capsys)
    with pytest.raises(CommandError):
        call_command("register_app", "shop", "--liveness-url-template", template)
    assert Application.objects.get(name="shop").liveness_url_template == "http://{executor_id}/ok"
