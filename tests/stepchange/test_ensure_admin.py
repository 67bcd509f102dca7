"""Stories about `ensure_admin`, which creates the first admin of a fresh installation."""

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def test_a_weak_password_is_refused_and_no_admin_is_created(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STEPCHANGE_ADMIN_PASSWORD", "a")
    with pytest.raises(CommandError) as refused:
        call_command("ensure_admin")
    assert str(refused.value).startswith("STEPCHANGE_ADMIN_PASSWORD is refused")
    assert "too short" in str(refused.value)
    assert not User.objects.exists()


def test_a_password_like_the_username_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPCHANGE_ADMIN_PASSWORD", "ada-admin-1")
    with pytest.raises(CommandError, match="too similar to the username"):
        call_command("ensure_admin", "--username", "ada-admin")
    assert not User.objects.exists()


def test_a_sound_password_makes_the_first_admin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPCHANGE_ADMIN_PASSWORD", PASSWORD)
    call_command("ensure_admin", "--username", "ada")
    ada = User.objects.get()
    assert ada.check_password(PASSWORD)
    assert list(ada.groups.values_list("name", flat=True)) == ["admin"]


def test_without_a_password_one_is_generated_and_it_passes_the_validators(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STEPCHANGE_ADMIN_PASSWORD", raising=False)
    call_command("ensure_admin")
    assert User.objects.get().username == "admin"
