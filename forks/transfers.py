"""Exporting a workflow with its children to a signed file, and importing such a file into
the same or another application (issue 19).

Export reads the rows column for column: from the system database when it is reachable
(inputs and outputs folded in from `workflow_input` / `workflow_output` where the schema
has them; every descendant found by `parent_workflow_id` and by the steps'
`child_workflow_id`), else from a live executor's `export_workflow` with its children,
read with the restricted reader of `forks.imports`. `forks.exports` makes the signed file.

Import never passes what was uploaded on as it is: the file is read as data
(`exports.read`), refused unless this StepChange signed it, and every stored value is
decoded by the safe decoders. A JSON value (portable JSON, superjson) is kept as its checked
text; a pickle is rebuilt by StepChange's own encoder from the decoded plain data, and one
that names a class (an exception, a custom type) is refused with its workflow, step and
field. The checked rows are written by `forks.services.import_write` in one transaction, or,
without a reachable system database, sent to a live executor as `import_workflow`.
"""

from __future__ import annotations

import hashlib
import pickletools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import DatabaseError, connections
from django.http import HttpRequest
from django.utils import timezone

from conductor.models import Executor
from conductor.protocol import ExportWorkflowRequest, ExportWorkflowResponse
from forks import exports, imports, services
from forks.plans import NO_SOURCE, ForkError, NoSystemDatabaseError, SourceNotFoundError
from stepchange.audit import Result, audit_record
from stepchange.models import Application
from workflows import serialization as codec
from workflows import systemdb

INTERNAL_QUEUE = "_dbos_internal_queue"
EXPORT_ACTION = "workflow.export"
IMPORT_ACTION = "workflow.import"
DATABASE_ROUTE = "database"
IMPORT_ROUTE = "import"

TOO_MANY = (
    "Workflow {workflow_id} has more than {limit:,} descendants: an export holds at most "
    "{limit:,} workflows."
)
CANNOT_EXPORT = "Workflow {workflow_id} cannot be exported: {problem}"
NOT_SIGNED = "Refused: {problem} Only files this StepChange exported and signed are imported."
LANGUAGE_MISMATCH = (
    "Refused: the file holds a {language} workflow and {app}'s executors run {target}: they "
    "cannot run it."
)
UNREADABLE_FORMAT = "{where}: stored as {serialization}, which {target} executors cannot read."
NOT_CHECKABLE = "{where}: stored as {serialization}, which StepChange cannot check."
UNDECODABLE = "{where}: the value cannot be read as {serialization} ({notes})."
NAMES_A_CLASS = (
    "{where}: the pickle names Python code or holds what StepChange cannot rebuild from plain "
    "data ({notes}); only plain data is imported."
)
IDS_EXIST = (
    "Refused: {app} already has workflow{s} {ids}. Import as a copy with new ids, or delete "
    "{them} first."
)
NO_TARGET = (
    "Refused: {app} has no reachable system database and no connected executor to import "
    "through ({problem})."
)
NOT_PYTHON_OR_TS = "Refused: importing through an executor needs a Python or TypeScript one."
DROPPED_COLUMNS = "{app}'s system database has no column {columns} in {table}: dropped."
NOT_RESUMED = (
    "Workflow {workflow_id} is {status}: imported as it is, nobody runs it until it is resumed."
)
VERSION_CHANGED = (
    "Workflow {workflow_id} was on application version {old}; resumed on {new}, the version "
    "{app}'s executors run."
)
NO_EXECUTOR = "No executor of {app} is connected: a resumed workflow waits until one is."

FINISHED = frozenset({"SUCCESS", "ERROR"})
BOOLEAN_COLUMNS = frozenset({"was_forked_from", "rate_limited", "is_debounced", "consumed"})
# The value columns of each table, and how each is decoded.
VALUE_COLUMNS: dict[str, tuple[tuple[str, codec.Kind], ...]] = {
    exports.STATUS: (("inputs", "inputs"), ("output", "value"), ("error", "error")),
    exports.STEPS: (("output", "value"), ("error", "error")),
    exports.EVENTS: (("value", "value"),),
    exports.HISTORY: (("value", "value"),),
    exports.STREAMS: (("value", "value"),),
}
# What each SDK's executors read.
READABLE = {
    imports.PYTHON: {codec.FORMAT_PY_PICKLE, codec.FORMAT_PORTABLE_JSON},
    imports.TYPESCRIPT: {
        codec.FORMAT_JS_SUPERJSON,
        codec.FORMAT_PORTABLE_JSON,
        codec.FORMAT_TS_LEGACY_JSON,
    },
}
JSON_FORMATS = {
    codec.FORMAT_PORTABLE_JSON,
    codec.FORMAT_JS_SUPERJSON,
    codec.FORMAT_TS_LEGACY_JSON,
}
TUPLE_OPCODES = frozenset({"EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3"})


class TransferError(ForkError):
    """An export or an import refused; the message says why, for operators."""

    def __init__(self, message: str, *, status: int = 400, problems: list[str] | None = None):
        super().__init__(message)
        self.status = status
        self.problems = problems or [message]


class FileTooLargeError(TransferError):
    def __init__(self, message: str) -> None:
        super().__init__(message, status=413)


# Exporting.


@dataclass(frozen=True)
class Exported:
    content: bytes
    filename: str
    sha256: str
    count: int
    route: str


def export_elements(
    application: Application, workflow_id: str
) -> tuple[list[exports.Element], int | None, str]:
    """The workflow and its descendants (the root first), its schema version and where they
    were read. Raises SourceNotFoundError or TransferError."""
    try:
        elements, version = _database_elements(application, workflow_id)
        return elements, version, exports.FROM_DATABASE
    except NoSystemDatabaseError:
        return _executor_elements(application, workflow_id), None, exports.FROM_EXECUTOR


def _database_elements(
    application: Application, root_id: str
) -> tuple[list[exports.Element], int | None]:
    alias, schema = services.fork_source_alias(application)
    elements: list[exports.Element] = []
    queue, seen = [root_id], {root_id}
    with connections[alias].cursor() as cursor:
        while queue:
            workflow_id = queue.pop(0)
            found = services.select_rows(cursor, "workflow_status", workflow_id)
            if not found:
                if workflow_id == root_id:
                    raise SourceNotFoundError(
                        NO_SOURCE.format(workflow_id=workflow_id, app=application)
                    )
                continue
            if len(elements) >= exports.MAX_WORKFLOWS:
                raise TransferError(
                    TOO_MANY.format(workflow_id=root_id, limit=exports.MAX_WORKFLOWS - 1)
                )
            status = _plain(found[0])
            for table, columns in (
                ("workflow_input", ("inputs",)),
                ("workflow_output", ("output", "error")),
            ):
                if schema.has(table):
                    [stored] = services.select_rows(cursor, table, workflow_id) or [{}]
                    for column in columns:
                        if stored.get(column) is not None or column not in status:
                            status[column] = stored.get(column)

            def rows(
                table: str, order: str, workflow_id: str = workflow_id
            ) -> list[dict[str, Any]]:
                if not schema.has(table):
                    return []
                found = services.select_rows(cursor, table, workflow_id, order=order)
                return [_plain(row) for row in found]

            steps = rows("operation_outputs", "function_id")
            elements.append(
                exports.Element(
                    status=status,
                    steps=steps,
                    events=rows("workflow_events", "key"),
                    history=rows("workflow_events_history", "function_id"),
                    streams=rows("streams", "offset"),
                )
            )
            children = [str(s["child_workflow_id"]) for s in steps if s.get("child_workflow_id")]
            cursor.execute(
                f"SELECT {cursor.db.ops.quote_name('workflow_uuid')} FROM "  # noqa: S608
                f"{cursor.db.ops.quote_name('workflow_status')} WHERE "
                f"{cursor.db.ops.quote_name('parent_workflow_id')} = %s ORDER BY 1",
                [workflow_id],
            )
            children += [str(row[0]) for row in cursor.fetchall()]
            for child in children:
                if child not in seen:
                    seen.add(child)
                    queue.append(child)
    return elements, schema.version


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """A row as JSON values: booleans as booleans (SQLite keeps them as 0 and 1)."""
    plain: dict[str, Any] = {}
    for column, cell in row.items():
        if column in BOOLEAN_COLUMNS and isinstance(cell, int) and not isinstance(cell, bool):
            cell = bool(cell)
        elif isinstance(cell, (bytes, memoryview)):
            cell = bytes(cell).decode("utf-8", "replace")
        elif isinstance(cell, datetime):
            cell = cell.astimezone(UTC).isoformat()
        plain[column] = cell
    return plain


def _executor_elements(application: Application, root_id: str) -> list[exports.Element]:
    answer = imports.ask(
        application, ExportWorkflowRequest(root_id, export_children=True), raise_on_error=False
    )
    executor = answer.executor
    response = imports.expect(answer.response, ExportWorkflowResponse)
    if response.error_message or not response.serialized_workflow:
        if not imports.workflow_exists(application, root_id, executor_id=executor.executor_id):
            raise SourceNotFoundError(NO_SOURCE.format(workflow_id=root_id, app=application))
        raise TransferError(
            CANNOT_EXPORT.format(
                workflow_id=root_id, problem=response.error_message or "the executor sent nothing"
            ),
            status=502,
        )
    language = imports.language_of(executor)
    data = imports.unpack_export(response.serialized_workflow, language, root_id)
    if len(data) > exports.MAX_WORKFLOWS:
        raise TransferError(TOO_MANY.format(workflow_id=root_id, limit=exports.MAX_WORKFLOWS - 1))
    elements = [_element_from_export(item, root_id) for item in data]
    elements.sort(key=lambda e: e.workflow_id != root_id)
    if not elements or elements[0].workflow_id != root_id:
        raise TransferError(
            CANNOT_EXPORT.format(workflow_id=root_id, problem="the export does not hold it"),
            status=502,
        )
    return elements


def _element_from_export(item: Any, root_id: str) -> exports.Element:
    """One exported workflow, TypeScript's BIGINT-as-text made whole numbers."""
    if not isinstance(item, dict) or not isinstance(item.get(exports.STATUS), dict):
        raise TransferError(
            CANNOT_EXPORT.format(workflow_id=root_id, problem="an element is not a workflow"),
            status=502,
        )
    tables: dict[str, Any] = {exports.STATUS: _whole_numbers(item[exports.STATUS])}
    for table in exports.ROW_TABLES:
        rows = item.get(table) or []
        if not isinstance(rows, list):
            rows = []
        tables[table] = [_whole_numbers(row) for row in rows if isinstance(row, dict)]
    return exports.Element(
        status=tables[exports.STATUS],
        steps=sorted(tables[exports.STEPS], key=lambda r: r.get("function_id") or 0),
        events=tables[exports.EVENTS],
        history=tables[exports.HISTORY],
        streams=tables[exports.STREAMS],
    )


def _whole_numbers(row: dict[str, Any]) -> dict[str, Any]:
    copy = {str(k): v for k, v in row.items()}
    for column in exports.WHOLE_COLUMNS & copy.keys():
        value = copy[column]
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            copy[column] = int(value)
    for column in BOOLEAN_COLUMNS & copy.keys():
        if isinstance(copy[column], int) and not isinstance(copy[column], bool):
            copy[column] = bool(copy[column])
    return copy


def application_language(application: Application) -> str:
    """The SDK language of the application's executors: the latest one seen."""
    executor = (
        Executor.objects.filter(application=application)
        .exclude(language="")
        .order_by("-last_seen_at")
        .first()
    )
    return executor.language if executor is not None else ""


# Importing.


@dataclass
class ImportPlan:
    """What an import writes, and what the preview shows before it is confirmed."""

    file: exports.ExportFile
    copy: bool
    resume: bool
    route: str = DATABASE_ROUTE
    alias: str = ""
    schema: systemdb.Schema | None = None
    executor_id: str = ""
    language: str = ""
    ids: dict[str, str] = field(default_factory=dict)
    existing: list[str] = field(default_factory=list)
    elements: list[exports.Element] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def new_ids(self) -> list[str]:
        return [self.ids.get(e.workflow_id, e.workflow_id) for e in self.file.workflows]


def read_file(raw: bytes) -> exports.ExportFile:
    """The file as data, or TransferError (413 when too large)."""
    if len(raw) > exports.max_bytes():
        raise FileTooLargeError(exports.TOO_LARGE.format(size=len(raw), limit=exports.max_bytes()))
    try:
        return exports.read(raw)
    except exports.BadExportFile as exc:
        status = 413 if "larger than" in str(exc) else 400
        raise TransferError(str(exc), status=status) from None


def import_plan(
    application: Application,
    file: exports.ExportFile,
    *,
    copy: bool,
    resume: bool,
    live_versions: list[str],
    exists: Callable[[list[str]], list[str]] | None = None,
) -> ImportPlan:
    """Check the file against the target and work out every row; `problems` lists every
    reason to refuse (nothing is written here)."""
    plan = ImportPlan(file=file, copy=copy, resume=resume)
    if not file.signed:
        plan.problems.append(NOT_SIGNED.format(problem=file.problem))
        return plan
    _target(application, plan)
    if plan.problems:
        return plan
    target = plan.language or application_language(application)
    if target and file.language and target != file.language:
        plan.problems.append(
            LANGUAGE_MISMATCH.format(language=file.language, app=application.name, target=target)
        )
        return plan
    plan.ids = {
        e.workflow_id: (str(uuid.uuid4()) if copy else e.workflow_id) for e in file.workflows
    }
    lookup = exists or (lambda ids: _existing(plan, application, ids))
    plan.existing = lookup([e.workflow_id for e in file.workflows])
    if plan.existing and not copy:
        many = len(plan.existing) > 1
        plan.problems.append(
            IDS_EXIST.format(
                app=application.name,
                s="s" if many else "",
                ids=", ".join(plan.existing[:20]) + (" …" if len(plan.existing) > 20 else ""),
                them="them" if many else "it",
            )
        )
    for element in file.workflows:
        plan.elements.append(_checked(element, plan, target))
    _finish(application, plan, live_versions)
    return plan


def _target(application: Application, plan: ImportPlan) -> None:
    from conductor.registry import live_executors

    try:
        plan.schema = systemdb.schema_of(application, fresh=True)
        plan.alias = systemdb.alias_for(application)
        systemdb.refuse_newer(application, plan.schema)
        return
    except systemdb.SchemaTooNewError as exc:
        plan.problems.append(str(exc))
        return
    except systemdb.SystemDatabaseError as exc:
        problem = str(exc)
    executors = [e for e in live_executors(application) if e.language in imports.LANGUAGES]
    if not executors:
        plan.problems.append(NO_TARGET.format(app=application.name, problem=problem))
        return
    plan.route = IMPORT_ROUTE
    plan.executor_id = executors[0].executor_id
    plan.language = executors[0].language
    plan.schema = imports.EXPORT_SCHEMA


def _existing(plan: ImportPlan, application: Application, ids: list[str]) -> list[str]:
    if plan.route == DATABASE_ROUTE:
        return services.existing_workflows(plan.alias, ids)
    return [i for i in ids if imports.workflow_exists(application, i, executor_id=plan.executor_id)]


def _checked(element: exports.Element, plan: ImportPlan, language: str) -> exports.Element:
    """The element with every stored value checked and every pickle rebuilt; ids rewritten."""
    tables: dict[str, list[dict[str, Any]]] = {}
    for table in (exports.STATUS, *exports.ROW_TABLES):
        rows = [element.status] if table == exports.STATUS else getattr(element, _ATTR[table])
        checked = []
        for row in rows:
            where = _where(element.workflow_id, table, row)
            copy = dict(row)
            for column, kind in VALUE_COLUMNS[table]:
                if copy.get(column) is None:
                    continue
                serialization = copy.get("serialization")
                copy[column] = _value(
                    copy[column], serialization, kind, f"{where} {column}", plan, language
                )
            checked.append(_rewrite(copy, plan))
        tables[table] = checked
    return exports.Element(
        status=tables[exports.STATUS][0],
        steps=tables[exports.STEPS],
        events=tables[exports.EVENTS],
        history=tables[exports.HISTORY],
        streams=tables[exports.STREAMS],
    )


_ATTR = {
    exports.STEPS: "steps",
    exports.EVENTS: "events",
    exports.HISTORY: "history",
    exports.STREAMS: "streams",
}


def _where(workflow_id: str, table: str, row: dict[str, Any]) -> str:
    if table == exports.STATUS:
        return f"Workflow {workflow_id}"
    if table == exports.STEPS:
        return f"Workflow {workflow_id} step {row.get('function_id')} ({row.get('function_name')})"
    return f"Workflow {workflow_id} {table} {row.get('key')!r}"


def _value(
    text: Any, serialization: Any, kind: codec.Kind, where: str, plan: ImportPlan, language: str
) -> Any:
    """The checked text of one stored value: JSON kept, a pickle rebuilt from plain data."""
    if not isinstance(text, str):
        plan.problems.append(UNDECODABLE.format(where=where, serialization="text", notes="-"))
        return None
    named = serialization or "its recognised format"
    decoded = codec.decode(text, serialization or None, kind=kind)
    if decoded.format not in READABLE[imports.PYTHON] | READABLE[imports.TYPESCRIPT]:
        plan.problems.append(NOT_CHECKABLE.format(where=where, serialization=named))
        return None
    if language in READABLE and decoded.format not in READABLE[language]:
        plan.problems.append(
            UNREADABLE_FORMAT.format(where=where, serialization=decoded.format, target=language)
        )
        return None
    notes = "; ".join(decoded.notes) or "no detail"
    if decoded.format != codec.FORMAT_PY_PICKLE:
        if not decoded.ok:
            plan.problems.append(UNDECODABLE.format(where=where, serialization=named, notes=notes))
            return None
        return text
    if not decoded.ok:
        plan.problems.append(UNDECODABLE.format(where=where, serialization=named, notes=notes))
        return None
    if decoded.raw is not None and not _only_argument_tuple(text, kind, decoded):
        plan.problems.append(NAMES_A_CLASS.format(where=where, notes=notes))
        return None
    if kind == "error":
        # An error that decoded losslessly is plain data, never an exception: kept rebuilt.
        kind = "value"
    try:
        return codec.encode(decoded.value, codec.PY_PICKLE, kind=kind)
    except ValueError as exc:
        plan.problems.append(NAMES_A_CLASS.format(where=where, notes=exc))
        return None


def _only_argument_tuple(text: str, kind: codec.Kind, decoded: codec.Decoded) -> bool:
    """Inputs' `args` are a tuple, shown as a list: rebuilt exactly when it is the only
    tuple and the only loss."""
    if kind != "inputs" or decoded.notes != [codec.NOTE_TUPLE]:
        return False
    raw = codec._b64decode(text)
    if raw is None:
        return False
    try:
        tuples = sum(op.name in TUPLE_OPCODES for op, _arg, _pos in pickletools.genops(raw))
    except ValueError:
        return False
    return tuples == 1


def _rewrite(row: dict[str, Any], plan: ImportPlan) -> dict[str, Any]:
    for column in ("workflow_uuid", "parent_workflow_id", "child_workflow_id", "forked_from"):
        if row.get(column) in plan.ids:
            row[column] = plan.ids[row[column]]
    if plan.copy and "deduplication_id" in row:
        # A copy is not the request the id deduplicated.
        row["deduplication_id"] = None
    return row


def _finish(application: Application, plan: ImportPlan, live_versions: list[str]) -> None:
    """The target's own names, the resume, and the columns the target lacks."""
    now = int(datetime.now(UTC).timestamp() * 1000)
    for element in plan.elements:
        status = element.status
        for row in [status, *element.steps]:
            if row.get("application_name"):
                row["application_name"] = application.name
        state = status.get("status")
        if state in FINISHED:
            continue
        if not plan.resume:
            plan.warnings.append(
                NOT_RESUMED.format(workflow_id=status["workflow_uuid"], status=state)
            )
            continue
        status.update(
            status="ENQUEUED",
            queue_name=INTERNAL_QUEUE,
            recovery_attempts=0,
            workflow_deadline_epoch_ms=None,
            deduplication_id=None,
            started_at_epoch_ms=None,
            updated_at=now,
            completed_at=None,
        )
        status.pop("owner_xid", None)
        old = status.get("application_version")
        if live_versions and old not in live_versions:
            status["application_version"] = live_versions[0]
            plan.warnings.append(
                VERSION_CHANGED.format(
                    workflow_id=status["workflow_uuid"],
                    old=old,
                    new=live_versions[0],
                    app=application.name,
                )
            )
    if plan.resume and not live_versions:
        plan.warnings.append(NO_EXECUTOR.format(app=application.name))
    if plan.schema is not None and plan.route == DATABASE_ROUTE:
        _dropped(application, plan)


def _dropped(application: Application, plan: ImportPlan) -> None:
    assert plan.schema is not None
    payload = {"inputs", "output", "error"} if plan.schema.has_payload_tables else set()
    for table, attr in ((exports.STATUS, ""), *_ATTR.items()):
        present = plan.schema.columns.get(table, frozenset())
        seen: set[str] = set()
        for element in plan.elements:
            rows = [element.status] if not attr else getattr(element, attr)
            for row in rows:
                seen |= row.keys()
        missing = sorted(seen - present - (payload if table == exports.STATUS else set()))
        if not plan.schema.has(table) and seen:
            missing = ["(the whole table)"]
        if missing:
            plan.warnings.append(
                DROPPED_COLUMNS.format(
                    app=application.name, columns=", ".join(missing), table=table
                )
            )


# The services the console and the API call: audited, one transaction.


def workflow_export(
    *, application: Application, workflow_id: str, user: Any, request: HttpRequest | None = None
) -> Exported:
    """The signed export file of a workflow and its descendants (audited, refusals too)."""
    try:
        elements, version, source = export_elements(application, workflow_id)
    except ForkError as exc:
        _audit_export(application, workflow_id, user, request, result=Result.FAILED, detail=exc)
        raise
    doc = exports.document(
        application=application.name,
        language=application_language(application),
        schema_version=version,
        source=source,
        root_id=workflow_id,
        elements=elements,
        exported_by=user.get_username() if user is not None else "",
        exported_at=timezone.now(),
    )
    content = exports.dumps(doc)
    exported = Exported(
        content=content,
        filename=exports.filename(application.name, workflow_id),
        sha256=hashlib.sha256(content).hexdigest(),
        count=len(elements),
        route=source,
    )
    _audit_export(application, workflow_id, user, request, exported=exported)
    return exported


def _audit_export(
    application: Application,
    workflow_id: str,
    user: Any,
    request: HttpRequest | None,
    *,
    exported: Exported | None = None,
    result: str = Result.OK,
    detail: Any = "",
) -> None:
    parameters: dict[str, Any] = {}
    if exported is not None:
        parameters = {
            "sha256": exported.sha256,
            "workflows": exported.count,
            "source": exported.route,
            "filename": exported.filename,
        }
    audit_record(
        action=EXPORT_ACTION,
        request=request,
        actor=user,
        application=application,
        target=workflow_id,
        parameters=parameters,
        result=result,
        detail=str(detail),
    )


def import_preview(application: Application, raw: bytes, *, copy: bool, resume: bool) -> ImportPlan:
    """The plan of an import, for the preview: raises TransferError when the file cannot be
    read at all; otherwise `problems` says why it would be refused."""
    from conductor.registry import live_versions

    file = read_file(raw)
    return import_plan(
        application, file, copy=copy, resume=resume, live_versions=live_versions(application)
    )


def workflow_import(
    *,
    application: Application,
    raw: bytes,
    copy: bool,
    resume: bool,
    user: Any,
    request: HttpRequest | None = None,
) -> ImportPlan:
    """Check the file and write its workflows in one transaction (audited, refusals too).
    Raises TransferError naming every reason; nothing is written then."""
    sha256 = hashlib.sha256(raw).hexdigest()
    plan: ImportPlan | None = None
    try:
        plan = import_preview(application, raw, copy=copy, resume=resume)
        if not plan.ok:
            status = 409 if plan.existing and not copy and len(plan.problems) == 1 else 400
            raise TransferError(" ".join(plan.problems), status=status, problems=plan.problems)
        rows = [_rows(element) for element in plan.elements]
        request_id = ""
        try:
            if plan.route == DATABASE_ROUTE:
                assert plan.schema is not None
                services.import_write(plan.alias, plan.schema, rows)
            else:
                request_id = imports.import_elements(
                    application,
                    [{k: (v[0] if k == exports.STATUS else v) for k, v in r.items()} for r in rows],
                    executor_id=plan.executor_id,
                    language=plan.language,
                )
        except DatabaseError as exc:
            raise TransferError(services.WRITE_FAILED.format(error=exc), status=409) from None
    except ForkError as exc:
        _audit_import(application, sha256, plan, user, request, result=Result.FAILED, detail=exc)
        raise
    _audit_import(application, sha256, plan, user, request, request_id=request_id)
    return plan


def _rows(element: exports.Element) -> dict[str, list[dict[str, Any]]]:
    return {exports.STATUS: [element.status]} | {
        table: getattr(element, attr) for table, attr in _ATTR.items()
    }


def _audit_import(
    application: Application,
    sha256: str,
    plan: ImportPlan | None,
    user: Any,
    request: HttpRequest | None,
    *,
    result: str = Result.OK,
    detail: Any = "",
    request_id: str = "",
) -> None:
    parameters: dict[str, Any] = {"sha256": sha256}
    target = ""
    if plan is not None:
        target = plan.new_ids[0] if plan.new_ids else ""
        parameters |= {
            "source_application": plan.file.application,
            "source_workflow_id": plan.file.root_id,
            "signature": plan.file.signature,
            "ids": {
                old: plan.ids.get(old, old) for old in (e.workflow_id for e in plan.file.workflows)
            },
            "copy": plan.copy,
            "resume": plan.resume,
            "route": plan.route,
        }
    audit_record(
        action=IMPORT_ACTION,
        request=request,
        actor=user,
        application=application,
        target=target,
        parameters=parameters,
        result=result,
        detail=str(detail)[:2000],
        request_id=request_id,
    )


def refused_upload(*, application: Application, problem: str, request: HttpRequest) -> None:
    """Audit an upload refused before its file could be read (too large, unreadable)."""
    audit_record(
        action=IMPORT_ACTION,
        request=request,
        application=application,
        parameters={"content_length": request.META.get("CONTENT_LENGTH", "")},
        result=Result.FAILED,
        detail=problem[:2000],
    )
