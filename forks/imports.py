"""Edited forks that travel to an executor as an `import_workflow` payload (PROTOCOL.md
§2.2, §5.4 "Option B"), for an application whose system database StepChange cannot reach.

The source is read from the executor's own `export_workflow` answer into the same `Source`
(`forks.plans`) that `forks.services` reads from a database, so the same checks and the same
rows apply. The checked plan goes back to that executor as `import_workflow`; the executor
inserts the rows verbatim and an executor of the application claims the fork from its queue.

What real executors export (a greet workflow run to SUCCESS, exported through the relay):

* dbos 3.2.0 (SQLite): base64 of gzip of a protocol 4 pickle built only from data opcodes
  (PROTO FRAME MARK EMPTY_LIST EMPTY_DICT APPEND APPENDS SETITEMS SHORT_BINUNICODE BININT1
  LONG1 NONE NEWFALSE MEMOIZE BINGET STOP): no GLOBAL, so no class is named. It holds a
  list with one dict per workflow: `workflow_status` (the 36 keys of STATUS_KEYS, the
  stored `inputs`, `output` and `error` text folded in; epoch milliseconds as ints, rounded
  to the second on SQLite; flags as bools; `application_id` ""), `operation_outputs` (the
  10 keys of STEP_KEYS; the bookkeeping rows DBOS.setEvent, DBOS.writeStream... have a
  NULL output and serialization; the child workflow's rows carry `child_workflow_id`),
  `workflow_events` (4 keys), `workflow_events_history` (5) and `streams` (6). Rows come
  in no promised order.
* @dbos-inc/dbos-sdk 5.0.2 (Postgres): base64 of gzip of JSON with the same keys. node-pg
  gives BIGINT columns as strings ("created_at": "1795315694040", and so `updated_at`,
  `completed_at`, `recovery_attempts`, `started_at_epoch_ms`, `completed_at_epoch_ms`),
  INTEGER ones as numbers (`function_id`, `offset`, `priority`). `authenticated_user` and
  `assumed_role` are "" and `authenticated_roles` "[]" rather than NULL; values are
  superjson text, bookkeeping rows portable_json.

The payload StepChange sends has the same structure, in the executor's own encoding, and
only the keys both SDKs' `import_workflow` read. The Python SDK opens it with a plain
`pickle.loads`: StepChange therefore sends only a pickle it made itself from data that
passed `json.dumps` (dicts, lists, text, numbers, booleans, None), never a payload it was
given, and it reads exports with the restricted decoder after refusing every opcode that
could name or call code.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import pickle
import pickletools
import zlib
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings

from conductor import relay
from conductor.models import Executor
from conductor.protocol import (
    ExportWorkflowRequest,
    ExportWorkflowResponse,
    GetWorkflowRequest,
    GetWorkflowResponse,
    ImportWorkflowRequest,
    Request,
    SuccessResponse,
)
from forks.plans import (
    IMPORT_ROUTE,
    NO_SOURCE,
    ForkError,
    Origin,
    Plan,
    Source,
    SourceNotFoundError,
)
from stepchange.models import Application
from workflows import serialization as codec
from workflows import systemdb

PYTHON = "python"
TYPESCRIPT = "typescript"
LANGUAGES = (PYTHON, TYPESCRIPT)
# The request log's `source` for what this route relays.
RELAY_SOURCE = "edited_fork"
MAX_EXPORT_BYTES = codec.MAX_STORED_CHARS

# The keys both SDKs export and `import_workflow` reads (dbos 3.2.0 `SystemDatabase`
# export_workflow/import_workflow; @dbos-inc/dbos-sdk 5.0.2 `exportWorkflow`/`importWorkflow`).
STATUS_KEYS = (
    "workflow_uuid",
    "status",
    "name",
    "authenticated_user",
    "assumed_role",
    "authenticated_roles",
    "output",
    "error",
    "executor_id",
    "created_at",
    "updated_at",
    "application_version",
    "application_id",
    "class_name",
    "config_name",
    "recovery_attempts",
    "queue_name",
    "workflow_timeout_ms",
    "workflow_deadline_epoch_ms",
    "started_at_epoch_ms",
    "deduplication_id",
    "inputs",
    "priority",
    "queue_partition_key",
    "forked_from",
    "parent_workflow_id",
    "serialization",
    "delay_until_epoch_ms",
    "was_forked_from",
    "rate_limited",
    "completed_at",
    "attributes",
    "schedule_name",
    "debounce_deadline_epoch_ms",
    "is_debounced",
    "application_name",
)
STEP_KEYS = (
    "workflow_uuid",
    "function_id",
    "function_name",
    "output",
    "error",
    "child_workflow_id",
    "started_at_epoch_ms",
    "completed_at_epoch_ms",
    "serialization",
    "application_name",
)
EVENT_KEYS = ("workflow_uuid", "key", "value", "serialization")
HISTORY_KEYS = ("workflow_uuid", "key", "value", "function_id", "serialization")
STREAM_KEYS = ("workflow_uuid", "key", "value", "offset", "function_id", "serialization")
TABLES = {
    "operation_outputs": STEP_KEYS,
    "workflow_events": EVENT_KEYS,
    "workflow_events_history": HISTORY_KEYS,
    "streams": STREAM_KEYS,
}

# An export seen as a database: every row has its own `serialization`, and there is no
# `workflow_input` table, so the plan folds the inputs into the status row as exports do.
EXPORT_SCHEMA = systemdb.Schema(
    version=None,
    columns={"workflow_status": frozenset(STATUS_KEYS)}
    | {table: frozenset(keys) for table, keys in TABLES.items()},
)

# Opcodes that only build builtin containers and scalars: none imports, names or calls
# anything (GLOBAL, STACK_GLOBAL, REDUCE, BUILD, INST, OBJ, NEWOBJ, EXT*, PERSID...).
PLAIN_OPCODES = frozenset(
    {
        "PROTO",
        "FRAME",
        "STOP",
        "MARK",
        "POP",
        "POP_MARK",
        "DUP",
        "MEMOIZE",
        "PUT",
        "BINPUT",
        "LONG_BINPUT",
        "GET",
        "BINGET",
        "LONG_BINGET",
        "NONE",
        "NEWTRUE",
        "NEWFALSE",
        "INT",
        "BININT",
        "BININT1",
        "BININT2",
        "LONG",
        "LONG1",
        "LONG4",
        "FLOAT",
        "BINFLOAT",
        "UNICODE",
        "BINUNICODE",
        "SHORT_BINUNICODE",
        "BINUNICODE8",
        "EMPTY_LIST",
        "EMPTY_DICT",
        "EMPTY_TUPLE",
        "LIST",
        "DICT",
        "TUPLE",
        "TUPLE1",
        "TUPLE2",
        "TUPLE3",
        "APPEND",
        "APPENDS",
        "SETITEM",
        "SETITEMS",
    }
)

NO_IMPORT_FOR = (
    "StepChange builds import_workflow payloads for Python and TypeScript executors; "
    "executor {executor_id} runs {language!r}."
)
THROUGH_EXECUTOR = "No reachable system database, so the fork goes through an executor: {error}"
EXPORT_FAILED = "Executor {executor_id} could not export workflow {workflow_id}: {error}"
IMPORT_REFUSED = "Executor {executor_id} did not import workflow {new_id}: {error}"
BAD_EXPORT = "The export of workflow {workflow_id} cannot be read: {problem}"
NOT_BASE64 = "not base64"
NOT_GZIP = "not gzip ({detail})"
EXPORT_TOO_LARGE = "larger than {limit} bytes once unzipped"
PICKLE_OVER_SETTING = (
    "its pickle is larger than {limit} bytes, the PYTHON_EXPORT_MAX_BYTES setting; "
    "raise it to fork this workflow without a system database"
)
NOT_PLAIN_PICKLE = (
    "pickle opcode {opcode} names or calls Python code; an export holds plain data only"
)
UNREADABLE_PICKLE = "the restricted pickle reader could not read it ({notes})"
NOT_JSON = "not JSON ({detail})"
WRONG_SHAPE = "{what} is not {expected}"
NOT_EXPORTED = "it holds no workflow {workflow_id}"
NOT_PLAIN_PAYLOAD = "The import payload is not plain data: {error}"


class ExecutorRouteError(ForkError):
    """The executor route failed: no executor, no answer, or an answer that says no."""

    def __init__(self, message: str, *, status: int = 502) -> None:
        super().__init__(message)
        self.status = status


class BadExportError(ForkError):
    status = 502


# Talking to the executor.


def export_origin(application: Application, workflow_id: str) -> Origin:
    """The source as a live executor exports it, and that executor to send the fork to.

    Raises SourceNotFoundError, BadExportError or ExecutorRouteError."""
    answer = _ask(application, ExportWorkflowRequest(workflow_id), raise_on_error=False)
    executor = answer.executor
    language = language_of(executor)
    response = relay.expect(answer.response, ExportWorkflowResponse)
    if response.error_message or not response.serialized_workflow:
        if not workflow_exists(application, workflow_id, executor_id=executor.executor_id):
            raise SourceNotFoundError(NO_SOURCE.format(workflow_id=workflow_id, app=application))
        error = response.error_message or "it sent nothing"
        raise ExecutorRouteError(
            EXPORT_FAILED.format(
                executor_id=executor.executor_id, workflow_id=workflow_id, error=error
            )
        )
    source = source_from_export(response.serialized_workflow, language, workflow_id)
    executor_id = executor.executor_id
    return Origin(
        route=IMPORT_ROUTE,
        source=source,
        schema=EXPORT_SCHEMA,
        executor_id=executor_id,
        language=language,
        exists=lambda new_id: workflow_exists(application, new_id, executor_id=executor_id),
    )


def language_of(executor: Executor) -> str:
    if executor.language not in LANGUAGES:
        raise ExecutorRouteError(
            NO_IMPORT_FOR.format(executor_id=executor.executor_id, language=executor.language),
            status=409,
        )
    return executor.language


def workflow_exists(application: Application, workflow_id: str, *, executor_id: str) -> bool:
    """Whether the executor's system database has `workflow_id` (get_workflow)."""
    message = GetWorkflowRequest(workflow_id, load_input=False, load_output=False)
    answer = _ask(application, message, executor_id=executor_id)
    return relay.expect(answer.response, GetWorkflowResponse).output is not None


def plan_send(application: Application, plan: Plan) -> str:
    """Send the plan to its executor as import_workflow; returns the request id."""
    message = ImportWorkflowRequest(import_payload(plan))
    answer = _ask(application, message, executor_id=plan.executor_id, raise_on_error=False)
    response = relay.expect(answer.response, SuccessResponse)
    if response.error_message or not response.success:
        error = response.error_message or "it answered success: false"
        raise ExecutorRouteError(
            IMPORT_REFUSED.format(executor_id=plan.executor_id, new_id=plan.new_id, error=error)
        )
    return message.request_id


def _ask(
    application: Application,
    message: Request,
    *,
    executor_id: str | None = None,
    raise_on_error: bool = True,
) -> relay.Answer:
    try:
        answer: relay.Answer = async_to_sync(relay.ask)(
            application,
            message,
            executor=executor_id,
            source=RELAY_SOURCE,
            raise_on_error=raise_on_error,
        )
    except relay.RelayError as exc:
        raise ExecutorRouteError(THROUGH_EXECUTOR.format(error=exc), status=exc.status) from None
    return answer


def ask(application: Application, message: Request, **options: Any) -> relay.Answer:
    """Relay `message` to a live executor of the application (what exports and imports of
    whole workflows send, as the edited fork's route does)."""
    return _ask(application, message, **options)


def expect(response: Any, kind: type[Any]) -> Any:
    return relay.expect(response, kind)


def unpack_export(serialized: str, language: str, workflow_id: str) -> list[Any]:
    """Every element of an executor's `export_workflow` answer, read as plain data only."""
    try:
        data = _unpack(serialized, language)
    except _Unreadable as exc:
        raise BadExportError(BAD_EXPORT.format(workflow_id=workflow_id, problem=exc)) from None
    if not isinstance(data, list):
        problem = WRONG_SHAPE.format(what="the export", expected="a list")
        raise BadExportError(BAD_EXPORT.format(workflow_id=workflow_id, problem=problem))
    return data


def import_elements(
    application: Application, elements: list[dict[str, Any]], *, executor_id: str, language: str
) -> str:
    """Send whole workflows' checked rows to an executor as import_workflow; returns the
    request id. The payload is built like `import_payload`: only StepChange's own plain
    data, pickled (Python) or JSON (TypeScript)."""
    payload = [
        {
            "workflow_status": _only(element["workflow_status"], STATUS_KEYS),
            **{
                table: [_only(row, keys) for row in element.get(table, [])]
                for table, keys in TABLES.items()
            },
        }
        for element in elements
    ]
    try:
        text = json.dumps(payload, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ForkError(NOT_PLAIN_PAYLOAD.format(error=exc)) from None
    if language == PYTHON:
        # Safe to produce: StepChange's own data, which json.dumps just accepted.
        raw = pickle.dumps(json.loads(text), protocol=4)
    elif language == TYPESCRIPT:
        raw = text.encode()
    else:
        raise ForkError(NO_IMPORT_FOR.format(executor_id=executor_id, language=language))
    message = ImportWorkflowRequest(base64.b64encode(gzip.compress(raw, mtime=0)).decode("ascii"))
    answer = _ask(application, message, executor_id=executor_id, raise_on_error=False)
    response = relay.expect(answer.response, SuccessResponse)
    if response.error_message or not response.success:
        error = response.error_message or "it answered success: false"
        new_id = ", ".join(str(e["workflow_status"].get("workflow_uuid")) for e in elements)
        raise ExecutorRouteError(
            IMPORT_REFUSED.format(executor_id=executor_id, new_id=new_id, error=error)
        )
    return message.request_id


# Reading an export.


class _Unreadable(Exception):
    """What is wrong with an export; raised as BadExportError naming the workflow."""


def source_from_export(serialized: str, language: str, workflow_id: str) -> Source:
    """The exported workflow `workflow_id` as the rows a system database would give."""
    try:
        element = _element(_unpack(serialized, language), workflow_id)
        status = element["workflow_status"]
        tables = {table: _rows(element, table) for table in TABLES}
        inputs = status.get("inputs")
        if inputs is not None and not isinstance(inputs, str):
            raise _Unreadable(WRONG_SHAPE.format(what="workflow_status.inputs", expected="text"))
    except _Unreadable as exc:
        raise BadExportError(BAD_EXPORT.format(workflow_id=workflow_id, problem=exc)) from None
    return Source(
        status=status,
        inputs=inputs,
        steps=sorted(tables["operation_outputs"], key=lambda row: row["function_id"]),
        history=sorted(tables["workflow_events_history"], key=lambda row: row["function_id"]),
        streams=sorted(tables["streams"], key=lambda row: (str(row.get("key")), row["offset"])),
    )


def _unpack(serialized: str, language: str) -> Any:
    try:
        packed = base64.b64decode(serialized, validate=True)
    except (binascii.Error, ValueError):
        raise _Unreadable(NOT_BASE64) from None
    unzip = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        raw = unzip.decompress(packed, _unzip_limit(language) + 1)
    except zlib.error as exc:
        raise _Unreadable(NOT_GZIP.format(detail=exc)) from None
    if len(raw) > _unzip_limit(language) or unzip.unconsumed_tail:
        raise _Unreadable(EXPORT_TOO_LARGE.format(limit=_unzip_limit(language)))
    if language == PYTHON:
        return _plain_pickle(raw)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Unreadable(NOT_JSON.format(detail=str(exc)[:120])) from None


def _unzip_limit(language: str) -> int:
    if language == PYTHON:
        return max(MAX_EXPORT_BYTES, settings.PYTHON_EXPORT_MAX_BYTES)
    return MAX_EXPORT_BYTES


def _plain_pickle(raw: bytes) -> Any:
    """Builtin containers and scalars from a pickle, never importing or calling anything:
    every opcode is checked first, then the restricted decoder reads it."""
    limit = settings.PYTHON_EXPORT_MAX_BYTES
    if len(raw) > limit:
        raise _Unreadable(PICKLE_OVER_SETTING.format(limit=limit))
    try:
        for opcode, _arg, _pos in pickletools.genops(raw):
            if opcode.name not in PLAIN_OPCODES:
                raise _Unreadable(NOT_PLAIN_PICKLE.format(opcode=opcode.name))
    except ValueError as exc:
        raise _Unreadable(UNREADABLE_PICKLE.format(notes=str(exc)[:120])) from None
    decoded = codec.decode(
        base64.b64encode(raw).decode("ascii"), codec.PY_PICKLE, pickle_limit=limit
    )
    # Lossless only: a tuple shown as a list, or a placeholder, is not what was exported.
    if not decoded.ok or decoded.raw is not None:
        raise _Unreadable(UNREADABLE_PICKLE.format(notes="; ".join(decoded.notes)))
    return decoded.value


def _element(data: Any, workflow_id: str) -> dict[str, Any]:
    """The exported workflow `workflow_id` (an export may hold its children too)."""
    if not isinstance(data, list):
        raise _Unreadable(WRONG_SHAPE.format(what="the export", expected="a list"))
    for element in data:
        if not isinstance(element, dict):
            continue
        status = element.get("workflow_status")
        if isinstance(status, dict) and status.get("workflow_uuid") == workflow_id:
            return {str(key): value for key, value in element.items()}
    raise _Unreadable(NOT_EXPORTED.format(workflow_id=workflow_id))


def _rows(element: dict[str, Any], table: str) -> list[dict[str, Any]]:
    """One table's exported rows, their numbering checked and made ints: the checks and
    the plan compare step numbers (TypeScript sends BIGINT columns as text)."""
    rows = element.get(table, [])
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise _Unreadable(WRONG_SHAPE.format(what=table, expected="a list of rows"))
    numbered = [key for key in ("function_id", "offset") if key in TABLES[table]]
    read: list[dict[str, Any]] = []
    for row in rows:
        copy = dict(row)
        for key in numbered:
            value: Any = copy.get(key)
            if value is None and (table, key) == ("streams", "function_id"):
                continue
            if not _whole(value):
                what = f"{table}.{key}"
                raise _Unreadable(WRONG_SHAPE.format(what=what, expected="a whole number"))
            copy[key] = int(value)
        read.append(copy)
    return read


def _whole(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and value.strip().removeprefix("-").isdigit()


# Building the payload.


def import_payload(plan: Plan) -> str:
    """The plan as the export its executor would have made of the fork: the same keys,
    pickled (Python) or JSON (TypeScript), gzipped, base64."""
    element = {
        "workflow_status": _only(plan.status_row, STATUS_KEYS),
        "operation_outputs": [_only(row, STEP_KEYS) for row in plan.step_rows],
        "workflow_events": [_only(row, EVENT_KEYS) for row in plan.event_rows],
        "workflow_events_history": [_only(row, HISTORY_KEYS) for row in plan.history_rows],
        "streams": [_only(row, STREAM_KEYS) for row in plan.stream_rows],
    }
    try:
        text = json.dumps([element], ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ForkError(NOT_PLAIN_PAYLOAD.format(error=exc)) from None
    if plan.language == PYTHON:
        # Safe to produce: StepChange's own data, which json.dumps just accepted.
        raw = pickle.dumps([element], protocol=4)
    elif plan.language == TYPESCRIPT:
        raw = text.encode()
    else:
        raise ForkError(NO_IMPORT_FOR.format(executor_id=plan.executor_id, language=plan.language))
    return base64.b64encode(gzip.compress(raw, mtime=0)).decode("ascii")


def _only(row: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: row.get(key) for key in keys}
