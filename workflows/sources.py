"""Where workflow reads come from (DESIGN.md "Where reads come from").

With a reachable system database, lists and details are read from it directly (fast,
filterable, keyset-paginated, decoded, and available with no executor connected).
Without one, or while it is down, they are asked of a live executor through the relay,
always with a bounded limit. Both sources answer in the API's shapes and say which they
are, and why when it is the fallback.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from conductor import relay
from conductor.protocol import (
    GetWorkflowRequest,
    GetWorkflowResponse,
    ListStepsRequest,
    ListStepsResponse,
    ListWorkflowsBody,
    ListWorkflowsRequest,
    ListWorkflowsResponse,
    WorkflowsOutput,
    WorkflowSteps,
)
from stepchange.asyncdb import db_async
from stepchange.models import Application
from workflows import systemdb
from workflows.models import OperationOutput, WorkflowStatus
from workflows.serialization import decode

DATABASE = "system database"
EXECUTOR = "executor"
BAD_CURSOR = "cursor is not one this API gave out"
FALLBACK = "{problem} Read through a connected executor instead."


class BadCursor(ValueError):
    pass


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
    limit: int = 50
    cursor: str | None = None
    sort_desc: bool = True
    load_input: bool = False
    load_output: bool = False
    queued: bool = False


@dataclass(frozen=True)
class Listing:
    items: list[dict[str, Any]]
    next_cursor: str | None
    source: str
    notice: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _time(epoch_ms: int | None) -> datetime | None:
    return None if epoch_ms is None else datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)


class DatabaseSource:
    name = DATABASE

    def __init__(self, application: Application, schema: systemdb.Schema) -> None:
        self.application = application
        self.schema = schema
        self.notice = "" if schema.known else systemdb.status_of(application).detail

    async def list(self, query: ListQuery, *, actor: str = "") -> Listing:
        listing: Listing = await db_async(self._list)(query)
        return listing

    def _list(self, query: ListQuery) -> Listing:
        rows = systemdb.workflows(self.application)
        if query.queued:
            rows = rows.queued()
        rows = rows.filtered(
            status=query.status,
            name=query.workflow_name,
            queue_name=query.queue_name,
            workflow_id_prefix=query.workflow_id_prefix,
            executor_id=query.executor_id,
            application_version=query.application_version,
            forked_from=query.forked_from,
            parent_workflow_id=query.parent_workflow_id,
            created_after=query.start_time,
            created_before=query.end_time,
        )
        if query.load_input or query.load_output:
            rows = rows.with_payloads(payload_tables=self.schema.has_payload_tables)
        ordered = rows.newest_first() if query.sort_desc else rows.oldest_first()
        page = list(
            ordered.after(_keyset(query.cursor), descending=query.sort_desc)[: query.limit + 1]
        )
        more = len(page) > query.limit
        page = page[: query.limit]
        return Listing(
            items=[
                self.workflow(row, load_input=query.load_input, load_output=query.load_output)
                for row in page
            ],
            next_cursor=_keyset_cursor(page[-1]) if more else None,
            source=self.name,
            notice=self.notice,
        )

    async def get(self, workflow_id: str, *, actor: str = "") -> dict[str, Any] | None:
        found: dict[str, Any] | None = await db_async(self._get)(workflow_id)
        return found

    def _get(self, workflow_id: str) -> dict[str, Any] | None:
        row = (
            systemdb.workflows(self.application)
            .with_payloads(payload_tables=self.schema.has_payload_tables)
            .filter(workflow_uuid=workflow_id)
            .first()
        )
        return None if row is None else self.workflow(row, load_input=True, load_output=True)

    async def steps(self, workflow_id: str, *, actor: str = "") -> Listing:
        listing: Listing = await db_async(self._steps)(workflow_id)
        return listing

    def _steps(self, workflow_id: str) -> Listing:
        steps = systemdb.steps(self.application).of(workflow_id)
        return Listing([self.step(row) for row in steps], None, self.name, self.notice)

    def workflow(
        self, row: WorkflowStatus, *, load_input: bool, load_output: bool
    ) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "workflow_id": row.workflow_uuid,
            "status": row.status,
            "name": row.name,
            "class_name": row.class_name,
            "queue_name": row.queue_name,
            "application_version": row.application_version,
            "executor_id": row.executor_id,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
            "completed_at": row.completed_at,
            "forked_from": row.forked_from,
            "parent_workflow_id": row.parent_workflow_id,
            "serialization": row.serialization,
        }
        wanted = [("input", "inputs", load_input), ("output", "value", load_output)]
        wanted.append(("error", "error", load_output))
        for key, kind, load in wanted:
            if load:
                shown |= _decoded(key, row.payload(key), row.serialization, kind)
        return shown

    def step(self, row: OperationOutput) -> dict[str, Any]:
        return {
            "function_id": row.function_id,
            "function_name": row.function_name,
            "child_workflow_id": row.child_workflow_id,
            "started_at": row.started_at,
            "completed_at": row.completed_at,
            **_decoded("output", row.output, row.serialization, "value"),
            **_decoded("error", row.error, row.serialization, "error"),
        }


def _decoded(key: str, stored: str | None, serialization: str | None, kind: Any) -> dict[str, Any]:
    if stored is None:
        return {key: None, f"{key}_format": None}
    value = decode(stored, serialization, kind=kind)
    shown: dict[str, Any] = {key: value.value, f"{key}_format": value.format}
    if value.notes:
        shown[f"{key}_notes"] = list(value.notes)
    return shown


def _keyset(cursor: str | None) -> tuple[int, str] | None:
    if not cursor:
        return None
    try:
        created, _, workflow_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("~")
        return int(created), workflow_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadCursor(BAD_CURSOR) from None


def _keyset_cursor(row: WorkflowStatus) -> str:
    return base64.urlsafe_b64encode(f"{row.created_at_ms}~{row.workflow_uuid}".encode()).decode()


class ExecutorSource:
    """Reads through a live executor: its display renderings, passed on verbatim."""

    name = EXECUTOR

    def __init__(self, application: Application, notice: str = "") -> None:
        self.application = application
        self.notice = notice

    async def list(self, query: ListQuery, *, actor: str = "") -> Listing:
        offset = 0
        if query.cursor:
            if not query.cursor.isdigit():
                raise BadCursor(BAD_CURSOR)
            offset = int(query.cursor)
        body = ListWorkflowsBody(
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
            items=[_from_executor(row, language) for row in rows[: query.limit]],
            next_cursor=str(offset + query.limit) if len(rows) > query.limit else None,
            source=self.name,
            notice=self.notice,
        )

    async def get(self, workflow_id: str, *, actor: str = "") -> dict[str, Any] | None:
        answer = await relay.ask(
            self.application, GetWorkflowRequest(workflow_id=workflow_id), actor_name=actor
        )
        row = relay.expect(answer.response, GetWorkflowResponse).output
        return None if row is None else _from_executor(row, answer.executor.language)

    async def steps(self, workflow_id: str, *, actor: str = "") -> Listing:
        answer = await relay.ask(
            self.application, ListStepsRequest(workflow_id=workflow_id), actor_name=actor
        )
        steps = relay.expect(answer.response, ListStepsResponse).output
        language = answer.executor.language
        return Listing([_step_from_executor(row, language) for row in steps], None, self.name)


def _display(language: str) -> str:
    """The format name of an executor's display rendering (Python str(), Node inspect)."""
    return f"{language or 'unknown'}-display"


def _from_executor(row: WorkflowsOutput, language: str) -> dict[str, Any]:
    shown = _display(language)
    return {
        "workflow_id": row.workflow_uuid or "",
        "status": row.status,
        "name": row.workflow_name,
        "class_name": row.workflow_class_name,
        "queue_name": row.queue_name,
        "application_version": row.application_version,
        "executor_id": row.executor_id,
        "created_at": _time(row.created_at),
        "updated_at": _time(row.updated_at),
        "completed_at": _time(row.completed_at),
        "forked_from": row.forked_from,
        "parent_workflow_id": row.parent_workflow_id,
        "input": row.input,
        "output": row.output,
        "error": row.error,
        "input_format": shown if row.input is not None else None,
        "output_format": shown if row.output is not None else None,
        "error_format": shown if row.error is not None else None,
    }


def _step_from_executor(row: WorkflowSteps, language: str) -> dict[str, Any]:
    shown = _display(language)
    return {
        "function_id": row.function_id,
        "function_name": row.function_name,
        "output": row.output,
        "error": row.error,
        "output_format": shown if row.output is not None else None,
        "error_format": shown if row.error is not None else None,
        "child_workflow_id": row.child_workflow_id,
        "started_at": _time(row.started_at_epoch_ms),
        "completed_at": _time(row.completed_at_epoch_ms),
    }


Source = DatabaseSource | ExecutorSource


async def source_for(application: Application) -> Source:
    """The system database when it is configured and reachable, else the executors."""
    if not application.system_database_url:
        return ExecutorSource(application)
    try:
        schema = await db_async(systemdb.schema_of)(application)
    except systemdb.SystemDatabaseError as exc:
        return ExecutorSource(application, notice=FALLBACK.format(problem=exc))
    return DatabaseSource(application, schema)
