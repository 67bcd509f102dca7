"""Unmanaged models of the DBOS system tables (PROTOCOL.md §3.2), as written by Python
dbos 3.2.0 (migration 123), the newest schema the supported SDKs create.

DBOS owns these tables; StepChange never migrates them. Each application's system
database is its own connection alias (workflows.systemdb), so every query says which one:
`WorkflowStatus.objects.using(alias)`, usually through `systemdb.workflows(application)`.
Older schemas lack some columns and tables (§3.3): reads defer what a database does not
have, and a deferred column that does not exist reads as None instead of being fetched.
What each alias's database has is recorded here by `workflows.systemdb`, which introspects
it (`record_columns`), so the models never ask the module above them.

Epoch-millisecond columns are `*_ms` integer fields; the datetime of each is the property
of the same name without the suffix (see `EpochMs`).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connections, models
from django.db.models.functions import Coalesce, Substr

STATUSES = (
    "PENDING",
    "ENQUEUED",
    "DELAYED",
    "SUCCESS",
    "ERROR",
    "CANCELLED",
    "MAX_RECOVERY_ATTEMPTS_EXCEEDED",
)
FAILED_STATUSES = ("ERROR", "MAX_RECOVERY_ATTEMPTS_EXCEEDED")
# Statuses of a workflow still to run or running.
ACTIVE_STATUSES = frozenset({"PENDING", "ENQUEUED", "DELAYED"})


# How far the clocks stamping one workflow's times (a client enqueuing it, the executors
# running it) are taken to disagree at most.
CLOCK_MARGIN = timedelta(hours=1)

# What a list of workflows can be ordered by, and the field of each: their creation, or,
# for a list filtered by a completion or a dequeue range, that time (DBOS indexes
# completed_at and started_at_epoch_ms, so such a list pages through that index at any
# depth, where in creation order a deep page reads every older row).
CREATED = "created"
COMPLETED = "completed"
DEQUEUED = "dequeued"
ORDER_FIELDS = {
    CREATED: "created_at_ms",
    COMPLETED: "completed_at_ms",
    DEQUEUED: "started_at_epoch_ms",
}


class _CountOf(models.Subquery):
    """How many rows a (sliced) subquery yields: a bounded count, which Django's Count
    over a related lookup cannot express."""

    template = "(SELECT COUNT(*) FROM (%(subquery)s) AS counted)"
    output_field = models.IntegerField()


class EpochMs:
    """An aware datetime view of an epoch-milliseconds integer field."""

    def __init__(self, field_name: str) -> None:
        self.field_name = field_name

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        value = getattr(instance, self.field_name)
        return None if value is None else datetime.fromtimestamp(value / 1000, tz=UTC)


# The columns each system database has, table by table, under its connection alias, as
# workflows.systemdb last introspected them.
_columns: dict[str, dict[str, frozenset[str]]] = {}


def record_columns(alias: str, columns: dict[str, frozenset[str]]) -> None:
    """Remember the tables and columns the database at `alias` has."""
    _columns[alias] = columns


def forget_columns(alias: str) -> None:
    _columns.pop(alias, None)


def missing_fields(alias: str | None, model: type[models.Model]) -> frozenset[str]:
    """Names of `model`'s fields whose columns this alias's database lacks."""
    columns = _columns.get(alias or "")
    if columns is None:
        return frozenset()
    present = columns.get(model._meta.db_table)
    if present is None:
        return frozenset(f.attname for f in model._meta.concrete_fields)
    return frozenset(f.attname for f in model._meta.concrete_fields if f.column not in present)


class SystemModel(models.Model):
    """Common behaviour: never migrated, and absent columns read as None."""

    class Meta:
        abstract = True
        managed = False

    def refresh_from_db(
        self, using: str | None = None, fields: Any = None, from_queryset: Any = None
    ) -> None:
        # Django fetches a deferred field on first access. A column this database does
        # not have (an older DBOS schema) was deferred on purpose: it is None.
        missing = missing_fields(self._state.db, type(self))
        if fields is not None and missing and set(fields) <= missing:
            for name in fields:
                setattr(self, name, None)
            return
        super().refresh_from_db(using=using, fields=fields, from_queryset=from_queryset)


class WorkflowQuerySet(models.QuerySet["WorkflowStatus"]):
    """The list vocabulary of the console: filters as `list_workflows` has them (§2.5),
    newest first, keyset pages on (created_at, workflow_uuid)."""

    def filtered(
        self,
        *,
        status: list[str] | None = None,
        name: list[str] | None = None,
        queue_name: list[str] | None = None,
        workflow_id_prefix: str | None = None,
        executor_id: list[str] | None = None,
        application_version: list[str] | None = None,
        application_name: list[str] | None = None,
        forked_from: list[str] | None = None,
        parent_workflow_id: list[str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        has_parent: bool | None = None,
        was_forked_from: bool | None = None,
        authenticated_user: list[str] | None = None,
        schedule_name: list[str] | None = None,
        completed_after: datetime | None = None,
        completed_before: datetime | None = None,
        dequeued_after: datetime | None = None,
        dequeued_before: datetime | None = None,
    ) -> WorkflowQuerySet:
        lookups: dict[str, Any] = {
            "authenticated_user__in": authenticated_user,
            "schedule_name__in": schedule_name,
            "completed_at_ms__gte": epoch_ms(completed_after),
            "completed_at_ms__lte": epoch_ms(completed_before),
            # DBOS sets started_at_epoch_ms when a workflow leaves its queue (DequeuedAt).
            "started_at_epoch_ms__gte": epoch_ms(dequeued_after),
            "started_at_epoch_ms__lte": epoch_ms(dequeued_before),
            "status__in": status,
            "name__in": name,
            "queue_name__in": queue_name,
            "executor_id__in": executor_id,
            "application_version__in": application_version,
            "application_name__in": application_name,
            "forked_from__in": forked_from,
            "parent_workflow_id__in": parent_workflow_id,
            "workflow_uuid__startswith": workflow_id_prefix,
            "created_at_ms__gte": epoch_ms(created_after),
            "created_at_ms__lte": epoch_ms(created_before),
            "parent_workflow_id__isnull": None if has_parent is None else not has_parent,
            "was_forked_from": was_forked_from,
        }
        rows = self.filter(**{k: v for k, v in lookups.items() if v is not None})
        # A workflow completes, and leaves its queue, after it is created: the end of either
        # range bounds its creation too, which lets the created_at index start there rather
        # than at the newest row. With a margin for clocks that disagree (DBOS stamps each
        # time on the machine that acts).
        for end in (completed_before, dequeued_before):
            if end is not None:
                rows = rows.filter(created_at_ms__lte=epoch_ms(end + CLOCK_MARGIN))
        return rows

    def with_attributes(self, attributes: dict[str, Any]) -> WorkflowQuerySet:
        """Rows whose attributes hold every key with its value. On Postgres, JSONB
        containment (`@>`, as DBOS's own list does), which DBOS's GIN index of the column
        serves; on SQLite, where DBOS refuses the filter, each key's value compared through
        json_each (single values only: `attribute_clause` refuses objects and lists). The
        keys and values are always bound as parameters."""
        vendor = connections[self.db].vendor
        if vendor == "postgresql":
            # The SQL is this module's constants; the attributes are one bound JSON value.
            return self.filter(
                models.expressions.RawSQL(  # noqa: S611
                    f"{ATTRIBUTES_COLUMN} @> %s::jsonb",
                    [json.dumps(attributes)],
                    output_field=models.BooleanField(),
                )
            )
        rows = self
        for key, value in attributes.items():
            sql, params = attribute_clause(key, value)
            rows = rows.filter(
                models.expressions.RawSQL(sql, params, output_field=models.BooleanField())  # noqa: S611
            )
        return rows

    def id_prefix(self, prefix: str, *, bytewise: bool) -> WorkflowQuerySet:
        """Rows whose id starts with `prefix`. Where text compares byte by byte, as a range
        on the primary key alone: exact there, and unlike LIKE (which no index serves under
        other collations, and whose selectivity the planner underestimates) it leaves the
        planner free to walk the created_at index for the newest rows rather than sort
        every match."""
        upper = _successor(prefix) if bytewise else None
        if upper is None:
            return self.filter(workflow_uuid__startswith=prefix)
        return self.filter(workflow_uuid__gte=prefix, workflow_uuid__lt=upper)

    def queued(self) -> WorkflowQuerySet:
        """Waiting in, or running from, a queue (what `list_queued_workflows` returns)."""
        # Two branches, so that each can use its own partial index of DBOS's: the in-flight
        # one covers ENQUEUED and PENDING only, and DELAYED rows have theirs.
        in_flight = models.Q(status__in=["ENQUEUED", "PENDING"], queue_name__isnull=False)
        delayed = models.Q(status="DELAYED", queue_name__isnull=False)
        return self.filter(in_flight | delayed)

    def newest_first(self, by: str = CREATED) -> WorkflowQuerySet:
        key = ORDER_FIELDS[by]
        return self.order_by(f"-{key}", "-workflow_uuid")

    def oldest_first(self, by: str = CREATED) -> WorkflowQuerySet:
        return self.order_by(ORDER_FIELDS[by], "workflow_uuid")

    def with_payloads(self, *, payload_tables: bool) -> WorkflowQuerySet:
        """Annotate the stored `input_text`, `output_text` and `error_text`: from the
        payload tables (migration 109+) and else from the legacy columns (PROTOCOL.md §3.2)."""
        if not payload_tables:
            return self.annotate(
                input_text=models.F("inputs"),
                output_text=models.F("output"),
                error_text=models.F("error"),
            )
        row = models.OuterRef("workflow_uuid")
        inputs = WorkflowInput.objects.filter(workflow_uuid=row).values("inputs")[:1]
        outputs = WorkflowOutput.objects.filter(workflow_uuid=row)
        return self.annotate(
            input_text=Coalesce(models.Subquery(inputs), models.F("inputs")),
            output_text=Coalesce(models.Subquery(outputs.values("output")[:1]), models.F("output")),
            error_text=Coalesce(models.Subquery(outputs.values("error")[:1]), models.F("error")),
        )

    def with_child_counts(self, *, cap: int) -> WorkflowQuerySet:
        """Annotate `children`: how many workflows name each row as their parent, counted
        up to `cap` + 1 (more reads as "over cap"). One probe of DBOS's parent index per
        row, in the same statement as the rows; Postgres runs it only for the rows the
        page keeps, after the limit."""
        probe = WorkflowStatus.objects.filter(parent_workflow_id=models.OuterRef("workflow_uuid"))
        return self.annotate(children=_CountOf(probe.values("pk")[: cap + 1]))

    def with_failed_errors(self, *, payload_tables: bool, chars: int) -> WorkflowQuerySet:
        """Annotate `error_text` for failed rows only (None for the rest), its first
        `chars` + 1 characters: the list shows a failure's first line, and a CASE keeps the
        payload table from being read for the other rows."""
        stored: Any = models.F("error")
        if payload_tables:
            row = models.OuterRef("workflow_uuid")
            outputs = WorkflowOutput.objects.filter(workflow_uuid=row).values("error")[:1]
            stored = Coalesce(models.Subquery(outputs), models.F("error"))
        return self.annotate(
            error_text=models.Case(
                models.When(status__in=FAILED_STATUSES, then=Substr(stored, 1, chars + 1)),
                default=None,
                output_field=models.TextField(),
            )
        )

    def names_seen(self, *, newest: int) -> list[tuple[str, int]]:
        """Each name among the `newest` rows (newest first), with the creation time (epoch
        ms) of its newest row: the rows found on the created_at index, grouped in the
        database, so that only the names travel."""
        sample = self.newest_first().values_list("name", "created_at_ms")[:newest]
        sql, params = sample.query.get_compiler(using=self.db).as_sql()
        quote = connections[self.db].ops.quote_name
        name, created = quote("name"), quote("created_at_ms")
        with connections[self.db].cursor() as cursor:
            cursor.execute(
                f"SELECT {name}, MAX({created}) FROM ({sql}) AS sample"  # noqa: S608
                f" WHERE {name} IS NOT NULL GROUP BY {name}",
                params,
            )
            return [(str(found), int(at)) for found, at in cursor.fetchall()]

    def counts_by(self, field: str) -> dict[str | None, int]:
        """How many rows per value of `field` ("status", "name", "queue_name", ...)."""
        rows = self.order_by().values_list(field).annotate(count=models.Count("*"))
        return dict(rows)

    def histogram(self, *, bucket_ms: int) -> list[tuple[int, str, int]]:
        """(bucket start in epoch ms, status, count), oldest bucket first: the dashboard's
        chart. Filter the time window first (`filtered(created_after=...)`)."""
        bucket = models.ExpressionWrapper(
            models.F("created_at_ms") / bucket_ms * bucket_ms,
            output_field=models.BigIntegerField(),
        )
        rows = (
            self.order_by()
            .annotate(bucket=bucket)
            .values_list("bucket", "status")
            .annotate(count=models.Count("*"))
            .order_by("bucket", "status")
        )
        return [(int(start), status, count) for start, status, count in rows]

    def newest_enqueued_sql(self, count: int) -> tuple[str, list[Any]]:
        """The SQL (and its values) of the `count` newest rows of this queryset, which keeps
        only ENQUEUED workflows, as `newest_first()[:count]` gives them, found queue by
        queue and priority by priority through DBOS's index of in-flight workflows
        (Postgres, `Schema.queue_index`): the newest of each group are at the end of its
        range, where the plain query walks the created_at index past every other status
        (on a large table with few enqueued workflows it runs into the statement timeout).
        The groups are found by skipping through the same index, one probe each."""
        connection = connections[self.db]
        quote = connection.ops.quote_name
        per_group = self.filter(queue_name=_GROUP_QUEUE, priority=_GROUP_PRIORITY)
        # Never so in DBOS, but not excluded by its schema: ENQUEUED rows with no queue, read
        # behind a fence (OFFSET 0) so that the planner looks for them through the index,
        # not by walking the created_at index past every row for the newest.
        no_queue = self.filter(queue_name__isnull=True).order_by()
        compiled = [
            query.query.get_compiler(using=self.db).as_sql()
            for query in (per_group.newest_first()[:count], no_queue)
        ]
        per_group_sql, per_group_params = _bind_to_groups(*compiled[0])
        table = quote(self.model._meta.db_table)
        sql = NEWEST_PER_QUEUE.format(
            table=table,
            per_group=per_group_sql,
            no_queue=compiled[1][0],
            created=quote("created_at"),
            pk=quote("workflow_uuid"),
            count=int(count),
        )
        return sql, ["ENQUEUED", "ENQUEUED", *per_group_params, *compiled[1][1]]

    def after(
        self, cursor: tuple[int, str] | None, *, descending: bool = True, by: str = CREATED
    ) -> WorkflowQuerySet:
        """The rows after `cursor` (the time `by` orders on, in ms, and the workflow id) in
        newest-first order (or oldest-first): a keyset page, as fast on page 1,000 as on
        page 1."""
        if cursor is None:
            return self
        moment, workflow_id = cursor
        key = ORDER_FIELDS[by]
        # The plain bound on the time is implied by the OR, but Postgres needs it spelled
        # out to start the index scan at the cursor instead of at the newest row.
        if descending:
            return self.filter(**{f"{key}__lte": moment}).filter(
                models.Q(**{f"{key}__lt": moment})
                | models.Q(**{key: moment, "workflow_uuid__lt": workflow_id})
            )
        return self.filter(**{f"{key}__gte": moment}).filter(
            models.Q(**{f"{key}__gt": moment})
            | models.Q(**{key: moment, "workflow_uuid__gt": workflow_id})
        )


# newest_enqueued_sql's statements by the SQL of the queryset they came from, at most so
# many (each a few hundred bytes).

# Stand for a group's queue and priority while the page's query is compiled; each is
# then replaced by a reference to the group's column.
_GROUP_QUEUE = "\x00stepchange-group-queue\x00"
_GROUP_PRIORITY = -2_000_000_100

NEWEST_PER_QUEUE = """
WITH RECURSIVE grp(queue_name, priority) AS (
    (SELECT queue_name, priority FROM {table}
     WHERE status = %s AND queue_name IS NOT NULL ORDER BY queue_name, priority LIMIT 1)
    UNION ALL
    SELECT probe.queue_name, probe.priority FROM grp CROSS JOIN LATERAL (
        SELECT w.queue_name, w.priority FROM {table} AS w
        WHERE w.status = %s AND w.queue_name >= grp.queue_name
          AND (w.queue_name, w.priority) > (grp.queue_name, grp.priority)
        ORDER BY w.queue_name, w.priority LIMIT 1
    ) AS probe
)
SELECT * FROM (
    SELECT page.* FROM grp CROSS JOIN LATERAL ({per_group}) AS page
    UNION ALL (
        SELECT * FROM ({no_queue} OFFSET 0) AS no_queue
        ORDER BY {created} DESC, {pk} DESC LIMIT {count}
    )
) AS found
ORDER BY {created} DESC, {pk} DESC LIMIT {count}
"""


def _bind_to_groups(sql: str, params: tuple[Any, ...]) -> tuple[str, list[Any]]:
    """`sql` with the group markers' placeholders turned into the group's columns."""
    pieces = re.split(r"(%%|%s)", sql)
    values = iter(params)
    bound: list[str] = []
    kept: list[Any] = []
    for piece in pieces:
        if piece != "%s":
            bound.append(piece)
            continue
        value = next(values)
        if isinstance(value, str) and value == _GROUP_QUEUE:
            bound.append("grp.queue_name")
        elif isinstance(value, int) and value == _GROUP_PRIORITY:
            bound.append("grp.priority")
        else:
            bound.append(piece)
            kept.append(value)
    if len(kept) != len(params) - 2:
        raise ValueError("a group's queue and priority must each reach the query once")
    return "".join(bound), kept


ATTRIBUTES_COLUMN = '"workflow_status"."attributes"'
NESTED_ATTRIBUTE = (
    "On SQLite an attribute is matched to one value (text, a number, true, false or null),"
    " not to an object or a list: {key}"
)


def attribute_clause(key: str, value: Any) -> tuple[str, list[Any]]:
    """SQLite's test of one attribute: the row's attributes (when valid JSON) have `key`
    at the top level with exactly `value`, numbers compared as numbers."""
    head = (
        f"EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid({ATTRIBUTES_COLUMN})"  # noqa: S608
        f" THEN {ATTRIBUTES_COLUMN} END) AS attribute WHERE attribute.key = %s AND "
    )
    if value is None:
        return head + "attribute.type = 'null')", [key]
    if isinstance(value, bool):
        return head + f"attribute.type = '{'true' if value else 'false'}')", [key]
    if isinstance(value, int | float):
        return head + "attribute.type IN ('integer', 'real') AND attribute.atom = %s)", [key, value]
    if isinstance(value, str):
        return head + "attribute.type = 'text' AND attribute.atom = %s)", [key, value]
    raise ValueError(NESTED_ATTRIBUTE.format(key=key))


def _successor(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix`, if any."""
    while prefix:
        following = ord(prefix[-1]) + 1
        if 0xD800 <= following <= 0xDFFF:
            following = 0xE000  # surrogates are no text of their own
        if following <= 0x10FFFF:
            return prefix[:-1] + chr(following)
        prefix = prefix[:-1]
    return None


def epoch_ms(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


class WorkflowStatus(SystemModel):
    workflow_uuid = models.TextField(primary_key=True)
    status = models.TextField()
    name = models.TextField(null=True)
    class_name = models.CharField(max_length=255, null=True)
    config_name = models.CharField(max_length=255, null=True)
    authenticated_user = models.TextField(null=True)
    assumed_role = models.TextField(null=True)
    authenticated_roles = models.TextField(null=True)
    request = models.TextField(null=True)
    output = models.TextField(null=True)
    error = models.TextField(null=True)
    inputs = models.TextField(null=True)
    executor_id = models.TextField(null=True)
    created_at_ms = models.BigIntegerField(db_column="created_at")
    updated_at_ms = models.BigIntegerField(db_column="updated_at")
    application_version = models.TextField(null=True)
    application_id = models.TextField(null=True)
    recovery_attempts = models.BigIntegerField(null=True)
    queue_name = models.TextField(null=True)
    workflow_timeout_ms = models.BigIntegerField(null=True)
    workflow_deadline_epoch_ms = models.BigIntegerField(null=True)
    started_at_epoch_ms = models.BigIntegerField(null=True)
    deduplication_id = models.TextField(null=True)
    priority = models.IntegerField(default=0)
    queue_partition_key = models.TextField(null=True)
    forked_from = models.TextField(null=True)
    was_forked_from = models.BooleanField(default=False)
    owner_xid = models.TextField(null=True)
    creator_xid = models.TextField(null=True)
    parent_workflow_id = models.TextField(null=True)
    serialization = models.TextField(null=True)
    delay_until_epoch_ms = models.BigIntegerField(null=True)
    rate_limited = models.BooleanField(default=False)
    completed_at_ms = models.BigIntegerField(db_column="completed_at", null=True)
    attributes = models.TextField(null=True)
    schedule_name = models.TextField(null=True)
    debounce_deadline_epoch_ms = models.BigIntegerField(null=True)
    is_debounced = models.BooleanField(default=False)
    application_name = models.TextField(null=True)

    created_at = EpochMs("created_at_ms")
    updated_at = EpochMs("updated_at_ms")
    completed_at = EpochMs("completed_at_ms")
    dequeued_at = EpochMs("started_at_epoch_ms")
    deadline = EpochMs("workflow_deadline_epoch_ms")
    delay_until = EpochMs("delay_until_epoch_ms")

    objects = WorkflowQuerySet.as_manager()

    class Meta(SystemModel.Meta):
        db_table = "workflow_status"

    def __str__(self) -> str:
        return f"{self.workflow_uuid} ({self.status})"

    def payload(self, kind: str) -> str | None:
        """The stored `input`, `output` or `error` text, as annotated by with_payloads()."""
        value = getattr(self, f"{kind}_text", None)
        return None if value is None else str(value)


class WorkflowInput(SystemModel):
    """Migration 109+: where 3.2.0 and TS 5.x keep a workflow's serialized inputs."""

    workflow_uuid = models.TextField(primary_key=True)
    inputs = models.TextField(null=True)
    retention_timestamp = models.BigIntegerField()

    class Meta(SystemModel.Meta):
        db_table = "workflow_input"


class WorkflowOutput(SystemModel):
    """Migration 109+: a finished workflow's serialized output or error."""

    workflow_uuid = models.TextField(primary_key=True)
    output = models.TextField(null=True)
    error = models.TextField(null=True)
    retention_timestamp = models.BigIntegerField()

    class Meta(SystemModel.Meta):
        db_table = "workflow_output"


def per_minute(
    queryset: models.QuerySet[Any],
    *,
    stamp: str,
    after_ms: int,
    until_ms: int,
    group: tuple[str, ...],
    duration: models.Expression | None = None,
    bounds_ms: tuple[int, ...] = (),
) -> list[dict[str, Any]]:
    """The rows of `queryset` stamped (column `stamp`, epoch ms) in (after_ms, until_ms],
    counted per minute of that stamp and per `group` columns: dicts with `minute` (epoch
    ms), the group's values and `n`. With `duration`, also per histogram bucket `bucket`
    (the index of the first bound of `bounds_ms` the duration is under, len(bounds_ms)
    past them all, -1 when it is unknown) and its largest `longest`. The metrics roll-up's
    read: one range of an index on the stamp, grouped in the database."""
    minute = models.ExpressionWrapper(
        models.F(stamp) / 60_000 * 60_000, output_field=models.BigIntegerField()
    )
    rows = queryset.filter(**{f"{stamp}__gt": after_ms, f"{stamp}__lte": until_ms}).order_by()
    rows = rows.annotate(minute=minute)
    names = ["minute", *group]
    aggregates: dict[str, Any] = {"n": models.Count("*")}
    if duration is not None:
        rows = rows.annotate(took=models.ExpressionWrapper(duration, models.BigIntegerField()))
        whens = [models.When(took__isnull=True, then=models.Value(-1))]
        whens += [
            models.When(took__lt=bound, then=models.Value(i)) for i, bound in enumerate(bounds_ms)
        ]
        rows = rows.annotate(bucket=models.Case(*whens, default=models.Value(len(bounds_ms))))
        names.append("bucket")
        aggregates["longest"] = models.Max("took")
    return list(rows.values(*names).annotate(**aggregates))


class StepQuerySet(models.QuerySet["OperationOutput"]):
    def of(self, workflow_id: str) -> StepQuerySet:
        """A workflow's steps in execution order (the primary key's own order)."""
        return self.filter(workflow_uuid=workflow_id).order_by("function_id")

    def children(self) -> StepQuerySet:
        """Steps that started a child workflow."""
        return self.filter(child_workflow_id__isnull=False)


class OperationOutput(SystemModel):
    """One step checkpoint. Python numbers steps from 1, TypeScript from 0."""

    pk = models.CompositePrimaryKey("workflow_uuid", "function_id")
    workflow_uuid = models.TextField()
    function_id = models.IntegerField()
    function_name = models.TextField(default="")
    output = models.TextField(null=True)
    error = models.TextField(null=True)
    child_workflow_id = models.TextField(null=True)
    started_at_epoch_ms = models.BigIntegerField(null=True)
    completed_at_epoch_ms = models.BigIntegerField(null=True)
    serialization = models.TextField(null=True)
    application_name = models.TextField(null=True)
    retention_timestamp = models.BigIntegerField(null=True)

    started_at = EpochMs("started_at_epoch_ms")
    completed_at = EpochMs("completed_at_epoch_ms")

    objects = StepQuerySet.as_manager()

    class Meta(SystemModel.Meta):
        db_table = "operation_outputs"

    @property
    def duration_ms(self) -> int | None:
        if self.started_at_epoch_ms is None or self.completed_at_epoch_ms is None:
            return None
        return int(self.completed_at_epoch_ms - self.started_at_epoch_ms)


class Notification(SystemModel):
    message_uuid = models.TextField(primary_key=True)
    destination_uuid = models.TextField()
    topic = models.TextField(null=True)
    message = models.TextField()
    created_at_epoch_ms = models.BigIntegerField()
    serialization = models.TextField(null=True)
    consumed = models.BooleanField(default=False)
    consumed_by_function_id = models.IntegerField(null=True)

    created_at = EpochMs("created_at_epoch_ms")
    # DBOS's marker for "no topic".
    NO_TOPIC = "__null__topic__"

    class Meta(SystemModel.Meta):
        db_table = "notifications"


class WorkflowEvent(SystemModel):
    pk = models.CompositePrimaryKey("workflow_uuid", "key")
    workflow_uuid = models.TextField()
    key = models.TextField()
    value = models.TextField()
    serialization = models.TextField(null=True)

    class Meta(SystemModel.Meta):
        db_table = "workflow_events"


class WorkflowEventHistory(SystemModel):
    pk = models.CompositePrimaryKey("workflow_uuid", "function_id", "key")
    workflow_uuid = models.TextField()
    function_id = models.IntegerField()
    key = models.TextField()
    value = models.TextField()
    serialization = models.TextField(null=True)

    class Meta(SystemModel.Meta):
        db_table = "workflow_events_history"


class StreamEntry(SystemModel):
    pk = models.CompositePrimaryKey("workflow_uuid", "key", "offset")
    workflow_uuid = models.TextField()
    key = models.TextField()
    value = models.TextField()
    offset = models.IntegerField()
    function_id = models.IntegerField(default=0)
    serialization = models.TextField(null=True)

    # The final entry of a closed stream (written in portable serialization).
    CLOSED = "__DBOS_STREAM_CLOSED__"

    class Meta(SystemModel.Meta):
        db_table = "streams"


class WorkflowSchedule(SystemModel):
    schedule_id = models.TextField(primary_key=True)
    schedule_name = models.TextField()
    workflow_name = models.TextField()
    workflow_class_name = models.TextField(null=True)
    schedule = models.TextField()
    status = models.TextField()
    context = models.TextField()
    last_fired_at = models.TextField(null=True)
    automatic_backfill = models.BooleanField(default=False)
    cron_timezone = models.TextField(null=True)
    queue_name = models.TextField(null=True)
    application_name = models.TextField(null=True)

    class Meta(SystemModel.Meta):
        db_table = "workflow_schedules"


class ApplicationVersion(SystemModel):
    version_id = models.TextField(primary_key=True)
    version_name = models.TextField()
    version_timestamp_ms = models.BigIntegerField(db_column="version_timestamp")
    created_at_ms = models.BigIntegerField(db_column="created_at")
    application_name = models.TextField(null=True)

    version_timestamp = EpochMs("version_timestamp_ms")
    created_at = EpochMs("created_at_ms")

    class Meta(SystemModel.Meta):
        db_table = "application_versions"


class Queue(SystemModel):
    """Database-backed queue configuration (`_dbos_internal_queue` has no row)."""

    queue_id = models.TextField(primary_key=True)
    name = models.TextField()
    concurrency = models.IntegerField(null=True)
    worker_concurrency = models.IntegerField(null=True)
    rate_limit_max = models.IntegerField(null=True)
    rate_limit_period_sec = models.FloatField(null=True)
    priority_enabled = models.BooleanField(null=True)
    partition_queue = models.BooleanField(null=True)
    partition_concurrency = models.IntegerField(null=True)
    partition_worker_concurrency = models.IntegerField(null=True)
    partition_rate_limit_max = models.IntegerField(null=True)
    partition_rate_limit_period_sec = models.FloatField(null=True)
    polling_interval_sec = models.FloatField(default=1.0)
    created_at_ms = models.BigIntegerField(db_column="created_at", null=True)
    updated_at_ms = models.BigIntegerField(db_column="updated_at", null=True)
    application_name = models.TextField(null=True)

    class Meta(SystemModel.Meta):
        db_table = "queues"


class DbosMigration(SystemModel):
    version = models.BigIntegerField(primary_key=True)

    class Meta(SystemModel.Meta):
        db_table = "dbos_migrations"


class EventDispatchKV(SystemModel):
    """Postgres only: legacy event-receiver state."""

    pk = models.CompositePrimaryKey("service_name", "workflow_fn_name", "key")
    service_name = models.TextField()
    workflow_fn_name = models.TextField()
    key = models.TextField()
    value = models.TextField(null=True)
    update_seq = models.DecimalField(max_digits=38, decimal_places=0, null=True)
    update_time = models.DecimalField(max_digits=38, decimal_places=15, null=True)

    class Meta(SystemModel.Meta):
        db_table = "event_dispatch_kv"


SYSTEM_MODELS: tuple[type[SystemModel], ...] = (
    WorkflowStatus,
    WorkflowInput,
    WorkflowOutput,
    OperationOutput,
    Notification,
    WorkflowEvent,
    WorkflowEventHistory,
    StreamEntry,
    WorkflowSchedule,
    ApplicationVersion,
    Queue,
    DbosMigration,
    EventDispatchKV,
)


# What StepChange owns here (managed, in its own database): bulk actions and their progress.


class BulkJob(models.Model):
    """One bulk action over many workflows, run in the background in bounded batches.

    The selection is fixed when the job is made (its items), so a job always reports on
    exactly the workflows it was asked to touch, even after a restart of StepChange."""

    class Action(models.TextChoices):
        CANCEL = "cancel"
        RESUME = "resume"
        DELETE = "delete"
        FORK_FROM_FAILURE = "fork_from_failure", "fork from failure"
        # Stranded workflows (pinned to a version no executor runs) forked onto another.
        FORK_TO_VERSION = "fork_to_version", "fork onto a version"

    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    application = models.ForeignKey(
        "stepchange.Application", on_delete=models.CASCADE, related_name="bulk_jobs"
    )
    action = models.CharField(max_length=32, choices=Action.choices)
    parameters = models.JSONField(default=dict, blank=True)
    selection = models.TextField(blank=True, help_text="The filter or list the items came from.")
    reason = models.TextField(blank=True)
    created_by = models.ForeignKey(
        "auth.User", null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by_name = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    # The process running the job renews this; a job whose lease ran out is taken over.
    lease_until = models.DateTimeField(null=True, blank=True)
    # Which process holds the lease (`conductor.processes`): once its beat is gone the job
    # is taken over at once, not when the lease runs out.
    held_by = models.CharField(max_length=200, blank=True)
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.action} #{self.pk}"

    @property
    def finished(self) -> bool:
        return self.state in (self.State.DONE, self.State.FAILED)


class BulkJobItem(models.Model):
    """One workflow of a bulk job and what became of it."""

    class State(models.TextChoices):
        PENDING = "pending"
        # Sent to an executor, answer not recorded: a restart leaves these to report,
        # never to send again (a second fork would fork twice).
        SENT = "sent"
        OK = "ok"
        FAILED = "failed"
        # The action makes no sense for the workflow's status: not sent, and why is kept.
        SKIPPED = "skipped"
        UNKNOWN = "unknown"

    job = models.ForeignKey(BulkJob, on_delete=models.CASCADE, related_name="items")
    workflow_id = models.CharField(max_length=255)
    # The workflow's status when it was selected.
    status = models.CharField(max_length=40, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    new_workflow_id = models.CharField(max_length=255, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    executor_id = models.CharField(max_length=255, blank=True)
    detail = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(fields=["job", "workflow_id"], name="bulk_item_once_per_job")
        ]
        indexes = [models.Index(fields=["job", "state"])]

    def __str__(self) -> str:
        return f"{self.workflow_id}: {self.state}"


# What the workflow list remembers: the names an application's workflows were seen with
# (offered as the search box's suggestions) and each operator's choice of columns.


class SeenName(models.Model):
    """A workflow name seen in an application's workflows, and the creation time (epoch ms)
    of the newest workflow seen with it. Kept here because DBOS keeps no index on names: a
    distinct scan of a large system database for every keystroke is out of the question."""

    application = models.ForeignKey(
        "stepchange.Application", on_delete=models.CASCADE, related_name="+"
    )
    name = models.CharField(max_length=255)
    last_seen_ms = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["application", "name"], name="seen_name_once_per_app")
        ]

    def __str__(self) -> str:
        return self.name


class ListPreference(models.Model):
    """Which optional columns an operator's workflow list shows (the same on every app)."""

    user = models.OneToOneField(
        "auth.User", on_delete=models.CASCADE, related_name="list_preference"
    )
    columns = models.JSONField(default=list)

    def __str__(self) -> str:
        return f"{self.user}: {', '.join(self.columns)}"
