"""Stories about signing in and out, and the audit trail they leave."""

from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from stepchange.models import AuditRecord
from tests.conftest import PASSWORD, signed_in


def test_an_operator_signs_in_and_the_login_is_audited(operator: User) -> None:
    client = Client()
    response = client.post(
        reverse("login"), {"username": "otto", "password": PASSWORD}, REMOTE_ADDR="10.1.2.3"
    )
    assert response.status_code == 302
    record = AuditRecord.objects.get(action="auth.login")
    assert record.actor_name == "otto"
    assert record.role == "operator"
    assert record.source_address == "10.1.2.3"


def test_a_wrong_password_gets_401_and_an_audit_record(operator: User) -> None:
    response = Client().post(reverse("login"), {"username": "otto", "password": "nope"})
    assert response.status_code == 401
    assert b"didn&#x27;t match" in response.content or b"didn't match" in response.content
    record = AuditRecord.objects.get(action="auth.login_failed")
    assert record.actor_name == "otto"
    assert record.result == "denied"
    assert "nope" not in str(record.parameters) + record.detail


def test_signing_out_is_audited(viewer: User) -> None:
    client = signed_in(viewer)
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert AuditRecord.objects.filter(action="auth.logout", actor_name="vera").exists()
    assert client.get(reverse("home")).status_code == 302


def test_the_console_sends_anonymous_visitors_to_the_login_page(db: None) -> None:
    response = Client().get(reverse("home"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_a_viewer_changes_their_password(viewer: User) -> None:
    client = signed_in(viewer)
    response = client.post(
        reverse("password_change"),
        {
            "old_password": PASSWORD,
            "new_password1": "a much better passphrase 42",
            "new_password2": "a much better passphrase 42",
        },
    )
    assert response.status_code == 302
    viewer.refresh_from_db()
    assert viewer.check_password("a much better passphrase 42")
    assert AuditRecord.objects.filter(action="auth.password_change", actor_name="vera").exists()


def test_session_cookies_are_http_only_and_same_site(operator: User) -> None:
    response = Client().post(reverse("login"), {"username": "otto", "password": PASSWORD})
    cookie = response.cookies["sessionid"]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"


def test_the_login_page_renders_in_the_console_look(db: None) -> None:
    response = Client().get(reverse("login"))
    assert response.status_code == 200
    assert b"Sign in to StepChange" in response.content
    assert b"console.css" in response.content
