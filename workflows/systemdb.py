"""Each application's DBOS system database as a Django connection alias, what schema
version it is on, and the router that keeps these tables out of everything else.

An alias is registered the first time it is needed and again when its application is
saved (a changed URL or schema takes effect at once). Postgres aliases are pooled and
read the application's schema through `search_path`; SQLite ones wait on DBOS's locks as
DBOS itself does (30 s). What a database has is introspected once per alias and cached:
the migration version, the tables and their columns. Reads defer the columns a database
lacks, so one set of models serves every supported schema version.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, cast

import dj_database_url
from django.conf import settings
from django.db import DatabaseError, connections
from django.db.models import Model, QuerySet

from stepchange.models import Application
from workflows.models import (
    SYSTEM_MODELS,
    OperationOutput,
    StepQuerySet,
    SystemModel,
    WorkflowQuerySet,
    WorkflowStatus,
    forget_columns,
    record_columns,
)

# Readers ask this module what a database lacks; the models keep the answer (see there).
from workflows.models import missing_fields as missing_fields

logger = logging.getLogger(__name__)

ALIAS_PREFIX = "dbos_"
# The newest migration the supported SDKs write: Python dbos 3.4.0's 125 (its 124 and 125
# only index application_versions by version_timestamp; dbos 3.3 added nothing beyond 3.2's
# 123), and TypeScript @dbos-inc/dbos-sdk 5.3.0 stops at 123. Raised only as far as read.
KNOWN_VERSION = 125
# The first migration with the workflow_input / workflow_output payload tables.
PAYLOAD_TABLES_VERSION = 109
SCHEMA_CACHE_SECONDS = 60
BYTEWISE_COLLATIONS = {"C", "POSIX", "C.UTF-8", "C.UTF8"}
FAILURE_CACHE_SECONDS = 5

NOT_CONFIGURED = (
    "{app} has no system database configured; its workflows are read through executors."
)
UNREACHABLE = "The system database of {app} cannot be reached: {error}"
NOT_DBOS = (
    "The system database of {app} has no DBOS tables ({missing}); is the URL or schema right?"
)
SCHEMA_TOO_NEW = (
    "The system database of {app} is on DBOS migration {version}, newer than StepChange knows "
    "({known}): nothing is written to it, since its layout has not been read from the SDK."
)
UNSUPPORTED_URL = "The system database URL of {app} is not postgresql:// or sqlite:///."
USE_AN_ALIAS = (
    "DBOS system tables live in each application's system database: query them with "
    ".using(systemdb.alias_for(application)), never on the default database."
)


class SystemDatabaseError(Exception):
    """The system database cannot be used; the message says why, for operators."""


class SchemaTooNewError(SystemDatabaseError):
    """The system database is on a migration newer than StepChange knows: reads go on,
    writes are refused."""


# The leading columns of DBOS's index of in-flight workflows (idx_workflow_status_in_flight).
QUEUE_INDEX = ("queue_name", "status", "priority", "created_at")


@dataclass(frozen=True)
class Schema:
    """What one system database has."""

    version: int | None
    columns: dict[str, frozenset[str]] = field(default_factory=dict)
    # Text compares byte by byte (C/POSIX collation, and SQLite): a prefix is then a range
    # of the primary key, which an index can serve where LIKE cannot.
    bytewise_text: bool = False
    # workflow_status has DBOS's index of queued workflows by queue, status, priority and
    # age (on Postgres; every SDK schema the tests build has it): the newest ENQUEUED
    # workflows are found through it.
    queue_index: bool = False

    @property
    def known(self) -> bool:
        return self.version is not None and self.version <= KNOWN_VERSION

    @property
    def writable(self) -> bool:
        # Older layouts are all known; a newer one may have moved what a writer writes.
        return self.version is None or self.version <= KNOWN_VERSION

    @property
    def has_payload_tables(self) -> bool:
        return "workflow_input" in self.columns and "workflow_output" in self.columns

    def has(self, table: str) -> bool:
        return table in self.columns


_lock = threading.Lock()
_schemas: dict[str, tuple[float, Schema]] = {}
_failures: dict[str, tuple[float, str]] = {}


_aliases: dict[tuple[int, str, str, int], str] = {}


def alias_for(application: Application) -> str:
    """The connection alias of `application`'s system database, registered if needed."""
    if not application.system_database_url:
        raise SystemDatabaseError(NOT_CONFIGURED.format(app=application.name))
    # Every read asks, several times per page: the settings are parsed once per URL.
    key = (
        application.pk,
        application.system_database_url,
        application.system_database_schema,
        settings.SYSTEM_DB_STATEMENT_TIMEOUT_MS,
    )
    known = _aliases.get(key)
    if known is not None and known in connections.settings:
        return known
    wanted = _settings_for(application)
    # The alias names the URL and schema too: every thread keeps its own connection object
    # per alias, and a changed database must never be reached through a stale one.
    digest = hashlib.sha256(wanted["_SOURCE"].encode()).hexdigest()[:10]
    alias = f"{ALIAS_PREFIX}{application.pk}_{digest}"
    if alias not in connections.settings:
        with _lock:
            forget(application)
            _register(alias, wanted)
    _aliases[key] = alias
    return alias


def forget(application: Application) -> None:
    """Drop an application's aliases (its URL or schema changed, or it is gone)."""
    stale = [a for a in connections.settings if a.startswith(f"{ALIAS_PREFIX}{application.pk}_")]
    for key in [k for k in _aliases if k[0] == application.pk]:
        _aliases.pop(key, None)
    for alias in stale:
        drop_alias(alias)
        _uncache(alias)


def drop_alias(alias: str) -> None:
    """Close an alias's connection and, on Postgres, its pool (whose idle connections stay
    open otherwise, each holding a server slot until the process ends), then forget it."""
    connection = connections[alias]
    connection.close()
    if alias in getattr(type(connection), "_connection_pools", {}):
        connection.close_pool()  # type: ignore[attr-defined]
    del connections.settings[alias]


def _settings_for(application: Application) -> dict[str, Any]:
    url = application.system_database_url
    if not url.startswith(("postgres://", "postgresql://", "sqlite:")):
        raise SystemDatabaseError(UNSUPPORTED_URL.format(app=application.name))
    config: dict[str, Any] = dict(dj_database_url.parse(url))
    schema = application.system_database_schema or "dbos"
    if config["ENGINE"] == "django.db.backends.postgresql":
        timeout = settings.SYSTEM_DB_STATEMENT_TIMEOUT_MS
        config["OPTIONS"] = {
            # Unqualified table names resolve to the application's DBOS schema; no query of
            # ours may load DBOS's database for long (a filter DBOS has no index for).
            "options": f"-c search_path={schema} -c statement_timeout={timeout}",
            "pool": {"min_size": 0, "max_size": 10, "timeout": 3},
            "connect_timeout": 3,
        }
        config["CONN_MAX_AGE"] = 0
    else:
        # A writer reads a row's status and then changes it in one transaction: taking the
        # write lock at BEGIN waits on an executor's lock, where upgrading later would fail.
        config["OPTIONS"] = {"timeout": 30, "transaction_mode": "IMMEDIATE"}
    # Used to notice a changed URL or schema; never shown.
    config["_SOURCE"] = f"{url}#{schema}#{settings.SYSTEM_DB_STATEMENT_TIMEOUT_MS}"
    return config


def _register(alias: str, config: dict[str, Any]) -> None:
    # Django fills in the defaults of a whole DATABASES dict, which must have "default".
    defaults = connections.configure_settings({"default": {}, alias: config})
    connections.settings[alias] = defaults[alias]
    _uncache(alias)


def schema_of(application: Application, *, fresh: bool = False) -> Schema:
    """The schema of `application`'s system database, introspected at most once a minute."""
    alias = alias_for(application)
    cached = _schemas.get(alias)
    if cached and not fresh and time.monotonic() - cached[0] < SCHEMA_CACHE_SECONDS:
        return cached[1]
    failed = _failures.get(alias)
    if failed and not fresh and time.monotonic() - failed[0] < FAILURE_CACHE_SECONDS:
        # A database that is down fails every page at once, not after a timeout each.
        raise SystemDatabaseError(failed[1])
    try:
        schema = _introspect(alias)
    except DatabaseError as exc:
        connections[alias].close()
        message = UNREACHABLE.format(app=application.name, error=str(exc).strip())
        _failures[alias] = (time.monotonic(), message)
        raise SystemDatabaseError(message) from None
    _failures.pop(alias, None)
    if not schema.has(WorkflowStatus._meta.db_table):
        raise SystemDatabaseError(NOT_DBOS.format(app=application.name, missing="workflow_status"))
    if not schema.known:
        logger.warning(
            "The system database of %s is on DBOS migration %s, newer than %s: reading what "
            "StepChange knows of it",
            application.name,
            schema.version,
            KNOWN_VERSION,
        )
    _cache(alias, schema)
    return schema


def writable_schema(application: Application) -> Schema:
    """The schema of `application`'s system database, read afresh, for a writer; raises
    SchemaTooNewError when it is newer than StepChange knows."""
    schema = schema_of(application, fresh=True)
    refuse_newer(application, schema)
    return schema


def refuse_newer(application: Application, schema: Schema) -> None:
    """Raise SchemaTooNewError when `schema` is newer than StepChange knows."""
    if not schema.writable:
        raise SchemaTooNewError(
            SCHEMA_TOO_NEW.format(app=application.name, version=schema.version, known=KNOWN_VERSION)
        )


def _cache(alias: str, schema: Schema) -> None:
    _schemas[alias] = (time.monotonic(), schema)
    # The models read these to tell a column this database lacks from a deferred one.
    record_columns(alias, schema.columns)


def _uncache(alias: str) -> None:
    _schemas.pop(alias, None)
    forget_columns(alias)


def cached_schema(application: Application) -> Schema | None:
    """The schema `schema_of` would return from its cache, without touching a database
    (so async code needs no trip to the database thread for it); None when not cached."""
    if not application.system_database_url:
        return None
    cached = _schemas.get(alias_for(application))
    if cached and time.monotonic() - cached[0] < SCHEMA_CACHE_SECONDS:
        return cached[1]
    return None


def _introspect(alias: str) -> Schema:
    connection = connections[alias]
    with connection.cursor() as cursor:
        present = set(connection.introspection.table_names(cursor))
        columns = {
            model._meta.db_table: frozenset(
                column.name
                for column in connection.introspection.get_table_description(
                    cursor, model._meta.db_table
                )
            )
            for model in SYSTEM_MODELS
            if model._meta.db_table in present
        }
        version = None
        if "dbos_migrations" in present:
            cursor.execute("SELECT max(version) FROM dbos_migrations")
            row = cursor.fetchone()
            version = int(row[0]) if row and row[0] is not None else None
        bytewise = connection.vendor == "sqlite"
        queue_index = False
        if connection.vendor == "postgresql":
            cursor.execute("SELECT datcollate FROM pg_database WHERE datname = current_database()")
            row = cursor.fetchone()
            bytewise = bool(row) and str(row[0]).upper() in BYTEWISE_COLLATIONS
            if WorkflowStatus._meta.db_table in present:
                indexes = connection.introspection.get_constraints(
                    cursor, WorkflowStatus._meta.db_table
                )
                queue_index = any(
                    index["columns"][: len(QUEUE_INDEX)] == list(QUEUE_INDEX)
                    for index in indexes.values()
                    if index["index"]
                )
    return Schema(version=version, columns=columns, bytewise_text=bytewise, queue_index=queue_index)


def rows(application: Application, model: type[SystemModel]) -> QuerySet[Any]:
    """A queryset of `model` on `application`'s system database, with absent columns deferred."""
    schema = schema_of(application)
    alias = alias_for(application)
    if not schema.has(model._meta.db_table):
        return model._default_manager.using(alias).none()
    queryset: QuerySet[Any] = model._default_manager.using(alias).all()
    missing = missing_fields(alias, model)
    return queryset.defer(*missing) if missing else queryset


@dataclass(frozen=True)
class Status:
    """What operators are told about an application's system database."""

    configured: bool
    reachable: bool
    migration_version: int | None = None
    known_version: bool = True
    payload_tables: bool = False
    tables: tuple[str, ...] = ()
    detail: str = ""


UNKNOWN_VERSION = (
    "DBOS migration {version} is newer than StepChange knows ({known}): what it knows is "
    "read, newer columns are not shown, and nothing is written to it."
)


def status_of(application: Application) -> Status:
    """The state of `application`'s system database, never raising."""
    if not application.system_database_url:
        return Status(False, False, detail=NOT_CONFIGURED.format(app=application.name))
    try:
        schema = schema_of(application)
    except SystemDatabaseError as exc:
        return Status(True, False, detail=str(exc))
    return Status(
        configured=True,
        reachable=True,
        migration_version=schema.version,
        known_version=schema.known,
        payload_tables=schema.has_payload_tables,
        tables=tuple(sorted(schema.columns)),
        detail=""
        if schema.known
        else UNKNOWN_VERSION.format(version=schema.version, known=KNOWN_VERSION),
    )


def workflows(application: Application) -> WorkflowQuerySet:
    """`application`'s workflow_status rows, with the list vocabulary of WorkflowQuerySet."""
    return cast(WorkflowQuerySet, rows(application, WorkflowStatus))


def steps(application: Application) -> StepQuerySet:
    """`application`'s step checkpoints, with the vocabulary of StepQuerySet."""
    return cast(StepQuerySet, rows(application, OperationOutput))


SYSTEM_MODEL_NAMES = frozenset(model._meta.model_name for model in SYSTEM_MODELS)


class SystemDatabaseRouter:
    """System models go only to system aliases, chosen explicitly; nothing migrates there."""

    def _is_system(self, model: type[Model]) -> bool:
        return issubclass(model, SystemModel)

    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        if self._is_system(model):
            raise SystemDatabaseError(USE_AN_ALIAS)
        return None

    db_for_write = db_for_read

    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: Any
    ) -> bool | None:
        if db.startswith(ALIAS_PREFIX):
            return False
        # The mirrors of DBOS's tables are never created; StepChange's own models are.
        if app_label == "workflows" and model_name in SYSTEM_MODEL_NAMES:
            return False
        return None
