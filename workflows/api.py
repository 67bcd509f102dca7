"""Read endpoints for workflows and steps, answered through the relay by a live executor.

Executors render inputs, outputs and errors as display text in their own language
(PROTOCOL.md §2.3): they are passed on verbatim, with a `*_format` naming that rendering,
never parsed.
"""

from datetime import UTC, datetime
from typing import Any

from django.http import Http404, HttpRequest
from ninja import Query, Router, Schema
from ninja.errors import HttpError

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
from stepchange.api import application_for, resolve
from workflows import systemdb
from workflows.models import STATUSES

router = Router(tags=["workflows"])

MAX_LIMIT = 1000
WORKFLOW_NOT_FOUND = "No workflow {workflow_id} in {app}."
BAD_STATUS = "status must be among {allowed}; got {value!r}"
BAD_TIME = "{name} must be an ISO 8601 time such as 2026-11-21T10:00:00+00:00; got {value!r}"


def _time(epoch_ms: int | None) -> datetime | None:
    return None if epoch_ms is None else datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)


class WorkflowOut(Schema):
    workflow_id: str
    status: str | None
    name: str | None
    class_name: str | None
    queue_name: str | None
    application_version: str | None
    executor_id: str | None
    created_at: datetime | None
    updated_at: datetime | None
    completed_at: datetime | None
    forked_from: str | None
    parent_workflow_id: str | None
    input: Any = None
    output: Any = None
    error: Any = None
    input_format: str | None = None
    output_format: str | None = None
    error_format: str | None = None
    serialization: str | None = None


class WorkflowPage(Schema):
    items: list[WorkflowOut]
    next_cursor: str | None
    source: str


class StepOut(Schema):
    function_id: int | None
    function_name: str | None
    output: Any = None
    error: Any = None
    output_format: str | None = None
    error_format: str | None = None
    child_workflow_id: str | None
    started_at: datetime | None
    completed_at: datetime | None


class StepList(Schema):
    items: list[StepOut]
    source: str


def _display(language: str) -> str:
    """The format name of an executor's display rendering (Python str(), Node inspect)."""
    return f"{language or 'unknown'}-display"


def _workflow(row: WorkflowsOutput, language: str) -> dict[str, Any]:
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


def _step(row: WorkflowSteps, language: str) -> dict[str, Any]:
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


class WorkflowFilters(Schema):
    status: str | None = None
    workflow_name: str | None = None
    queue_name: str | None = None
    workflow_id_prefix: str | None = None
    executor_id: str | None = None
    application_version: str | None = None
    forked_from: str | None = None
    parent_workflow_id: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    limit: int = 50
    cursor: str | None = None
    sort_desc: bool = True
    load_input: bool = False
    load_output: bool = False

    def body(self, *, queues_only: bool = False) -> ListWorkflowsBody:
        """The list_workflows body these filters ask for, validated (400 on bad values)."""
        if not 1 <= self.limit <= MAX_LIMIT:
            raise HttpError(400, f"limit must be between 1 and {MAX_LIMIT}")
        offset = 0
        if self.cursor:
            if not self.cursor.isdigit():
                raise HttpError(400, "cursor is not one this API gave out")
            offset = int(self.cursor)
        text_filters: dict[str, Any] = {
            name: _split(getattr(self, name))
            for name in (
                "workflow_name",
                "queue_name",
                "workflow_id_prefix",
                "executor_id",
                "application_version",
                "forked_from",
                "parent_workflow_id",
            )
            if getattr(self, name)
        }
        return ListWorkflowsBody(
            status=_statuses(self.status),
            start_time=_instant("start_time", self.start_time),
            end_time=_instant("end_time", self.end_time),
            limit=self.limit + 1,
            offset=offset or None,
            sort_desc=self.sort_desc,
            load_input=self.load_input,
            load_output=self.load_output,
            queues_only=queues_only or None,
            **text_filters,
        )


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _statuses(value: str | None) -> list[str] | None:
    if not value:
        return None
    statuses = [item.upper() for item in _split(value)]
    for status in statuses:
        if status not in STATUSES:
            raise HttpError(400, BAD_STATUS.format(allowed=", ".join(STATUSES), value=status))
    return statuses


def _instant(name: str, value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise HttpError(400, BAD_TIME.format(name=name, value=value)) from None
    # A time without an offset is read as UTC, never as the executor's local time.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def _list(request: HttpRequest, app: str, filters: WorkflowFilters, queued: bool) -> Any:
    body = filters.body(queues_only=queued)
    application, actor = await resolve(request, app)
    answer = await relay.ask(application, ListWorkflowsRequest(body=body), actor_name=actor)
    rows = relay.expect(answer.response, ListWorkflowsResponse).output
    more = len(rows) > filters.limit
    offset = body.offset or 0
    return {
        "items": [_workflow(row, answer.executor.language) for row in rows[: filters.limit]],
        "next_cursor": str(offset + filters.limit) if more else None,
        "source": "executor",
    }


@router.get("/apps/{app}/workflows", response=WorkflowPage)
async def list_workflows(request: HttpRequest, app: str, filters: Query[WorkflowFilters]) -> Any:
    """Workflows, newest first unless `sort_desc=false`; filters take comma-separated lists."""
    return await _list(request, app, filters, queued=False)


@router.get("/apps/{app}/queued-workflows", response=WorkflowPage)
async def list_queued_workflows(
    request: HttpRequest, app: str, filters: Query[WorkflowFilters]
) -> Any:
    """Workflows waiting in, or running from, a queue."""
    return await _list(request, app, filters, queued=True)


@router.get("/apps/{app}/workflows/{workflow_id}", response=WorkflowOut)
async def get_workflow(request: HttpRequest, app: str, workflow_id: str) -> Any:
    """One workflow, with its input, output and error."""
    application, actor = await resolve(request, app)
    answer = await relay.ask(
        application, GetWorkflowRequest(workflow_id=workflow_id), actor_name=actor
    )
    row = relay.expect(answer.response, GetWorkflowResponse).output
    if row is None:
        raise Http404(WORKFLOW_NOT_FOUND.format(workflow_id=workflow_id, app=app))
    return _workflow(row, answer.executor.language)


@router.get("/apps/{app}/workflows/{workflow_id}/steps", response=StepList)
async def list_steps(request: HttpRequest, app: str, workflow_id: str) -> Any:
    """The recorded steps of a workflow, in order, with child workflow ids."""
    application, actor = await resolve(request, app)
    answer = await relay.ask(
        application, ListStepsRequest(workflow_id=workflow_id), actor_name=actor
    )
    steps = relay.expect(answer.response, ListStepsResponse).output
    return {"items": [_step(row, answer.executor.language) for row in steps], "source": "executor"}


class SystemDatabaseOut(Schema):
    configured: bool
    reachable: bool
    migration_version: int | None
    known_version: bool
    payload_tables: bool
    tables: list[str]
    detail: str


@router.get("/apps/{app}/system-database", response=SystemDatabaseOut)
def system_database(request: HttpRequest, app: str) -> Any:
    """Whether the application's system database is configured and reachable, and which
    DBOS schema version it is on. Problems are reported here, not raised."""
    return systemdb.status_of(application_for(request, app))
