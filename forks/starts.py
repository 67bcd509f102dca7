"""Starting a workflow from the console or the API: the ENQUEUED row DBOS's own client
enqueue writes, with its input in the application's format, so that a live executor of
that version picks it up (PROTOCOL.md §3.2, §3.4).

It mirrors dbos 3.2.0 `DBOSClient.enqueue` (`build_enqueue_status`, then
`SystemDatabase._insert_workflow_status`: the status row and its `workflow_input` row, in
one transaction) and TypeScript 5.0.2 `DBOSClient.enqueue` (`buildEnqueueStatus`, then
`insertWorkflowStatus`). What a client is told by its caller (class and config names,
the owning application) is copied from an earlier run of the same workflow, which is why
only a name the system database has seen can be started.

`workflow_start_plan` checks everything and works out both rows, writing nothing;
`workflow_start` writes them through the edited forks' inserter
(`forks.services.insert_rows`) in one `transaction.atomic`, audited as `workflow.start`
with the input's sha256.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, IntegrityError, connections, transaction
from django.http import HttpRequest

from forks.plans import ForkError, ForkInvalidError, ForkRefusedError, NoSystemDatabaseError
from forks.services import INTERNAL_QUEUE as INTERNAL_QUEUE
from forks.services import JSON_NULL, insert_rows, workflow_stored
from stepchange.audit import Result, audit_record
from stepchange.http import HAS_NUL, contains_nul
from stepchange.models import Application
from workflows import serialization as codec
from workflows import systemdb
from workflows.actions import OTHER_APPLICATION, SAFE_ID, WORKFLOW_NOT_FOUND
from workflows.models import ApplicationVersion, Queue, WorkflowStatus

START_ACTION = "workflow.start"

# DBOS's bounds (dbos 3.2.0 `MinPriority`/`MaxPriority`, TS `DBOS_QUEUE_M*_PRIORITY`):
# Python refuses 0 when it is given and TypeScript takes it, both write 0 when none is.
MAX_PRIORITY = 2**31 - 1
# The earlier runs whose decoded inputs the new input's shape is compared with.
SHAPE_SAMPLE = 5
# The newest workflows read for the names (with class and config) the form offers.
OFFER_SCAN = 5_000

NO_SYSTEM_DATABASE = (
    "{app} has no reachable system database ({problem}): a workflow is started by writing "
    "its row there, so StepChange cannot start one."
)
NAME_NEEDED = "Choose the workflow to start."
NAME_NOT_SEEN = (
    "No workflow named {name}{qualifier} has run in {app}: StepChange copies the class and "
    "config names from an earlier run, so only a workflow the system database has seen can "
    "be started."
)
LIKE_OTHER_NAME = "Workflow {like} is a run of {other}, not of {name}."
NOT_JSON = "Not valid JSON: {error}"
ARGS_NOT_LIST = "The arguments are a JSON list, one item per positional argument."
KWARGS_NOT_OBJECT = "The keyword arguments are a JSON object (Python workflows only)."
INPUT_SHAPE = (
    'The input is {"args": [...], "kwargs": {...}} (Python) or a list of arguments (TypeScript).'
)
BAD_ID = "Use letters, digits and . _ : - only, at most 255 of them."
ID_TAKEN = "A workflow {workflow_id} already exists: choose another id, or leave it empty."
BAD_QUEUE = "A queue name cannot be empty: leave it unset for DBOS's internal queue."
BAD_PRIORITY = "The priority is a whole number from 0 (none) to {high}; got {got!r}."
BAD_DEDUP = "A deduplication id cannot be empty: leave it unset for none."
DEDUP_TAKEN = (
    "Deduplication id {dedup!r} is in use on queue {queue} (by workflow {holder}): DBOS "
    "starts one workflow per id until it finishes."
)
CANNOT_WRITE = "StepChange cannot write {serialization!r}; choose one of {choices}."
NO_ROW_FORMAT = (
    "This system database (migration {version}) keeps no format per workflow: the input "
    "is written as py_pickle."
)
QUEUE_NOT_SEEN = (
    "Queue {queue} is neither in the queues table nor on any workflow: an executor dequeues "
    "only from queues its code declares, so a mistyped name waits forever."
)
ARITY = "Earlier runs of {name} took {expected} positional argument(s); this input has {got}."
KWARG_NAMES = (
    "Earlier runs of {name} took keyword arguments {expected} only; this input also has {got}."
)
KIND = "Argument {index}: earlier runs of {name} passed {expected}; this input passes {got}."
VERSION_NOT_RUN = (
    "No connected executor runs application version {version}: the workflow waits, "
    "enqueued, until one does."
)
NO_EXECUTOR = "No executor of {app} is connected: the workflow waits, enqueued, until one is."
WRITE_FAILED = "Nothing was written: {error}"
STARTED = "Enqueued workflow {workflow_id} ({name}) on queue {queue}."


@dataclass(frozen=True, kw_only=True)
class StartRequest:
    """What the operator asked for, as plain data. `input` is `{"args", "kwargs"}` or a
    plain list of arguments; `like` is the earlier run to start "like this one"."""

    workflow_name: str
    input: Any = None
    class_name: str | None = None
    config_name: str | None = None
    like: str | None = None
    queue_name: str | None = None
    workflow_id: str | None = None
    application_version: str | None = None
    priority: Any = None
    deduplication_id: str | None = None
    serialization: str | None = None
    accept_warnings: bool = False
    reason: str = ""


@dataclass
class StartPlan:
    """The rows to write and what the operator should know about them."""

    alias: str
    schema: systemdb.Schema
    workflow_id: str
    name: str
    queue_name: str
    application_version: str | None
    serialization: str
    input: dict[str, Any]
    input_sha256: str
    status_row: dict[str, Any]
    input_row: dict[str, Any] | None
    # Doubts need the operator's confirmation (`accept_warnings`); notes are only said.
    doubts: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # The audit record of the start, once written.
    audit_id: int | None = None

    @property
    def warnings(self) -> list[str]:
        return [doubt["message"] for doubt in self.doubts] + self.notes


@dataclass(frozen=True)
class Earlier:
    """An earlier run of the workflow: the row the new one copies, and its decoded input."""

    row: WorkflowStatus
    input: codec.Decoded


# Reading what the system database has seen.


def start_database(application: Application) -> tuple[str, systemdb.Schema]:
    """The alias and schema to start workflows in, or NoSystemDatabaseError saying why."""
    try:
        schema = systemdb.schema_of(application, fresh=True)
        alias = systemdb.alias_for(application)
    except systemdb.SystemDatabaseError as exc:
        raise NoSystemDatabaseError(
            NO_SYSTEM_DATABASE.format(app=application.name, problem=exc)
        ) from None
    try:
        systemdb.refuse_newer(application, schema)
    except systemdb.SchemaTooNewError as exc:
        raise ForkRefusedError(str(exc)) from None
    return alias, schema


def names_startable(application: Application) -> list[dict[str, str | None]]:
    """The (name, class, config) of the OFFER_SCAN newest workflows, alphabetically: what
    the start form offers."""
    rows = systemdb.workflows(application).newest_first()[:OFFER_SCAN]
    seen = dict.fromkeys(rows.values_list("name", "class_name", "config_name"))
    found = [
        {"name": name, "class_name": cls or None, "config_name": config or None}
        for name, cls, config in seen
        if name
    ]
    return sorted(
        found, key=lambda n: (n["name"] or "", n["class_name"] or "", n["config_name"] or "")
    )


def queues_seen(application: Application) -> list[str]:
    """Queue names in the queues table, plus DBOS's internal queue."""
    names = set(systemdb.rows(application, Queue).values_list("name", flat=True))
    return sorted(names | {INTERNAL_QUEUE})


def latest_version(application: Application, live_versions: Sequence[str]) -> str | None:
    """The latest version: DBOS's `application_versions` row with the newest timestamp,
    else the version the most recently connected executor runs."""
    newest = (
        systemdb.rows(application, ApplicationVersion)
        .order_by("-version_timestamp_ms", "-version_name")
        .values_list("version_name", flat=True)
        .first()
    )
    return newest or (live_versions[0] if live_versions else None)


def earlier_runs(
    application: Application,
    schema: systemdb.Schema,
    name: str,
    *,
    class_name: str | None = None,
    config_name: str | None = None,
    like: str | None = None,
) -> list[Earlier]:
    """The newest runs of `name` (the `like` one first when given), with decoded inputs."""
    base = systemdb.workflows(application).with_payloads(payload_tables=schema.has_payload_tables)
    found: list[WorkflowStatus] = []
    if like:
        found = list(base.filter(workflow_uuid=like))
    runs = base.filter(name=name)
    if class_name is not None:
        runs = runs.filter(class_name=class_name)
    if config_name is not None:
        runs = runs.filter(config_name=config_name)
    found += [row for row in runs.newest_first()[:SHAPE_SAMPLE] if row.workflow_uuid != like]
    return [
        Earlier(row, codec.decode(row.payload("input"), row.serialization, kind="inputs"))
        for row in found
    ]


# Checking and planning.


def workflow_start_plan(
    application: Application, asked: StartRequest, *, live_versions: Sequence[str]
) -> StartPlan:
    """Check `asked` and work out the rows DBOS's client enqueue would write. Raises
    ForkInvalidError naming every wrong field at once (doubts too, unless accepted),
    ForkRefusedError (409) for an id or deduplication id in use, NoSystemDatabaseError.
    Writes nothing."""
    alias, schema = start_database(application)
    errors: list[dict[str, Any]] = []

    def fail(field_name: str, message: str) -> None:
        errors.append({"field": field_name, "message": message})

    name = (asked.workflow_name or "").strip()
    runs: list[Earlier] = []
    if not name:
        fail("workflow_name", NAME_NEEDED)
    else:
        runs = earlier_runs(
            application,
            schema,
            name,
            class_name=asked.class_name,
            config_name=asked.config_name,
            like=asked.like,
        )
    template = runs[0].row if runs else None
    if asked.like and (template is None or template.workflow_uuid != asked.like):
        fail("like", WORKFLOW_NOT_FOUND.format(workflow_id=asked.like, app=application.name))
        template = None
    elif template is not None and template.name != name:
        fail("like", LIKE_OTHER_NAME.format(like=asked.like, other=template.name, name=name))
    if template is not None and template.application_name not in (None, "", application.name):
        raise ForkRefusedError(
            OTHER_APPLICATION.format(
                workflow_id=template.workflow_uuid,
                owner=template.application_name,
                app=application.name,
            )
        )
    if name and template is None and not asked.like:
        fail(
            "workflow_name",
            NAME_NOT_SEEN.format(name=name, qualifier=_qualifier(asked), app=application.name),
        )
    fmt = _format(asked, template, schema, fail)
    inputs = _inputs(asked.input, fail)
    encoded = None
    if inputs is not None:
        if contains_nul(inputs):
            fail("input", HAS_NUL.format(field="The input"))
        else:
            try:
                encoded = codec.encode(inputs, fmt, kind="inputs")
            except ValueError as exc:  # NotWritable is a ValueError too
                fail("input", str(exc))
    workflow_id = asked.workflow_id or str(uuid.uuid4())
    if not SAFE_ID.match(workflow_id):
        fail("workflow_id", BAD_ID)
    queue = INTERNAL_QUEUE if asked.queue_name is None else asked.queue_name.strip()
    if not queue:
        fail("queue_name", BAD_QUEUE)
    dedup = asked.deduplication_id
    if dedup is not None and not dedup.strip():
        fail("deduplication_id", BAD_DEDUP)
    priority = _priority(asked.priority, fail)
    for field_name, value in (("queue_name", queue), ("deduplication_id", dedup)):
        if value and contains_nul(value):
            fail(field_name, HAS_NUL.format(field="The value"))
    if errors:
        raise ForkInvalidError(errors)
    assert template is not None
    assert inputs is not None
    doubts = _shape_doubts(name, inputs, runs)
    if queue != INTERNAL_QUEUE and not _queue_seen(application, queue):
        doubts.append({"field": "queue_name", "message": QUEUE_NOT_SEEN.format(queue=queue)})
    if doubts and not asked.accept_warnings:
        raise ForkInvalidError([{**doubt, "confirm": True} for doubt in doubts])
    if workflow_stored(alias, workflow_id):
        raise ForkRefusedError(ID_TAKEN.format(workflow_id=workflow_id))
    if dedup:
        _dedup_free(application, queue, dedup)
    version = asked.application_version or latest_version(application, live_versions)
    notes = _version_notes(application, version, live_versions)
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    status, input_row = _rows(
        schema, template, workflow_id, queue, version, fmt, encoded, priority, dedup
    )
    return StartPlan(
        alias=alias,
        schema=schema,
        workflow_id=workflow_id,
        name=name,
        queue_name=queue,
        application_version=version,
        serialization=fmt,
        input=inputs,
        input_sha256=hashlib.sha256(text.encode()).hexdigest(),
        status_row=status,
        input_row=input_row,
        doubts=doubts,
        notes=notes,
    )


def _qualifier(asked: StartRequest) -> str:
    parts = [f"class {asked.class_name}" if asked.class_name else ""]
    parts.append(f"config {asked.config_name}" if asked.config_name else "")
    shown = ", ".join(part for part in parts if part)
    return f" ({shown})" if shown else ""


def _format(
    asked: StartRequest, template: WorkflowStatus | None, schema: systemdb.Schema, fail: Any
) -> str:
    """The operator's choice, else the earlier run's own format, else its language's
    default. A schema without the column reads every input as pickle."""
    choices = ", ".join(codec.WRITABLE_SERIALIZATIONS)
    if "serialization" not in schema.columns.get("workflow_status", frozenset()):
        if asked.serialization not in (None, codec.PY_PICKLE):
            fail("serialization", NO_ROW_FORMAT.format(version=schema.version))
        return codec.PY_PICKLE
    if asked.serialization:
        if asked.serialization not in codec.WRITABLE_SERIALIZATIONS:
            fail(
                "serialization",
                CANNOT_WRITE.format(serialization=asked.serialization, choices=choices),
            )
        return asked.serialization
    if template is None:
        return codec.PORTABLE_JSON
    own = template.serialization
    if own in codec.WRITABLE_SERIALIZATIONS:
        return own
    if not own and template.payload("input") is not None:
        # Rows older than the column: the encoding the stored input is recognised as.
        found = codec.decode(template.payload("input"), None, kind="inputs").format
        if found in codec.WRITABLE_SERIALIZATIONS:
            return found
    return codec.PORTABLE_JSON


def _inputs(value: Any, fail: Any) -> dict[str, Any] | None:
    """`{"args": [...], "kwargs": {...}}` from either shape the operator may give."""
    if value is None:
        return {"args": [], "kwargs": {}}
    if isinstance(value, list):
        return {"args": value, "kwargs": {}}
    if isinstance(value, dict) and set(value) <= {"args", "kwargs"}:
        args, kwargs = value.get("args", []), value.get("kwargs", {})
        if not isinstance(args, list):
            fail("input", ARGS_NOT_LIST)
            return None
        if not isinstance(kwargs, dict):
            fail("input", KWARGS_NOT_OBJECT)
            return None
        return {"args": args, "kwargs": kwargs}
    fail("input", INPUT_SHAPE)
    return None


def _priority(value: Any, fail: Any) -> int:
    if value is None or value == "":
        return 0
    number: Any = value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and value.isascii():
        number = int(value)
    if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number <= MAX_PRIORITY:
        fail("priority", BAD_PRIORITY.format(high=MAX_PRIORITY, got=value))
        return 0
    return int(number)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _shape_doubts(name: str, inputs: dict[str, Any], runs: list[Earlier]) -> list[dict[str, Any]]:
    """Where the input differs in shape from every earlier run's decoded input: the number
    of arguments, the keyword names, the kind of each argument. Said, never guessed at."""
    shapes: list[tuple[list[Any], dict[str, Any]]] = []
    for run in runs:
        value: Any = run.input.value
        if run.input.ok and isinstance(value, dict) and isinstance(value.get("args"), list):
            kw = value.get("kwargs")
            shapes.append((value["args"], kw if isinstance(kw, dict) else {}))
    if not shapes:
        return []
    args, kwargs = inputs["args"], inputs["kwargs"]
    doubts: list[dict[str, Any]] = []
    arities = sorted({len(earlier) for earlier, _ in shapes})
    if len(args) not in arities:
        expected = " or ".join(str(n) for n in arities)
        doubts.append(
            {"field": "input", "message": ARITY.format(name=name, expected=expected, got=len(args))}
        )
    # A keyword left out may have a default; one no earlier run passed may not exist.
    known = {key for _, named in shapes for key in named}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        doubts.append(
            {
                "field": "input",
                "message": KWARG_NAMES.format(name=name, expected=sorted(known), got=unknown),
            }
        )
    for index, value in enumerate(args):
        kinds = {_kind(earlier[index]) for earlier, _ in shapes if index < len(earlier)}
        kinds.discard("null")
        if kinds and value is not None and _kind(value) not in kinds:
            doubts.append(
                {
                    "field": "input",
                    "message": KIND.format(
                        index=index,
                        name=name,
                        expected=" or ".join(sorted(kinds)),
                        got=_kind(value),
                    ),
                }
            )
    return doubts


def _queue_seen(application: Application, queue: str) -> bool:
    if systemdb.rows(application, Queue).filter(name=queue).exists():
        return True
    # DBOS's queue index leads with queue_name: one index probe.
    return systemdb.workflows(application).filter(queue_name=queue).exists()


def _dedup_free(application: Application, queue: str, dedup: str) -> None:
    holder = (
        systemdb.workflows(application)
        .filter(queue_name=queue, deduplication_id=dedup)
        .values_list("workflow_uuid", flat=True)
        .first()
    )
    if holder is not None:
        raise ForkRefusedError(DEDUP_TAKEN.format(dedup=dedup, queue=queue, holder=holder))


def _version_notes(
    application: Application, version: str | None, live_versions: Sequence[str]
) -> list[str]:
    if not live_versions:
        return [NO_EXECUTOR.format(app=application.name)]
    if version is not None and version not in live_versions:
        return [VERSION_NOT_RUN.format(version=version)]
    return []


def _rows(
    schema: systemdb.Schema,
    template: WorkflowStatus,
    workflow_id: str,
    queue: str,
    version: str | None,
    fmt: str,
    encoded: str | None,
    priority: int,
    dedup: str | None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The status row of dbos 3.2.0 `build_enqueue_status` + `_insert_workflow_status`
    (TS 5.0.2 `buildEnqueueStatus` + `insertWorkflowStatus` write the same columns), with
    what a client is told copied from the earlier run; and its `workflow_input` row."""
    now = int(time.time() * 1000)
    status: dict[str, Any] = {
        "workflow_uuid": workflow_id,
        "status": "ENQUEUED",
        "name": template.name,
        # As stored: Python writes None where TypeScript writes "".
        "class_name": template.class_name,
        "config_name": template.config_name,
        "application_name": template.application_name,
        "queue_name": queue,
        "application_version": version,
        "serialization": fmt,
        "deduplication_id": dedup or None,
        "priority": priority,
        "recovery_attempts": 0,
        "is_debounced": False,
        # SQLAlchemy writes a JSON `null` for no attributes.
        "attributes": JSON_NULL,
        # The creator's token (dbos 3.2.0 `creator_xid`); the executor that claims it owns it.
        "creator_xid": str(uuid.uuid4()),
        # DBOS's column defaults, given so that every schema gets the same.
        "created_at": now,
        "updated_at": now,
    }
    if schema.has("workflow_input"):
        return status, {"workflow_uuid": workflow_id, "inputs": encoded, "retention_timestamp": now}
    return status | {"inputs": encoded}, None


# Writing.


def workflow_start(
    *,
    application: Application,
    asked: StartRequest,
    live_versions: Sequence[str],
    user: Any,
    request: HttpRequest | None = None,
) -> StartPlan:
    """Check `asked` and write the new workflow's rows in one transaction (audited, also
    when refused). An unmodified executor of the version then dequeues and runs it."""
    try:
        plan = workflow_start_plan(application, asked, live_versions=live_versions)
        _write(plan, application)
    except ForkError as exc:
        _audit(
            application, asked, user=user, request=request, result=Result.FAILED, detail=str(exc)
        )
        raise
    plan.audit_id = _audit(
        application,
        asked,
        user=user,
        request=request,
        plan=plan,
        detail=STARTED.format(workflow_id=plan.workflow_id, name=plan.name, queue=plan.queue_name),
    )
    return plan


def _write(plan: StartPlan, application: Application) -> None:
    try:
        with transaction.atomic(using=plan.alias), connections[plan.alias].cursor() as cursor:
            insert_rows(cursor, plan.schema, "workflow_status", [plan.status_row])
            if plan.input_row is not None:
                insert_rows(cursor, plan.schema, "workflow_input", [plan.input_row])
    except IntegrityError:
        # Someone wrote the id or took the deduplication id since the plan was checked.
        if workflow_stored(plan.alias, plan.workflow_id):
            raise ForkRefusedError(ID_TAKEN.format(workflow_id=plan.workflow_id)) from None
        dedup = plan.status_row.get("deduplication_id") or ""
        _dedup_free(application, plan.queue_name, dedup)
        raise ForkRefusedError(
            DEDUP_TAKEN.format(dedup=dedup, queue=plan.queue_name, holder="another")
        ) from None
    except DatabaseError as exc:
        raise ForkError(WRITE_FAILED.format(error=exc)) from None


def _audit(
    application: Application,
    asked: StartRequest,
    *,
    user: Any,
    request: HttpRequest | None,
    plan: StartPlan | None = None,
    result: str = Result.OK,
    detail: str = "",
) -> int:
    parameters: dict[str, Any] = {
        "workflow_name": plan.name if plan else asked.workflow_name,
        "workflow_id": plan.workflow_id if plan else asked.workflow_id,
        "queue_name": plan.queue_name if plan else asked.queue_name,
        "application_version": plan.application_version if plan else asked.application_version,
        "deduplication_id": asked.deduplication_id,
        "like": asked.like,
    }
    if plan is not None:
        parameters |= {
            "input_sha256": plan.input_sha256,
            "serialization": plan.serialization,
            "priority": plan.status_row["priority"],
            "warnings": plan.warnings,
        }
    return audit_record(
        action=START_ACTION,
        request=request,
        actor=user,
        application=application,
        target=(plan.workflow_id if plan else asked.workflow_id) or "",
        parameters=parameters,
        reason=asked.reason,
        result=result,
        detail=detail,
    ).pk
