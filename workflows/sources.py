"""Where workflow reads come from (DESIGN.md "Where reads come from"), and what they give.

A `Source` answers every read of the console and the API with typed objects: a
`Workflow`, its `Step`s and their `StoredValue`s. With a reachable system database,
`DatabaseSource` reads it directly (fast, filterable, keyset-paginated, decoded, and
available with no executor connected): each method is one trip to the database thread
over one synchronous body. Without one, or while it is down, `ExecutorSource` asks a live
executor through the relay, always with a bounded limit. Both say which they are, and why
when it is the fallback.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import json
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, NamedTuple, ParamSpec, Protocol, TypeVar

from django.conf import settings
from django.db import OperationalError, connections, models, transaction

from conductor import relay
from conductor.protocol import (
    GetScheduleRequest,
    GetScheduleResponse,
    GetWorkflowAggregatesBody,
    GetWorkflowAggregatesRequest,
    GetWorkflowAggregatesResponse,
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
    ListSchedulesBody,
    ListSchedulesRequest,
    ListSchedulesResponse,
    ListStepsRequest,
    ListStepsResponse,
    ListWorkflowsBody,
    ListWorkflowsRequest,
    ListWorkflowsResponse,
    ScheduleOutput,
    WorkflowAggregateOutput,
    WorkflowsOutput,
    WorkflowSteps,
)
from metrics.models import RollupState
from metrics.reads import failures_rolled_up, fresh_sample
from metrics.rollups import IN_FLIGHT, queue_depths
from stepchange.asyncdb import db_async
from stepchange.models import Application
from workflows import systemdb
from workflows.models import (
    COMPLETED,
    CREATED,
    DEQUEUED,
    FAILED_STATUSES,
    ORDER_FIELDS,
    Notification,
    OperationOutput,
    Queue,
    StreamEntry,
    WorkflowSchedule,
    WorkflowStatus,
)
from workflows.serialization import decode

DATABASE = "system database"
EXECUTOR = "executor"
BAD_CURSOR = "cursor is not one this API gave out"
FALLBACK = "{problem} Read through a connected executor instead."
RECENT_FAILURES = 10
FAILED = list(FAILED_STATUSES)
# A list's count of matching workflows stops here, and at this many milliseconds.
COUNT_CAP = 10_000
COUNT_TIMEOUT_MS = 300
# The overview starts from the roll-up job's in-flight sample while it is at most this old
# (or four roll-up intervals, when those are longer).
SAMPLE_FRESH = timedelta(minutes=2)
# A workflow's values, as `stored` and the page's raw view name them.
STORED_VALUES = ("input", "output", "error")
# The most steps one answer carries, and how many it carries unless asked for more; a
# workflow with more is paged (the console shows 100 at a time as well).
MAX_STEPS_PAGE = 1000
STEPS_PAGE = 100
# A workflow's page draws every step from an outline (no outputs) of at most this many
# steps; past it the page says the outline was cut (the API still pages through them all).
MAX_OUTLINE_STEPS = 5000
# How many queued workflows an executor is asked for, to count queue depths when there is
# no system database to count them in.
RELAYED_QUEUE_SAMPLE = 500
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
# Postgres's SQLSTATE for a statement stopped by statement_timeout.
QUERY_CANCELED = "57014"
# The status-row columns a workflow shows; the payloads are read beside them when loaded.
STATUS_FIELDS = (
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
    "config_name",
    "authenticated_user",
    "assumed_role",
    "authenticated_roles",
    "workflow_timeout_ms",
    "workflow_deadline_epoch_ms",
    "deduplication_id",
    "priority",
    "queue_partition_key",
    "was_forked_from",
    "delay_until_epoch_ms",
    "attributes",
    "schedule_name",
)
PAYLOAD_FIELDS = ("input_text", "output_text", "error_text")
# What a workflow's extras hold (see EXTRAS); a read may ask for some of them only.
EXTRA_KINDS = frozenset({"events", "history", "notifications", "streams"})
# Read for one workflow, not for lists: how often it was recovered and when it left its queue.
DETAIL_FIELDS = ("recovery_attempts", "started_at_epoch_ms")
STEP_FIELDS = (
    "function_id",
    "function_name",
    "child_workflow_id",
    "started_at_epoch_ms",
    "completed_at_epoch_ms",
    "output",
    "error",
    "serialization",
)
# A list row's count of children stops here; a failed row's error is read up to this many
# characters (a longer one is not decoded: its page shows it).
CHILD_COUNT_CAP = 1000
ERROR_PREVIEW_CHARS = 8000
ERROR_TOO_LONG = "The error is too long to show here: open the workflow."
NOT_THROUGH_EXECUTOR = (
    "Through an executor, child workflows are listed among the others and are not counted."
)
# A step as an outline has it: no output, and an error only where the step failed (a few).
OUTLINE_FIELDS = (
    "function_id",
    "function_name",
    "child_workflow_id",
    "started_at_epoch_ms",
    "completed_at_epoch_ms",
    "error",
    "serialization",
)
# Schedule names seen on workflows without a stored schedule: at most this many are named.
UNSTORED_SHOWN = 100
NO_SCHEDULES_TABLE = (
    "This system database has no workflow_schedules table: its SDK stores no schedules."
)
SLOW = (
    "The system database stopped this query after {timeout} ms: DBOS keeps no index for "
    "some filters (name, executor, application version, queue without a status, "
    "authenticated user, forked or not, without a parent). Narrow it with a time range or "
    "a status."
)
# Workflow attributes as the list takes them: `key=value`, several at once.
MAX_ATTRIBUTES = 10
MAX_ATTRIBUTE_CHARS = 1000
BAD_ATTRIBUTE = "An attribute filter is key=value, such as tenant=acme; got {text!r}."
LONG_ATTRIBUTE = "An attribute filter is at most {chars} characters; got one of {length}."
MANY_ATTRIBUTES = "At most {count} attribute filters at once; got {given}."
TWICE_ATTRIBUTE = "The attribute {key!r} is given twice, with different values."
BACKWARDS = "The {label} range ends ({end}) before it starts ({start})."
# Each time range of the list: its name in messages, and its two ends.
TIME_RANGES = (
    ("created", "start_time", "end_time"),
    ("completed", "completed_after", "completed_before"),
    ("dequeued", "dequeued_after", "dequeued_before"),
)
NO_COLUMN = (
    "This system database has no {column} column (DBOS migration {version}), so the list "
    "cannot be filtered by {label}."
)
# A filter of the list, the status row's field it reads, and its name for operators.
FILTER_COLUMNS = (
    ("authenticated_user", "authenticated_user", "authenticated user"),
    ("schedule_name", "schedule_name", "schedule"),
    ("completed_after", "completed_at_ms", "completion time"),
    ("completed_before", "completed_at_ms", "completion time"),
    ("dequeued_after", "started_at_epoch_ms", "dequeue time"),
    ("dequeued_before", "started_at_epoch_ms", "dequeue time"),
    ("was_forked_from", "was_forked_from", "whether it was forked"),
    ("has_parent", "parent_workflow_id", "whether it has a parent"),
    ("attributes", "attributes", "attributes"),
)


class BadCursor(ValueError):
    pass


class UnsupportedFilter(ValueError):
    """A filter this system database cannot apply (a column its schema lacks, an attribute
    value SQLite cannot match): the list says so rather than ignoring the filter (the API
    answers 400). `field` names the filter."""

    status = 400

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class SlowQuery(Exception):
    """The system database's statement timeout stopped a query (the API answers 504)."""

    status = 504


@dataclass(frozen=True)
class StoredValue:
    """An input, output, error, event or message: `value` decoded to JSON-able data (an
    executor's display text, through the relay), `format` naming the encoding, `notes`
    on what decoding changed, `raw` the text as stored (None through the relay)."""

    value: Any
    format: str | None
    notes: tuple[str, ...] = ()
    raw: str | None = None


@dataclass(frozen=True)
class Workflow:
    workflow_id: str
    status: str | None = None
    name: str | None = None
    class_name: str | None = None
    queue_name: str | None = None
    application_version: str | None = None
    executor_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    completed_at: datetime | None = None
    forked_from: str | None = None
    parent_workflow_id: str | None = None
    application_name: str | None = None
    serialization: str | None = None
    # None when not loaded (or, loaded, when nothing is stored).
    input: StoredValue | None = None
    output: StoredValue | None = None
    error: StoredValue | None = None
    # How many workflows it started, up to CHILD_COUNT_CAP + 1; None when not counted.
    children: int | None = None
    # Read for one workflow's page only (None in lists, and through an executor for the
    # attempts, which it does not report).
    recovery_attempts: int | None = None
    dequeued_at: datetime | None = None
    # What DBOS records of how it ran (None where the schema or the executor lacks them).
    config_name: str | None = None
    authenticated_user: str | None = None
    assumed_role: str | None = None
    # As stored: a JSON array of role names.
    authenticated_roles: str | None = None
    timeout_ms: int | None = None
    deadline: datetime | None = None
    deduplication_id: str | None = None
    priority: int | None = None
    queue_partition_key: str | None = None
    was_forked_from: bool | None = None
    delay_until: datetime | None = None
    # As stored: a JSON object the application attached.
    attributes: str | None = None
    schedule_name: str | None = None

    @property
    def duration(self) -> timedelta | None:
        if self.completed_at is None or self.created_at is None:
            return None
        return self.completed_at - self.created_at


@dataclass(frozen=True)
class Step:
    function_id: int | None
    function_name: str | None
    child_workflow_id: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    output: StoredValue | None = None
    error: StoredValue | None = None
    # The row's serialization column (None through an executor).
    serialization: str | None = None

    @property
    def duration_ms(self) -> int | None:
        if self.started_at is None or self.completed_at is None:
            return None
        return int((self.completed_at - self.started_at).total_seconds() * 1000)


class OutlineStep(NamedTuple):
    """A step as an outline has it, for the timeline and the step table: no output, an
    error only where the step failed, and its times as the epoch milliseconds stored (a
    page draws a thousand of these: a tuple is made and read several times faster than a
    Step, and the bars are placed from the milliseconds)."""

    function_id: int
    function_name: str | None
    child_workflow_id: str | None
    started_ms: int | None
    completed_ms: int | None
    error: StoredValue | None

    @property
    def started_at(self) -> datetime | None:
        return _time(self.started_ms)

    @property
    def completed_at(self) -> datetime | None:
        return _time(self.completed_ms)

    @property
    def duration_ms(self) -> int | None:
        if self.started_ms is None or self.completed_ms is None:
            return None
        return self.completed_ms - self.started_ms


# Inside the sources, `list` names their method: an outline's steps are spelled this way.
Steps = list[OutlineStep]


@dataclass(frozen=True)
class Outline:
    """A workflow (its status row, no payloads) and all its steps up to MAX_OUTLINE_STEPS,
    in order, without their outputs: what the timeline and the step table are drawn from.
    `cut` says there were more steps than the cap."""

    workflow: Workflow | None
    steps: Steps = field(default_factory=list)
    cut: bool = False


@dataclass(frozen=True)
class Event:
    key: str
    value: StoredValue
    # The step that set it, in an event's history.
    function_id: int | None = None


@dataclass(frozen=True)
class Message:
    topic: str | None
    message: StoredValue
    created_at: datetime | None
    consumed: bool


@dataclass(frozen=True)
class Extras:
    """What else is known of a workflow: its events (with their history, where the
    source has it), messages and streams. Its relatives are its family (`Source.family`),
    read apart."""

    events: list[Event] = field(default_factory=list)
    history: list[Event] = field(default_factory=list)
    history_unavailable: bool = False
    notifications: list[Message] = field(default_factory=list)
    streams: dict[str, list[Any]] = field(default_factory=dict)


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
    authenticated_user: list[str] | None = None
    schedule_name: list[str] | None = None
    completed_after: datetime | None = None
    completed_before: datetime | None = None
    dequeued_after: datetime | None = None
    dequeued_before: datetime | None = None
    was_forked_from: bool | None = None
    has_parent: bool | None = None
    # Every key with its value (JSON: text, a number, true, false, null; on Postgres also
    # objects and lists, matched by containment).
    attributes: dict[str, Any] | None = None
    limit: int = 50
    cursor: str | None = None
    sort_desc: bool = True
    load_input: bool = False
    load_output: bool = False
    queued: bool = False
    # Exactly these workflows (a bulk action's selection), with the filters above.
    workflow_ids: list[str] | None = None
    # Only workflows no other workflow started (the console nests children under them).
    top_level: bool = False
    # What the console's rows show besides the status row, where the source can read it:
    # each workflow's number of children (`Workflow.children`), and the stored error of
    # failed workflows (`Workflow.error`, cut at ERROR_PREVIEW_CHARS).
    child_counts: bool = False
    failed_errors: bool = False

    @property
    def order(self) -> str:
        """What the list is ordered by: creation, unless a completion or dequeue range is
        asked for; then that time (`ORDER_FIELDS`: DBOS's own index of it pages the list at
        any depth), completion first when both are."""
        if self.completed_after is not None or self.completed_before is not None:
            return COMPLETED
        if self.dequeued_after is not None or self.dequeued_before is not None:
            return DEQUEUED
        return CREATED


T = TypeVar("T")


@dataclass(frozen=True)
class Listing(Generic[T]):
    items: list[T]
    next_cursor: str | None
    source: str
    notice: str = ""


@dataclass(frozen=True)
class Detail:
    """A workflow's page: the workflow (None if there is no such workflow), the outline of
    its steps and what else is known of it; `partial` says what could not be fetched."""

    workflow: Workflow | None
    outline: Outline | None = None
    extras: Extras = field(default_factory=Extras)
    partial: str = ""


@dataclass(frozen=True)
class QueueDepths:
    """How many workflows each queue holds, by status; `sampled` is the sample's size
    when they were counted from a sample (the depths are then at least these)."""

    depths: dict[str, dict[str, int]]
    sampled: int | None = None


@dataclass(frozen=True)
class Overview:
    """The dashboard's numbers; None where the source cannot say (`unavailable` says why)."""

    failures: list[Workflow] | None = None
    queues: QueueDepths | None = None
    unavailable: str = ""
    headline: Headline | None = None


@dataclass(frozen=True)
class Schedule:
    """A dynamic schedule (PROTOCOL.md `workflow_schedules`, `list_schedules`): `context`
    is its context as text (decoded from the database, an executor's rendering through
    the relay)."""

    name: str
    workflow_name: str
    cron: str
    status: str
    schedule_id: str | None = None
    class_name: str | None = None
    context: str | None = None
    last_fired_at: datetime | None = None
    automatic_backfill: bool = False
    timezone: str | None = None
    queue_name: str | None = None
    application_name: str | None = None

    @property
    def paused(self) -> bool:
        return self.status == "PAUSED"


@dataclass(frozen=True)
class ScheduleQuery:
    """Which schedules: each filter a list, as `list_schedules` takes them."""

    status: list[str] | None = None
    workflow_name: list[str] | None = None
    name_prefix: list[str] | None = None


@dataclass(frozen=True)
class Schedules:
    """The schedules a query keeps, and the schedule names that workflows carry without a
    stored schedule (declared in code; None when the source cannot tell)."""

    items: list[Schedule]
    source: str
    unstored: Sequence[str] | None = None
    notice: str = ""


class Source(Protocol):
    """What every page and endpoint reads through."""

    name: str
    notice: str

    async def list(self, query: ListQuery, *, actor: str = "") -> Listing[Workflow]: ...

    async def get(self, workflow_id: str, *, actor: str = "") -> Workflow | None: ...

    async def detail(self, workflow_id: str, *, actor: str = "") -> Detail: ...

    async def extras(
        self, workflow_id: str, kinds: frozenset[str] = EXTRA_KINDS, *, actor: str = ""
    ) -> Extras | None: ...

    async def outline(self, workflow_id: str, *, actor: str = "") -> Outline: ...

    async def step(self, workflow_id: str, function_id: int, *, actor: str = "") -> Step | None: ...

    async def steps(
        self, workflow_id: str, *, cursor: str | None = None, limit: int = ..., actor: str = ""
    ) -> Listing[Step]: ...

    async def queues(self, *, actor: str = "") -> QueueConfigs: ...

    async def queue_depths(self, *, actor: str = "") -> QueueDepths: ...

    async def overview(self, *, now: datetime, actor: str = "") -> Overview: ...

    async def stored(self, workflow_id: str, *, actor: str = "") -> Workflow | None: ...

    async def family(self, workflow_id: str, *, actor: str = "") -> Family: ...

    async def schedules(self, query: ScheduleQuery, *, actor: str = "") -> Schedules: ...

    async def schedule(self, name: str, *, actor: str = "") -> Schedule | None: ...


def backwards_range(times: Mapping[str, Any]) -> tuple[str, str] | None:
    """The first time range of `times` (by the names a ListQuery has) that ends before it
    starts, as the name of its end and what is wrong; None if none does."""
    for label, start_name, end_name in TIME_RANGES:
        start, end = times.get(start_name), times.get(end_name)
        if start is not None and end is not None and end < start:
            wrong = BACKWARDS.format(label=label, start=start.isoformat(), end=end.isoformat())
            return end_name, wrong
    return None


def parse_attributes(texts: Sequence[str]) -> dict[str, Any] | None:
    """`key=value` texts as the attributes they ask for (None for none). A value that is
    JSON (a number, true, false, null, "quoted text", an object or a list) is that value;
    any other text is itself: `tier=3` asks for the number 3, `tier="3"` for the text.
    ValueError says what is wrong."""
    texts = [text for text in texts if text.strip()]
    if len(texts) > MAX_ATTRIBUTES:
        raise ValueError(MANY_ATTRIBUTES.format(count=MAX_ATTRIBUTES, given=len(texts)))
    wanted: dict[str, Any] = {}
    for text in texts:
        if len(text) > MAX_ATTRIBUTE_CHARS:
            raise ValueError(LONG_ATTRIBUTE.format(chars=MAX_ATTRIBUTE_CHARS, length=len(text)))
        key, equals, raw = text.partition("=")
        key = key.strip()
        if not equals or not key:
            raise ValueError(BAD_ATTRIBUTE.format(text=text[:80]))
        value = _json_or_text(raw.strip())
        if key in wanted and wanted[key] != value:
            raise ValueError(TWICE_ATTRIBUTE.format(key=key))
        wanted[key] = value
    return wanted or None


def _refuse_constant(name: str) -> Any:
    raise ValueError(name)


def _json_or_text(raw: str) -> Any:
    # NaN and Infinity are Python's, not JSON's: such a value is text.
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except ValueError:
        return raw


def split_names(value: str) -> list[str] | None:
    """A comma-separated filter value as a list (None when it names nothing)."""
    names = [item.strip() for item in value.split(",") if item.strip()]
    return names or None


def _time(epoch_ms: int | None) -> datetime | None:
    """A time from epoch milliseconds; one no datetime can hold (a corrupt row, an executor
    that sent nonsense) is shown as unknown rather than failing the page."""
    if epoch_ms is None:
        return None
    try:
        return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _stored(text: str | None, serialization: str | None, kind: Any) -> StoredValue | None:
    if text is None:
        return None
    decoded = decode(text, serialization, kind=kind)
    return StoredValue(decoded.value, decoded.format, tuple(decoded.notes), text)


P = ParamSpec("P")
R = TypeVar("R")


def _on_thread(read: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """`read`, one trip to the database thread; a statement timeout there becomes
    SlowQuery with advice."""

    def timed(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return read(*args, **kwargs)
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) == QUERY_CANCELED:
                timeout = settings.SYSTEM_DB_STATEMENT_TIMEOUT_MS
                raise SlowQuery(SLOW.format(timeout=timeout)) from None
            raise

    return db_async(timed)


Statement = tuple[str, Sequence[Any]]
Rows = list[tuple[Any, ...]]
# A queue's configuration, by QUEUE_FIELDS.
QueueConfigs = list[dict[str, Any]]


def _together(alias: str, statements: list[Statement]) -> list[Rows]:
    """Each statement's rows. On Postgres the statements go as one query, in one round
    trip: Django's psycopg cursors bind values on the client (OPTIONS has no
    server_side_binding), which lets a query hold several statements, and their results
    come back together. SQLite runs them one after another. A workflow's page reads its
    status row, its first steps and its extras this way."""
    found: list[Rows] = []
    connection = connections[alias]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "; ".join(sql for sql, _ in statements), [v for _, ps in statements for v in ps]
            )
            found.append(cursor.fetchall())
            while cursor.nextset():
                found.append(cursor.fetchall())
        else:
            for sql, params in statements:
                cursor.execute(sql, params)
                found.append(cursor.fetchall())
    return found


def _sql(queryset: models.QuerySet[Any]) -> Statement:
    """The SQL a queryset sends to its own database, to run `_together` with others."""
    sql, params = queryset.query.get_compiler(using=queryset.db).as_sql()
    return sql, params


class DatabaseSource:
    name = DATABASE

    def __init__(self, application: Application, schema: systemdb.Schema) -> None:
        self.application = application
        self.schema = schema
        self.alias = systemdb.alias_for(application)
        self.notice = "" if schema.known else systemdb.status_of(application).detail

    async def list(self, query: ListQuery, *, actor: str = "") -> Listing[Workflow]:
        return await _on_thread(self._list)(query)

    def matching(self, query: ListQuery) -> Any:
        """The workflows `query`'s filters keep, in no order, as a queryset to read further
        (the aggregates group it); a filter this database cannot apply is refused."""
        return self._filtered(query)

    def _filtered(self, query: ListQuery) -> Any:
        """The workflows `query`'s filters keep, in no order."""
        self._check_columns(query)
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
            has_parent=False if query.top_level else query.has_parent,
            was_forked_from=query.was_forked_from,
            authenticated_user=query.authenticated_user,
            schedule_name=query.schedule_name,
            completed_after=query.completed_after,
            completed_before=query.completed_before,
            dequeued_after=query.dequeued_after,
            dequeued_before=query.dequeued_before,
        )
        if query.workflow_id_prefix:
            rows = rows.id_prefix(query.workflow_id_prefix, bytewise=self.schema.bytewise_text)
        if query.attributes:
            try:
                rows = rows.with_attributes(query.attributes)
            except ValueError as exc:
                raise UnsupportedFilter(str(exc), "attributes") from None
        return rows

    def _check_columns(self, query: ListQuery) -> None:
        """A filter whose column this database lacks is refused, never ignored."""
        missing = systemdb.missing_fields(self.alias, WorkflowStatus)
        for name, field_name, label in FILTER_COLUMNS:
            if getattr(query, name) is not None and field_name in missing:
                column = WorkflowStatus._meta.get_field(field_name).column  # type: ignore[union-attr]
                raise UnsupportedFilter(
                    NO_COLUMN.format(column=column, version=self.schema.version, label=label),
                    name,
                )

    def _status_fields(self) -> tuple[str, ...]:
        # Older schemas lack some of the columns a workflow shows: those read as None.
        missing = systemdb.missing_fields(self.alias, WorkflowStatus)
        return tuple(name for name in STATUS_FIELDS if name not in missing)

    def _list(self, query: ListQuery) -> Listing[Workflow]:
        rows = self._filtered(query)
        payloads = query.load_input or query.load_output
        if payloads:
            rows = rows.with_payloads(payload_tables=self.schema.has_payload_tables)
        by = query.order
        ordered = rows.newest_first(by) if query.sort_desc else rows.oldest_first(by)
        after = ordered.after(_keyset(query.cursor, by), descending=query.sort_desc, by=by)
        count = query.limit + 1
        fields = self._status_fields() + (PAYLOAD_FIELDS if payloads else ())
        if ORDER_FIELDS[by] not in fields:
            fields += (ORDER_FIELDS[by],)
        if query.child_counts:
            after = after.with_child_counts(cap=CHILD_COUNT_CAP)
            fields += ("children",)
        if query.failed_errors and not query.load_output:
            after = after.with_failed_errors(
                payload_tables=self.schema.has_payload_tables, chars=ERROR_PREVIEW_CHARS
            )
            fields += ("error_text",)
        newest_enqueued = query.status == ["ENQUEUED"] and query.sort_desc and by == CREATED
        if self.schema.queue_index and newest_enqueued:
            page = _newest_enqueued(after, count)
        else:
            page = [
                dict(zip(fields, row, strict=True)) for row in after.values_list(*fields)[:count]
            ]
        more = len(page) > query.limit
        page = page[: query.limit]
        return Listing(
            [
                _workflow(row, load_input=query.load_input, load_output=query.load_output)
                for row in page
            ],
            _keyset_cursor(page[-1], by) if more else None,
            self.name,
            self.notice,
        )

    async def count(self, query: ListQuery) -> tuple[int, bool] | None:
        """How many workflows `query`'s filters keep, and whether there are more: counted
        up to COUNT_CAP (then `(COUNT_CAP, True)`), or None if the database could not count
        them within COUNT_TIMEOUT_MS (an unindexed filter over many rows). Never a full
        COUNT(*)."""
        return await _on_thread(self._count)(query)

    def _count(self, query: ListQuery) -> tuple[int, bool] | None:
        counted = self._filtered(query).order_by().values("pk")[: COUNT_CAP + 1]
        try:
            if connections[self.alias].vendor != "postgresql":
                found = counted.count()
            else:
                with (
                    transaction.atomic(using=self.alias),
                    connections[self.alias].cursor() as cursor,
                ):
                    cursor.execute(f"SET LOCAL statement_timeout = {int(COUNT_TIMEOUT_MS)}")
                    found = counted.count()
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) == QUERY_CANCELED:
                return None
            raise
        return min(found, COUNT_CAP), found > COUNT_CAP

    async def get(self, workflow_id: str, *, actor: str = "") -> Workflow | None:
        return await _on_thread(self._get)(workflow_id)

    async def stored(self, workflow_id: str, *, actor: str = "") -> Workflow | None:
        """The workflow with its values; each value's `raw` is the text as stored."""
        return await self.get(workflow_id, actor=actor)

    def _get(self, workflow_id: str) -> Workflow | None:
        statement, shape = self._workflow_read(workflow_id)
        return shape(_together(self.alias, [statement])[0])

    def _workflow_read(
        self, workflow_id: str, *, payloads: bool = True
    ) -> tuple[Statement, Callable[[Rows], Workflow | None]]:
        """The workflow's status row (with its payloads unless told not), and what makes
        it a Workflow."""
        rows = systemdb.workflows(self.application)
        if payloads:
            rows = rows.with_payloads(payload_tables=self.schema.has_payload_tables)
        missing = systemdb.missing_fields(self.alias, WorkflowStatus)
        fields = self._status_fields() + tuple(f for f in DETAIL_FIELDS if f not in missing)
        fields += PAYLOAD_FIELDS if payloads else ()
        one = rows.filter(workflow_uuid=workflow_id).values_list(*fields)[:1]

        def shape(rows: Rows) -> Workflow | None:
            if not rows:
                return None
            row = dict(zip(fields, rows[0], strict=True))
            return _workflow(row, load_input=payloads, load_output=payloads)

        return _sql(one), shape

    async def detail(self, workflow_id: str, *, actor: str = "") -> Detail:
        return await _on_thread(self._detail)(workflow_id)

    def _detail(self, workflow_id: str) -> Detail:
        """The workflow, the outline of its steps and its extras: three statements, one
        round trip. No step output is read or decoded: a step's panel asks for its own."""
        workflow_read = self._workflow_read(workflow_id)
        steps_read = self._outline_read(workflow_id)
        extras_sql = _extras_sql(self.schema, workflow_id)
        found, steps, extras = _together(self.alias, [workflow_read[0], steps_read[0], extras_sql])
        workflow = workflow_read[1](found)
        if workflow is None:
            return Detail(None)
        outline = Outline(workflow, *steps_read[1](steps))
        return Detail(workflow, outline, _extras_of(extras))

    async def extras(
        self, workflow_id: str, kinds: frozenset[str] = EXTRA_KINDS, *, actor: str = ""
    ) -> Extras | None:
        """The workflow's extras of these kinds only, or None if there is no such
        workflow: its status row (no payloads) and the extras, one round trip; no step is
        read."""
        return await _on_thread(self._extras)(workflow_id, kinds)

    def _extras(self, workflow_id: str, kinds: frozenset[str]) -> Extras | None:
        exists = systemdb.workflows(self.application).filter(workflow_uuid=workflow_id)
        statements = [_sql(exists.values_list("workflow_uuid")[:1])]
        extras_sql = _extras_sql(self.schema, workflow_id, kinds)
        if extras_sql[0]:
            statements.append(extras_sql)
        found, *extras = _together(self.alias, statements)
        if not found:
            return None
        return _extras_of(extras[0] if extras else [])

    async def outline(self, workflow_id: str, *, actor: str = "") -> Outline:
        return await _on_thread(self._outline)(workflow_id)

    def _outline(self, workflow_id: str) -> Outline:
        """The status row without payloads and the steps' outline, in one round trip."""
        workflow_read = self._workflow_read(workflow_id, payloads=False)
        steps_read = self._outline_read(workflow_id)
        found, steps = _together(self.alias, [workflow_read[0], steps_read[0]])
        workflow = workflow_read[1](found)
        if workflow is None:
            return Outline(None)
        return Outline(workflow, *steps_read[1](steps))

    def _outline_read(
        self, workflow_id: str
    ) -> tuple[Statement, Callable[[Rows], tuple[Steps, bool]]]:
        """Every step up to MAX_OUTLINE_STEPS without its output; an error is read (and
        decoded) only where there is one, which is for the few steps that failed."""
        missing = systemdb.missing_fields(self.alias, OperationOutput)
        fields = tuple(name for name in OUTLINE_FIELDS if name not in missing)
        steps = systemdb.steps(self.application).of(workflow_id)
        statement = _sql(steps.values_list(*fields)[: MAX_OUTLINE_STEPS + 1])

        def shape(rows: Rows) -> tuple[Steps, bool]:
            if len(fields) == len(OUTLINE_FIELDS):
                found = [_outline_step(*row) for row in rows]
            else:  # an older schema: its absent columns read as None
                absent: dict[str, Any] = dict.fromkeys(OUTLINE_FIELDS)
                found = [
                    _outline_step(**(absent | dict(zip(fields, row, strict=True)))) for row in rows
                ]
            return found[:MAX_OUTLINE_STEPS], len(found) > MAX_OUTLINE_STEPS

        return statement, shape

    async def step(self, workflow_id: str, function_id: int, *, actor: str = "") -> Step | None:
        return await _on_thread(self._step)(workflow_id, function_id)

    def _step(self, workflow_id: str, function_id: int) -> Step | None:
        """One step with its output and error decoded (and kept as stored)."""
        missing = systemdb.missing_fields(self.alias, OperationOutput)
        fields = tuple(name for name in STEP_FIELDS if name not in missing)
        one = systemdb.steps(self.application).of(workflow_id).filter(function_id=function_id)
        rows = _together(self.alias, [_sql(one.values_list(*fields)[:1])])[0]
        return _step(dict(zip(fields, rows[0], strict=True))) if rows else None

    async def steps(
        self,
        workflow_id: str,
        *,
        cursor: str | None = None,
        limit: int = MAX_STEPS_PAGE,
        actor: str = "",
    ) -> Listing[Step]:
        return await _on_thread(self._steps)(workflow_id, cursor, limit)

    def _steps(self, workflow_id: str, cursor: str | None, limit: int) -> Listing[Step]:
        statement, shape = self._steps_read(workflow_id, cursor, limit)
        return shape(_together(self.alias, [statement])[0])

    def _steps_read(
        self, workflow_id: str, cursor: str | None, limit: int
    ) -> tuple[Statement, Callable[[Rows], Listing[Step]]]:
        """A page of steps after the step `cursor` names; only the page is decoded."""
        if cursor and not cursor.lstrip("-").isdigit():
            raise BadCursor(BAD_CURSOR)
        steps = systemdb.steps(self.application).of(workflow_id)
        if cursor:
            steps = steps.filter(function_id__gt=int(cursor))
        missing = systemdb.missing_fields(self.alias, OperationOutput)
        fields = tuple(name for name in STEP_FIELDS if name not in missing)
        page_sql = _sql(steps.values_list(*fields)[: limit + 1])

        def shape(rows: Rows) -> Listing[Step]:
            page = [dict(zip(fields, row, strict=True)) for row in rows]
            more = len(page) > limit
            page = page[:limit]
            # Steps often record the same text (a loop's step returning one value): each
            # distinct text is decoded once per page, not once per step.
            decoded: Decodings = {}
            return Listing(
                [_step(row, decoded) for row in page],
                str(page[-1]["function_id"]) if more else None,
                self.name,
                self.notice,
            )

        return page_sql, shape

    async def queues(self, *, actor: str = "") -> QueueConfigs:
        return await _on_thread(self._queues)()

    def _queues(self) -> QueueConfigs:
        return [
            {field: getattr(queue, field) for field in QUEUE_FIELDS}
            for queue in systemdb.rows(self.application, Queue).order_by("name")
        ]

    async def queue_depths(self, *, actor: str = "") -> QueueDepths:
        return await _on_thread(self._queue_depths)()

    def _queue_depths(self) -> QueueDepths:
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
        return QueueDepths(dict(sorted(depths.items())))

    async def overview(self, *, now: datetime, actor: str = "") -> Overview:
        return await _on_thread(self._overview)(now)

    def _overview(self, now: datetime) -> Overview:
        """Recent failures, how deep each queue is, and the headline numbers. No charts:
        the overview draws them from the metric roll-ups (metrics/), which read only what
        is new; drawn from here they would scan every workflow of the window per refresh.
        The numbers too start from the roll-up job's last sample when there is a fresh one
        (`_since_sample`); without, they are counted afresh (`_headline`)."""
        failures = self._list(ListQuery(status=FAILED, limit=RECENT_FAILURES)).items
        missing = systemdb.missing_fields(self.alias, WorkflowStatus)
        state = None
        if not missing & {"completed_at_ms", "started_at_epoch_ms"}:
            within = max(SAMPLE_FRESH, timedelta(seconds=4 * settings.METRICS_ROLLUP_SECONDS))
            state = fresh_sample(self.application, now, within=within)
        if state is None:
            return Overview(failures, self._queue_depths(), headline=self._headline(now))
        depths, headline = self._since_sample(state, now)
        return Overview(failures, depths, headline=headline)

    @contextlib.contextmanager
    def _bounded(self) -> Iterator[None]:
        """A transaction in which Postgres stops each statement after COUNT_TIMEOUT_MS."""
        connection = connections[self.alias]
        with transaction.atomic(using=self.alias):
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute(f"SET LOCAL statement_timeout = {int(COUNT_TIMEOUT_MS)}")
            yield

    def _headline(self, now: datetime) -> Headline:
        """The dashboard's three counts of workflows, in one statement: each counted as the
        list counts (up to COUNT_CAP, within COUNT_TIMEOUT_MS: not counted past that), each
        through an index of DBOS's (pending; in flight; completed_at, or failed by status
        and created_at in a schema without completion times)."""
        since = failed_since(now)
        missing = systemdb.missing_fields(self.alias, WorkflowStatus)
        by_completion = "completed_at_ms" not in missing
        failed = (
            ListQuery(status=FAILED, completed_after=since)
            if by_completion
            else ListQuery(status=FAILED, start_time=since)
        )
        queries = [ListQuery(status=["PENDING"]), ListQuery(status=["ENQUEUED"]), failed]
        counted = [
            _sql(self._filtered(q).order_by().values("pk")[: COUNT_CAP + 1]) for q in queries
        ]
        # Django's SQL of each count's rows, each counted in a scalar subquery.
        parts = [
            f"(SELECT COUNT(*) FROM ({part}) AS counted_{n})"  # noqa: S608
            for n, (part, _) in enumerate(counted)
        ]
        sql = f"SELECT {', '.join(parts)}"
        params = [value for _, values in counted for value in values]
        try:
            with self._bounded(), connections[self.alias].cursor() as cursor:
                cursor.execute(sql, params)
                found = cursor.fetchone()
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != QUERY_CANCELED:
                raise
            found = None
        if found is None:
            return Headline(Tally(None), Tally(None), Tally(None), since, by_completion)
        in_flight, queued, failed_tally = (Tally(min(n, COUNT_CAP), n > COUNT_CAP) for n in found)
        return Headline(in_flight, queued, failed_tally, since, by_completion)

    def _since_sample(self, state: RollupState, now: datetime) -> tuple[QueueDepths, Headline]:
        """The overview's numbers from the roll-up job's last sample and roll-ups, with
        only what was stamped after them counted live: failures completed past the
        watermark; workflows created, dequeued or finished after the in-flight sample
        (ranges of DBOS's indexes of completed_at, created_at and started_at_epoch_ms)."""
        since = failed_since(now)
        since_ms = int(since.timestamp() * 1000)
        assert state.queues_sampled_at is not None
        sampled_ms = int(state.queues_sampled_at.timestamp() * 1000)
        rolled = 0
        if state.rolled_to_ms > since_ms:
            rolled = failures_rolled_up(self.application, since)
        counts = {queue: dict(c) for queue, c in state.in_flight.items()}

        def add(queue: str | None, status: str, n: int) -> None:
            held = counts.setdefault(queue or "", {})
            held[status] = max(held.get(status, 0) + n, 0)

        rows = systemdb.workflows(self.application).order_by()
        dequeued = models.Q(started_at_epoch_ms__gt=sampled_ms)
        finished = models.Q(completed_at_ms__gt=sampled_ms) & ~models.Q(status__in=IN_FLIGHT)
        try:
            with self._bounded():
                failed = rows.filter(
                    status__in=FAILED, completed_at_ms__gt=max(state.rolled_to_ms, since_ms)
                ).count()
                arrived = rows.filter(created_at_ms__gt=sampled_ms, status__in=IN_FLIGHT)
                for queue, status, n in arrived.values_list("queue_name", "status").annotate(
                    n=models.Count("*")
                ):
                    add(queue, status, n)
                moved = (
                    rows.filter(created_at_ms__lte=sampled_ms)
                    .filter(dequeued | finished)
                    .values_list("queue_name")
                    .annotate(
                        # Waiting at the sample, let go since; of those, running now.
                        let_go=models.Count("pk", filter=dequeued),
                        running=models.Count("pk", filter=dequeued & models.Q(status="PENDING")),
                        # Running at the sample, finished since.
                        done=models.Count("pk", filter=finished & ~dequeued),
                    )
                )
                for queue, let_go, running, done in moved:
                    add(queue, "ENQUEUED", -let_go)
                    add(queue, "PENDING", running - done)
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != QUERY_CANCELED:
                raise
            untold = Headline(Tally(None), Tally(None), Tally(None), since)
            return QueueDepths(dict(sorted(queue_depths(counts).items()))), untold

        def total(status: str) -> Tally:
            return Tally(sum(c.get(status, 0) for c in counts.values()))

        headline = Headline(total("PENDING"), total("ENQUEUED"), Tally(rolled + failed), since)
        return QueueDepths(dict(sorted(queue_depths(counts).items()))), headline

    async def family(self, workflow_id: str, *, actor: str = "") -> Family:
        return await _on_thread(self._family)(workflow_id)

    def _family(self, workflow_id: str) -> Family:
        """The workflow and its kin: one statement, one round trip (see `_family_sql`)."""
        [rows] = _together(self.alias, [_family_sql(self.schema, workflow_id)])
        return _family_of(rows)

    async def schedules(self, query: ScheduleQuery, *, actor: str = "") -> Schedules:
        return await _on_thread(self._schedules)(query)

    def _schedules(self, query: ScheduleQuery) -> Schedules:
        rows = systemdb.rows(self.application, WorkflowSchedule)
        if query.status:
            rows = rows.filter(status__in=query.status)
        if query.workflow_name:
            rows = rows.filter(workflow_name__in=query.workflow_name)
        if query.name_prefix:
            prefixes = models.Q()
            for prefix in query.name_prefix:
                prefixes |= models.Q(schedule_name__startswith=prefix)
            rows = rows.filter(prefixes)
        items = [_schedule(row) for row in rows.order_by("schedule_name")]
        notice = "" if self.schema.has("workflow_schedules") else NO_SCHEDULES_TABLE
        return Schedules(items, self.name, self._unstored(), notice)

    def _unstored(self) -> Sequence[str] | None:
        """Schedule names that workflows carry and no stored schedule has: schedules an SDK
        declares in code (through DBOS's partial index of schedule names)."""
        if "schedule_name" in systemdb.missing_fields(self.alias, WorkflowStatus):
            return None
        stored = systemdb.rows(self.application, WorkflowSchedule).values("schedule_name")
        names = (
            systemdb.workflows(self.application)
            .filter(schedule_name__isnull=False)
            .exclude(schedule_name__in=stored)
            .order_by("schedule_name")
            .values_list("schedule_name", flat=True)
            .distinct()
        )
        return [name for name in names[:UNSTORED_SHOWN] if name]

    async def schedule(self, name: str, *, actor: str = "") -> Schedule | None:
        return await _on_thread(self._schedule)(name)

    def _schedule(self, name: str) -> Schedule | None:
        row = systemdb.rows(self.application, WorkflowSchedule).filter(schedule_name=name).first()
        return None if row is None else _schedule(row)


def _fired_at(text: str | None) -> datetime | None:
    """`last_fired_at`, ISO text as DBOS writes it; text no datetime reads is unknown."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _schedule(row: WorkflowSchedule) -> Schedule:
    context = decode(row.context, None).value if row.context is not None else None
    return Schedule(
        name=row.schedule_name,
        workflow_name=row.workflow_name,
        cron=row.schedule,
        status=row.status,
        schedule_id=row.schedule_id,
        class_name=row.workflow_class_name,
        context=json.dumps(context, default=str),
        last_fired_at=_fired_at(row.last_fired_at),
        automatic_backfill=bool(row.automatic_backfill),
        timezone=row.cron_timezone,
        queue_name=row.queue_name,
        application_name=row.application_name,
    )


def _schedule_from_executor(row: ScheduleOutput) -> Schedule:
    return Schedule(
        name=row.schedule_name or "",
        workflow_name=row.workflow_name or "",
        cron=row.schedule or "",
        status=row.status or "",
        schedule_id=row.schedule_id,
        class_name=row.workflow_class_name,
        context=row.context,
        last_fired_at=_fired_at(row.last_fired_at),
        automatic_backfill=bool(row.automatic_backfill),
        timezone=row.cron_timezone,
        queue_name=row.queue_name,
        application_name=row.application_name,
    )


# What `_extras` reads, each as rows of five columns: (text, text, text, number, flag).
EXTRAS = (
    ("events", "workflow_events"),
    ("history", "workflow_events_history"),
    ("notifications", "notifications"),
    ("streams", "streams"),
)


def _extras_sql(
    schema: systemdb.Schema, workflow_id: str, kinds: frozenset[str] = EXTRA_KINDS
) -> tuple[str, list[Any]]:
    """One UNION ALL over the tables of these kinds this database has (empty text when it
    has none), its absent columns read as NULL; each branch a subquery naming its columns
    alike. The text is made
    of this function's constants and of column names the schema was seen to have; the
    workflow id is a parameter."""
    branches: list[str] = []
    params: list[Any] = []
    for kind, table in EXTRAS:
        if kind not in kinds or table not in schema.columns:
            continue
        columns = schema.columns[table]

        def col(name: str, columns: frozenset[str] = columns) -> str:
            return f'"{name}"' if name in columns else "NULL"

        if table == "notifications":
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


def _workflow(row: dict[str, Any], *, load_input: bool, load_output: bool) -> Workflow:
    """A workflow from its status row's columns (and payloads, where loaded)."""
    serialization = row.get("serialization")
    values: dict[str, StoredValue | None] = {}
    if load_input:
        values["input"] = _stored(row.get("input_text"), serialization, "inputs")
    if load_output:
        values["output"] = _stored(row.get("output_text"), serialization, "value")
        values["error"] = _stored(row.get("error_text"), serialization, "error")
    elif row.get("error_text") is not None:
        values["error"] = _error_preview(row["error_text"], serialization)
    return Workflow(
        workflow_id=row["workflow_uuid"],
        status=row.get("status"),
        name=row.get("name"),
        class_name=row.get("class_name"),
        queue_name=row.get("queue_name"),
        application_version=row.get("application_version"),
        executor_id=row.get("executor_id"),
        created_at=_time(row.get("created_at_ms")),
        updated_at=_time(row.get("updated_at_ms")),
        completed_at=_time(row.get("completed_at_ms")),
        forked_from=row.get("forked_from"),
        parent_workflow_id=row.get("parent_workflow_id"),
        application_name=row.get("application_name"),
        serialization=serialization,
        children=row.get("children"),
        recovery_attempts=row.get("recovery_attempts"),
        dequeued_at=_time(row.get("started_at_epoch_ms")),
        config_name=row.get("config_name"),
        authenticated_user=row.get("authenticated_user"),
        assumed_role=row.get("assumed_role"),
        authenticated_roles=row.get("authenticated_roles"),
        timeout_ms=row.get("workflow_timeout_ms"),
        deadline=_time(row.get("workflow_deadline_epoch_ms")),
        deduplication_id=row.get("deduplication_id"),
        priority=row.get("priority"),
        queue_partition_key=row.get("queue_partition_key"),
        was_forked_from=row.get("was_forked_from"),
        delay_until=_time(row.get("delay_until_epoch_ms")),
        attributes=row.get("attributes"),
        schedule_name=row.get("schedule_name"),
        **values,
    )


def _error_preview(text: str, serialization: str | None) -> StoredValue:
    """A failed row's error, read up to ERROR_PREVIEW_CHARS (+1 to tell a cut one): a cut
    text would not decode, so it is only said to be there."""
    if len(text) > ERROR_PREVIEW_CHARS:
        return StoredValue(None, None, (ERROR_TOO_LONG,))
    return _stored(text, serialization, "error") or StoredValue(None, None)


# Each distinct (stored text, serialization, kind)'s decoding, kept for one page.
Decodings = dict[tuple[str, str | None, str], StoredValue | None]


def _step(row: dict[str, Any], decoded: Decodings | None = None) -> Step:
    """A step row as a Step; `decoded`, when given, keeps each distinct stored text's
    decoding so a page decodes it once."""
    serialization = row.get("serialization")

    def stored(text: str | None, kind: str) -> StoredValue | None:
        if text is None or decoded is None:
            return _stored(text, serialization, kind)
        key = (text, serialization, kind)
        if key not in decoded:
            decoded[key] = _stored(text, serialization, kind)
        return decoded[key]

    return Step(
        function_id=row["function_id"],
        function_name=row.get("function_name"),
        child_workflow_id=row.get("child_workflow_id"),
        started_at=_time(row.get("started_at_epoch_ms")),
        completed_at=_time(row.get("completed_at_epoch_ms")),
        output=stored(row.get("output"), "value"),
        error=stored(row.get("error"), "error"),
        serialization=serialization,
    )


def _outline_step(
    function_id: int,
    function_name: str | None,
    child_workflow_id: str | None,
    started_at_epoch_ms: int | None,
    completed_at_epoch_ms: int | None,
    error: str | None,
    serialization: str | None,
) -> OutlineStep:
    """A step of an outline from its row, in OUTLINE_FIELDS' order."""
    failed = None if error is None else _stored(error, serialization, "error")
    return OutlineStep(
        function_id,
        function_name,
        child_workflow_id,
        started_at_epoch_ms,
        completed_at_epoch_ms,
        failed,
    )


def outline_step(step: Step) -> OutlineStep:
    """A whole step (an executor's) as an outline has it."""
    return OutlineStep(
        step.function_id or 0,
        step.function_name,
        step.child_workflow_id,
        None if step.started_at is None else int(step.started_at.timestamp() * 1000),
        None if step.completed_at is None else int(step.completed_at.timestamp() * 1000),
        step.error,
    )


def _newest_enqueued(enqueued: Any, count: int) -> list[dict[str, Any]]:
    """The newest ENQUEUED rows of `enqueued` (see `newest_enqueued_sql`), by field name."""
    sql, params = enqueued.newest_enqueued_sql(count)
    attnames = {field.column: field.attname for field in WorkflowStatus._meta.concrete_fields}
    with connections[enqueued.db].cursor() as cursor:
        cursor.execute(sql, params)
        names = [attnames.get(column.name, column.name) for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _keyset(cursor: str | None, by: str) -> tuple[int, str] | None:
    """The (time in ms, workflow id) a page's cursor stands for; a cursor of a list in
    another order is not one this list gave out."""
    if not cursor:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        order, _, key = text.partition(":") if by != CREATED else ("", "", text)
        moment, _, workflow_id = key.partition("~")
        if order != (by if by != CREATED else ""):
            raise ValueError(order)
        return int(moment), workflow_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadCursor(BAD_CURSOR) from None


def _keyset_cursor(row: dict[str, Any], by: str) -> str:
    """The cursor after `row`: its time and id, with the order named unless by creation
    (so that a creation-ordered cursor reads as it always has)."""
    order = "" if by == CREATED else f"{by}:"
    key = f"{order}{row[ORDER_FIELDS[by]]}~{row['workflow_uuid']}"
    return base64.urlsafe_b64encode(key.encode()).decode()


def _extras_of(rows: Sequence[tuple[Any, ...]]) -> Extras:
    """The extras' rows (see `_extras_sql`), decoded and grouped for the page."""
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
    return Extras(
        events=[
            Event(key, _stored_or_none(value, serialization))
            for key, value, serialization, _, _ in sorted(found["events"], key=lambda r: r[0])
        ],
        history=[
            Event(key, _stored_or_none(value, serialization), function_id)
            for key, value, serialization, function_id, _ in sorted(
                found["history"], key=lambda r: (r[3], r[0])
            )
        ],
        notifications=[
            Message(
                None if topic == Notification.NO_TOPIC else topic,
                _stored_or_none(message, serialization),
                _time(created),
                bool(consumed),
            )
            for topic, message, serialization, created, consumed in sorted(
                found["notifications"], key=lambda r: r[3] or 0
            )
        ],
        streams=streams,
    )


def _stored_or_none(text: str | None, serialization: str | None) -> StoredValue:
    """An event's or message's value: a value of None when nothing is stored."""
    return _stored(text, serialization, "value") or StoredValue(None, None)


class ExecutorSource:
    """Reads through a live executor: its display renderings, passed on verbatim."""

    name = EXECUTOR

    def __init__(self, application: Application, notice: str = "") -> None:
        self.application = application
        self.notice = notice

    async def list(self, query: ListQuery, *, actor: str = "") -> Listing[Workflow]:
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
            authenticated_user=query.authenticated_user,
            schedule_name=query.schedule_name,
            completed_after=query.completed_after,
            completed_before=query.completed_before,
            dequeued_after=query.dequeued_after,
            dequeued_before=query.dequeued_before,
            was_forked_from=query.was_forked_from,
            has_parent=query.has_parent,
            attributes=query.attributes,
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
            [_from_executor(row, language) for row in rows[: query.limit]],
            str(offset + query.limit) if len(rows) > query.limit else None,
            self.name,
            # No request of the protocol keeps only top-level workflows or counts children.
            " ".join(
                note
                for note in (self.notice, NOT_THROUGH_EXECUTOR if query.top_level else "")
                if note
            ),
        )

    async def get(self, workflow_id: str, *, actor: str = "") -> Workflow | None:
        answer = await relay.ask(
            self.application, GetWorkflowRequest(workflow_id=workflow_id), actor_name=actor
        )
        row = relay.expect(answer.response, GetWorkflowResponse).output
        return None if row is None else _from_executor(row, answer.executor.language)

    async def stored(self, workflow_id: str, *, actor: str = "") -> Workflow | None:
        """Through an executor, a value as stored is the text it shows for it."""
        return await self.get(workflow_id, actor=actor)

    async def detail(self, workflow_id: str, *, actor: str = "") -> Detail:
        """The workflow (a relay error here fails the page), then the outline of its steps
        and its extras side by side (a relay error there leaves the workflow shown)."""
        workflow = await self.get(workflow_id, actor=actor)
        if workflow is None:
            return Detail(None)
        try:
            (steps, cut), extras = await asyncio.gather(
                self._outline_steps(workflow_id, actor=actor),
                self._extras(workflow_id, actor=actor),
            )
        except relay.RelayError as exc:
            return Detail(workflow, partial=str(exc))
        return Detail(workflow, Outline(workflow, steps, cut), extras)

    async def outline(self, workflow_id: str, *, actor: str = "") -> Outline:
        """The workflow and its steps' outline, asked at once."""
        workflow, (steps, cut) = await asyncio.gather(
            self.get(workflow_id, actor=actor), self._outline_steps(workflow_id, actor=actor)
        )
        return Outline(workflow, steps if workflow else [], cut)

    async def _outline_steps(self, workflow_id: str, *, actor: str) -> tuple[Steps, bool]:
        """list_steps up to MAX_OUTLINE_STEPS: an executor sends the outputs along (its
        display text), which the outline drops; it keeps the errors, as from a database."""
        page = await self.steps(workflow_id, limit=MAX_OUTLINE_STEPS, actor=actor)
        return [outline_step(step) for step in page.items], page.next_cursor is not None

    async def step(self, workflow_id: str, function_id: int, *, actor: str = "") -> Step | None:
        """One step, found in list_steps, which an executor pages by position, not by
        function id. Ids count from 0 or 1 and rarely skip, so the step is first asked for
        where it would be (the two positions `function_id - 1` and `function_id`); only if
        ids skipped before it is it looked for among them all."""
        if function_id < 0:
            return None
        near = await self.steps(
            workflow_id, cursor=str(max(0, function_id - 1)), limit=2, actor=actor
        )
        found = next((step for step in near.items if step.function_id == function_id), None)
        if found is not None:
            return found
        if near.items and near.items[0].function_id == function_id - 1:
            # No id skipped before it, and it is not next: the workflow has no such step.
            return None
        page = await self.steps(workflow_id, limit=MAX_OUTLINE_STEPS, actor=actor)
        return next((step for step in page.items if step.function_id == function_id), None)

    async def steps(
        self,
        workflow_id: str,
        *,
        cursor: str | None = None,
        limit: int = MAX_STEPS_PAGE,
        actor: str = "",
    ) -> Listing[Step]:
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

    async def queues(self, *, actor: str = "") -> QueueConfigs:
        answer = await relay.request(self.application, ListQueuesRequest(), actor_name=actor)
        return [
            {field: getattr(queue, field) for field in QUEUE_FIELDS}
            for queue in relay.expect(answer, ListQueuesResponse).output
        ]

    async def queue_depths(self, *, actor: str = "") -> QueueDepths:
        """Counted by the executor (`get_workflow_aggregates`), or from a bounded sample of
        the queued workflows where it cannot count."""
        rows = await self._aggregate(IN_FLIGHT_BY_QUEUE, actor=actor)
        if rows is None:
            return await self._sampled_queue_depths(actor=actor)
        return _counted_depths(rows)

    async def _sampled_queue_depths(self, *, actor: str) -> QueueDepths:
        sample = await self.list(ListQuery(queued=True, limit=RELAYED_QUEUE_SAMPLE), actor=actor)
        depths: dict[str, dict[str, int]] = {}
        for workflow in sample.items:
            counts = depths.setdefault(workflow.queue_name or "", {})
            status = workflow.status or ""
            counts[status] = counts.get(status, 0) + 1
        sampled = RELAYED_QUEUE_SAMPLE if sample.next_cursor else None
        return QueueDepths(dict(sorted(depths.items())), sampled)

    async def overview(self, *, now: datetime, actor: str = "") -> Overview:
        """Recent failures, and the workflows in flight (per queue too) and failed, counted
        by the executor: three requests asked at once. What the executor cannot answer is
        said, and the rest still shows. No charts: they would need every workflow of the
        window. An SDK that cannot count (no `get_workflow_aggregates`) is asked as
        `_sampled_overview` does."""
        since = failed_since(now)
        failed_since_then = replace(FAILED_COUNT, start_time=since)
        failures, in_flight, failed = await asyncio.gather(
            self.list(ListQuery(status=FAILED, limit=RECENT_FAILURES), actor=actor),
            self._aggregate(IN_FLIGHT_BY_QUEUE, actor=actor),
            self._aggregate(failed_since_then, actor=actor),
            return_exceptions=True,
        )
        if in_flight is None or failed is None:
            return await self._sampled_overview(now=now, actor=actor)
        answers = [failures, in_flight, failed]
        for answer in answers:
            if isinstance(answer, BaseException) and not isinstance(answer, relay.RelayError):
                raise answer
        problems = [str(a) for a in answers if isinstance(a, relay.RelayError)]
        in_flight_rows, failed_rows = _answered(in_flight), _answered(failed)
        in_flight_count = queued_count = failed_count = None
        if in_flight_rows is not None:
            in_flight_count = _count(in_flight_rows, "PENDING")
            queued_count = _count(in_flight_rows, "ENQUEUED")
        if failed_rows is not None:
            failed_count = sum(row.count or 0 for row in failed_rows)
        listed = _answered(failures)
        return Overview(
            failures=None if listed is None else listed.items,
            queues=None if in_flight_rows is None else _counted_depths(in_flight_rows),
            unavailable=" ".join(dict.fromkeys(problems)),
            headline=Headline(
                Tally(in_flight_count),
                Tally(queued_count),
                Tally(failed_count),
                since,
                by_completion=False,
            ),
        )

    async def _aggregate(
        self, body: GetWorkflowAggregatesBody, *, actor: str
    ) -> Sequence[WorkflowAggregateOutput] | None:
        """The executor's counts, or None when it cannot count (an SDK before
        `get_workflow_aggregates` answers an error naming an unknown message type)."""
        try:
            answer = await relay.request(
                self.application, GetWorkflowAggregatesRequest(body), actor_name=actor
            )
        except relay.ExecutorFailedError as exc:
            if exc.response.error_message == UNKNOWN_MESSAGE:
                return None
            raise
        return relay.expect(answer, GetWorkflowAggregatesResponse).output

    async def _sampled_overview(self, *, now: datetime, actor: str) -> Overview:
        """The overview from lists, for an executor that cannot count: each headline number
        is a bounded sample, exact up to RELAYED_HEADLINE_SAMPLE, "over" that past it."""
        since = failed_since(now)
        sampled = [
            self._tally(ListQuery(status=["PENDING"]), actor=actor),
            self._tally(ListQuery(status=["ENQUEUED"]), actor=actor),
            self._tally(ListQuery(status=FAILED, start_time=since), actor=actor),
        ]
        asked = asyncio.gather(
            self.list(ListQuery(status=FAILED, limit=RECENT_FAILURES), actor=actor),
            self._sampled_queue_depths(actor=actor),
            return_exceptions=True,
        )
        (failures, depths), tallies = await asyncio.gather(
            asked, asyncio.gather(*sampled, return_exceptions=True)
        )
        answers = [failures, depths, *tallies]
        for answer in answers:
            if isinstance(answer, BaseException) and not isinstance(answer, relay.RelayError):
                raise answer
        problems = [str(a) for a in answers if isinstance(a, relay.RelayError)]
        in_flight, queued, failed = (_answered(t) or Tally(None) for t in tallies)
        return Overview(
            failures=None if isinstance(failures, BaseException) else failures.items,
            queues=None if isinstance(depths, BaseException) else depths,
            unavailable=" ".join(dict.fromkeys(problems)),
            headline=Headline(in_flight, queued, failed, since, by_completion=False, sampled=True),
        )

    async def _tally(self, query: ListQuery, *, actor: str) -> Tally:
        """How many workflows `query` keeps, from a list of at most RELAYED_HEADLINE_SAMPLE."""
        listing = await self.list(replace(query, limit=RELAYED_HEADLINE_SAMPLE), actor=actor)
        return Tally(len(listing.items), listing.next_cursor is not None)

    async def extras(
        self, workflow_id: str, kinds: frozenset[str] = EXTRA_KINDS, *, actor: str = ""
    ) -> Extras | None:
        """The workflow's extras of these kinds only, or None if there is no such workflow."""
        if await self.get(workflow_id, actor=actor) is None:
            return None
        return await self._extras(workflow_id, actor=actor, kinds=kinds)

    async def _extras(
        self, workflow_id: str, *, actor: str, kinds: frozenset[str] = EXTRA_KINDS
    ) -> Extras:
        """What an executor can tell about one workflow besides itself (display text), the
        requests for the kinds asked sent at once. An event's history is not among it: no
        request asks for it (the page says so)."""
        ask = functools.partial(relay.request, self.application, actor_name=actor)

        async def nothing() -> None:
            return None

        answers = await asyncio.gather(
            ask(GetWorkflowEventsRequest(workflow_id=workflow_id))
            if "events" in kinds
            else nothing(),
            ask(GetWorkflowNotificationsRequest(workflow_id=workflow_id))
            if "notifications" in kinds
            else nothing(),
            ask(GetWorkflowStreamsRequest(workflow_id=workflow_id))
            if "streams" in kinds
            else nothing(),
        )
        shown = _display("")
        found: dict[str, Any] = {}
        if answers[0] is not None:
            events = relay.expect(answers[0], GetWorkflowEventsResponse)
            found["events"] = [
                Event(e.key or "", StoredValue(e.value, shown)) for e in events.events
            ]
        if answers[1] is not None:
            messages = relay.expect(answers[1], GetWorkflowNotificationsResponse)
            found["notifications"] = [
                Message(
                    n.topic,
                    StoredValue(n.message, shown),
                    _time(n.created_at_epoch_ms),
                    bool(n.consumed),
                )
                for n in messages.notifications
            ]
        if answers[2] is not None:
            streams = relay.expect(answers[2], GetWorkflowStreamsResponse)
            found["streams"] = {stream.key or "": stream.values for stream in streams.streams}
        return Extras(history_unavailable=True, **found)

    async def family(self, workflow_id: str, *, actor: str = "") -> Family:
        """The workflow (a relay error here fails the family), then its parent, fork source,
        siblings, children and forks asked at once; what the executor does not answer is
        said in `partial` and the rest still shows. An executor lists, it does not count:
        a group with more than it shows says "more", not how many."""
        workflow = await self.get(workflow_id, actor=actor)
        if workflow is None:
            return Family(None)
        parent, source = workflow.parent_workflow_id, workflow.forked_from

        async def one(other: str | None) -> Workflow | None:
            return None if other is None else await self.get(other, actor=actor)

        async def kin(query: ListQuery, shown: int) -> Kin:
            listing = await self.list(replace(query, limit=shown + 1), actor=actor)
            found = [w for w in listing.items if w.workflow_id != workflow_id]
            more = listing.next_cursor is not None or len(found) > shown
            return Kin(found[:shown], None if more else len(found))

        answers = await asyncio.gather(
            one(parent),
            one(source),
            kin(ListQuery(parent_workflow_id=[parent], sort_desc=False), SIBLINGS_SHOWN)
            if parent
            else _no_kin(),
            kin(ListQuery(parent_workflow_id=[workflow_id], sort_desc=False), KIN_SHOWN),
            kin(ListQuery(forked_from=[workflow_id]), KIN_SHOWN),
            return_exceptions=True,
        )
        for answer in answers:
            if isinstance(answer, BaseException) and not isinstance(answer, relay.RelayError):
                raise answer
        problems = [str(a) for a in answers if isinstance(a, relay.RelayError)]
        found_parent, found_source, siblings, children, forks = answers
        return Family(
            workflow,
            parent=_or_missing(_answered(found_parent), parent),
            fork_source=_or_missing(_answered(found_source), source),
            siblings=_answered(siblings) or Kin(),
            children=_answered(children) or Kin(),
            forks=_answered(forks) or Kin(),
            partial=" ".join(dict.fromkeys(problems)),
        )

    async def schedules(self, query: ScheduleQuery, *, actor: str = "") -> Schedules:
        body = ListSchedulesBody(
            status=query.status,
            workflow_name=query.workflow_name,
            schedule_name_prefix=query.name_prefix,
        )
        answer = await relay.request(
            self.application, ListSchedulesRequest(body=body), actor_name=actor
        )
        rows = relay.expect(answer, ListSchedulesResponse).output
        items = sorted((_schedule_from_executor(row) for row in rows), key=lambda s: s.name)
        return Schedules(items, self.name, None, self.notice)

    async def schedule(self, name: str, *, actor: str = "") -> Schedule | None:
        answer = await relay.request(self.application, GetScheduleRequest(name), actor_name=actor)
        found = relay.expect(answer, GetScheduleResponse).output
        return None if found is None else _schedule_from_executor(found)


def _display(language: str) -> str:
    """The format name of an executor's display rendering (Python str(), Node inspect)."""
    return f"{language or 'unknown'}-display"


def _shown(text: Any, language: str) -> StoredValue | None:
    return None if text is None else StoredValue(text, _display(language))


def _from_executor(row: WorkflowsOutput, language: str) -> Workflow:
    return Workflow(
        workflow_id=row.workflow_uuid or "",
        status=row.status,
        name=row.workflow_name,
        class_name=row.workflow_class_name,
        queue_name=row.queue_name,
        application_version=row.application_version,
        executor_id=row.executor_id,
        created_at=_time(row.created_at),
        updated_at=_time(row.updated_at),
        completed_at=_time(row.completed_at),
        forked_from=row.forked_from,
        parent_workflow_id=row.parent_workflow_id,
        application_name=row.application_name,
        dequeued_at=_time(row.dequeued_at),
        config_name=row.workflow_config_name,
        authenticated_user=row.authenticated_user,
        assumed_role=row.assumed_role,
        authenticated_roles=row.authenticated_roles,
        timeout_ms=row.workflow_timeout_ms,
        deadline=_time(row.workflow_deadline_epoch_ms),
        deduplication_id=row.deduplication_id,
        priority=row.priority,
        queue_partition_key=row.queue_partition_key,
        was_forked_from=row.was_forked_from,
        delay_until=_time(row.delay_until_epoch_ms),
        attributes=row.attributes,
        schedule_name=row.schedule_name,
        input=_shown(row.input, language),
        output=_shown(row.output, language),
        error=_shown(row.error, language),
    )


def _step_from_executor(row: WorkflowSteps, language: str) -> Step:
    return Step(
        function_id=row.function_id,
        function_name=row.function_name,
        child_workflow_id=row.child_workflow_id,
        started_at=_time(row.started_at_epoch_ms),
        completed_at=_time(row.completed_at_epoch_ms),
        output=_shown(row.output, language),
        error=_shown(row.error, language),
    )


async def source_for(application: Application) -> DatabaseSource | ExecutorSource:
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


# The family graph: how many children, forks and siblings it shows of each, and how many of
# them it reads to order and count them (past that, "over").
KIN_SHOWN = 12
SIBLINGS_SHOWN = 6
KIN_SCANNED = 1000
# The dashboard's failures are those of the last day, from the minute it began: the list
# it links to filters by the minute.
FAILED_WINDOW = timedelta(hours=24)
# How many workflows an executor that cannot count is asked for, to tell each headline
# number.
RELAYED_HEADLINE_SAMPLE = 100
# What an executor is asked to count for the overview and the queue depths: the workflows
# in flight (and delayed) per queue and status, those on no queue grouped under none, and the
# failed ones (created since the window's start, set when asked).
IN_FLIGHT_BY_QUEUE = GetWorkflowAggregatesBody(
    group_by_queue_name=True,
    group_by_status=True,
    select_count=True,
    status=["PENDING", "ENQUEUED", "DELAYED"],
)
FAILED_COUNT = GetWorkflowAggregatesBody(group_by_status=True, select_count=True, status=FAILED)
# What the SDKs answer to a request they do not know (Python's conductor and TypeScript's).
UNKNOWN_MESSAGE = "Unknown message type"


@dataclass(frozen=True)
class Tally:
    """A headline number: `count` workflows (more than that when `over`), or None when it
    could not be counted in time."""

    count: int | None
    over: bool = False


@dataclass(frozen=True)
class Headline:
    """The dashboard's first line: workflows in flight (PENDING), queued (ENQUEUED), and
    failed (ERROR, MAX_RECOVERY_ATTEMPTS_EXCEEDED) created since `failed_since`. By
    creation, not by update: DBOS indexes failed workflows by status and created_at (and
    nothing by updated_at), and the list filters by creation, so the list a number links
    to holds what it counted."""

    in_flight: Tally
    queued: Tally
    failed: Tally
    failed_since: datetime
    by_completion: bool = True
    # Counted from lists an executor gave, each at most RELAYED_HEADLINE_SAMPLE long.
    sampled: bool = False


def failed_since(now: datetime) -> datetime:
    """The start of the dashboard's failure window, to the minute."""
    return (now - FAILED_WINDOW).replace(second=0, microsecond=0)


@dataclass(frozen=True)
class Kin:
    """Relatives of one kind: those `shown`, and how many there are in all (more than that
    when `over`; None when there are more than shown and the source cannot count them)."""

    shown: list[Workflow] = field(default_factory=list)
    total: int | None = 0
    over: bool = False

    @property
    def more(self) -> int | None:
        """How many are not shown; None when some are, uncounted."""
        return None if self.total is None else self.total - len(self.shown)


@dataclass(frozen=True)
class Family:
    """A workflow and its relatives, as its page draws them: the parent that started it,
    the workflow it was forked from, the parent's other children, its own children and its
    forks. A parent or fork source named but not found is a Workflow with no status.
    `partial` says what could not be fetched."""

    workflow: Workflow | None
    parent: Workflow | None = None
    fork_source: Workflow | None = None
    siblings: Kin = field(default_factory=Kin)
    children: Kin = field(default_factory=Kin)
    forks: Kin = field(default_factory=Kin)
    partial: str = ""


async def _no_kin() -> Kin:
    return Kin()


def _count(rows: Sequence[WorkflowAggregateOutput], status: str) -> int:
    return sum(row.count or 0 for row in rows if row.group.get("status") == status)


def _counted_depths(rows: Sequence[WorkflowAggregateOutput]) -> QueueDepths:
    """Queue depths from the executor's counts per queue and status (workflows on no
    queue left out)."""
    depths: dict[str, dict[str, int]] = {}
    for row in rows:
        queue = row.group.get("queue_name")
        if queue:
            counts = depths.setdefault(queue, {})
            status = row.group.get("status") or ""
            counts[status] = counts.get(status, 0) + (row.count or 0)
    return QueueDepths(dict(sorted(depths.items())))


def _answered(answer: T | BaseException) -> T | None:
    """What was answered, or None for an error (which the caller has said)."""
    return None if isinstance(answer, BaseException) else answer


def _or_missing(found: Workflow | None, workflow_id: str | None) -> Workflow | None:
    """The relative found, or one named that could not be read (a card with no status)."""
    if found is not None or workflow_id is None:
        return found
    return Workflow(workflow_id)


# The columns of a family card, as `_family_sql` reads them after the branch's kind and
# before the size of its kin.
FAMILY_FIELDS = (
    "workflow_uuid",
    "status",
    "name",
    "created_at_ms",
    "completed_at_ms",
    "parent_workflow_id",
    "forked_from",
)
# Each branch of the family: what it reads, and in which order its kin are shown (children
# and siblings as they were started, forks newest first).
ONE_OF_THE_WORKFLOW = (
    "workflow_uuid = (SELECT {link} FROM workflow_status WHERE workflow_uuid = %s)"
)
FAMILY_BRANCHES = (
    ("workflow", "workflow_uuid = %s", None),
    ("parent", ONE_OF_THE_WORKFLOW.format(link="parent_workflow_id"), None),
    ("fork_source", ONE_OF_THE_WORKFLOW.format(link="forked_from"), None),
    (
        "siblings",
        "parent_workflow_id = (SELECT parent_workflow_id FROM workflow_status"
        " WHERE workflow_uuid = %s) AND workflow_uuid <> %s",
        "ASC",
    ),
    ("children", "parent_workflow_id = %s", "ASC"),
    ("forks", "forked_from = %s", "DESC"),
)


def _family_sql(schema: systemdb.Schema, workflow_id: str) -> Statement:
    """One UNION ALL: the workflow, its parent and fork source by primary key, and each kin
    through DBOS's partial index of parent_workflow_id or forked_from. A kin reads at most
    KIN_SCANNED + 1 rows in index order, then orders those and keeps the first few, each
    row carrying how many it read: bounded however many children a workflow has, and exact
    below KIN_SCANNED. The text is made of this module's constants and of column names the
    schema was seen to have; the workflow id is a parameter."""
    columns = schema.columns.get("workflow_status", frozenset())
    completed = '"completed_at"' if "completed_at" in columns else "NULL"
    cards = (
        f"workflow_uuid, status, name, created_at, {completed} AS completed_at,"
        " {parent} AS parent_workflow_id, {source} AS forked_from"
    ).format(
        parent="parent_workflow_id" if "parent_workflow_id" in columns else "NULL",
        source="forked_from" if "forked_from" in columns else "NULL",
    )
    branches: list[str] = []
    params: list[Any] = []
    for kind, where, order in FAMILY_BRANCHES:
        needs = {"parent": "parent_workflow_id", "siblings": "parent_workflow_id"}
        needs |= {"children": "parent_workflow_id", "fork_source": "forked_from"}
        needs |= {"forks": "forked_from"}
        if kind in needs and needs[kind] not in columns:
            continue
        if order is None:
            select = f"SELECT {cards}, 1 AS kin FROM workflow_status WHERE {where}"  # noqa: S608
        else:
            shown = SIBLINGS_SHOWN if kind == "siblings" else KIN_SHOWN
            select = (
                f"SELECT * FROM (SELECT {cards}, COUNT(*) OVER () AS kin FROM"  # noqa: S608
                f" (SELECT * FROM workflow_status WHERE {where} LIMIT {KIN_SCANNED + 1})"
                f" AS scanned) AS counted ORDER BY created_at {order}, workflow_uuid {order}"
                f" LIMIT {shown}"
            )
        # CAST: Postgres types a UNION's columns by its first branch.
        branches.append(
            f"SELECT '{kind}', CAST(workflow_uuid AS TEXT), CAST(status AS TEXT),"  # noqa: S608
            " CAST(name AS TEXT), CAST(created_at AS BIGINT), CAST(completed_at AS BIGINT),"
            " CAST(parent_workflow_id AS TEXT), CAST(forked_from AS TEXT), CAST(kin AS BIGINT)"
            f" FROM ({select}) AS {kind}"
        )
        params += [workflow_id] * where.count("%s")
    return " UNION ALL ".join(branches), params


def _family_of(rows: Rows) -> Family:
    """The family's rows (see `_family_sql`), as cards."""
    found: dict[str, list[Workflow]] = {kind: [] for kind, _, _ in FAMILY_BRANCHES}
    read: dict[str, int] = {}
    for kind, *columns, kin in rows:
        row = dict(zip(FAMILY_FIELDS, columns, strict=True))
        found[kind].append(_workflow(row, load_input=False, load_output=False))
        read[kind] = kin
    if not found["workflow"]:
        return Family(None)
    workflow = found["workflow"][0]

    def kin_of(kind: str) -> Kin:
        total = read.get(kind, 0)
        return Kin(found[kind], min(total, KIN_SCANNED), total > KIN_SCANNED)

    return Family(
        workflow,
        parent=_or_missing(next(iter(found["parent"]), None), workflow.parent_workflow_id),
        fork_source=_or_missing(next(iter(found["fork_source"]), None), workflow.forked_from),
        siblings=kin_of("siblings"),
        children=kin_of("children"),
        forks=kin_of("forks"),
    )
