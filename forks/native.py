"""The native actions on one workflow without an executor: cancel, resume, fork, restart,
rewind and delete written into the application's system database, each as the open core of the
DBOS SDK writes it for the same operation (Python `dbos` 3.4.0 `dbos/_sys_db.py`, whose
TypeScript twin in `@dbos-inc/dbos-sdk` 5.3.0 `system_database.js` writes the same rows).

An executor of the application, connected to no conductor, sees these writes where it
looks anyway: a cancelled workflow stops at its next step (the executor reads the status
before each), an ENQUEUED one is dequeued from its queue and runs from its last recorded
step. Each action is one transaction that first reads the target's status again (locking
the row on Postgres; SQLite aliases take the write lock at BEGIN): a workflow that changed
since the operator looked is reported and nothing is written. `workflows.actions` chooses
this path when no executor is connected, and audits it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, IntegrityError, connections, transaction

from forks import services
from forks.plans import SourceNotFoundError
from stepchange.models import Application
from workflows import systemdb

INTERNAL_QUEUE = services.INTERNAL_QUEUE
# Statuses the SDK's cancel and resume leave as they are (their `status NOT IN` guard).
DONE = ("SUCCESS", "ERROR")

GONE = "Workflow {workflow_id} is no longer in the system database: nothing was changed."
CHANGED = "Workflow {workflow_id} became {status} since it was read: {why} Nothing was changed."
NO_STEP_NAMED = "Workflow {workflow_id} has no step named {name!r}."


class NativeError(Exception):
    """The write was not done; `status` is the API's code."""

    status = 409


@dataclass(frozen=True)
class Written:
    """What one action wrote: the workflows it changed (or made), and those it left as they
    were because they had finished, with their status."""

    changed: list[str]
    left: dict[str, str] = field(default_factory=dict)
    new_workflow_id: str | None = None


# Why an action does not suit a status ("" when it does), from `workflows.actions`.
Check = Callable[[str], str]


def native_cancel(
    *, application: Application, workflow_id: str, cancel_children: bool, check: Check
) -> Written:
    """Mirrors `SystemDatabase.cancel_workflows` (TypeScript `cancelWorkflows`): CANCELLED,
    out of its queue, unless SUCCESS or ERROR; with children, every descendant through
    `parent_workflow_id` the same way (the SDK walks them level by level; here it is one
    transaction)."""
    alias, schema = _database(application)
    with _transaction(alias) as cursor:
        _checked(cursor, workflow_id, check)
        ids = [workflow_id] + (_descendants(cursor, workflow_id) if cancel_children else [])
        changed = _update_unless_done(cursor, schema, ids, CANCELLED)
        return Written(changed, _statuses(cursor, [i for i in ids if i not in changed]))


def native_resume(
    *, application: Application, workflow_id: str, queue_name: str | None, check: Check
) -> Written:
    """Mirrors `SystemDatabase.resume_workflows` (TypeScript `resumeWorkflows`): ENQUEUED on
    the queue named, else DBOS's internal one, with its recovery attempts and deadline
    cleared, unless SUCCESS or ERROR."""
    alias, schema = _database(application)
    with _transaction(alias) as cursor:
        _checked(cursor, workflow_id, check)
        values = {
            "status": "ENQUEUED",
            "owner_xid": None,
            "queue_name": queue_name if queue_name is not None else INTERNAL_QUEUE,
            "recovery_attempts": 0,
            "workflow_deadline_epoch_ms": None,
            "deduplication_id": None,
            "started_at_epoch_ms": None,
            "updated_at": NOW,
            "completed_at": None,
        }
        # The row is locked and its status checked: the SDK's guard holds.
        return Written(_update_unless_done(cursor, schema, [workflow_id], values))


def native_fork(
    *,
    application: Application,
    workflow_id: str,
    start_step: int,
    new_workflow_id: str | None,
    application_version: str | None,
    queue_name: str | None,
    check: Check,
) -> Written:
    """Mirrors `SystemDatabase.fork_workflow` (TypeScript `forkWorkflow`): a new ENQUEUED
    workflow with the source's name, input and identity, its steps before `start_step`,
    their event history, the events as of then and the stream entries copied, and the
    source marked `was_forked_from`. A restart is a fork that copies no step (start 0)."""
    return _fork(
        application, workflow_id, lambda cursor: start_step, check,
        new_workflow_id, application_version, queue_name,
    )  # fmt: skip


def native_fork_from_failure(
    *,
    application: Application,
    workflow_id: str,
    mode: str,
    start_step: int | None,
    step_name: str | None,
    application_version: str | None,
    queue_name: str | None,
    check: Check,
) -> Written:
    """A fork from the step `mode` picks, as dbos 3.2.0's open `SystemDatabase.
    fork_from_failure` picked it (the 3.4.0 core no longer has that function):
    "last_failure" the last step with an error, else the last step; "last_step" the last
    step; "step_name" the last step of that name; "step" `start_step`. A workflow with no
    step is forked from the start. Then written as `native_fork` writes it."""

    def start(cursor: Any) -> int:
        return _failure_step(cursor, workflow_id, mode, start_step, step_name)

    return _fork(application, workflow_id, start, check, None, application_version, queue_name)


def _fork(
    application: Application,
    workflow_id: str,
    start: Callable[[Any], int],
    check: Check,
    new_workflow_id: str | None,
    application_version: str | None,
    queue_name: str | None,
) -> Written:
    """The fork, in one transaction, from the step `start` reads there."""
    alias, schema = _database(application)
    with _transaction(alias) as cursor:
        _checked(cursor, workflow_id, check)
        return _fork_rows_written(
            application, alias, schema, cursor, workflow_id, start(cursor),
            new_workflow_id, application_version, queue_name,
        )  # fmt: skip


def _fork_rows_written(
    application: Application,
    alias: str,
    schema: systemdb.Schema,
    cursor: Any,
    workflow_id: str,
    start_step: int,
    new_workflow_id: str | None,
    application_version: str | None,
    queue_name: str | None,
) -> Written:
    try:
        _, _, source = services.fork_source(application, workflow_id)
    except SourceNotFoundError:
        raise NativeError(GONE.format(workflow_id=workflow_id)) from None
    new_id = new_workflow_id or str(uuid.uuid4())
    draft = services.Draft(
        source_workflow_id=workflow_id,
        start_step=start_step,
        new_workflow_id=new_id,
        application_version=application_version,
        queue_name=queue_name,
    )
    # The SDK writes the version it is given, NULL otherwise: the newest version's
    # executors take an unversioned workflow from the queue.
    plan = services.fork_rows(
        alias, schema, source, draft, new_id, application_version,
        source.serialization, source.inputs, {},
    )  # fmt: skip
    try:
        for write in services.WRITES:
            write(cursor, plan)
    except IntegrityError:
        raise NativeError(services.ID_TAKEN.format(new_id=new_id)) from None
    return Written([new_id], new_workflow_id=new_id)


def _failure_step(
    cursor: Any, workflow_id: str, mode: str, start_step: int | None, step_name: str | None
) -> int:
    if mode == "step" and start_step is not None:
        return start_step
    where, params = "workflow_uuid = %s", [workflow_id]
    chosen = "MAX(function_id)"
    if mode == "last_failure":
        failed = "MAX(CASE WHEN error IS NOT NULL THEN function_id END)"
        chosen = f"COALESCE({failed}, MAX(function_id))"
    elif mode == "step_name":
        where, params = f"{where} AND function_name = %s", [workflow_id, str(step_name)]
    cursor.execute(f"SELECT {chosen} FROM operation_outputs WHERE {where}", params)  # noqa: S608
    [found] = cursor.fetchone()
    if found is None and mode == "step_name":
        error = NativeError(NO_STEP_NAMED.format(workflow_id=workflow_id, name=step_name))
        error.status = 400
        raise error
    # From 0 copies no step, in Python (steps from 1) and TypeScript (from 0) alike.
    return 0 if found is None else int(found)


def native_delete(
    *, application: Application, workflow_id: str, delete_children: bool, check: Check
) -> Written:
    """Mirrors `SystemDatabase.delete_workflows` (TypeScript `deleteWorkflows`): the
    workflow's input, output and steps, then its status row, whose foreign keys take its
    events, notifications and streams; with children, every descendant, whatever its
    status, as the SDK does."""
    alias, schema = _database(application)
    with _transaction(alias) as cursor:
        _checked(cursor, workflow_id, check)
        ids = [workflow_id] + (_descendants(cursor, workflow_id) if delete_children else [])
        quote = cursor.db.ops.quote_name
        marks = ", ".join(["%s"] * len(ids))
        for table in ("workflow_input", "workflow_output", "operation_outputs", "workflow_status"):
            if schema.has(table):
                sql = f"DELETE FROM {quote(table)} WHERE workflow_uuid IN ({marks})"  # noqa: S608
                cursor.execute(sql, ids)
    return Written(ids)


# The close sentinel a stream ends with, serialized as portable JSON (the SDK's
# `_serialized_stream_closed_sentinel`, TypeScript `DBOS_STREAM_CLOSED_SENTINEL_SERIALIZED`).
STREAM_CLOSED = ('"__DBOS_STREAM_CLOSED__"', "portable_json")
REWIND_RACED = "Workflow {workflow_id} changed status while being rewound: nothing was changed."
BAD_REWIND_STEP = "Rewind needs a start_step of 0 or more (the first step to run again)."


def native_rewind(
    *,
    application: Application,
    workflow_id: str,
    start_step: int | None,
    application_version: str | None,
    queue_name: str | None,
    check: Check,
) -> Written:
    """Mirrors dbos 3.4.0's `SystemDatabase.rewind_workflow` (TypeScript 5.3.0
    `rewindWorkflow`): the same workflow, finished, re-enqueued with its history from
    `start_step` on discarded: events rolled back to their last value published before it
    (from `workflow_events_history`), streams' close sentinels from it cleared, its steps
    and event history from it deleted, messages consumed from it (or not yet consumed)
    deleted, its output deleted; then ENQUEUED on the queue named (else DBOS's internal
    one) only while its status is still the one read. Step 0 discards all (TypeScript
    counts steps from 0, Python from 1)."""
    if start_step is None or start_step < 0:
        error = NativeError(BAD_REWIND_STEP)
        error.status = 400
        raise error
    alias, schema = _database(application)
    with _transaction(alias) as cursor:
        status = _checked(cursor, workflow_id, check)
        _rewind_history(cursor, schema, workflow_id, start_step)
        present = schema.columns.get("workflow_status", frozenset())
        values: dict[str, Any] = {
            "status": "ENQUEUED",
            "owner_xid": None,
            "queue_name": queue_name if queue_name is not None else INTERNAL_QUEUE,
            "queue_partition_key": None,
            "recovery_attempts": 0,
            "workflow_deadline_epoch_ms": None,
            "deduplication_id": None,
            "started_at_epoch_ms": None,
            "updated_at": NOW,
            "completed_at": None,
            "output": None,
            "error": None,
        }
        if application_version is not None:
            values["application_version"] = application_version
        quote, now = cursor.db.ops.quote_name, NOW_SQL[cursor.db.vendor]
        names = [name for name in values if name in present]
        sets = ", ".join(f"{quote(n)} = {now if values[n] is NOW else '%s'}" for n in names)
        cursor.execute(
            f"UPDATE workflow_status SET {sets} WHERE workflow_uuid = %s AND status = %s",  # noqa: S608
            [*(values[n] for n in names if values[n] is not NOW), workflow_id, status],
        )
        if cursor.rowcount != 1:
            # Only where the row could not be locked; rolled back with the rest.
            raise NativeError(REWIND_RACED.format(workflow_id=workflow_id))
    return Written([workflow_id])


def _rewind_history(cursor: Any, schema: systemdb.Schema, workflow_id: str, start: int) -> None:
    """The deletes of `rewind_workflow`, in its order, on the tables this database has."""
    past_cut = (
        "EXISTS (SELECT 1 FROM workflow_events_history discarded"
        " WHERE discarded.workflow_uuid = %s AND discarded.key = {key}"
        " AND discarded.function_id >= %s)"
    )
    if schema.has("workflow_events_history") and schema.has("workflow_events"):
        cursor.execute(
            "DELETE FROM workflow_events WHERE workflow_uuid = %s AND "  # noqa: S608
            + past_cut.format(key="workflow_events.key"),
            [workflow_id, workflow_id, start],
        )
        cursor.execute(
            "INSERT INTO workflow_events (workflow_uuid, key, value, serialization)"  # noqa: S608
            " SELECT workflow_uuid, key, value, serialization FROM (SELECT weh.workflow_uuid,"
            " weh.key, weh.value, weh.serialization, ROW_NUMBER() OVER (PARTITION BY weh.key"
            " ORDER BY weh.function_id DESC) AS rn FROM workflow_events_history weh"
            " WHERE weh.workflow_uuid = %s AND weh.function_id < %s AND "
            + past_cut.format(key="weh.key")
            + ") surviving WHERE surviving.rn = 1",
            [workflow_id, start, workflow_id, start],
        )
    if schema.has("streams"):
        cursor.execute(
            "DELETE FROM streams WHERE workflow_uuid = %s AND function_id >= %s"
            " AND value = %s AND serialization = %s",
            [workflow_id, start, *STREAM_CLOSED],
        )
    for table in ("operation_outputs", "workflow_events_history"):
        if schema.has(table):
            cursor.execute(
                f"DELETE FROM {table} WHERE workflow_uuid = %s AND function_id >= %s",  # noqa: S608
                [workflow_id, start],
            )
    if schema.has("notifications"):
        cursor.execute(
            "DELETE FROM notifications WHERE destination_uuid = %s"
            " AND (consumed_by_function_id >= %s OR consumed = %s)",
            [workflow_id, start, False],
        )
    if schema.has("workflow_output"):
        cursor.execute("DELETE FROM workflow_output WHERE workflow_uuid = %s", [workflow_id])


# The pieces.


class _Now:
    """The database's clock in epoch milliseconds, as the SDK's `_now_ms_sql` reads it."""


NOW = _Now()
NOW_SQL = {
    "postgresql": "CAST(EXTRACT(epoch FROM now()) * 1000 AS BIGINT)",
    "sqlite": "CAST(strftime('%%s', 'now') * 1000 AS BIGINT)",
}

# What `SystemDatabase.cancel_workflows` writes (dbos 3.4.0), `completed_at` as it sets it.
CANCELLED: dict[str, Any] = {
    "status": "CANCELLED",
    "owner_xid": None,
    "queue_name": None,
    "deduplication_id": None,
    "started_at_epoch_ms": None,
    "updated_at": NOW,
    "completed_at": NOW,
}


def _database(application: Application) -> tuple[str, systemdb.Schema]:
    try:
        schema = systemdb.writable_schema(application)
        return systemdb.alias_for(application), schema
    except systemdb.SystemDatabaseError as exc:
        error = NativeError(str(exc))
        error.status = 409 if isinstance(exc, systemdb.SchemaTooNewError) else 503
        raise error from None


@contextmanager
def _transaction(alias: str) -> Iterator[Any]:
    """`transaction.atomic(using=alias)` with a cursor on that alias."""
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        yield cursor


def _checked(cursor: Any, workflow_id: str, check: Check) -> str:
    """The target's status, read (and on Postgres locked) inside the transaction; raises
    NativeError when it is gone or no longer suits the action."""
    lock = " FOR UPDATE" if cursor.db.vendor == "postgresql" else ""
    cursor.execute(
        f"SELECT status FROM workflow_status WHERE workflow_uuid = %s{lock}",  # noqa: S608
        [workflow_id],
    )
    row = cursor.fetchone()
    if row is None:
        raise NativeError(GONE.format(workflow_id=workflow_id))
    status = str(row[0] or "")
    why = check(status)
    if why:
        raise NativeError(CHANGED.format(workflow_id=workflow_id, status=status, why=why))
    return status


def _descendants(cursor: Any, workflow_id: str) -> list[str]:
    """Every workflow started by `workflow_id`, recursively, as the SDK's
    `get_workflow_children` walks `parent_workflow_id`."""
    found: list[str] = []
    seen = {workflow_id}
    frontier = [workflow_id]
    while frontier:
        marks = ", ".join(["%s"] * len(frontier))
        cursor.execute(
            f"SELECT workflow_uuid FROM workflow_status WHERE parent_workflow_id IN ({marks})",  # noqa: S608
            frontier,
        )
        frontier = [child for (child,) in cursor.fetchall() if child not in seen]
        seen.update(frontier)
        found += frontier
    return found


def _update_unless_done(
    cursor: Any, schema: systemdb.Schema, ids: list[str], values: dict[str, Any]
) -> list[str]:
    """The SDK's UPDATE of `ids` guarded by `status NOT IN ('SUCCESS', 'ERROR')`, naming the
    columns this database has; the ids it changed."""
    present = schema.columns.get("workflow_status", frozenset())
    quote = cursor.db.ops.quote_name
    now = NOW_SQL[cursor.db.vendor]
    names = [name for name in values if name in present]
    sets = ", ".join(f"{quote(n)} = {now if values[n] is NOW else '%s'}" for n in names)
    params = [values[n] for n in names if values[n] is not NOW]
    marks = ", ".join(["%s"] * len(ids))
    cursor.execute(
        f"UPDATE workflow_status SET {sets} WHERE workflow_uuid IN ({marks})"  # noqa: S608
        f" AND status NOT IN (%s, %s) RETURNING workflow_uuid",
        [*params, *ids, *DONE],
    )
    return [workflow_id for (workflow_id,) in cursor.fetchall()]


def _statuses(cursor: Any, ids: list[str]) -> dict[str, str]:
    if not ids:
        return {}
    marks = ", ".join(["%s"] * len(ids))
    cursor.execute(
        f"SELECT workflow_uuid, status FROM workflow_status WHERE workflow_uuid IN ({marks})",  # noqa: S608
        ids,
    )
    return {workflow_id: str(status) for workflow_id, status in cursor.fetchall()}


# Recovery without a connection.


@dataclass(frozen=True)
class PendingExecutor:
    """An executor seen only in the system database: how many PENDING workflows it left."""

    executor_id: str
    application_version: str
    pending: int


def _pending_rows(application: Application) -> tuple[str, str, list[Any]]:
    """The system database's alias, and the condition (with its values) of the
    application's PENDING rows: its own and unclaimed ones where rows name their
    application. SystemDatabaseError when the database cannot be reached (introspected
    first, so it says so rather than the driver's error from the cursor)."""
    schema = systemdb.schema_of(application)
    where, values = "status = %s", ["PENDING"]
    if "application_name" in schema.columns.get("workflow_status", frozenset()):
        where += " AND (application_name = %s OR application_name IS NULL)"
        values.append(application.name)
    return systemdb.alias_for(application), where, values


@contextmanager
def _read(application: Application) -> Iterator[None]:
    """A read of the system database that fails (a connection lost since its schema was
    read, a statement timeout) is a SystemDatabaseError saying so: the callers answer 503."""
    try:
        yield
    except DatabaseError as exc:
        raise systemdb.SystemDatabaseError(
            f"The system database of {application.name} could not be read: {exc}"
        ) from exc


def pending_executors(application: Application) -> list[PendingExecutor]:
    """The executors that hold PENDING workflows, by executor id and version, with how
    many each: what an operator may recover (a preview: nothing is written). One GROUP BY,
    so a system database with many PENDING workflows is not read row by row."""
    alias, where, values = _pending_rows(application)
    with _read(application), connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT executor_id, application_version, count(*) FROM workflow_status"  # noqa: S608
            f" WHERE {where} GROUP BY executor_id, application_version"
            " ORDER BY executor_id, application_version",
            values,
        )
        rows = cursor.fetchall()
    return [
        PendingExecutor(executor_id or "", version or "", int(count))
        for executor_id, version, count in rows
    ]


def pending_workflow_ids(
    application: Application,
    executor_id: str,
    *,
    version: str | None = None,
    limit: int | None = None,
) -> list[str]:
    """The ids of the PENDING workflows `executor_id` left, in id order: of every version
    (what a recovery of it re-enqueues), or of one ("" for none), and at most `limit`."""
    alias, where, values = _pending_rows(application)
    where += " AND executor_id = %s"
    values.append(executor_id)
    if version:
        where += " AND application_version = %s"
        values.append(version)
    elif version is not None:
        where += " AND (application_version IS NULL OR application_version = '')"
    bound = ""
    if limit is not None:
        bound = " LIMIT %s"
        values.append(limit)
    with _read(application), connections[alias].cursor() as cursor:
        cursor.execute(
            f"SELECT workflow_uuid FROM workflow_status WHERE {where}"  # noqa: S608
            f" ORDER BY workflow_uuid{bound}",
            values,
        )
        return [str(workflow_id) for (workflow_id,) in cursor.fetchall()]


def native_recover(
    *, application: Application, executor_id: str, workflow_ids: list[str]
) -> Written:
    """Mirrors `SystemDatabase.reenqueue_for_recovery` (what `recover_pending_workflows`
    does for each of a dead executor's PENDING workflows): ENQUEUED, on its own queue or
    DBOS's internal one, only while it is still PENDING on that executor, so a workflow
    another executor took up since is left alone. Executors of its version dequeue it."""
    alias, schema = _database(application)
    present = schema.columns.get("workflow_status", frozenset())
    sets = ["status = %s", f"updated_at = {NOW_SQL[connections[alias].vendor]}"]
    sets += [f"{name} = NULL" for name in ("owner_xid", "started_at_epoch_ms") if name in present]
    sets.append("queue_name = COALESCE(queue_name, %s)")
    changed: list[str] = []
    with _transaction(alias) as cursor:
        for workflow_id in workflow_ids:
            cursor.execute(
                f"UPDATE workflow_status SET {', '.join(sets)} WHERE workflow_uuid = %s"  # noqa: S608
                " AND status = %s AND executor_id = %s RETURNING workflow_uuid",
                ["ENQUEUED", INTERNAL_QUEUE, workflow_id, "PENDING", executor_id],
            )
            changed += [found for (found,) in cursor.fetchall()]
        left = _statuses(cursor, [w for w in workflow_ids if w not in changed])
    return Written(changed, left)
