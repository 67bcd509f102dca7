"""StepChange's workflow export file: what it holds, how it is signed, how it is read back.

An export is one UTF-8 JSON document (gzip-compressed or not) holding a workflow and its
children as DBOS's own `export_workflow` has them: one element per workflow with the rows of
`workflow_status` (the stored `inputs` folded in), `operation_outputs`,
`workflow_events`, `workflow_events_history` and `streams`, each row a mapping of column to
a JSON value (stored values stay in their stored text, in the workflow's own serialization;
epoch milliseconds are integers). Around them, where the rows came from: the application,
its SDK language, its system database's schema version, whether they were read from the
system database or an executor's export, who exported them and when.

StepChange signs the document with an HMAC-SHA256 of its canonical JSON (sorted keys, no
spaces, the `signature` member left out) under a key derived from SECRET_KEY
(`salted_hmac`, salt `SIGNING_SALT`); a file signed under a key in SECRET_KEY_FALLBACKS
still reads as signed. Reading never runs anything the file holds: it is parsed as JSON and
checked for shape, and values stay text until the safe decoders read them. Whether it may
then be imported (only when signed) or only viewed (signed or not) is the caller's choice.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.utils.crypto import salted_hmac

FORMAT = "stepchange.workflow-export"
VERSION = 1
SIGNING_SALT = "stepchange.forks.exports"
ALGORITHM = "HMAC-SHA256"
CONTENT_TYPE = "application/json"
SUFFIX = ".stepchange.json"
# How many workflows (the root and its descendants) one export holds at most.
MAX_WORKFLOWS = 1000

# Each workflow's element: the tables DBOS's export_workflow names, as keys.
STATUS = "workflow_status"
STEPS = "operation_outputs"
EVENTS = "workflow_events"
HISTORY = "workflow_events_history"
STREAMS = "streams"
ROW_TABLES = (STEPS, EVENTS, HISTORY, STREAMS)

# Where the rows were read.
FROM_DATABASE = "system database"
FROM_EXECUTOR = "executor"
SOURCES = (FROM_DATABASE, FROM_EXECUTOR)

# What a read file's signature is.
SIGNED = "signed"
UNSIGNED = "unsigned"
BAD_SIGNATURE = "bad signature"

TOO_LARGE = "The file is {size:,} bytes; an export file may be at most {limit:,} bytes."
UNZIPPED_TOO_LARGE = "Once unzipped the file is larger than {limit:,} bytes."
NOT_GZIP = "The file starts like gzip but cannot be unzipped ({detail})."
NOT_UTF8 = "The file is not UTF-8 text: it is not a StepChange export."
NOT_JSON = "The file is not JSON ({detail}): it is not a StepChange export."
NOT_AN_EXPORT = "The file is JSON but not a StepChange export (no “format”: “{format}”)."
NEWER_VERSION = (
    "The file is a version {version} export; this StepChange reads versions up to {known}."
)
BAD_FIELD = "The export's {where} {problem}."
NO_SIGNATURE = "The file carries no signature."
SIGNATURE_MISMATCH = (
    "The file's signature does not match its contents: it was changed after it was "
    "exported, or signed by another StepChange (another SECRET_KEY)."
)


class BadExportFile(ValueError):
    """A file that cannot be read as an export; the message says why, for operators."""


@dataclass(frozen=True)
class Element:
    """One workflow's rows, column for column as exported."""

    status: dict[str, Any]
    steps: list[dict[str, Any]]
    events: list[dict[str, Any]]
    history: list[dict[str, Any]]
    streams: list[dict[str, Any]]

    @property
    def workflow_id(self) -> str:
        return str(self.status["workflow_uuid"])

    def as_json(self) -> dict[str, Any]:
        return {
            STATUS: self.status,
            STEPS: self.steps,
            EVENTS: self.events,
            HISTORY: self.history,
            STREAMS: self.streams,
        }


@dataclass(frozen=True)
class ExportFile:
    """An export as read: its workflows (the root first), where they came from, and whether
    this StepChange signed it (`signature` is SIGNED, UNSIGNED or BAD_SIGNATURE; `problem`
    says why it is not SIGNED)."""

    root_id: str
    application: str
    language: str
    schema_version: int | None
    source: str
    exported_at: datetime
    exported_by: str
    workflows: list[Element]
    signature: str
    problem: str = ""
    sha256: str = ""

    @property
    def signed(self) -> bool:
        return self.signature == SIGNED

    @property
    def root(self) -> Element:
        return self.workflows[0]

    def workflow(self, workflow_id: str) -> Element | None:
        return next((e for e in self.workflows if e.workflow_id == workflow_id), None)


def max_bytes() -> int:
    return int(settings.EXPORT_FILE_MAX_BYTES)


def document(
    *,
    application: str,
    language: str,
    schema_version: int | None,
    source: str,
    root_id: str,
    elements: list[Element],
    exported_by: str,
    exported_at: datetime,
) -> dict[str, Any]:
    """The signed document of an export of `root_id` and its descendants (`elements`, the
    root first)."""
    if not elements or elements[0].workflow_id != root_id:
        raise ValueError("an export's first element is its root workflow")
    body = {
        "format": FORMAT,
        "version": VERSION,
        "application": application,
        "language": language,
        "schema_version": schema_version,
        "source": source,
        "workflow_id": root_id,
        "exported_at": exported_at.astimezone(UTC).isoformat(),
        "exported_by": exported_by,
        "workflows": [element.as_json() for element in elements],
    }
    return body | {"signature": {"algorithm": ALGORITHM, "value": _sign(body)}}


def dumps(doc: dict[str, Any]) -> bytes:
    """The file's bytes: readable JSON, one workflow element per line at the top level."""
    return json.dumps(doc, ensure_ascii=False, indent=1, sort_keys=True).encode()


def filename(application: str, workflow_id: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{application}-{workflow_id}")
    return safe[:150] + SUFFIX


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(
        body, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
    ).encode()


def _sign(body: dict[str, Any]) -> str:
    return salted_hmac(SIGNING_SALT, _canonical(body), algorithm="sha256").hexdigest()


def _check_signature(doc: dict[str, Any]) -> tuple[str, str]:
    signature = doc.get("signature")
    if signature is None:
        return UNSIGNED, NO_SIGNATURE
    value = signature.get("value") if isinstance(signature, dict) else None
    if not isinstance(value, str) or signature.get("algorithm") != ALGORITHM:
        return BAD_SIGNATURE, f"The file's signature is not an {ALGORITHM} value."
    body = {key: item for key, item in doc.items() if key != "signature"}
    try:
        canonical = _canonical(body)
    except ValueError:
        return BAD_SIGNATURE, SIGNATURE_MISMATCH
    for secret in [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]:
        expected = salted_hmac(SIGNING_SALT, canonical, secret=secret, algorithm="sha256")
        if hmac.compare_digest(expected.hexdigest(), value):
            return SIGNED, ""
    return BAD_SIGNATURE, SIGNATURE_MISMATCH


def read(raw: bytes) -> ExportFile:
    """Read an export file's bytes: unzipped if gzip, parsed as JSON, its shape checked and its
    signature compared. Raises BadExportFile when it is not a readable export; a file that
    reads but is unsigned or wrongly signed comes back with `signature` saying so."""
    limit = max_bytes()
    if len(raw) > limit:
        raise BadExportFile(TOO_LARGE.format(size=len(raw), limit=limit))
    digest = hashlib.sha256(raw).hexdigest()
    if raw[:2] == b"\x1f\x8b":
        raw = _gunzip(raw, limit)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadExportFile(NOT_UTF8) from None
    try:
        doc = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise BadExportFile(NOT_JSON.format(detail=_first_line(exc))) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BadExportFile(NOT_AN_EXPORT.format(format=FORMAT))
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _bad("version", "is not a whole number")
    if version > VERSION:
        raise BadExportFile(NEWER_VERSION.format(version=version, known=VERSION))
    signature, problem = _check_signature(doc)
    workflows = _elements(doc.get("workflows"))
    root_id = _text(doc, "workflow_id")
    if not root_id or workflows[0].workflow_id != root_id:
        raise _bad("workflow_id", "is not the first workflow's id")
    source = _text(doc, "source")
    if source not in SOURCES:
        raise _bad("source", f"is not one of {', '.join(SOURCES)}")
    schema_version = doc.get("schema_version")
    if schema_version is not None and not _whole(schema_version):
        raise _bad("schema_version", "is not a whole number")
    return ExportFile(
        root_id=root_id,
        application=_text(doc, "application"),
        language=_text(doc, "language"),
        schema_version=schema_version,
        source=source,
        exported_at=_moment(doc.get("exported_at")),
        exported_by=_text(doc, "exported_by"),
        workflows=workflows,
        signature=signature,
        problem=problem,
        sha256=digest,
    )


def _gunzip(raw: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(raw, limit + 1)
    except (zlib.error, gzip.BadGzipFile) as exc:
        raise BadExportFile(NOT_GZIP.format(detail=exc)) from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise BadExportFile(UNZIPPED_TOO_LARGE.format(limit=limit))
    return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _first_line(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0][:200]


def _bad(where: str, problem: str) -> BadExportFile:
    return BadExportFile(BAD_FIELD.format(where=where, problem=problem))


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _bad(key, "is not text")
    return value


def _moment(value: Any) -> datetime:
    if not isinstance(value, str):
        raise _bad("exported_at", "is not a time")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _bad("exported_at", "is not an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# The columns each table's rows must have, and what kind of value each is.
REQUIRED: dict[str, dict[str, type]] = {
    STATUS: {"workflow_uuid": str},
    STEPS: {"workflow_uuid": str, "function_id": int},
    EVENTS: {"workflow_uuid": str, "key": str},
    HISTORY: {"workflow_uuid": str, "key": str, "function_id": int},
    STREAMS: {"workflow_uuid": str, "key": str, "offset": int},
}
# Epoch-millisecond and counter columns: whole numbers (or null) wherever they appear.
WHOLE_COLUMNS = frozenset(
    {
        "created_at",
        "updated_at",
        "completed_at",
        "recovery_attempts",
        "workflow_timeout_ms",
        "workflow_deadline_epoch_ms",
        "started_at_epoch_ms",
        "completed_at_epoch_ms",
        "delay_until_epoch_ms",
        "debounce_deadline_epoch_ms",
        "priority",
        "function_id",
        "offset",
    }
)
# Stored values: text in the row's serialization (or null), never structures.
TEXT_COLUMNS = frozenset({"inputs", "output", "error", "value", "serialization", "status", "name"})


def _elements(value: Any) -> list[Element]:
    if not isinstance(value, list) or not value:
        raise _bad("workflows", "is not a non-empty list")
    if len(value) > MAX_WORKFLOWS:
        raise _bad("workflows", f"holds more than {MAX_WORKFLOWS:,} workflows")
    elements: list[Element] = []
    seen: set[str] = set()
    for index, item in enumerate(value):
        where = f"workflows[{index}]"
        if not isinstance(item, dict):
            raise _bad(where, "is not an object")
        status = _row(item.get(STATUS), f"{where}.{STATUS}", STATUS)
        workflow_id = status["workflow_uuid"]
        if workflow_id in seen:
            raise _bad(where, f"repeats workflow {workflow_id}")
        seen.add(workflow_id)
        tables: dict[str, list[dict[str, Any]]] = {}
        for table in ROW_TABLES:
            rows = item.get(table, [])
            if not isinstance(rows, list):
                raise _bad(f"{where}.{table}", "is not a list")
            tables[table] = [
                _row(row, f"{where}.{table}[{n}]", table, workflow_id) for n, row in enumerate(rows)
            ]
        elements.append(
            Element(
                status=status,
                steps=tables[STEPS],
                events=tables[EVENTS],
                history=tables[HISTORY],
                streams=tables[STREAMS],
            )
        )
    return elements


def _row(value: Any, where: str, table: str, workflow_id: str | None = None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(where, "is not an object")
    for column, kind in REQUIRED[table].items():
        cell = value.get(column)
        if not isinstance(cell, kind) or isinstance(cell, bool):
            named = "text" if kind is str else "a whole number"
            raise _bad(f"{where}.{column}", f"is missing or not {named}")
    if workflow_id is not None and value["workflow_uuid"] != workflow_id:
        raise _bad(f"{where}.workflow_uuid", f"is not its workflow's id {workflow_id}")
    for column, cell in value.items():
        if column in WHOLE_COLUMNS and cell is not None and not _whole(cell):
            raise _bad(f"{where}.{column}", "is not a whole number")
        if column in TEXT_COLUMNS and cell is not None and not isinstance(cell, str):
            raise _bad(f"{where}.{column}", "is not text")
    return value
