"""An application's versions (PROTOCOL.md §2.2 `list_application_versions`,
`set_latest_application_version`; §3.2 `application_versions`; §3.4 who dequeues what).

A workflow pinned to a version runs only on an executor of that version; one with no
version runs on an executor of the latest. `versions_read` puts side by side the versions
DBOS registered, the connected executors running each, and how many PENDING and ENQUEUED
workflows wait on each, so a version no executor runs any more, with work still pinned
to it ("stranded"), shows at once. `version_set_latest` is the one write, through an
executor, audited.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import OperationalError, connections, transaction
from django.db.models import Q
from django.http import HttpRequest

from conductor import relay
from conductor.models import Executor
from conductor.protocol import (
    ListApplicationVersionsRequest,
    ListApplicationVersionsResponse,
    SetLatestApplicationVersionRequest,
    SuccessResponse,
)
from conductor.registry import live_executors
from stepchange.asyncdb import db_async
from stepchange.audit import Result, audit_record
from stepchange.models import Application
from workflows import systemdb
from workflows.models import ApplicationVersion
from workflows.sources import (
    COUNT_CAP,
    COUNT_TIMEOUT_MS,
    QUERY_CANCELED,
    RELAYED_QUEUE_SAMPLE,
    DatabaseSource,
    ListQuery,
    _on_thread,
    _sql,
    _time,
    source_for,
)

SET_LATEST_ACTION = "application.version.set_latest"
WAITING = ("PENDING", "ENQUEUED")
UNKNOWN_VERSION = "{app} has no version {version!r}: the versions are {known}."
NO_VERSIONS = "{app} has no registered version yet."
ALREADY_LATEST = "{version} is the latest version of {app} already."
NOT_DONE = "Executor {executor_id} did not make {version} the latest: {error}"
BAD_NAME = "A version name is 1 to 255 characters."
NOT_COUNTED = (
    "The pinned workflows were not counted: the system database did not count them within "
    "{timeout} ms."
)
SAMPLED = (
    "Counted among the first {sample} PENDING or ENQUEUED workflows an executor listed: "
    "there may be more."
)
CAPPED = "More than {cap:,} {status} workflows: each version's {status} count is at least this."


class VersionError(Exception):
    """A version action refused or failed; `status` is the API's code."""

    status = 400


class UnknownVersionError(VersionError):
    status = 404


class VersionRefusedError(VersionError):
    status = 409


class VersionFailedError(VersionError):
    """The executor answered, and the answer was no."""

    status = 502


@dataclass
class Version:
    """One application version: its row (if DBOS registered it), who runs it, what waits."""

    name: str | None
    version_id: str = ""
    latest: bool = False
    registered: bool = False
    version_timestamp: datetime | None = None
    created_at: datetime | None = None
    # The raw timestamp, to order by: the latest first, then the newer ones.
    stamp_ms: int = 0
    executors: list[Executor] = field(default_factory=list)
    pending: int = 0
    enqueued: int = 0

    @property
    def pinned(self) -> int:
        return self.pending + self.enqueued

    @property
    def stranded(self) -> bool:
        """Workflows wait on this version and no connected executor runs it. Unpinned
        workflows (no version) wait on the latest: stranded when nobody runs that."""
        return self.pinned > 0 and not self.executors


@dataclass
class Versions:
    """What the Versions page and the API show."""

    versions: list[Version]
    source: str
    latest: str | None
    # Pinned counts: None when not counted; `notes` says how far they hold.
    counted: bool = True
    capped: dict[str, bool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def stranded(self) -> list[Version]:
        return [version for version in self.versions if version.stranded]

    @property
    def running(self) -> list[str]:
        """Versions a connected executor runs: where a stranded workflow may be forked."""
        return [v.name for v in self.versions if v.name and v.executors]

    def named(self, name: str) -> Version | None:
        return next((v for v in self.versions if v.name == name and v.registered), None)


# Reading.


async def versions_read(
    application: Application, *, actor: str = "", count_pinned: bool = True
) -> Versions:
    """Every version of `application`: from the system database when it has one, else
    through a live executor (relay errors are raised). Without `count_pinned` the waiting
    workflows are not counted (nor sampled): `counted` is False and no note says more."""
    executors = await db_async(live_executors)(application)
    source = await source_for(application)
    if not count_pinned:
        if isinstance(source, DatabaseSource):
            rows = await _on_thread(_database_rows)(application)
        else:
            rows = await _relayed_rows(application, actor)
        found = Versions([], source.name, None, counted=False)
        _assemble(found, rows, {}, executors)
        return found
    if isinstance(source, DatabaseSource):
        rows, counts, counted = await _on_thread(_database_read)(application)
        found = Versions([], source.name, None, counted=counted)
        if not counted:
            found.notes.append(NOT_COUNTED.format(timeout=COUNT_TIMEOUT_MS))
    else:
        rows, counts = await _relayed_read(application, source, actor)
        found = Versions([], source.name, None)
    _assemble(found, rows, counts, executors)
    return found


Counts = dict[tuple[str | None, str], int]


def _database_read(application: Application) -> tuple[list[dict[str, Any]], Counts, bool]:
    rows = _database_rows(application)
    counts = _pinned_counts(application)
    return rows, counts or {}, counts is not None


def _database_rows(application: Application) -> list[dict[str, Any]]:
    versions = systemdb.rows(application, ApplicationVersion)
    alias = systemdb.alias_for(application)
    if "application_name" not in systemdb.missing_fields(alias, ApplicationVersion):
        # DBOS's own reading: this application's rows and the unclaimed ones.
        name = application.name
        versions = versions.filter(Q(application_name=name) | Q(application_name__isnull=True))
    return [
        {
            "version_id": row.version_id,
            "version_name": row.version_name,
            "version_timestamp": row.version_timestamp_ms,
            "created_at": row.created_at_ms,
        }
        for row in versions.order_by("-version_timestamp_ms")
    ]


# How many of the newest workflows `seen_versions` looks at beyond `application_versions`.
SEEN_SAMPLE = 1000


def seen_versions(application: Application) -> list[str]:
    """The versions the system database has seen: its `application_versions` rows (this
    application's and unclaimed ones), newest first, then those of its newest workflows."""
    names = [row["version_name"] for row in _database_rows(application)]
    recent = (
        systemdb.workflows(application)
        .newest_first()
        .values_list("application_version", flat=True)[:SEEN_SAMPLE]
    )
    return [name for name in dict.fromkeys([*names, *recent]) if name]


def _pinned_counts(application: Application) -> Counts | None:
    """How many PENDING and ENQUEUED workflows each version holds, in one statement: each
    status's rows read through DBOS's partial index of them, at most COUNT_CAP + 1 of each
    (so never a full count), grouped by version. None when the statement timeout stopped
    it."""
    workflows = systemdb.workflows(application)
    parts = [
        _sql(
            workflows.filter(status=status)
            .order_by()
            .values_list("application_version", flat=True)[: COUNT_CAP + 1]
        )
        for status in WAITING
    ]
    # Django's SQL of each status's capped rows, grouped by version.
    sql = " UNION ALL ".join(
        f"SELECT %s, application_version, COUNT(*) FROM ({part}) AS waiting_{n}"  # noqa: S608
        " GROUP BY application_version"
        for n, (part, _) in enumerate(parts)
    )
    params: list[Any] = []
    for status, (_, values) in zip(WAITING, parts, strict=True):
        params += [status, *values]
    alias = systemdb.alias_for(application)
    connection = connections[alias]
    try:
        with transaction.atomic(using=alias), connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(f"SET LOCAL statement_timeout = {int(COUNT_TIMEOUT_MS)}")
            cursor.execute(sql, params)
            found = cursor.fetchall()
    except OperationalError as exc:
        if getattr(exc.__cause__, "sqlstate", None) != QUERY_CANCELED:
            raise
        return None
    return {(version, status): count for status, version, count in found}


async def _relayed_read(
    application: Application, source: Any, actor: str
) -> tuple[list[dict[str, Any]], Counts]:
    rows = await _relayed_rows(application, actor)
    listing = await source.list(
        ListQuery(status=list(WAITING), limit=RELAYED_QUEUE_SAMPLE), actor=actor
    )
    counts: Counts = {}
    for workflow in listing.items:
        key = (workflow.application_version or None, str(workflow.status or ""))
        counts[key] = counts.get(key, 0) + 1
    if listing.next_cursor:
        counts[(None, "sampled")] = 1
    return rows, counts


async def _relayed_rows(application: Application, actor: str) -> list[dict[str, Any]]:
    answer = await relay.request(
        application,
        ListApplicationVersionsRequest(),
        actor_name=actor,
        source="console",
    )
    rows = []
    if isinstance(answer, ListApplicationVersionsResponse):
        rows = [
            {
                "version_id": v.version_id or "",
                "version_name": v.version_name,
                "version_timestamp": v.version_timestamp,
                "created_at": v.created_at,
            }
            for v in answer.output
            if v.version_name
        ]
    return rows


def _assemble(
    found: Versions, rows: list[dict[str, Any]], counts: Counts, executors: list[Executor]
) -> None:
    """One Version per name seen anywhere: a row, a pinned workflow, a running executor."""
    sampled = counts.pop((None, "sampled"), None)
    if sampled:
        found.notes.append(SAMPLED.format(sample=RELAYED_QUEUE_SAMPLE))
    by_name: dict[str | None, Version] = {}
    newest: tuple[int, str] | None = None
    for row in rows:
        name = row["version_name"]
        by_name[name] = Version(
            name,
            version_id=row["version_id"],
            registered=True,
            version_timestamp=_time(row["version_timestamp"]),
            created_at=_time(row["created_at"]),
            stamp_ms=row["version_timestamp"] or 0,
        )
        stamp = (row["version_timestamp"] or 0, name)
        if newest is None or stamp > newest:
            newest = stamp
    found.latest = newest[1] if newest else None
    for executor in executors:
        name = executor.application_version or None
        by_name.setdefault(name, Version(name)).executors.append(executor)
    totals: dict[str, int] = {}
    for (name, status), count in counts.items():
        version = by_name.setdefault(name or None, Version(name or None))
        if status == "PENDING":
            version.pending += count
        elif status == "ENQUEUED":
            version.enqueued += count
        totals[status] = totals.get(status, 0) + count
    for status in WAITING:
        found.capped[status] = totals.get(status, 0) > COUNT_CAP
        if found.capped[status]:
            found.notes.append(CAPPED.format(cap=COUNT_CAP, status=status))
    if found.latest in by_name:
        by_name[found.latest].latest = True
    unpinned = by_name.pop(None, None)
    ordered = sorted(
        by_name.values(),
        key=lambda v: (not v.latest, -v.stamp_ms, v.name or ""),
    )
    if unpinned is not None:
        # Unpinned workflows run on the latest version's executors.
        latest = by_name.get(found.latest) if found.latest else None
        unpinned.executors = list(latest.executors) if latest else []
        ordered.append(unpinned)
    found.versions = ordered


# Acting.


async def version_set_latest(
    *,
    application: Application,
    version_name: str,
    actor: Any,
    request: HttpRequest | None = None,
    reason: str = "",
    source: str = "api",
) -> dict[str, Any]:
    """Make `version_name` the application's latest version, through a live executor
    (DBOS sets its timestamp to now). Refuses an unknown version (404) and the latest one
    (409); an executor's no is VersionFailedError (502), no executor a relay error. Every
    attempt is audited."""
    actor_name = actor.get_username() if actor is not None else ""
    audit = {
        "action": SET_LATEST_ACTION,
        "request": request,
        "actor": actor,
        "application": application,
        "target": version_name[:255],
        "reason": reason,
    }
    request_id = ""
    previous: str | None = None
    try:
        if not 0 < len(version_name) <= 255:
            raise VersionError(BAD_NAME)
        known = await versions_read(application, actor=actor_name)
        previous = known.latest
        _check(application, known, version_name)
        message = SetLatestApplicationVersionRequest(version_name=version_name)
        request_id = message.request_id
        answer = await relay.ask(
            application, message, actor_name=actor_name, source=source, raise_on_error=False
        )
        response = answer.response
        done = isinstance(response, SuccessResponse) and response.success
        executor_id = answer.executor.executor_id
        if response.error_message or not done:
            failed = VersionFailedError(
                NOT_DONE.format(
                    executor_id=executor_id,
                    version=version_name,
                    error=response.error_message or "it answered success: false.",
                )
            )
            failed.response = response.raw  # type: ignore[attr-defined]
            raise failed
    except (VersionError, relay.RelayError) as exc:
        await db_async(audit_record)(
            **audit,
            parameters={"version_name": version_name, "previous_latest": previous},
            result=Result.FAILED,
            detail=str(exc),
            request_id=request_id,
            response=getattr(exc, "response", None) if isinstance(exc, VersionError) else None,
        )
        raise
    detail = f"{version_name} made the latest version by executor {executor_id}."
    record = await db_async(audit_record)(
        **audit,
        parameters={"version_name": version_name, "previous_latest": previous},
        detail=detail,
        request_id=request_id,
        response=response.raw or None,
    )
    return {
        "version_name": version_name,
        "previous_latest": previous,
        "executor_id": executor_id,
        "request_id": request_id,
        "audit_id": record.pk,
        "detail": detail,
    }


def _check(application: Application, known: Versions, version_name: str) -> None:
    names = [v.name for v in known.versions if v.registered and v.name]
    if known.named(version_name) is None:
        if not names:
            raise UnknownVersionError(NO_VERSIONS.format(app=application.name))
        raise UnknownVersionError(
            UNKNOWN_VERSION.format(
                app=application.name, version=version_name, known=", ".join(names)
            )
        )
    if known.latest == version_name:
        raise VersionRefusedError(ALREADY_LATEST.format(version=version_name, app=application.name))
