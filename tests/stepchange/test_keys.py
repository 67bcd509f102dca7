"""Stories about executor keys: generated, hashed, checked in constant time, revoked."""

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from stepchange.models import AuditRecord, ExecutorKey
from stepchange.services import (
    KEY_TOO_SHORT,
    executor_key_check,
    executor_key_create,
    executor_key_revoke,
    hash_secret,
)
from tests.conftest import make_app


def test_a_generated_key_is_shown_once_and_stored_only_as_a_hash(admin: User) -> None:
    orders = make_app(name="orders")
    key, secret = executor_key_create(application=orders, actor=admin)
    assert len(secret) >= 40
    stored = ExecutorKey.objects.get(pk=key.pk)
    assert stored.key_hash == hash_secret(secret)
    assert secret not in {stored.key_hash, stored.prefix, stored.name}
    assert stored.prefix == secret[:4]
    record = AuditRecord.objects.get(action="executor_key.create")
    assert record.actor_name == "ada"
    assert secret not in str(record.parameters) + record.target


def test_the_right_key_opens_only_its_own_application(db: None) -> None:
    orders, billing = make_app(name="orders"), make_app(name="billing")
    key, secret = executor_key_create(application=orders)
    checked = executor_key_check(app_name="orders", key=secret)
    assert checked is not None
    assert checked.pk == key.pk
    assert checked.last_used_at is not None
    assert executor_key_check(app_name="billing", key=secret) is None
    assert executor_key_check(app_name="nosuchapp", key=secret) is None
    assert executor_key_check(app_name="orders", key=secret + "x") is None
    assert billing.keys.count() == 0


def test_a_revoked_key_is_refused_while_another_key_still_works(admin: User) -> None:
    orders = make_app(name="orders")
    old, old_secret = executor_key_create(application=orders)
    _, new_secret = executor_key_create(application=orders)
    executor_key_revoke(executor_key=old, actor=admin)
    assert executor_key_check(app_name="orders", key=old_secret) is None
    assert executor_key_check(app_name="orders", key=new_secret) is not None
    assert AuditRecord.objects.filter(action="executor_key.revoke", actor_name="ada").exists()


def test_a_chosen_key_must_be_long_and_url_safe(db: None) -> None:
    orders = make_app(name="orders")
    with pytest.raises(ValidationError, match=KEY_TOO_SHORT):
        executor_key_create(application=orders, key="short")
    with pytest.raises(ValidationError, match="URL"):
        executor_key_create(application=orders, key="has a space in it, sadly")
    _, secret = executor_key_create(application=orders, key="a-chosen-key-0123456789")
    assert secret == "a-chosen-key-0123456789"
    assert executor_key_check(app_name="orders", key=secret) is not None


def test_every_generated_key_passes_its_own_validation(db: None) -> None:
    orders = make_app(name="orders")
    # token_urlsafe output may begin with - or _: a regression once made such keys fail.
    secrets_made = {executor_key_create(application=orders)[1] for _ in range(200)}
    assert any(secret[0] in "-_" for secret in secrets_made)


def test_an_admin_makes_a_key_in_the_admin_and_sees_it_once(admin: object) -> None:
    from django.contrib.messages import get_messages
    from django.urls import reverse

    from tests.conftest import signed_in

    orders = make_app(name="orders")
    client = signed_in(admin)  # type: ignore[arg-type]
    response = client.post(
        reverse("admin:stepchange_executorkey_add"),
        {"application": orders.pk, "name": "deploy"},
        follow=True,
    )
    [message] = [str(m) for m in get_messages(response.wsgi_request) if "The new key for" in str(m)]
    secret = message.split("The new key for orders is ")[1].split(" ")[0]
    assert executor_key_check(app_name="orders", key=secret) is not None
    key = ExecutorKey.objects.get(application=orders)
    assert key.name == "deploy"
    assert (
        secret
        not in client.get(
            reverse("admin:stepchange_executorkey_change", args=[key.pk])
        ).content.decode()
    )
    assert AuditRecord.objects.filter(action="executor_key.create", actor_name="ada").exists()
