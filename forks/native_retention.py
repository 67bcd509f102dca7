"""Retention written into a system database, for an application with no executor connected:
DBOS's garbage collection and global timeout done from StepChange as the open core of the
SDK does them when a conductor sends `retention`.

The 3.4.0 open cores (`dbos`, `@dbos-inc/dbos-sdk` 5.3.0) no longer carry this code; the
last open Python core that does is dbos 3.2.0, on the same system-database schema:
`_workflow_commands.garbage_collect` (`SystemDatabase.garbage_collect`, then
`garbage_collect_payloads`) and `_workflow_commands.global_timeout`
(`SystemDatabase.list_timed_out_workflow_ids`, then `cancel_workflow` on each).

Both go in batches, one transaction each, under a statement timeout on Postgres (SQLite has
none: batches only). A batch that times out is rolled back and the sweep stops there; the
batches before it stay done and the next sweep carries on. Each batch reads its workflows
first and writes them under the same guard again, so a workflow whose status changed in
between is reported by id and left as it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.db import OperationalError, connections, transaction

from forks.native import CANCELLED, NOW, NOW_SQL, _database
from stepchange.models import Application
from workflows import systemdb

# DBOS's in-flight statuses: what its global timeout cancels.
IN_FLIGHT = ("PENDING", "ENQUEUED", "DELAYED")
# Rows the SDK keeps per workflow outside `workflow_status` and without a foreign key to it
# (3.2.0 sweeps them as orphans in `garbage_collect_payloads`; here they go with their
# status row, in its batch). The other tables' foreign keys cascade from the status row.
PAYLOADS = ("workflow_input", "workflow_output", "operation_outputs")
# Ids per IN list: well under SQLite's and Postgres's bind-parameter limits.
CHUNK = 500

TIMED_OUT = (
    "A batch ran past the statement timeout of {ms} ms and was rolled back: the batches"
    " before it stand, the rest is left for the next sweep."
)


@dataclass
class Swept:
    """What one sweep did: workflows deleted and cancelled, the cutoff the deletion used,
    the workflows left because they changed in between (with their status now), and why
    it stopped early ("" when it finished)."""

    deleted: int = 0
    cancelled: int = 0
    gc_cutoff_epoch_ms: int | None = None
    batches: int = 0
    left: dict[str, str] = field(default_factory=dict)
    stopped: str = ""


class _TimedOut(Exception):
    pass


def native_retention(
    *,
    application: Application,
    gc_cutoff_epoch_ms: int | None,
    gc_rows_threshold: int | None,
    timeout_cutoff_epoch_ms: int | None,
    batch_rows: int,
    statement_timeout_ms: int,
) -> Swept:
    """Delete finished workflows completed before the cutoff (the later of the age cutoff
    and the completion of the `gc_rows_threshold`-th newest finished workflow), then cancel
    the in-flight ones created at or before the timeout cutoff. Raises NativeError (409) on
    a schema newer than StepChange knows, 503 when the database cannot be reached."""
    alias, schema = _database(application)
    swept = Swept()
    try:
        if gc_cutoff_epoch_ms is not None or gc_rows_threshold is not None:
            swept.gc_cutoff_epoch_ms = _gc_cutoff(alias, gc_cutoff_epoch_ms, gc_rows_threshold)
            if swept.gc_cutoff_epoch_ms is not None:
                _collect(alias, schema, swept, batch_rows, statement_timeout_ms)
        if timeout_cutoff_epoch_ms is not None:
            _time_out(
                alias, schema, swept, application.name,
                timeout_cutoff_epoch_ms, batch_rows, statement_timeout_ms,
            )  # fmt: skip
    except _TimedOut:
        swept.stopped = TIMED_OUT.format(ms=statement_timeout_ms)
    return swept


def _gc_cutoff(alias: str, cutoff_ms: int | None, rows_threshold: int | None) -> int | None:
    """Mirrors the start of 3.2.0's `SystemDatabase.garbage_collect`: the more restrictive
    of the age cutoff and the completion time of the rows_threshold-th newest finished row
    (everything completed before it goes)."""
    if rows_threshold is None:
        return cutoff_ms
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT completed_at FROM workflow_status WHERE completed_at IS NOT NULL"
            " ORDER BY completed_at DESC LIMIT 1 OFFSET %s",
            [rows_threshold - 1],
        )
        row = cursor.fetchone()
    by_rows = None if row is None else int(row[0])
    if by_rows is not None and (cutoff_ms is None or by_rows > cutoff_ms):
        return by_rows
    return cutoff_ms


def _collect(
    alias: str, schema: systemdb.Schema, swept: Swept, batch_rows: int, timeout_ms: int
) -> None:
    """3.2.0's batched status sweep, keyed on (completed_at, workflow_uuid) so each batch
    is exactly `batch_rows` workflows: `completed_at` is set on every terminal transition
    and cleared on resume, so `completed_at < cutoff` is the whole eligibility rule, read
    once to choose the batch and again in the DELETE itself."""
    cutoff = swept.gc_cutoff_epoch_ms
    mark: tuple[int, str] | None = None
    while True:
        with _batch(alias, timeout_ms) as cursor:
            after, params = _after(mark, "completed_at")
            cursor.execute(
                "SELECT completed_at, workflow_uuid FROM workflow_status"  # noqa: S608
                f" WHERE completed_at < %s{after} ORDER BY completed_at, workflow_uuid"
                " LIMIT %s",
                [cutoff, *params, batch_rows],
            )
            found = [(int(at), str(wid)) for at, wid in cursor.fetchall()]
            ids = _batch_chosen(cursor, [wid for _, wid in found])
            deleted = _delete(cursor, schema, ids, cutoff)
        swept.batches += 1
        swept.deleted += len(deleted)
        swept.left.update(_left_since(alias, ids, deleted))
        if len(found) < batch_rows:
            return
        mark = found[-1]


def _delete(cursor: Any, schema: systemdb.Schema, ids: list[str], cutoff: int | None) -> list[str]:
    deleted: list[str] = []
    for chunk in _chunks(ids):
        marks = ", ".join(["%s"] * len(chunk))
        cursor.execute(
            f"DELETE FROM workflow_status WHERE workflow_uuid IN ({marks})"  # noqa: S608
            " AND completed_at < %s RETURNING workflow_uuid",
            [*chunk, cutoff],
        )
        gone = [wid for (wid,) in cursor.fetchall()]
        deleted += gone
        if not gone:
            continue
        marks = ", ".join(["%s"] * len(gone))
        for table in PAYLOADS:
            if schema.has(table):
                cursor.execute(
                    f"DELETE FROM {cursor.db.ops.quote_name(table)}"  # noqa: S608
                    f" WHERE workflow_uuid IN ({marks})",
                    gone,
                )
    return deleted


def _time_out(
    alias: str,
    schema: systemdb.Schema,
    swept: Swept,
    app_name: str,
    cutoff: int,
    batch_rows: int,
    timeout_ms: int,
) -> None:
    """Mirrors 3.2.0's `global_timeout`: the in-flight workflows created at or before the
    cutoff (`list_timed_out_workflow_ids`, this application's and unclaimed ones) each
    cancelled as `SystemDatabase.cancel_workflows` writes it, here a batch at a time, the
    UPDATE guarded by the in-flight statuses again."""
    present = schema.columns.get("workflow_status", frozenset())
    owned, owner = "", []
    if "application_name" in present:
        owned, owner = " AND (application_name = %s OR application_name IS NULL)", [app_name]
    in_flight = ", ".join(["%s"] * len(IN_FLIGHT))
    mark: tuple[int, str] | None = None
    while True:
        with _batch(alias, timeout_ms) as cursor:
            after, params = _after(mark, "created_at")
            cursor.execute(
                "SELECT created_at, workflow_uuid FROM workflow_status"  # noqa: S608
                f" WHERE status IN ({in_flight}) AND created_at <= %s{owned}{after}"
                " ORDER BY created_at, workflow_uuid LIMIT %s",
                [*IN_FLIGHT, cutoff, *owner, *params, batch_rows],
            )
            found = [(int(at), str(wid)) for at, wid in cursor.fetchall()]
            ids = _batch_chosen(cursor, [wid for _, wid in found])
            cancelled = _cancel(cursor, present, ids)
        swept.batches += 1
        swept.cancelled += len(cancelled)
        swept.left.update(_left_since(alias, ids, cancelled))
        if len(found) < batch_rows:
            return
        mark = found[-1]


def _cancel(cursor: Any, present: frozenset[str], ids: list[str]) -> list[str]:
    now = NOW_SQL[cursor.db.vendor]
    names = [name for name in CANCELLED if name in present]
    sets = ", ".join(f"{name} = {now if CANCELLED[name] is NOW else '%s'}" for name in names)
    values = [CANCELLED[name] for name in names if CANCELLED[name] is not NOW]
    in_flight = ", ".join(["%s"] * len(IN_FLIGHT))
    cancelled: list[str] = []
    for chunk in _chunks(ids):
        marks = ", ".join(["%s"] * len(chunk))
        cursor.execute(
            f"UPDATE workflow_status SET {sets} WHERE workflow_uuid IN ({marks})"  # noqa: S608
            f" AND status IN ({in_flight}) RETURNING workflow_uuid",
            [*values, *chunk, *IN_FLIGHT],
        )
        cancelled += [wid for (wid,) in cursor.fetchall()]
    return cancelled


# The pieces.


def _batch_chosen(cursor: Any, ids: list[str]) -> list[str]:
    """The batch as read; a seam where a test changes a workflow between read and write."""
    return ids


def _after(mark: tuple[int, str] | None, column: str) -> tuple[str, list[Any]]:
    if mark is None:
        return "", []
    return (
        f" AND ({column} > %s OR ({column} = %s AND workflow_uuid > %s))",
        [mark[0], mark[0], mark[1]],
    )


def _chunks(ids: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


def _left_since(alias: str, ids: list[str], written: list[str]) -> dict[str, str]:
    """The workflows of a batch it did not write, with the status they have now."""
    done = set(written)
    missed = [wid for wid in ids if wid not in done]
    if not missed:
        return {}
    left: dict[str, str] = {}
    with connections[alias].cursor() as cursor:
        for chunk in _chunks(missed):
            marks = ", ".join(["%s"] * len(chunk))
            cursor.execute(
                "SELECT workflow_uuid, status FROM workflow_status"  # noqa: S608
                f" WHERE workflow_uuid IN ({marks})",
                chunk,
            )
            left.update({str(wid): str(status) for wid, status in cursor.fetchall()})
    # A workflow deleted by someone else in between is no longer there to report.
    return left


@contextmanager
def _batch(alias: str, timeout_ms: int) -> Iterator[Any]:
    """One batch: its own transaction, with `SET LOCAL statement_timeout` on Postgres (as
    the SDK's `_set_statement_timeout` caps a transaction: reverted at commit). A statement
    the timeout cancels rolls the batch back and raises _TimedOut."""
    try:
        with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
            if cursor.db.vendor == "postgresql":
                # SET takes no bind parameters; the value is an int.
                cursor.execute(f"SET LOCAL statement_timeout = {int(timeout_ms)}")
            yield cursor
    except OperationalError as exc:
        if _is_statement_timeout(exc):
            raise _TimedOut from exc
        raise


def _is_statement_timeout(exc: BaseException) -> bool:
    """Mirrors the SDK's `_is_statement_timeout`: 57014 is query_canceled."""
    cause = exc.__cause__
    return getattr(cause, "sqlstate", None) == "57014"
