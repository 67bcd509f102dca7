"""Edited forks (DESIGN.md "Edited forks", PROTOCOL.md §5.4): the only code that writes to a
DBOS system database.

An operator asks for a fork of a workflow from a restart step, with a new input and new
recorded outputs for some of the steps before that step. `edited_fork_plan` reads the
source, checks every value and choice, and works out every row DBOS's own fork would
write, with the edits applied; nothing is written there. `edited_fork_run` writes the
plan's rows in one transaction on the system database: the status row, its input,
the copied and overridden step rows, the event history and the events rebuilt from it,
the stream entries, and `was_forked_from` on the source. An unmodified executor of the
application then claims the row from its queue and runs it from the restart step.

Rows are copied column for column as the database has them (`SELECT *`), so every DBOS
schema is written in its own shape: inputs go to `workflow_input` from migration 109 on
and to `workflow_status.inputs` before it, and columns a schema lacks are never named.

For an application whose system database StepChange cannot reach, the same plan takes the
executor route (`forks.imports`): the source is read from an executor's export, and the
rows travel back to that executor as an `import_workflow` payload. `Plan.route` and the
audit record of the run say which route a fork took. What both routes share (`Source`,
`Origin`, `Plan`, the errors) is `forks.plans`, below them both.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, IntegrityError, connections, transaction
from django.http import HttpRequest
from django.utils import timezone
from psycopg.types.json import Jsonb

from forks import imports
from forks.models import EditedFork
from forks.plans import (
    DATABASE_ROUTE,
    IMPORT_ROUTE,
    NO_SOURCE,
    ForkError,
    ForkInvalidError,
    ForkRefusedError,
    NoSystemDatabaseError,
    Origin,
    Plan,
    Source,
    SourceNotFoundError,
)
from stepchange.audit import Result, audit_record
from stepchange.http import HAS_NUL, contains_nul
from stepchange.models import Application
from workflows import serialization as codec
from workflows import systemdb
from workflows.actions import OTHER_APPLICATION, SAFE_ID

INTERNAL_QUEUE = "_dbos_internal_queue"
# A JSON column's `null` (not SQL NULL): what SQLAlchemy writes for None into DBOS's JSON
# columns, which insert_rows writes as jsonb `null` on Postgres and the text on SQLite.
JSON_NULL = object()
# Values larger than this are audited as their hash and size, not in full.
AUDIT_VALUE_CHARS = 4096

STAGE_ACTION = "edited_fork.stage"
APPROVE_ACTION = "edited_fork.approve"
RUN_ACTION = "edited_fork.run"
DISCARD_ACTION = "edited_fork.discard"

NO_SYSTEM_DATABASE = (
    "{app} has no reachable system database ({problem}): an edited fork is written there."
)
STEP_OUT_OF_RANGE = (
    "The restart step must be between {low} and {high} for this workflow; got {step}."
)
NOT_A_STEP_NUMBER = "Step numbers are whole numbers; got {key!r}."
NO_SUCH_STEP = "The workflow recorded no step {step}."
STEP_NOT_BEFORE = (
    "Step {step} is at or after the restart step {start}: it runs again, so its output "
    "cannot be given."
)
BAD_VALUE = "{problem}"
CANNOT_WRITE = "StepChange cannot write {serialization!r}; choose one of {choices}."
NO_ROW_FORMAT = (
    "This system database (migration {version}) keeps no format per {what}: the value must "
    "be written as {needed}, the workflow's own format."
)
BAD_NEW_ID = "Use letters, digits and . _ : - only, at most 255 of them."
ID_TAKEN = "A workflow {new_id} already exists."
DRAFT_ID_TAKEN = "Another edited fork already writes workflow {new_id}."
BAD_QUEUE = "A queue name cannot be empty: leave it unset for DBOS's internal queue."
REASON_NEEDED = "Say why: the reason is kept in the audit log."
VERSION_NOT_RUN = (
    "No connected executor runs application version {version}: the fork waits, enqueued, "
    "until one does."
)
NO_EXECUTOR = "No executor of {app} is connected: the fork waits, enqueued, until one is."
NOT_OPEN = "Edited fork {fork_id} is {status}: only a staged or approved fork can {verb}."
NEEDS_APPROVAL = (
    "{app} requires a second operator's approval before an edited fork runs: stage it and "
    "ask a colleague to approve it."
)
OWN_APPROVAL = "The operator who staged a fork cannot approve it: a second operator must."
WRITE_FAILED = "Nothing was written: {error}"
WRITTEN = "Wrote workflow {new_id} into the system database: {steps} steps copied."
IMPORTED = (
    "Sent workflow {new_id} to executor {executor_id} as import_workflow: {steps} steps copied."
)


@dataclass(frozen=True, kw_only=True)
class Draft:
    """What the operator asked for, as plain data."""

    source_workflow_id: str
    start_step: int
    input: Any = None
    input_edited: bool = False
    step_outputs: dict[str, Any] = field(default_factory=dict)
    new_workflow_id: str | None = None
    application_version: str | None = None
    queue_name: str | None = None
    serialization: str | None = None
    reason: str = ""

    @classmethod
    def of(cls, fork: EditedFork) -> Draft:
        return cls(
            source_workflow_id=fork.source_workflow_id,
            start_step=fork.start_step,
            input=fork.input,
            input_edited=fork.input_edited,
            step_outputs=fork.step_outputs,
            new_workflow_id=fork.new_workflow_id,
            application_version=fork.application_version or None,
            queue_name=fork.queue_name,
            serialization=fork.serialization,
            reason=fork.reason,
        )


@dataclass(frozen=True)
class Edit:
    value: Any
    encoded: str | None
    serialization: str


# Reading the source.


def fork_origin(application: Application, workflow_id: str) -> Origin:
    """The source from the system database when it is reachable, else from an executor's
    export. Raises SourceNotFoundError, or ForkError when neither route is open."""
    try:
        alias, schema, source = fork_source(application, workflow_id)
    except NoSystemDatabaseError:
        return imports.export_origin(application, workflow_id)
    return Origin(
        route=DATABASE_ROUTE,
        source=source,
        schema=schema,
        exists=lambda new_id: workflow_stored(alias, new_id),
        alias=alias,
    )


def fork_source_alias(application: Application) -> tuple[str, systemdb.Schema]:
    """The alias and schema of the application's system database, or NoSystemDatabaseError."""
    try:
        schema = systemdb.schema_of(application, fresh=True)
        alias = systemdb.alias_for(application)
    except systemdb.SystemDatabaseError as exc:
        raise NoSystemDatabaseError(
            NO_SYSTEM_DATABASE.format(app=application.name, problem=exc)
        ) from None
    return alias, schema


def fork_source(application: Application, workflow_id: str) -> tuple[str, systemdb.Schema, Source]:
    """The alias, schema and raw rows of `workflow_id`, or SourceNotFoundError."""
    alias, schema = fork_source_alias(application)
    with connections[alias].cursor() as cursor:
        found = _select(cursor, "workflow_status", workflow_id)
        if not found:
            raise SourceNotFoundError(NO_SOURCE.format(workflow_id=workflow_id, app=application))
        status = found[0]
        inputs = status.get("inputs")
        if schema.has("workflow_input"):
            [stored] = _select(cursor, "workflow_input", workflow_id) or [{}]
            inputs = stored.get("inputs") if stored.get("inputs") is not None else inputs
        steps = _select(cursor, "operation_outputs", workflow_id, order="function_id")
        history = (
            _select(cursor, "workflow_events_history", workflow_id, order="function_id")
            if schema.has("workflow_events_history")
            else []
        )
        streams = (
            _select(cursor, "streams", workflow_id, order="offset") if schema.has("streams") else []
        )
    return alias, schema, Source(status, inputs, steps, history, streams)


def workflow_stored(alias: str, workflow_id: str) -> bool:
    with connections[alias].cursor() as cursor:
        return bool(_select(cursor, "workflow_status", workflow_id))


def existing_workflows(alias: str, workflow_ids: list[str]) -> list[str]:
    """Which of `workflow_ids` the system database at `alias` already has."""
    found: list[str] = []
    with connections[alias].cursor() as cursor:
        for workflow_id in workflow_ids:
            if _select(cursor, "workflow_status", workflow_id):
                found.append(workflow_id)
    return found


def select_rows(
    cursor: Any, table: str, workflow_id: str, *, order: str = ""
) -> list[dict[str, Any]]:
    """One workflow's rows of `table`, column for column."""
    return _select(cursor, table, workflow_id, order=order)


def _select(cursor: Any, table: str, workflow_id: str, *, order: str = "") -> list[dict[str, Any]]:
    # Table and column names are StepChange's own constants, quoted; values are parameters.
    quote = cursor.db.ops.quote_name
    sql = f"SELECT * FROM {quote(table)} WHERE {quote('workflow_uuid')} = %s"  # noqa: S608
    if order:
        sql += f" ORDER BY {quote(order)}"
    cursor.execute(sql, [workflow_id])
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


# Checking and planning.


def edited_fork_plan(
    application: Application,
    draft: Draft,
    *,
    live_versions: Sequence[str],
    draft_pk: int | None = None,
) -> Plan:
    """Check `draft` against the source as it is now and work out every row to write.

    Raises ForkInvalidError naming every wrong field (and step) at once, SourceNotFoundError
    or ForkError when the source can be read by neither route. Writes nothing."""
    origin = fork_origin(application, draft.source_workflow_id)
    schema, source = origin.schema, origin.source
    owner = source.status.get("application_name")
    if owner and owner != application.name:
        raise ForkRefusedError(
            OTHER_APPLICATION.format(
                workflow_id=draft.source_workflow_id, owner=owner, app=application.name
            )
        )
    errors: list[dict[str, Any]] = []
    check = _Checker(errors)
    fmt = _format(draft, source, schema, check)
    step_ids = [int(step["function_id"]) for step in source.steps]
    high = (max(step_ids) if step_ids else 0) + 1
    if not 0 <= draft.start_step <= high:
        check.fail("start_step", STEP_OUT_OF_RANGE.format(low=0, high=high, step=draft.start_step))
    new_id = draft.new_workflow_id or str(uuid.uuid4())
    check.new_id(new_id, application, draft_pk, exists=origin.exists)
    if draft.queue_name is not None and not draft.queue_name.strip():
        check.fail("queue_name", BAD_QUEUE)
    if not draft.reason.strip():
        check.fail("reason", REASON_NEEDED)
    inputs_text = source.inputs
    input_fmt = source.serialization
    if draft.input_edited:
        input_fmt = _row_format(fmt, source, schema, "workflow_status", "workflow", check, "input")
        inputs_text = check.encoded("input", None, draft.input, input_fmt, kind="inputs")
    edits = check.step_edits(draft, source, step_ids, fmt, schema)
    if errors:
        raise ForkInvalidError(errors)
    warnings: list[str] = []
    version = _version(application, draft, source, live_versions, warnings)
    plan = fork_rows(
        origin.alias, schema, source, draft, new_id, version, input_fmt, inputs_text, edits
    )
    plan.route, plan.executor_id, plan.language = origin.route, origin.executor_id, origin.language
    plan.serialization = fmt
    plan.warnings = warnings
    plan.diff = _diff(draft, source, edits)
    return plan


class _Checker:
    """Collects what is wrong, so the operator hears about every field at once."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors

    def fail(self, field_name: str, message: str, step: int | None = None) -> None:
        error: dict[str, Any] = {"field": field_name, "message": message}
        if step is not None:
            error["step"] = step
        self.errors.append(error)

    def new_id(
        self,
        new_id: str,
        application: Application,
        draft_pk: int | None,
        *,
        exists: Callable[[str], bool],
    ) -> None:
        if not SAFE_ID.match(new_id):
            self.fail("new_workflow_id", BAD_NEW_ID)
            return
        if exists(new_id):
            self.fail("new_workflow_id", ID_TAKEN.format(new_id=new_id))
            return
        others = EditedFork.objects.filter(application=application, new_workflow_id=new_id)
        if draft_pk is not None:
            others = others.exclude(pk=draft_pk)
        if others.exists():
            self.fail("new_workflow_id", DRAFT_ID_TAKEN.format(new_id=new_id))

    def encoded(
        self, field_name: str, step: int | None, value: Any, fmt: str | None, *, kind: Any
    ) -> str | None:
        if contains_nul(value):
            # Kept as JSON in StepChange's own table, where Postgres refuses a NUL.
            self.fail(field_name, HAS_NUL.format(field="The value"), step)
            return None
        if fmt is None:
            return None
        try:
            return codec.encode(value, fmt, kind=kind)
        except ValueError as exc:  # NotWritable is a ValueError too
            self.fail(field_name, BAD_VALUE.format(problem=exc), step)
            return None

    def step_edits(
        self,
        draft: Draft,
        source: Source,
        step_ids: list[int],
        fmt: str,
        schema: systemdb.Schema,
    ) -> dict[int, Edit]:
        """Each edited step: its new value, encoded, and the format it is written in."""
        edits: dict[int, Edit] = {}
        row_fmt = _row_format(
            fmt, source, schema, "operation_outputs", "step", self, "step_outputs"
        )
        for key, value in draft.step_outputs.items():
            step = _step_number(key)
            if step is None:
                self.fail("step_outputs", NOT_A_STEP_NUMBER.format(key=key))
                continue
            if step not in step_ids:
                self.fail("step_outputs", NO_SUCH_STEP.format(step=step), step)
                continue
            if step >= draft.start_step:
                self.fail(
                    "step_outputs", STEP_NOT_BEFORE.format(step=step, start=draft.start_step), step
                )
                continue
            encoded = self.encoded("step_outputs", step, value, row_fmt, kind="value")
            edits[step] = Edit(value, encoded, row_fmt)
        return edits


def _step_number(key: Any) -> int | None:
    text = str(key).strip()
    return int(text) if re.fullmatch(r"-?\d+", text) else None


def _format(draft: Draft, source: Source, schema: systemdb.Schema, check: _Checker) -> str:
    """The format edited values are written in: the operator's choice, else the source's
    own where it can be written, else portable JSON."""
    choices = ", ".join(codec.WRITABLE_SERIALIZATIONS)
    if draft.serialization:
        if draft.serialization not in codec.WRITABLE_SERIALIZATIONS:
            check.fail(
                "serialization",
                CANNOT_WRITE.format(serialization=draft.serialization, choices=choices),
            )
            return codec.PORTABLE_JSON
        return draft.serialization
    own = source.serialization
    return own if own in codec.WRITABLE_SERIALIZATIONS else codec.PORTABLE_JSON


def _row_format(
    fmt: str,
    source: Source,
    schema: systemdb.Schema,
    table: str,
    what: str,
    check: _Checker,
    field_name: str,
) -> str:
    """A table without a `serialization` column reads every value in the workflow's own
    format (legacy Python: pickle), whatever the fork would like."""
    if "serialization" in schema.columns.get(table, frozenset()):
        return fmt
    needed = source.serialization or codec.PY_PICKLE
    if fmt != needed:
        check.fail(
            field_name,
            NO_ROW_FORMAT.format(version=schema.version, what=what, needed=needed),
        )
    return needed


def _version(
    application: Application,
    draft: Draft,
    source: Source,
    live_versions: Sequence[str],
    warnings: list[str],
) -> str | None:
    """The version the fork is pinned to: the operator's, else the source's if a live
    executor runs it, else the newest one running; warned about when nobody runs it."""
    wanted = draft.application_version or None
    if wanted is None:
        own = source.status.get("application_version")
        wanted = own if own in live_versions or not live_versions else live_versions[0]
    if not live_versions:
        warnings.append(NO_EXECUTOR.format(app=application.name))
    elif wanted not in live_versions:
        warnings.append(VERSION_NOT_RUN.format(version=wanted))
    return wanted


def _now_ms() -> int:
    return int(time.time() * 1000)


def fork_rows(
    alias: str,
    schema: systemdb.Schema,
    source: Source,
    draft: Draft,
    new_id: str,
    version: str | None,
    input_fmt: str | None,
    inputs_text: str | None,
    edits: dict[int, Edit],
) -> Plan:
    """The rows of PROTOCOL.md §5.4, from the source's rows and the edits (none for a
    plain fork, `forks.native`)."""
    now = _now_ms()
    copied = ["name", "class_name", "config_name", "application_id", "authenticated_user"]
    copied += ["authenticated_roles", "assumed_role", "attributes", "application_name"]
    status: dict[str, Any] = {name: source.status.get(name) for name in copied}
    status |= {
        "workflow_uuid": new_id,
        "status": "ENQUEUED",
        "queue_name": draft.queue_name or INTERNAL_QUEUE,
        "application_version": version,
        "serialization": input_fmt,
        "forked_from": draft.source_workflow_id,
        "created_at": now,
        "updated_at": now,
        "priority": 0,
        "recovery_attempts": 0,
        "was_forked_from": False,
        "rate_limited": False,
        "is_debounced": False,
    }
    input_row = None
    if schema.has("workflow_input"):
        input_row = {"workflow_uuid": new_id, "inputs": inputs_text, "retention_timestamp": now}
    else:
        status["inputs"] = inputs_text
    before = [step for step in source.steps if int(step["function_id"]) < draft.start_step]
    steps = []
    for step in before:
        row = {**step, "workflow_uuid": new_id, "retention_timestamp": now}
        edit = edits.get(int(step["function_id"]))
        if edit is not None:
            row |= {"output": edit.encoded, "error": None, "serialization": edit.serialization}
        steps.append(row)
    history = [
        {**row, "workflow_uuid": new_id}
        for row in source.history
        if int(row["function_id"]) < draft.start_step
    ]
    newest: dict[str, dict[str, Any]] = {}
    for row in history:
        newest[row["key"]] = row
    events = [
        {key: row[key] for key in ("workflow_uuid", "key", "value", "serialization") if key in row}
        for row in newest.values()
    ]
    streams = [
        {**row, "workflow_uuid": new_id}
        for row in source.streams
        if int(row.get("function_id") or 0) < draft.start_step
    ]
    return Plan(
        alias=alias,
        schema=schema,
        source_id=draft.source_workflow_id,
        new_id=new_id,
        start_step=draft.start_step,
        serialization="",
        application_version=version,
        queue_name=status["queue_name"],
        status_row=status,
        input_row=input_row,
        step_rows=steps,
        history_rows=history,
        event_rows=events,
        stream_rows=streams,
        warnings=[],
        diff={},
    )


def _diff(draft: Draft, source: Source, edits: dict[int, Edit]) -> dict[str, Any]:
    """The before and after of every edited value (hashes above AUDIT_VALUE_CHARS)."""
    diff: dict[str, Any] = {}
    if draft.input_edited:
        before = codec.decode(source.inputs, source.serialization, kind="inputs")
        diff["input"] = {"before": _kept(_shown(before)), "after": _kept(draft.input)}
    by_id = {int(step["function_id"]): step for step in source.steps}
    steps: dict[str, Any] = {}
    for step in sorted(edits):
        row = by_id[step]
        output = codec.decode(row.get("output"), row.get("serialization"))
        error = codec.decode(row.get("error"), row.get("serialization"), kind="error")
        steps[str(step)] = {
            "function_name": row.get("function_name"),
            "before": _kept(_shown(output)),
            "before_error": _kept(_shown(error)) if row.get("error") is not None else None,
            "after": _kept(edits[step].value),
        }
    if steps:
        diff["steps"] = steps
    return diff


def _shown(decoded: codec.Decoded) -> Any:
    if decoded.ok:
        return decoded.value
    return {"undecodable": decoded.raw, "notes": list(decoded.notes)}


def _kept(value: Any) -> Any:
    text = json.dumps(value, sort_keys=True, default=str)
    if len(text) <= AUDIT_VALUE_CHARS:
        return value
    return {"sha256": hashlib.sha256(text.encode()).hexdigest(), "chars": len(text)}


def source_diff(fork: EditedFork) -> dict[str, Any]:
    """The before and after of the draft's edited values, against the source as it is."""
    source = fork_origin(fork.application, fork.source_workflow_id).source
    draft = Draft.of(fork)
    edits: dict[int, Edit] = {}
    for key, value in draft.step_outputs.items():
        step = _step_number(key)
        if step is not None and any(int(s["function_id"]) == step for s in source.steps):
            edits[step] = Edit(value, None, fork.serialization)
    return _diff(draft, source, edits)


# Writing.


def insert_rows(
    cursor: Any, schema: systemdb.Schema, table: str, rows: list[dict[str, Any]]
) -> None:
    """INSERT rows, naming only the columns this database's table has. The one inserter
    of every system-database writer (edited forks here, started workflows in forks.starts)."""
    present = schema.columns.get(table, frozenset())
    quote = cursor.db.ops.quote_name
    json_type = Jsonb if cursor.db.vendor == "postgresql" else None
    for row in rows:
        names = [name for name in row if name in present]
        # Names come from the database's own columns, quoted; values are parameters.
        columns = ", ".join(quote(name) for name in names)
        marks = ", ".join(["%s"] * len(names))
        sql = f"INSERT INTO {quote(table)} ({columns}) VALUES ({marks})"  # noqa: S608
        values = [row[name] for name in names]
        json_null = json_type(None) if json_type is not None else "null"
        values = [json_null if value is JSON_NULL else value for value in values]
        if json_type is not None:
            # A jsonb column reads back as Python data; it goes back in as jsonb.
            values = [json_type(v) if isinstance(v, (dict, list)) else v for v in values]
        cursor.execute(sql, values)


def _write_status(cursor: Any, plan: Plan) -> None:
    insert_rows(cursor, plan.schema, "workflow_status", [plan.status_row])


def _write_input(cursor: Any, plan: Plan) -> None:
    if plan.input_row is not None:
        insert_rows(cursor, plan.schema, "workflow_input", [plan.input_row])


def _write_steps(cursor: Any, plan: Plan) -> None:
    insert_rows(cursor, plan.schema, "operation_outputs", plan.step_rows)


def _write_history(cursor: Any, plan: Plan) -> None:
    insert_rows(cursor, plan.schema, "workflow_events_history", plan.history_rows)


def _write_events(cursor: Any, plan: Plan) -> None:
    insert_rows(cursor, plan.schema, "workflow_events", plan.event_rows)


def _write_streams(cursor: Any, plan: Plan) -> None:
    insert_rows(cursor, plan.schema, "streams", plan.stream_rows)


def _mark_source(cursor: Any, plan: Plan) -> None:
    if "was_forked_from" in plan.schema.columns.get("workflow_status", frozenset()):
        quote = cursor.db.ops.quote_name
        table, flag, key = (
            quote(name) for name in ("workflow_status", "was_forked_from", "workflow_uuid")
        )
        sql = f"UPDATE {table} SET {flag} = %s WHERE {key} = %s"  # noqa: S608
        cursor.execute(sql, [True, plan.source_id])


# In this order: the status row first (the others may point at it), the source last.
WRITES: list[Callable[[Any, Plan], None]] = [
    _write_status,
    _write_input,
    _write_steps,
    _write_history,
    _write_events,
    _write_streams,
    _mark_source,
]


def plan_write(application: Application, plan: Plan) -> str:
    """Write the plan in one transaction: all of it, or (on any error) nothing. On the
    import route the executor's import is that transaction; its request id is returned."""
    if plan.route == IMPORT_ROUTE:
        return imports.plan_send(application, plan)
    try:
        systemdb.refuse_newer(application, plan.schema)
    except systemdb.SchemaTooNewError as exc:
        raise ForkRefusedError(str(exc)) from None
    with transaction.atomic(using=plan.alias), connections[plan.alias].cursor() as cursor:
        for write in WRITES:
            write(cursor, plan)
    return ""


PAYLOAD_COLUMNS = frozenset({"inputs", "output", "error"})


def import_write(
    alias: str, schema: systemdb.Schema, elements: list[dict[str, list[dict[str, Any]]]]
) -> None:
    """Write imported workflows' checked rows in one transaction: all of them, or nothing.
    Inputs and outputs go to workflow_input / workflow_output where the schema has them."""
    now = _now_ms()
    payload_tables = schema.has_payload_tables
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        for element in elements:
            [status] = element["workflow_status"]
            workflow_id = status["workflow_uuid"]
            if payload_tables:
                # These live in workflow_input / workflow_output on this schema.
                kept_status = {k: v for k, v in status.items() if k not in PAYLOAD_COLUMNS}
                insert_rows(cursor, schema, "workflow_status", [kept_status])
            else:
                insert_rows(cursor, schema, "workflow_status", [status])
            if payload_tables:
                kept = {"workflow_uuid": workflow_id, "retention_timestamp": now}
                insert_rows(
                    cursor, schema, "workflow_input", [kept | {"inputs": status.get("inputs")}]
                )
                if status.get("output") is not None or status.get("error") is not None:
                    outcome = {"output": status.get("output"), "error": status.get("error")}
                    insert_rows(cursor, schema, "workflow_output", [kept | outcome])
            for table in ("operation_outputs", "workflow_events", "workflow_events_history"):
                if schema.has(table):
                    insert_rows(cursor, schema, table, element.get(table, []))
            if schema.has("streams"):
                insert_rows(cursor, schema, "streams", element.get("streams", []))


# The drafts' life: stage, approve, run, discard.


def _audit(
    action: str,
    fork: EditedFork,
    *,
    user: Any,
    request: HttpRequest | None,
    result: str = Result.OK,
    detail: str = "",
    diff: dict[str, Any] | None = None,
    route: str = "",
    request_id: str = "",
) -> None:
    audit_record(
        action=action,
        request=request,
        actor=user,
        application=fork.application,
        target=fork.source_workflow_id,
        parameters={
            "edited_fork": fork.pk,
            "start_step": fork.start_step,
            "new_workflow_id": fork.new_workflow_id,
            "application_version": fork.application_version,
            "queue_name": fork.queue_name,
            "serialization": fork.serialization,
            **fork.summary(),
            **({"route": route} if route else {}),
        },
        reason=fork.reason,
        result=result,
        detail=detail,
        value_diff=diff,
        request_id=request_id,
    )


def edited_fork_refused(
    *,
    application: Application,
    draft: Draft,
    error: Exception,
    user: Any,
    request: HttpRequest | None = None,
) -> None:
    """Audit a draft refused before it could be staged, with every reason."""
    audit_record(
        action=STAGE_ACTION,
        request=request,
        actor=user,
        application=application,
        target=draft.source_workflow_id,
        parameters={
            "start_step": draft.start_step,
            "new_workflow_id": draft.new_workflow_id,
            "input_edited": draft.input_edited,
            "edited_steps": sorted(str(key) for key in draft.step_outputs),
        },
        reason=draft.reason,
        result=Result.FAILED,
        detail=str(error),
    )


def edited_fork_stage(
    *,
    application: Application,
    draft: Draft,
    live_versions: Sequence[str],
    user: Any,
    request: HttpRequest | None = None,
) -> tuple[EditedFork, Plan]:
    """Check the draft and keep it for review (audited). Nothing is written to the system
    database. A draft refused while it is checked is audited too, with every reason."""
    try:
        plan = edited_fork_plan(application, draft, live_versions=live_versions)
    except ForkError as exc:
        edited_fork_refused(
            application=application, draft=draft, error=exc, user=user, request=request
        )
        raise
    try:
        fork = EditedFork.objects.create(
            application=application,
            source_workflow_id=draft.source_workflow_id,
            start_step=draft.start_step,
            input=draft.input if draft.input_edited else None,
            input_edited=draft.input_edited,
            step_outputs={str(key): value for key, value in draft.step_outputs.items()},
            new_workflow_id=plan.new_id,
            application_version=plan.application_version or "",
            queue_name=plan.queue_name,
            serialization=plan.serialization,
            reason=draft.reason,
            warnings=plan.warnings,
            created_by=user if getattr(user, "is_authenticated", False) else None,
            created_by_name=user.get_username() if user is not None else "",
        )
    except IntegrityError:
        raise ForkInvalidError(
            [{"field": "new_workflow_id", "message": DRAFT_ID_TAKEN.format(new_id=plan.new_id)}]
        ) from None
    _audit(STAGE_ACTION, fork, user=user, request=request, diff=plan.diff, route=plan.route)
    return fork, plan


def edited_fork_approve(
    *, fork: EditedFork, user: Any, request: HttpRequest | None = None
) -> EditedFork:
    _must_be_open(fork, "be approved")
    if fork.created_by_name == user.get_username():
        _audit(
            APPROVE_ACTION,
            fork,
            user=user,
            request=request,
            result=Result.DENIED,
            detail=OWN_APPROVAL,
        )
        raise ForkRefusedError(OWN_APPROVAL)
    fork.status = EditedFork.Status.APPROVED
    fork.approved_by_name = user.get_username()
    fork.approved_at = timezone.now()
    fork.save(update_fields=["status", "approved_by_name", "approved_at"])
    _audit(APPROVE_ACTION, fork, user=user, request=request)
    return fork


def edited_fork_run(
    *,
    fork: EditedFork,
    live_versions: Sequence[str],
    user: Any,
    request: HttpRequest | None = None,
) -> tuple[EditedFork, Plan]:
    """Check the draft again against the source as it is now and write it (audited, with
    the before and after of every edited value)."""
    _must_be_open(fork, "run")
    application = fork.application
    if application.fork_approval_required and fork.status != EditedFork.Status.APPROVED:
        refusal = NEEDS_APPROVAL.format(app=application.name)
        _audit(RUN_ACTION, fork, user=user, request=request, result=Result.DENIED, detail=refusal)
        raise ForkRefusedError(NEEDS_APPROVAL.format(app=application.name))
    try:
        plan = edited_fork_plan(
            application, Draft.of(fork), live_versions=live_versions, draft_pk=fork.pk
        )
        request_id = plan_write(application, plan)
    except (ForkError, DatabaseError) as exc:
        message = str(exc) if isinstance(exc, ForkError) else WRITE_FAILED.format(error=exc)
        fork.error = message
        fork.save(update_fields=["error"])
        _audit(RUN_ACTION, fork, user=user, request=request, result=Result.FAILED, detail=message)
        if isinstance(exc, ForkError):
            raise
        raise ForkError(message) from None
    fork.status = EditedFork.Status.DONE
    fork.run_by_name = user.get_username() if user is not None else ""
    fork.run_at = timezone.now()
    fork.warnings = plan.warnings
    fork.error = ""
    fork.save(update_fields=["status", "run_by_name", "run_at", "warnings", "error"])
    _audit(
        RUN_ACTION,
        fork,
        user=user,
        request=request,
        detail=(WRITTEN if plan.route == DATABASE_ROUTE else IMPORTED).format(
            new_id=plan.new_id, steps=len(plan.step_rows), executor_id=plan.executor_id
        ),
        diff=plan.diff,
        route=plan.route,
        request_id=request_id,
    )
    return fork, plan


def edited_fork_discard(
    *, fork: EditedFork, user: Any, request: HttpRequest | None = None
) -> EditedFork:
    _must_be_open(fork, "be discarded")
    fork.status = EditedFork.Status.DISCARDED
    fork.save(update_fields=["status"])
    _audit(DISCARD_ACTION, fork, user=user, request=request)
    return fork


def _must_be_open(fork: EditedFork, verb: str) -> None:
    if not fork.open:
        raise ForkRefusedError(NOT_OPEN.format(fork_id=fork.pk, status=fork.status, verb=verb))
