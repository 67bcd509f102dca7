"""Shared fixtures: the personas every story is told about, and service checks.

An admin, an operator, a viewer and a stranger (signed in, but with no role). `make_user`
and `make_app` are plain keyword-only factories.
"""

import importlib
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import pytest
from django.contrib.auth.models import Group, User
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test import Client

from stepchange.background import background_start, background_stop
from stepchange.models import Application, ApplicationAccess

AUDIT_MIGRATION = importlib.import_module("stepchange.migrations.0003_audit_append_only")

PASSWORD = "correct horse battery staple"

# Fake executors and a registered application; real servers and executors for end-to-end.
pytest_plugins = [
    "tests.fake_executor",
    "tests.e2e.fixtures",
    "tests.sdk_fixtures",
    "tests.sso.fixtures",
]


def pytest_configure(config: pytest.Config) -> None:
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"]
    if engine == "django.db.backends.postgresql":
        _require_postgres(settings.DATABASES["default"])
        # The test database is this run's own: another run on the same server keeps its.
        default = settings.DATABASES["default"]
        run = os.environ["STEPCHANGE_TEST_RUN"]
        test = cast("dict[str, Any]", default.setdefault("TEST", {}))
        test["NAME"] = f"test_{default['NAME']}_{run}"


def _require_postgres(database: dict[str, Any]) -> None:
    import psycopg

    try:
        psycopg.connect(
            host=database["HOST"],
            port=database["PORT"] or 5432,
            user=database["USER"],
            password=database["PASSWORD"] or None,
            dbname="postgres",
            connect_timeout=5,
        ).close()
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.exit(f"Postgres is unreachable and CI=true: {exc}", returncode=1)
        pytest.exit(f"Postgres is unreachable, skipping the Postgres run: {exc}", returncode=0)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Drop the audit table's delete guards in the test database only: Django empties every
    table between transactional tests. test_audit.py puts them back to test them."""
    from django.db import connection, connections

    with django_db_blocker.unblock(), connection.cursor() as cursor:
        for statement in AUDIT_MIGRATION.DELETE_GUARDS[connection.vendor]:
            cursor.execute(statement)
    yield
    if connection.vendor == "postgresql":
        # Connections that worker threads left in the pool would keep the test database busy
        # and stop Django from dropping it.
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        connections.close_all()


# Django's test case lets a test touch only the databases it declares; an application's
# system database is an alias registered at run time, so the stories that read one lift
# that guard for the alias (and the alias is dropped after the test).
@pytest.fixture
def system_databases(
    db: None, django_db_blocker: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    guarded = BaseDatabaseWrapper.ensure_connection
    real = django_db_blocker._real_ensure_connection

    def ensure_connection(self: BaseDatabaseWrapper, *args: Any, **kwargs: Any) -> None:
        if self.alias.startswith("dbos_"):
            return real(self, *args, **kwargs)
        return guarded(self, *args, **kwargs)

    monkeypatch.setattr(BaseDatabaseWrapper, "ensure_connection", ensure_connection)
    yield
    from django.db import connections

    from workflows.systemdb import drop_alias

    for alias in [alias for alias in connections.settings if alias.startswith("dbos_")]:
        drop_alias(alias)


@pytest.fixture
async def background() -> AsyncIterator[None]:
    """The process's background work, running as under the server, on the test's loop."""
    background_start()
    try:
        yield
    finally:
        await background_stop()


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _no_lockouts_carried_over() -> None:
    # The throttle's counters live in the process's cache; django-axes's in the database,
    # which each test starts afresh.
    from django.core.cache import cache

    cache.clear()


def make_user(
    *, username: str, role: str | None = None, apps: list[Application] | None = None
) -> User:
    user = User.objects.create_user(username=username, password=PASSWORD)
    if role is not None:
        user.groups.add(Group.objects.get(name=role))
    if apps is not None:
        access = ApplicationAccess.objects.create(user=user, limited=True)
        access.applications.set(apps)
    return user


def make_app(*, name: str = "orders", **fields: Any) -> Application:
    return Application.objects.create(name=name, **fields)


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin(db: None) -> User:
    return make_user(username="ada", role="admin")


@pytest.fixture
def operator(db: None) -> User:
    return make_user(username="otto", role="operator")


@pytest.fixture
def viewer(db: None) -> User:
    return make_user(username="vera", role="viewer")


@pytest.fixture
def stranger(db: None) -> User:
    return make_user(username="sam")
