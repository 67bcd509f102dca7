"""Where workflow reads come from (DESIGN.md "Where reads come from").

With a reachable system database, lists and details are read from it directly (fast,
filterable, keyset-paginated, decoded, and available with no executor connected).
Without one, or while it is down, they are asked of a live executor through the relay,
always with a bounded limit. Both sources answer in the API's shapes and say which they
are, and why when it is the fallback.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import OperationalError, connections, models, transaction

from conductor import relay
from conductor.protocol import (
    GetWorkflowEventsRequest,
    GetWorkflowEventsResponse,
    GetWorkflowNotificationsRequest,
    GetWorkflowNotificationsResponse,
    GetWorkflowRequest,
    GetWorkflowResponse,
    GetWorkflowStreamsRequest,
    GetWorkflowStreamsResponse,
    ListQueuesRequest,
    ListQueuesResponse,
    ListStepsRequest,
    ListStepsResponse,
    ListWorkflowsBody,
    ListWorkflowsRequest,
    ListWorkflowsResponse,
    WorkflowsOutput,
    WorkflowSteps,
)
from stepchange.asyncdb import db_async
from stepchange.models import Application
from stepchange.prepared import Statement, prepared, run_together
from workflows import systemdb
from workflows.models import (
    EpochMs,
    Notification,
    OperationOutput,
    Queue,
    StreamEntry,
    WorkflowQuerySet,
    WorkflowStatus,
)
from workflows.serialization import decode

DATABASE = "system database"
EXECUTOR = "executor"
BAD_CURSOR = "cursor is not one this API gave out"
FALLBACK = "{problem} Read through a connected executor instead."
# Children and forks listed on a workflow's page.
MAX_RELATED = 50
RECENT_FAILURES = 10
# A list's count of matching workflows stops here, and at this many milliseconds.
COUNT_CAP = 10_000
COUNT_TIMEOUT_MS = 300
# A workflow's values, as `read_stored` and the page's raw view name them.
STORED_VALUES = ("input", "output", "error")
# The most steps one answer carries, and how many it carries unless asked for more; a
# workflow with more is paged (the console shows 100 at a time as well).
MAX_STEPS_PAGE = 1000
STEPS_PAGE = 100
# A queue's configuration, as the `queues` table and `list_queues` both have it.
QUEUE_FIELDS = (
    "name",
    "concurrency",
    "worker_concurrency",
    "rate_limit_max",
    "rate_limit_period_sec",
    "partition_concurrency",
    "polling_interval_sec",
)
# The dashboard's charts: label, window, bucket (ms).
CHART_WINDOWS = (
    ("last hour", timedelta(hours=1), 60_000),
    ("last day", timedelta(days=1), 30 * 60_000),
)


# Postgres's SQLSTATE for a statement stopped by statement_timeout.
QUERY_CANCELED = "57014"
# The status-row columns a list shows (`DatabaseSource.workflow` without payloads).
LISTED_FIELDS = (
    "workflow_uuid",
    "status",
    "name",
    "class_name",
    "queue_name",
    "application_version",
    "executor_id",
    "created_at_ms",
    "updated_at_ms",
    "completed_at_ms",
    "forked_from",
    "parent_workflow_id",
    "application_name",
    "serialization",
)
# Plain rows for templates and the API (spelled out here: the sources have a `list` method).
Rows = list[dict[str, Any]]


class ListedRow:
    """A list row's columns as attributes, as a WorkflowStatus read with `only(LISTED_FIELDS)`
    has them (a column the database lacks is None), without the model instance: fifty
    of those cost 1.2 ms more than the rows here."""

    __slots__ = LISTED_FIELDS
    workflow_uuid: str
    status: str | None
    name: str | None
    class_name: str | None
    queue_name: str | None
    application_version: str | None
    executor_id: str | None
    created_at_ms: int
    updated_at_ms: int | None
    completed_at_ms: int | None
    forked_from: str | None
    parent_workflow_id: str | None
    application_name: str | None
    serialization: str | None
    created_at = EpochMs("created_at_ms")
    updated_at = EpochMs("updated_at_ms")
    completed_at = EpochMs("completed_at_ms")

    def __init__(self, columns: dict[str, Any]) -> None:
        for name in LISTED_FIELDS:
            setattr(self, name, columns.get(name))

    def payload(self, key: str) -> None:
        """A list row carries no payloads."""


class BadCursor(ValueError):
    pass


def split_names(value: str) -> list[str] | None:
    """A comma-separated filter value as a list (None when it names nothing)."""
    names = [item.strip() for item in value.split(",") if item.strip()]
    return names or None


SLOW = (
    "The system database stopped this query after {timeout} ms: DBOS keeps no index for "
    "some filters (name, executor, application version, queue without a status). Narrow "
    "it with a time range or a status."
)


class SlowQuery(Exception):
    """The system database's statement timeout stopped a query (the API answers 504)."""

    status = 504


def _timed(run: Any) -> Any:
    """Run a read; a statement timeout becomes SlowQuery with advice."""
    try:
        return run()
    except OperationalError as exc:
        if getattr(exc.__cause__, "sqlstate", None) == QUERY_CANCELED:
            raise SlowQuery(SLOW.format(timeout=settings.SYSTEM_DB_STATEMENT_TIMEOUT_MS)) from None
        raise


@dataclass(frozen=True)
class ListQuery:
    """A validated list request, whatever the source."""

    status: list[str] | None = None
    workflow_name: list[str] | None = None
    queue_name: list[str] | None = None
    workflow_id_prefix: str | None = None
    executor_id: list[str] | None = None
    application_version: list[str] | None = None
    forked_from: list[str] | None = None
    parent_workflow_id: list[str] | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    limit: int = 50
    cursor: str | None = None
    sort_desc: bool = True
    load_input: bool = False
    load_output: bool = False
    queued: bool = False
    # Exactly these workflows (a bulk action's selection), with the filters above.
    workflow_ids: list[str] | None = None


@dataclass(frozen=True)
class Listing:
    items: list[dict[str, Any]]
    next_cursor: str | None
    source: str
    notice: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Detail:
    """A workflow's page: the workflow (None if there is no such workflow), its first
    steps and what else is known of it; `partial` says what could not be fetched."""

    workflow: dict[str, Any] | None
    steps: Listing | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    partial: str = ""


# A statement and what makes its rows into the answer.
Read = tuple[Statement, Callable[[list[Any]], Any]]


def _time(epoch_ms: int | None) -> datetime | None:
    return None if epoch_ms is None else datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)


class DatabaseSource:
    name = DATABASE

    def __init__(self, application: Application, schema: systemdb.Schema) -> None:
        self.application = application
        self.schema = schema
        self.notice = "" if schema.known else systemdb.status_of(application).detail

    async def list(self, query: ListQuery, *, actor: str = "") -> Listing:
        listing: Listing = await db_async(self.read_list)(query)
        return listing

    def read_list(self, query: ListQuery) -> Listing:
        """`list`, on the database thread already."""
        found: Listing = _timed(functools.partial(self._list, query))
        return found

    def read_count(self, query: ListQuery) -> tuple[int, bool] | None:
        """How many workflows `query`'s filters keep, and whether there are more: counted
        up to COUNT_CAP (then `(COUNT_CAP, True)`), or None if the database could not count
        them within COUNT_TIMEOUT_MS (an unindexed filter over many rows). Never a full
        COUNT(*)."""
        cap = COUNT_CAP
        alias = systemdb.alias_for(self.application)
        counted = self._filtered(query).order_by().values("pk")[: cap + 1]
        try:
            if connections[alias].vendor != "postgresql":
                found = counted.count()
            else:
                with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
                    cursor.execute(f"SET LOCAL statement_timeout = {int(COUNT_TIMEOUT_MS)}")
                    found = counted.count()
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) == QUERY_CANCELED:
                return None
            raise
        return min(found, cap), found > cap

    def _filtered(self, query: ListQuery) -> WorkflowQuerySet:
        """The workflows `query`'s filters keep, in no order."""
        rows = systemdb.workflows(self.application)
        if query.queued:
            rows = rows.queued()
        if query.workflow_ids is not None:
            rows = rows.filter(workflow_uuid__in=query.workflow_ids)
        rows = rows.filtered(
            status=query.status,
            name=query.workflow_name,
            queue_name=query.queue_name,
            executor_id=query.executor_id,
            application_version=query.application_version,
            forked_from=query.forked_from,
            parent_workflow_id=query.parent_workflow_id,
            created_after=query.start_time,
            created_before=query.end_time,
        )
        if query.workflow_id_prefix:
            rows = rows.id_prefix(query.workflow_id_prefix, bytewise=self.schema.bytewise_text)
        return rows

    def _list(self, query: ListQuery) -> Listing:
        rows = self._filtered(query)
        payloads = query.load_input or query.load_output
        fields: tuple[str, ...] = ()
        if payloads:
            rows = rows.with_payloads(payload_tables=self.schema.has_payload_tables)
        else:
            # What a row shows, not the whole status row: older schemas keep payloads in it.
            missing = systemdb.missing_fields(systemdb.alias_for(self.application), WorkflowStatus)
            fields = tuple(name for name in LISTED_FIELDS if name not in missing)
            rows = rows.only(*fields)
        ordered = rows.newest_first() if query.sort_desc else rows.oldest_first()
        after = ordered.after(_keyset(query.cursor), descending=query.sort_desc)
        count = query.limit + 1
        enqueued = self.schema.queue_index and query.status == ["ENQUEUED"] and query.sort_desc
        page: list[WorkflowStatus] | list[ListedRow]
        if payloads:
            page = list(after.newest_enqueued(count) if enqueued else after[:count])
        elif enqueued:
            page = _listed_rows(after, count)
        else:
            page = [
                ListedRow(dict(zip(fields, row, strict=True)))
                for row in after.values_list(*fields)[:count]
            ]
        more = len(page) > query.limit
        page = page[: query.limit]
        return Listing(
            items=[
                self.workflow(row, load_input=query.load_input, load_output=query.load_output)
                for row in page
            ],
            next_cursor=_keyset_cursor(page[-1]) if more else None,
            source=self.name,
            notice=self.notice,
        )

    async def get(self, workflow_id: str, *, actor: str = "") -> dict[str, Any] | None:
        found: dict[str, Any] | None = await db_async(self.read_workflow)(workflow_id)
        return found

    def _get(self, workflow_id: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self._read(self._workflow_read(workflow_id))
        return found

    def read_workflow(self, workflow_id: str) -> dict[str, Any] | None:
        """`get`, on the database thread already."""
        found: dict[str, Any] | None = _timed(functools.partial(self._get, workflow_id))
        return found

    def _read(self, read: Read) -> Any:
        statement, shape = read
        alias = systemdb.alias_for(self.application)
        # Reads of one workflow by id: their plans do not depend on the id.
        return shape(run_together(alias, [statement], keep_plans=True)[0])

    def _workflow_read(self, workflow_id: str) -> Read:
        statement, status_row = self._status_row_read(workflow_id)

        def found(rows: list[Any]) -> dict[str, Any] | None:
            row = status_row(rows)
            return None if row is None else self.workflow(row, load_input=True, load_output=True)

        return statement, found

    def _status_row_read(self, workflow_id: str) -> Read:
        """The workflow's status row with its payloads (None if there is no such workflow)."""
        alias = systemdb.alias_for(self.application)
        payload_tables = self.schema.has_payload_tables

        def one(workflow_id: str) -> models.QuerySet[WorkflowStatus]:
            rows = systemdb.workflows(self.application).with_payloads(payload_tables=payload_tables)
            return rows.filter(workflow_uuid=workflow_id)[:1]

        shape = (alias, payload_tables, systemdb.missing_fields(alias, WorkflowStatus))
        query = prepared(("workflow", *shape), one, str)
        return query.bind(workflow_id), lambda rows: next(iter(query.results(rows)), None)

    def read_stored(self, workflow_id: str) -> dict[str, str | None] | None:
        """The workflow's input, output and error as stored, and the serialization named
        beside them (None if there is no such workflow)."""

        def stored() -> dict[str, str | None] | None:
            row = self._read(self._status_row_read(workflow_id))
            if row is None:
                return None
            return {key: row.payload(key) for key in STORED_VALUES} | {
                "serialization": row.serialization
            }

        found: dict[str, str | None] | None = _timed(stored)
        return found

    async def detail(self, workflow_id: str, *, steps_limit: int, actor: str = "") -> Detail:
        """The workflow, its first steps and its extras, in one trip to the database
        thread (three reads' worth of thread hops and pool checkouts less)."""
        found: Detail = await db_async(self.read_detail)(workflow_id, steps_limit=steps_limit)
        return found

    def read_detail(self, workflow_id: str, *, steps_limit: int) -> Detail:
        """`detail`, on the database thread already (the page reads and renders in one
        trip)."""
        found: Detail = _timed(functools.partial(self._detail, workflow_id, steps_limit))
        return found

    def _detail(self, workflow_id: str, steps_limit: int) -> Detail:
        reads = [
            self._workflow_read(workflow_id),
            self._steps_read(workflow_id, None, steps_limit),
            self._extras_read(workflow_id),
        ]
        # The three statements in one round trip to the database.
        alias = systemdb.alias_for(self.application)
        rows = run_together(alias, [s for s, _ in reads], keep_plans=True)
        found, listing, extras = (shape(r) for (_, shape), r in zip(reads, rows, strict=True))
        if found is None:
            return Detail(None)
        return Detail(found, listing, extras)

    async def steps(
        self,
        workflow_id: str,
        *,
        actor: str = "",
        cursor: str | None = None,
        limit: int = MAX_STEPS_PAGE,
    ) -> Listing:
        listing: Listing = await db_async(self.read_steps)(workflow_id, cursor, limit)
        return listing

    def _steps(self, workflow_id: str, cursor: str | None, limit: int) -> Listing:
        found: Listing = self._read(self._steps_read(workflow_id, cursor, limit))
        return found

    def read_steps(self, workflow_id: str, cursor: str | None, limit: int) -> Listing:
        """`steps`, on the database thread already."""
        found: Listing = _timed(functools.partial(self._steps, workflow_id, cursor, limit))
        return found

    def _steps_read(self, workflow_id: str, cursor: str | None, limit: int) -> Read:
        """A page of steps after the step `cursor` names; only the page is decoded."""
        if cursor and not cursor.lstrip("-").isdigit():
            raise BadCursor(BAD_CURSOR)
        alias = systemdb.alias_for(self.application)

        def one_page(
            workflow_id: str, after: int | None = None
        ) -> models.QuerySet[OperationOutput]:
            steps = systemdb.steps(self.application).of(workflow_id)
            if after is not None:
                steps = steps.filter(function_id__gt=after)
            return steps[: limit + 1]

        shape = (alias, limit, systemdb.missing_fields(alias, OperationOutput))
        if cursor:
            query = prepared(("steps after", *shape), one_page, str, int)
            statement = query.bind(workflow_id, int(cursor))
        else:
            query = prepared(("steps", *shape), one_page, str)
            statement = query.bind(workflow_id)

        def listing(rows: list[Any]) -> Listing:
            page = query.results(rows)
            more = len(page) > limit
            page = page[:limit]
            return Listing(
                [self.step(row) for row in page],
                str(page[-1].function_id) if more else None,
                self.name,
                self.notice,
            )

        return statement, listing

    async def queues(self, *, actor: str = "") -> Rows:
        found: Rows = await db_async(self.read_queues)()
        return found

    def read_queues(self) -> Rows:
        """`queues`, on the database thread already."""
        found: Rows = _timed(self._queues)
        return found

    def _queues(self) -> Rows:
        return [
            {field: getattr(queue, field) for field in QUEUE_FIELDS}
            for queue in systemdb.rows(self.application, Queue).order_by("name")
        ]

    async def overview(self, *, now: datetime) -> dict[str, Any]:
        found: dict[str, Any] = await db_async(self.read_overview)(now)
        return found

    def read_overview(self, now: datetime) -> dict[str, Any]:
        """`overview`, on the database thread already."""
        found: dict[str, Any] = _timed(functools.partial(self._overview, now))
        return found

    def _overview(self, now: datetime) -> dict[str, Any]:
        """The dashboard's numbers: status charts for the last hour and day, recent
        failures, and how deep each queue is."""
        workflows = systemdb.workflows(self.application)
        charts = {}
        for label, window, bucket in CHART_WINDOWS:
            recent = workflows.filtered(created_after=now - window)
            charts[label] = _chart(recent.histogram(bucket_ms=bucket), now - window, now, bucket)
        failures = workflows.filtered(status=["ERROR", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"])
        return {
            "charts": charts,
            "failures": [
                self.workflow(row, load_input=False, load_output=False)
                for row in failures.newest_first()[:RECENT_FAILURES]
            ],
            "queues": self._queue_depths(),
        }

    def read_queue_depths(self) -> dict[str, dict[str, int]]:
        """How many workflows each queue holds, by status (ENQUEUED, PENDING, DELAYED)."""
        found: dict[str, dict[str, int]] = _timed(self._queue_depths)
        return found

    def _queue_depths(self) -> dict[str, dict[str, int]]:
        # Counted through DBOS's partial indexes of in-flight and delayed workflows.
        depths: dict[str, dict[str, int]] = {}
        for queue, status, count in (
            systemdb.workflows(self.application)
            .queued()
            .order_by()
            .values_list("queue_name", "status")
            .annotate(count=models.Count("*"))
        ):
            depths.setdefault(queue, {})[status] = count
        return dict(sorted(depths.items()))

    def _extras(self, workflow_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self._read(self._extras_read(workflow_id))
        return found

    def _extras_read(self, workflow_id: str) -> Read:
        """Lineage, events with their history, messages and streams of one workflow, in
        one statement (six ORM queries cost 3.7 ms here, this 0.5 ms)."""
        return _extras_sql(self.schema, workflow_id), self._extras_of

    @staticmethod
    def _extras_of(rows: Sequence[tuple[Any, ...]]) -> dict[str, Any]:
        """The extras' rows, decoded and grouped for the page."""
        found: dict[str, list[tuple[Any, ...]]] = {kind: [] for kind, _ in EXTRAS}
        for kind, *row in rows:
            found[kind].append(tuple(row))
        streams: dict[str, list[Any]] = {}
        for key, value, serialization, _offset, _ in sorted(
            found["streams"], key=lambda r: (r[0], r[3])
        ):
            decoded = decode(value, serialization)
            if decoded.value != StreamEntry.CLOSED:
                streams.setdefault(key, []).append(decoded.value)
        return {
            "children": _lineage(found["children"]),
            "forks": _lineage(found["forks"]),
            "events": [
                {"key": key, **_decoded("value", value, serialization, "value")}
                for key, value, serialization, _, _ in sorted(found["events"], key=lambda r: r[0])
            ],
            "history": [
                {
                    "key": key,
                    "function_id": function_id,
                    **_decoded("value", value, serialization, "value"),
                }
                for key, value, serialization, function_id, _ in sorted(
                    found["history"], key=lambda r: (r[3], r[0])
                )
            ],
            "notifications": [
                {
                    "topic": None if topic == Notification.NO_TOPIC else topic,
                    "created_at": _time(created),
                    "consumed": bool(consumed),
                    **_decoded("message", message, serialization, "value"),
                }
                for topic, message, serialization, created, consumed in sorted(
                    found["notifications"], key=lambda r: r[3] or 0
                )
            ],
            "streams": streams,
        }

    def workflow(
        self, row: WorkflowStatus | ListedRow, *, load_input: bool, load_output: bool
    ) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "workflow_id": row.workflow_uuid,
            "status": row.status,
            "name": row.name,
            "class_name": row.class_name,
            "queue_name": row.queue_name,
            "application_version": row.application_version,
            "executor_id": row.executor_id,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
            "completed_at": row.completed_at,
            "forked_from": row.forked_from,
            "parent_workflow_id": row.parent_workflow_id,
            "application_name": row.application_name,
            "serialization": row.serialization,
        }
        wanted = [("input", "inputs", load_input), ("output", "value", load_output)]
        wanted.append(("error", "error", load_output))
        for key, kind, load in wanted:
            if load:
                shown |= _decoded(key, row.payload(key), row.serialization, kind)
        return shown

    def step(self, row: OperationOutput) -> dict[str, Any]:
        return {
            "function_id": row.function_id,
            "function_name": row.function_name,
            "child_workflow_id": row.child_workflow_id,
            "started_at": row.started_at,
            "completed_at": row.completed_at,
            **_decoded("output", row.output, row.serialization, "value"),
            **_decoded("error", row.error, row.serialization, "error"),
        }


def _chart(
    rows: list[tuple[int, str, int]], start: datetime, end: datetime, bucket_ms: int
) -> dict[str, Any]:
    """Buckets of the window, each with its count per status, ready to draw."""
    first = int(start.timestamp() * 1000) // bucket_ms * bucket_ms
    last = int(end.timestamp() * 1000) // bucket_ms * bucket_ms
    buckets: dict[int, dict[str, int]] = {at: {} for at in range(first, last + 1, bucket_ms)}
    for at, status, count in rows:
        buckets.setdefault(at, {})[status] = count
    tallest = max((sum(counts.values()) for counts in buckets.values()), default=0)
    totals: dict[str, int] = {}
    for counts in buckets.values():
        for status, count in counts.items():
            totals[status] = totals.get(status, 0) + count
    return {
        "buckets": [(_time(at), counts) for at, counts in sorted(buckets.items())],
        "tallest": tallest,
        "totals": dict(sorted(totals.items())),
    }


# What `_extras` reads, each as rows of five columns: (text, text, text, number, flag).
EXTRAS = (
    ("children", "workflow_status"),
    ("forks", "workflow_status"),
    ("events", "workflow_events"),
    ("history", "workflow_events_history"),
    ("notifications", "notifications"),
    ("streams", "streams"),
)


def _extras_sql(schema: systemdb.Schema, workflow_id: str) -> tuple[str, list[Any]]:
    """One UNION ALL over the tables this database has, its absent columns read as NULL;
    each branch a subquery, so that it may have its own order and limit. The text is made
    of this function's constants and of column names the schema was seen to have; the
    workflow id is a parameter."""
    branches: list[str] = []
    params: list[Any] = []
    for kind, table in EXTRAS:
        if table not in schema.columns:
            continue
        columns = schema.columns[table]

        def col(name: str, columns: frozenset[str] = columns) -> str:
            return f'"{name}"' if name in columns else "NULL"

        if table == "workflow_status":
            link = "parent_workflow_id" if kind == "children" else "forked_from"
            if link not in columns:
                continue
            select = (
                f"SELECT workflow_uuid AS a, status AS b, name AS c, created_at AS n,"  # noqa: S608
                f" 0 AS f FROM workflow_status WHERE {link} = %s"
                f" ORDER BY created_at DESC, workflow_uuid DESC LIMIT {MAX_RELATED}"
            )
        elif table == "notifications":
            consumed = "CASE WHEN consumed THEN 1 ELSE 0 END" if "consumed" in columns else "0"
            select = (
                f"SELECT topic AS a, message AS b, {col('serialization')} AS c,"  # noqa: S608
                f" {col('created_at_epoch_ms')} AS n, {consumed} AS f"
                " FROM notifications WHERE destination_uuid = %s"
            )
        else:
            number = {"workflow_events": "NULL", "workflow_events_history": col("function_id")}
            select = (
                f"SELECT key AS a, value AS b, {col('serialization')} AS c,"  # noqa: S608
                f" {number.get(table, col('offset'))} AS n, 0 AS f"
                f" FROM {table} WHERE workflow_uuid = %s"
            )
        # CAST: Postgres types a UNION's columns by its first branch.
        branches.append(
            f"SELECT '{kind}', CAST(a AS TEXT), CAST(b AS TEXT), CAST(c AS TEXT),"  # noqa: S608
            f" CAST(n AS BIGINT), f FROM ({select}) AS {kind}"
        )
        params.append(workflow_id)
    return " UNION ALL ".join(branches), params


def _lineage(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    newest = sorted(rows, key=lambda r: (r[3], r[0]), reverse=True)
    return [{"workflow_id": w, "status": status, "name": name} for w, status, name, _, _ in newest]


def _decoded(key: str, stored: str | None, serialization: str | None, kind: Any) -> dict[str, Any]:
    if stored is None:
        return {key: None, f"{key}_format": None}
    value = decode(stored, serialization, kind=kind)
    shown: dict[str, Any] = {key: value.value, f"{key}_format": value.format}
    if value.notes:
        shown[f"{key}_notes"] = list(value.notes)
    return shown


def _keyset(cursor: str | None) -> tuple[int, str] | None:
    if not cursor:
        return None
    try:
        created, _, workflow_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("~")
        return int(created), workflow_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadCursor(BAD_CURSOR) from None


def _listed_rows(enqueued: WorkflowQuerySet, count: int) -> list[ListedRow]:
    """The newest ENQUEUED rows of `enqueued` (see `newest_enqueued_sql`) as ListedRows."""
    sql, params = enqueued.newest_enqueued_sql(count)
    attnames = {field.column: field.attname for field in WorkflowStatus._meta.concrete_fields}
    with connections[enqueued.db].cursor() as cursor:
        cursor.execute(sql, params)
        names = [attnames.get(column.name, column.name) for column in cursor.description]
        return [ListedRow(dict(zip(names, row, strict=True))) for row in cursor.fetchall()]


def _keyset_cursor(row: WorkflowStatus | ListedRow) -> str:
    return base64.urlsafe_b64encode(f"{row.created_at_ms}~{row.workflow_uuid}".encode()).decode()


class ExecutorSource:
    """Reads through a live executor: its display renderings, passed on verbatim."""

    name = EXECUTOR

    def __init__(self, application: Application, notice: str = "") -> None:
        self.application = application
        self.notice = notice

    async def list(self, query: ListQuery, *, actor: str = "") -> Listing:
        offset = 0
        if query.cursor:
            if not query.cursor.isdigit():
                raise BadCursor(BAD_CURSOR)
            offset = int(query.cursor)
        body = ListWorkflowsBody(
            workflow_uuids=query.workflow_ids,
            status=query.status,
            workflow_name=query.workflow_name,
            queue_name=query.queue_name,
            workflow_id_prefix=query.workflow_id_prefix,
            executor_id=query.executor_id,
            application_version=query.application_version,
            forked_from=query.forked_from,
            parent_workflow_id=query.parent_workflow_id,
            start_time=query.start_time,
            end_time=query.end_time,
            limit=query.limit + 1,
            offset=offset or None,
            sort_desc=query.sort_desc,
            load_input=query.load_input,
            load_output=query.load_output,
            queues_only=query.queued or None,
        )
        answer = await relay.ask(
            self.application, ListWorkflowsRequest(body=body), actor_name=actor
        )
        rows = relay.expect(answer.response, ListWorkflowsResponse).output
        language = answer.executor.language
        return Listing(
            items=[_from_executor(row, language) for row in rows[: query.limit]],
            next_cursor=str(offset + query.limit) if len(rows) > query.limit else None,
            source=self.name,
            notice=self.notice,
        )

    async def get(self, workflow_id: str, *, actor: str = "") -> dict[str, Any] | None:
        answer = await relay.ask(
            self.application, GetWorkflowRequest(workflow_id=workflow_id), actor_name=actor
        )
        row = relay.expect(answer.response, GetWorkflowResponse).output
        return None if row is None else _from_executor(row, answer.executor.language)

    async def extras(self, workflow_id: str, *, actor: str = "") -> dict[str, Any]:
        return await _executor_extras(self, workflow_id, actor)

    async def detail(self, workflow_id: str, *, steps_limit: int, actor: str = "") -> Detail:
        """The workflow (a relay error here fails the page), then its first steps and
        extras side by side (a relay error there leaves the workflow shown)."""
        workflow = await self.get(workflow_id, actor=actor)
        if workflow is None:
            return Detail(None)
        try:
            steps, extras = await asyncio.gather(
                self.steps(workflow_id, actor=actor, limit=steps_limit),
                self.extras(workflow_id, actor=actor),
            )
        except relay.RelayError as exc:
            return Detail(workflow, partial=str(exc))
        return Detail(workflow, steps, extras)

    async def queues(self, *, actor: str = "") -> Rows:
        answer = await relay.request(self.application, ListQueuesRequest(), actor_name=actor)
        return [
            {field: getattr(queue, field) for field in QUEUE_FIELDS}
            for queue in relay.expect(answer, ListQueuesResponse).output
        ]

    async def steps(
        self,
        workflow_id: str,
        *,
        actor: str = "",
        cursor: str | None = None,
        limit: int = MAX_STEPS_PAGE,
    ) -> Listing:
        """A page of steps; the cursor counts the steps already shown (list_steps pages by
        offset)."""
        if cursor and not cursor.isdigit():
            raise BadCursor(BAD_CURSOR)
        offset = int(cursor or 0)
        request = ListStepsRequest(workflow_id=workflow_id, limit=limit + 1, offset=offset or None)
        answer = await relay.ask(self.application, request, actor_name=actor)
        steps = relay.expect(answer.response, ListStepsResponse).output
        language = answer.executor.language
        more = len(steps) > limit
        return Listing(
            [_step_from_executor(row, language) for row in steps[:limit]],
            str(offset + limit) if more else None,
            self.name,
        )


async def _executor_extras(source: ExecutorSource, workflow_id: str, actor: str) -> dict[str, Any]:
    """What an executor can tell about one workflow besides itself (display text), its
    five requests sent at once. An event's history is not among it: no request asks for
    it (the page says so)."""
    ask = functools.partial(relay.request, source.application, actor_name=actor)
    answers = await asyncio.gather(
        ask(GetWorkflowEventsRequest(workflow_id=workflow_id)),
        ask(GetWorkflowNotificationsRequest(workflow_id=workflow_id)),
        ask(GetWorkflowStreamsRequest(workflow_id=workflow_id)),
        ask(
            ListWorkflowsRequest(
                body=ListWorkflowsBody(parent_workflow_id=[workflow_id], limit=MAX_RELATED)
            )
        ),
        ask(
            ListWorkflowsRequest(
                body=ListWorkflowsBody(forked_from=[workflow_id], limit=MAX_RELATED)
            )
        ),
    )
    events = relay.expect(answers[0], GetWorkflowEventsResponse)
    messages = relay.expect(answers[1], GetWorkflowNotificationsResponse)
    streams = relay.expect(answers[2], GetWorkflowStreamsResponse)
    related = {
        key: [_from_executor(row, "") for row in relay.expect(answer, ListWorkflowsResponse).output]
        for key, answer in (("children", answers[3]), ("forks", answers[4]))
    }
    return {
        **related,
        "events": [{"key": e.key, "value": e.value} for e in events.events],
        "history": [],
        "history_unavailable": True,
        "notifications": [
            {
                "topic": n.topic,
                "message": n.message,
                "created_at": _time(n.created_at_epoch_ms),
                "consumed": n.consumed,
            }
            for n in messages.notifications
        ],
        "streams": {stream.key or "": stream.values for stream in streams.streams},
    }


def _display(language: str) -> str:
    """The format name of an executor's display rendering (Python str(), Node inspect)."""
    return f"{language or 'unknown'}-display"


def _from_executor(row: WorkflowsOutput, language: str) -> dict[str, Any]:
    shown = _display(language)
    return {
        "workflow_id": row.workflow_uuid or "",
        "status": row.status,
        "name": row.workflow_name,
        "class_name": row.workflow_class_name,
        "queue_name": row.queue_name,
        "application_version": row.application_version,
        "executor_id": row.executor_id,
        "created_at": _time(row.created_at),
        "updated_at": _time(row.updated_at),
        "completed_at": _time(row.completed_at),
        "forked_from": row.forked_from,
        "parent_workflow_id": row.parent_workflow_id,
        "application_name": row.application_name,
        "input": row.input,
        "output": row.output,
        "error": row.error,
        "input_format": shown if row.input is not None else None,
        "output_format": shown if row.output is not None else None,
        "error_format": shown if row.error is not None else None,
    }


def _step_from_executor(row: WorkflowSteps, language: str) -> dict[str, Any]:
    shown = _display(language)
    return {
        "function_id": row.function_id,
        "function_name": row.function_name,
        "output": row.output,
        "error": row.error,
        "output_format": shown if row.output is not None else None,
        "error_format": shown if row.error is not None else None,
        "child_workflow_id": row.child_workflow_id,
        "started_at": _time(row.started_at_epoch_ms),
        "completed_at": _time(row.completed_at_epoch_ms),
    }


Source = DatabaseSource | ExecutorSource


def database_source(application: Application) -> DatabaseSource | None:
    """`source_for`, on the database thread, when it is the system database; None when it
    is not (no system database, or one that cannot be read: `source_for` says why)."""
    if not application.system_database_url:
        return None
    try:
        schema = systemdb.cached_schema(application) or systemdb.schema_of(application)
    except systemdb.SystemDatabaseError:
        return None
    return DatabaseSource(application, schema)


async def source_for(application: Application) -> Source:
    """The system database when it is configured and reachable, else the executors."""
    if not application.system_database_url:
        return ExecutorSource(application)
    try:
        schema = systemdb.cached_schema(application) or await db_async(systemdb.schema_of)(
            application
        )
    except systemdb.SystemDatabaseError as exc:
        return ExecutorSource(application, notice=FALLBACK.format(problem=exc))
    return DatabaseSource(application, schema)
