"""Prepared queries: the ORM's SQL compiled once, run with new values, giving what the
queryset itself gives."""

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from stepchange import prepared as prepared_module
from stepchange.models import ApiToken, Application
from stepchange.prepared import PrepareError, compile_queryset, prepared
from tests.conftest import make_app, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_cache() -> Any:
    prepared_module.clear()
    yield
    prepared_module.clear()


def by_name(name: str) -> Any:
    return Application.objects.filter(name=name)[:1]


def test_model_rows_match_the_querysets_and_each_run_takes_new_values() -> None:
    orders, billing = make_app(name="orders"), make_app(name="billing")
    query = prepared(("test app",), by_name, str)
    for app in (orders, billing):
        found = query.first(app.name)
        assert isinstance(found, Application)
        assert (found.pk, found.name) == (app.pk, app.name)
        assert found._state.db == "default"
        assert not found._state.adding
    assert query.first("no-such-app") is None
    # Compiled once: the second call with the key is the same object.
    assert prepared(("test app",), by_name, str) is query


def test_the_sql_is_compiled_once_and_sent_as_is() -> None:
    make_app(name="orders")
    calls: list[str] = []

    def counting(name: str) -> Any:
        calls.append(name)
        return by_name(name)

    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            assert prepared(("counted",), counting, str).first("orders") is not None
    assert len(calls) == 1
    assert len(queries) == 3
    assert all("orders" in q["sql"] or "%s" not in q["sql"] for q in queries)


def test_values_list_rows_keep_their_converters() -> None:
    user = make_user(username="tok")
    used = timezone.now() - timedelta(hours=1)
    token = ApiToken.objects.create(user=user, name="t", token_hash="h" * 64, last_used_at=used)

    def shape(token_hash: str) -> Any:
        return ApiToken.objects.filter(token_hash=token_hash).values_list("pk", "last_used_at")

    rows = prepared(("tokens",), shape, str).fetch("h" * 64)
    assert rows == [(token.pk, used)]
    # A datetime, as the ORM gives it, on SQLite (text) and on Postgres alike.
    assert rows[0][1].tzinfo is not None


def test_a_marker_used_twice_and_numbers_with_text() -> None:
    user = make_user(username="perm-holder")
    perm = Permission.objects.get(codename="inspect_workflows")
    user.user_permissions.add(perm)

    def held(user_pk: int, codename: str) -> Any:
        rows = Permission.objects.filter(codename=codename)
        return rows.filter(user=user_pk) | rows.filter(group__user=user_pk)

    def codenames(pk: int, codename: str) -> Any:
        return held(pk, codename).values_list("codename").distinct()

    query = prepared(("held",), codenames, int, str)
    assert query.fetch(user.pk, "inspect_workflows") == [("inspect_workflows",)]
    assert query.fetch(user.pk, "administer") == []
    other = User.objects.create(username="other")
    assert query.fetch(other.pk, "inspect_workflows") == []
    # The user's pk fills both places it stands in.
    expected = list(codenames(user.pk, "inspect_workflows"))
    assert query.fetch(user.pk, "inspect_workflows") == expected


def test_empty_querysets_fetch_nothing() -> None:
    make_app(name="orders")
    query = prepared(("none",), lambda name: Application.objects.none().filter(name=name), str)
    assert query.fetch("orders") == []


def test_a_value_the_sql_never_carries_is_refused() -> None:
    # A lookup that rewrites its value (icontains wraps it in %...%) cannot be prepared.
    with pytest.raises(PrepareError):
        prepared(("bad",), lambda name: Application.objects.filter(name__icontains=name), str)


def test_annotations_come_back_as_attributes() -> None:
    from django.db.models import Value
    from django.db.models.functions import Concat

    make_app(name="orders")
    shape = Application.objects.annotate(label=Concat("name", Value("!")))
    query = compile_queryset(shape.filter(name="orders"))
    assert [app.label for app in query.fetch()] == ["orders!"]


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prepared_module, "CACHE_SIZE", 3)
    for i in range(5):
        prepared(("bounded", i), by_name, str)
    assert len(prepared_module._cache) == 3
    assert ("bounded", 0) not in prepared_module._cache
