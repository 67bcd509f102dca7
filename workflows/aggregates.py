"""Workflow aggregates read from an application's system database: DBOS's
`get_workflow_aggregates` (`SystemDatabase.get_workflow_aggregates`, dbos 3.2.0) as one
GROUP BY over workflow_status, with the list's filters, so that an application whose
system database StepChange reaches needs no executor to answer it.

Groups and values are DBOS's: a group's values as text (None stays None), the time bucket
`floor(created_at / size) * size` under `time_bucket`, maxima that skip rows missing a
time. Postgres stops the statement after SYSTEM_DB_STATEMENT_TIMEOUT_MS (the system
database connection's own statement timeout): a full-table aggregate over millions of
rows is refused with advice rather than holding a worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import OperationalError, models

from conductor.protocol import AGGREGATES_NEED_A_GROUP, WorkflowAggregateOutput
from stepchange.asyncdb import db_async
from workflows import systemdb
from workflows.models import WorkflowStatus
from workflows.sources import QUERY_CANCELED, DatabaseSource, ListQuery, SlowQuery

# What a workflow may be grouped by: DBOS's group names, and the status row's fields.
GROUPS = {
    "status": "status",
    "name": "name",
    "queue_name": "queue_name",
    "executor_id": "executor_id",
    "application_version": "application_version",
    "application_name": "application_name",
}
TIME_BUCKET = "time_bucket"
# What each group may select, by DBOS's names.
SELECTS = ("count", "min_created_at", "max_queue_wait_ms", "max_total_latency_ms")
UNKNOWN_GROUP = "Workflows cannot be grouped by {name!r}: choose from {known}."
UNKNOWN_SELECT = "{name!r} cannot be selected: choose from {known}."
BAD_BUCKET = "time_bucket_size_ms must be a positive number of milliseconds; got {size}."
NO_GROUP = AGGREGATES_NEED_A_GROUP
SLOW_AGGREGATE = (
    "The system database stopped this aggregate after {timeout} ms: it would read too many "
    "workflows. Narrow it with a time range (startTime, endTime) or a status."
)
NO_COLUMN = (
    "This system database has no {column} column (DBOS migration {version}), so workflows "
    "cannot be aggregated by it."
)


class AggregateError(ValueError):
    """A request this module cannot answer as asked (the API answers 400)."""

    status = 400


@dataclass(frozen=True, kw_only=True)
class AggregateQuery:
    """What to group by (GROUPS' names), what to select (SELECTS; count when none), the
    time bucket, and the workflows to aggregate: the list's filters, and any of several
    id prefixes."""

    group_by: tuple[str, ...] = ()
    select: tuple[str, ...] = ()
    time_bucket_size_ms: int | None = None
    filters: ListQuery = field(default_factory=ListQuery)
    workflow_id_prefixes: tuple[str, ...] = ()

    def check(self) -> None:
        for name in self.group_by:
            if name not in GROUPS:
                raise AggregateError(UNKNOWN_GROUP.format(name=name, known=", ".join(GROUPS)))
        for name in self.select:
            if name not in SELECTS:
                raise AggregateError(UNKNOWN_SELECT.format(name=name, known=", ".join(SELECTS)))
        size = self.time_bucket_size_ms
        if size is not None and size <= 0:
            raise AggregateError(BAD_BUCKET.format(size=size))
        if not self.group_by and size is None:
            raise AggregateError(NO_GROUP)


def _selected(name: str) -> models.Aggregate:
    created = models.F("created_at_ms")
    if name == "count":
        return models.Count("*")
    if name == "min_created_at":
        return models.Min(created)
    if name == "max_queue_wait_ms":
        # DBOS stamps started_at_epoch_ms when a workflow leaves its queue.
        return models.Max(models.F("started_at_epoch_ms") - created)
    return models.Max(models.F("completed_at_ms") - created)


def _fields_used(query: AggregateQuery) -> set[str]:
    used = {GROUPS[name] for name in query.group_by}
    if "max_queue_wait_ms" in query.select:
        used.add("started_at_epoch_ms")
    if "max_total_latency_ms" in query.select:
        used.add("completed_at_ms")
    return used


def _grouped(source: DatabaseSource, query: AggregateQuery) -> list[WorkflowAggregateOutput]:
    missing = systemdb.missing_fields(source.alias, WorkflowStatus) & _fields_used(query)
    if missing:
        column = WorkflowStatus._meta.get_field(sorted(missing)[0]).column  # type: ignore[union-attr]
        raise AggregateError(NO_COLUMN.format(column=column, version=source.schema.version))
    rows = source.matching(query.filters)
    if query.workflow_id_prefixes:
        either = models.Q()
        for prefix in query.workflow_id_prefixes:
            either |= models.Q(workflow_uuid__startswith=prefix)
        rows = rows.filter(either)
    names = {name: GROUPS[name] for name in query.group_by}
    if query.time_bucket_size_ms is not None:
        size = models.Value(query.time_bucket_size_ms, output_field=models.BigIntegerField())
        rows = rows.annotate(
            _bucket=models.ExpressionWrapper(
                models.F("created_at_ms") / size * size, output_field=models.BigIntegerField()
            )
        )
        names[TIME_BUCKET] = "_bucket"
    selects = query.select or ("count",)
    found = (
        rows.order_by()
        .values(*names.values())
        .annotate(**{f"_{name}": _selected(name) for name in selects})
        .order_by(*names.values())
    )
    return [_row(row, names, selects) for row in found]


def _row(row: dict[str, Any], names: dict[str, str], selects: tuple[str, ...]) -> Any:
    group = {
        name: None if row[column] is None else str(row[column]) for name, column in names.items()
    }
    values = {name: None if row[f"_{name}"] is None else int(row[f"_{name}"]) for name in selects}
    return WorkflowAggregateOutput(group=group, **values)


def _on_thread(source: DatabaseSource, query: AggregateQuery) -> list[WorkflowAggregateOutput]:
    try:
        return _grouped(source, query)
    except OperationalError as exc:
        if getattr(exc.__cause__, "sqlstate", None) == QUERY_CANCELED:
            timeout = settings.SYSTEM_DB_STATEMENT_TIMEOUT_MS
            raise SlowQuery(SLOW_AGGREGATE.format(timeout=timeout)) from None
        raise


async def workflow_aggregates_read(
    *, source: DatabaseSource, query: AggregateQuery
) -> list[WorkflowAggregateOutput]:
    """The groups of workflows `query` asks for, read from `source`'s system database, in
    the order of their group values."""
    query.check()
    return await db_async(_on_thread)(source, query)
