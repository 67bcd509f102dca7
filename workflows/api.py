"""Read endpoints for workflows and steps, and the state of the system database.

Answered from the system database when it is reachable (values decoded, `*_format`
naming the encoding), else by a live executor through the relay (its display text
passed on verbatim, `*_format` naming that rendering). `source` says which.
"""

import dataclasses
import re
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from django.http import Http404, HttpRequest
from ninja import Field, Query, Router, Schema, Status
from ninja.errors import HttpError
from pydantic import ConfigDict, StringConstraints

from conductor.registry import live_versions
from conductor.relay import RelayError
from forks.starts import MAX_PRIORITY, StartRequest, workflow_start
from stepchange.access import aapplication_for, application_for
from stepchange.api.base import STRICT, WHOLE, Body, Integer, acting_with
from stepchange.asyncdb import db_async
from stepchange.roles import PERM_INSPECT, PERM_OPERATE
from workflows import systemdb
from workflows.actions import (
    SAFE_ID,
    WORKFLOW_NOT_FOUND,
    Action,
    ActionError,
    Outcome,
    Parameters,
    database_recover,
    workflow_act,
)
from workflows.jobs import (
    MAX_WORKFLOWS,
    bulk_action,
    bulk_job_create,
    bulk_job_retry,
    bulk_jobs_wake,
    bulk_select,
    bulk_selection_failed,
    progress,
)
from workflows.models import STATUSES, BulkJob
from workflows.sources import (
    MAX_ATTRIBUTE_CHARS,
    MAX_ATTRIBUTES,
    MAX_STEPS_PAGE,
    STEPS_PAGE,
    BadCursor,
    ListQuery,
    SlowQuery,
    Source,
    Step,
    UnsupportedFilter,
    Workflow,
    backwards_range,
    parse_attributes,
    source_for,
    split_names,
)
from workflows.versions import Version, VersionError, version_set_latest, versions_read

router = Router(tags=["workflows"])


class ErrorOutStart(Schema):
    detail: Any


MAX_LIMIT = 1000
# Cursors given out as page numbers or step numbers; a caller may only send one back.
# Fifteen digits stay below 2**53, the most an executor takes as an offset.
NUMBER_CURSOR = r"^[0-9]{0,15}$"
CURSOR_HELP = "The `next_cursor` of the previous page; leave out for the first."


def _any_case(word: str) -> str:
    return "".join(f"[{c}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)


# What `_statuses` accepts, declared: statuses in any case, separated by commas.
_STATUS = "(?:" + "|".join(_any_case(status) for status in STATUSES) + ")"
STATUS_PATTERN = rf"^\s*(?:{_STATUS}\s*(?:,\s*{_STATUS}\s*)*)?$"
TIME_HELP = "ISO 8601, such as 2026-11-21T10:00:00+00:00; UTC when it has no offset."
BAD_STATUS = "status must be among {allowed}; got {value!r}"
BAD_TIME = "{name} must be an ISO 8601 time such as 2026-11-21T10:00:00+00:00; got {value!r}"
ATTRIBUTE_HELP = (
    "A workflow attribute as key=value; repeat for several (each must hold). A value that is"
    ' JSON is that value (tier=3 is the number 3, tier="3" the text); any other is text.'
)
# What `parse_attributes` takes, declared: a key (not blank) before the first "=".
AttributeFilter = Annotated[
    str,
    StringConstraints(max_length=MAX_ATTRIBUTE_CHARS, pattern=r"^[^=]*[^=\s][^=]*=[\s\S]*$"),
]
TIME_FILTERS = (
    "start_time",
    "end_time",
    "completed_after",
    "completed_before",
    "dequeued_after",
    "dequeued_before",
)


def _value(obj: Workflow | Step, name: str) -> Any:
    stored = getattr(obj, name)
    return None if stored is None else stored.value


def _format(obj: Workflow | Step, name: str) -> str | None:
    stored = getattr(obj, name)
    return None if stored is None else stored.format


def _notes(obj: Workflow | Step, name: str) -> list[str] | None:
    stored = getattr(obj, name)
    return None if stored is None or not stored.notes else list(stored.notes)


class ValuesOut(Schema):
    """The decoded `output` and `error` (and their `*_format` and `*_notes`) of a workflow
    or a step, read from its StoredValues."""

    output: Any = None
    error: Any = None
    output_format: str | None = None
    error_format: str | None = None
    output_notes: list[str] | None = None
    error_notes: list[str] | None = None

    @staticmethod
    def resolve_output(obj: Workflow | Step) -> Any:
        return _value(obj, "output")

    @staticmethod
    def resolve_error(obj: Workflow | Step) -> Any:
        return _value(obj, "error")

    @staticmethod
    def resolve_output_format(obj: Workflow | Step) -> str | None:
        return _format(obj, "output")

    @staticmethod
    def resolve_error_format(obj: Workflow | Step) -> str | None:
        return _format(obj, "error")

    @staticmethod
    def resolve_output_notes(obj: Workflow | Step) -> list[str] | None:
        return _notes(obj, "output")

    @staticmethod
    def resolve_error_notes(obj: Workflow | Step) -> list[str] | None:
        return _notes(obj, "error")


class WorkflowOut(ValuesOut):
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
    input_format: str | None = None
    input_notes: list[str] | None = None
    serialization: str | None = None

    @staticmethod
    def resolve_input(obj: Workflow) -> Any:
        return _value(obj, "input")

    @staticmethod
    def resolve_input_format(obj: Workflow) -> str | None:
        return _format(obj, "input")

    @staticmethod
    def resolve_input_notes(obj: Workflow) -> list[str] | None:
        return _notes(obj, "input")


class WorkflowPage(Schema):
    items: list[WorkflowOut]
    next_cursor: str | None
    source: str
    notice: str = ""


class StepOut(ValuesOut):
    function_id: int | None
    function_name: str | None
    child_workflow_id: str | None
    started_at: datetime | None
    completed_at: datetime | None


class StepList(Schema):
    items: list[StepOut]
    next_cursor: str | None = None
    source: str
    notice: str = ""


class WorkflowFilters(Schema):
    status: str | None = Field(
        default=None, pattern=STATUS_PATTERN, description="Statuses, comma-separated."
    )
    workflow_name: str | None = None
    queue_name: str | None = None
    workflow_id_prefix: str | None = None
    executor_id: str | None = None
    application_version: str | None = None
    forked_from: str | None = None
    parent_workflow_id: str | None = None
    start_time: str | None = Field(
        default=None, description=TIME_HELP, json_schema_extra={"format": "date-time"}
    )
    end_time: str | None = Field(
        default=None, description=TIME_HELP, json_schema_extra={"format": "date-time"}
    )
    authenticated_user: str | None = None
    schedule_name: str | None = None
    completed_after: str | None = Field(
        default=None, description=TIME_HELP, json_schema_extra={"format": "date-time"}
    )
    completed_before: str | None = Field(
        default=None, description=TIME_HELP, json_schema_extra={"format": "date-time"}
    )
    dequeued_after: str | None = Field(
        default=None, description=TIME_HELP, json_schema_extra={"format": "date-time"}
    )
    dequeued_before: str | None = Field(
        default=None, description=TIME_HELP, json_schema_extra={"format": "date-time"}
    )
    was_forked_from: bool | None = Field(
        default=None, description="Only workflows that were (or were not) forked."
    )
    has_parent: bool | None = Field(
        default=None, description="Only child workflows (true), or only top-level ones (false)."
    )
    attribute: list[AttributeFilter] | None = Field(
        default=None,
        max_length=MAX_ATTRIBUTES,
        description=ATTRIBUTE_HELP,
    )
    limit: int = Field(default=50, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(default=None, description=CURSOR_HELP)
    sort_desc: bool = True
    load_input: bool = False
    load_output: bool = False

    def query(self, *, queued: bool = False) -> ListQuery:
        """These filters, validated (400 on bad values), for any source."""
        lists: dict[str, Any] = {
            name: split_names(getattr(self, name))
            for name in (
                "workflow_name",
                "queue_name",
                "executor_id",
                "application_version",
                "forked_from",
                "parent_workflow_id",
                "authenticated_user",
                "schedule_name",
            )
            if getattr(self, name)
        }
        times: dict[str, Any] = {name: instant(name, getattr(self, name)) for name in TIME_FILTERS}
        try:
            attributes = parse_attributes(self.attribute or [])
        except ValueError as exc:
            raise HttpError(400, f"attribute: {exc}") from None
        query = ListQuery(
            status=_statuses(self.status),
            workflow_id_prefix=self.workflow_id_prefix or None,
            was_forked_from=self.was_forked_from,
            has_parent=self.has_parent,
            attributes=attributes,
            limit=self.limit,
            cursor=self.cursor,
            sort_desc=self.sort_desc,
            load_input=self.load_input,
            load_output=self.load_output,
            queued=queued,
            **lists,
            **times,
        )
        backwards = backwards_range(times)
        if backwards:
            raise HttpError(400, backwards[1])
        return query


def _statuses(value: str | None) -> list[str] | None:
    if not value:
        return None
    return statuses_known([item.upper() for item in split_names(value) or []])


def statuses_known(statuses: list[str]) -> list[str]:
    """`statuses`, each a DBOS status; a 400 naming the first that is not."""
    for status in statuses:
        if status not in STATUSES:
            raise HttpError(400, BAD_STATUS.format(allowed=", ".join(STATUSES), value=status))
    return statuses


def instant(name: str, value: str | None, *, bad: str = BAD_TIME) -> datetime | None:
    """A time filter read from ISO 8601; `bad` is the 400's text (its API's own example)."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise HttpError(400, bad.format(name=name, value=value)) from None
    # A time without an offset is read as UTC, never as the executor's local time.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def _source(request: HttpRequest, app: str) -> Source:
    """The application's source, once the caller may read it."""
    return await source_for(await aapplication_for(request, app, PERM_INSPECT))


async def _read(read: Awaitable[Any]) -> Any:
    """A read's answer, its failures as the API's errors."""
    try:
        return await read
    except BadCursor as exc:
        raise HttpError(400, str(exc)) from None
    except SlowQuery as exc:
        raise HttpError(SlowQuery.status, str(exc)) from None
    except UnsupportedFilter as exc:
        raise HttpError(UnsupportedFilter.status, f"{exc.field}: {exc}") from None


async def _list(request: HttpRequest, app: str, filters: WorkflowFilters, queued: bool) -> Any:
    query = filters.query(queued=queued)
    source = await _source(request, app)
    return await _read(source.list(query, actor=request.user.get_username()))


@router.get("/apps/{app}/workflows", response=WorkflowPage)
async def list_workflows(request: HttpRequest, app: str, filters: Query[WorkflowFilters]) -> Any:
    """Workflows, newest first unless `sort_desc=false`: by creation, or with a completion
    (else a dequeue) range by that time; filters take comma-separated lists.
    Read from the system database when it is reachable, else through an executor
    (`source` says which)."""
    return await _list(request, app, filters, queued=False)


class StartIn(Body):
    workflow_name: str = Field(min_length=1, max_length=1000)
    class_name: str | None = Field(
        default=None, description="Default: the class of the newest run of that name."
    )
    config_name: str | None = Field(
        default=None, description="Default: the config of the newest run of that name."
    )
    input: Any = Field(
        default=None,
        description='{"args": [...], "kwargs": {...}} (Python) or a list of arguments '
        "(TypeScript); encoded in the application's format. Default: no arguments.",
    )
    like: str | None = Field(
        default=None,
        description="An earlier run to start like: its class, config and format are used.",
    )
    queue_name: str | None = Field(default=None, description="Default: DBOS's internal queue.")
    workflow_id: str | None = Field(
        default=None, pattern=SAFE_ID.pattern, description="Default: a new UUID."
    )
    application_version: str | None = Field(
        default=None, description="Default: the latest version."
    )
    # Constraints before WHOLE, so that the OpenAPI document keeps them (api/base.py).
    priority: Annotated[int, Field(ge=0, le=MAX_PRIORITY), WHOLE] | None = Field(
        default=None, description="0 (none) to 2**31-1."
    )
    deduplication_id: str | None = None
    serialization: Literal["portable_json", "py_pickle", "js_superjson"] | None = Field(
        default=None,
        description="Default: the format of the earlier run (`like`, else the newest of "
        "that name). portable_json is read by dbos 3.2.0 and TypeScript 5.0.2 alike.",
    )
    accept_warnings: bool = Field(
        default=False,
        description="Start even though the input's shape differs from earlier runs' or "
        "the queue was never seen (else a 400 lists those doubts, each with confirm: true).",
    )
    reason: str = Field(default="", max_length=2000)


class StartOut(Schema):
    workflow_id: str
    workflow_name: str
    queue_name: str
    application_version: str | None
    serialization: str
    input_sha256: str
    warnings: list[str]
    audit_id: int


@router.post(
    "/apps/{app}/workflows",
    response={201: StartOut} | dict.fromkeys((400, 401, 403, 404, 409, 503), ErrorOutStart),
    auth=acting_with(PERM_OPERATE),
)
async def start_workflow(request: HttpRequest, app: str, body: StartIn) -> Any:
    """Start a workflow: write its ENQUEUED row and input, as DBOS's client enqueue does,
    for a live executor of the version to run. 400 lists every wrong field; 409 for a
    workflow id or a deduplication id in use; 503 without a reachable system database.
    Nothing is written unless the start is valid."""
    application = await aapplication_for(request, app, PERM_OPERATE)
    return Status(201, await db_async(_start)(request, application, body))


def _start(request: HttpRequest, application: Any, body: StartIn) -> dict[str, Any]:
    asked = StartRequest(**body.model_dump())
    plan = workflow_start(
        application=application,
        asked=asked,
        live_versions=live_versions(application),
        user=request.user,
        request=request,
    )
    return {
        "workflow_id": plan.workflow_id,
        "workflow_name": plan.name,
        "queue_name": plan.queue_name,
        "application_version": plan.application_version,
        "serialization": plan.serialization,
        "input_sha256": plan.input_sha256,
        "warnings": plan.warnings,
        "audit_id": plan.audit_id,
    }


@router.get("/apps/{app}/queued-workflows", response=WorkflowPage)
async def list_queued_workflows(
    request: HttpRequest, app: str, filters: Query[WorkflowFilters]
) -> Any:
    """Workflows waiting in, or running from, a queue."""
    return await _list(request, app, filters, queued=True)


async def get_workflow(request: HttpRequest, app: str, workflow_id: str) -> Any:
    """One workflow, with its input, output and error decoded."""
    source = await _source(request, app)
    found = await _read(source.get(workflow_id, actor=request.user.get_username()))
    if found is None:
        raise Http404(WORKFLOW_NOT_FOUND.format(workflow_id=workflow_id, app=app))
    return found


@router.get("/apps/{app}/workflows/{workflow:workflow_id}/steps", response=StepList)
async def list_steps(
    request: HttpRequest,
    app: str,
    workflow_id: str,
    limit: Annotated[int, Field(ge=1, le=MAX_STEPS_PAGE)] = STEPS_PAGE,
    cursor: Annotated[str | None, Field(pattern=NUMBER_CURSOR, description=CURSOR_HELP)] = None,
) -> Any:
    """The recorded steps of a workflow, in order, with child workflow ids; `limit` (1..1000,
    100 unless given) at a time, `next_cursor` for the rest."""
    source = await _source(request, app)
    actor = request.user.get_username()
    page = await _read(source.steps(workflow_id, cursor=cursor, limit=limit, actor=actor))
    # No steps on the first page: a workflow that has not run one yet, or no workflow at all.
    if not page.items and not cursor and await _read(source.get(workflow_id, actor=actor)) is None:
        raise Http404(WORKFLOW_NOT_FOUND.format(workflow_id=workflow_id, app=app))
    return page


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


# Actions (DESIGN.md "The JSON API"): each needs the operator role and is audited once.


# A step's function_id, in a body where it may be left out.
StepNumber = Annotated[int, Field(ge=0), WHOLE]


class ActionIn(Body):
    reason: str = Field(default="", max_length=2000, description="Why; kept in the audit record.")


class CancelIn(ActionIn):
    cancel_children: bool = False


class DeleteIn(ActionIn):
    delete_children: bool = False


class ResumeIn(ActionIn):
    queue_name: str | None = Field(default=None, description="Default: DBOS's internal queue.")


class ForkIn(ActionIn):
    start_step: Integer = Field(ge=0, description="The function_id of the first step to re-run.")
    new_workflow_id: str | None = Field(default=None, pattern=SAFE_ID.pattern)
    application_version: str | None = None
    queue_name: str | None = None


# A mode that names a step needs the step (`failure_body` says so): declared.
MODE_NEEDS: dict[str, Any] = {
    "allOf": [
        {
            "if": {"required": ["mode"], "properties": {"mode": {"const": mode}}},
            "then": {"required": [field], "properties": {field: {"type": kind}}},
        }
        for mode, field, kind in (
            ("step", "start_step", "integer"),
            ("step_name", "step_name", "string"),
        )
    ]
}


class ForkFromFailureIn(ActionIn):
    model_config = STRICT | ConfigDict(json_schema_extra=MODE_NEEDS)

    mode: Literal["last_failure", "last_step", "step", "step_name"] = "last_failure"
    start_step: StepNumber | None = Field(default=None, description="With mode=step.")
    step_name: str | None = Field(default=None, min_length=1, description="With mode=step_name.")
    application_version: str | None = None
    queue_name: str | None = None


class RewindIn(ActionIn):
    start_step: StepNumber | None = Field(default=None, description="Default: the first step.")
    application_version: str | None = None
    queue_name: str | None = None


# What a body that may be left out stands for when it is: its defaults. Not None, so that
# a body of `null` is refused like any other that is not the documented object.
NO_BODY: dict[type[ActionIn], Any] = {
    kind: kind() for kind in (ActionIn, CancelIn, DeleteIn, ResumeIn, ForkFromFailureIn, RewindIn)
}


class ActionOut(Schema):
    action: str
    workflow_id: str
    detail: str
    request_id: str
    executor_id: str
    new_workflow_id: str | None
    new_workflow_ids: list[str]
    audit_id: int
    # "executor" (relayed to a connected executor) or "database" (written into the system
    # database, when no executor is connected).
    path: str


class ErrorOut(Schema):
    detail: Any


ERROR_STATUSES = (400, 401, 403, 404, 409, 502, 503, 504)
ACTION_RESPONSES: dict[int, Any] = {200: ActionOut} | dict.fromkeys(ERROR_STATUSES, ErrorOut)


async def _act(
    request: HttpRequest, app: str, workflow_id: str, action: Action, parameters: Parameters
) -> Outcome:
    application = await aapplication_for(request, app, PERM_OPERATE)
    try:
        return await workflow_act(
            application=application,
            action=action,
            workflow_id=workflow_id,
            parameters=parameters,
            actor=request.user,
            request=request,
        )
    except ActionError as exc:
        raise HttpError(exc.status, str(exc)) from None


@router.post(
    "/apps/{app}/workflows/{workflow:workflow_id}/cancel",
    response=ACTION_RESPONSES,
    auth=acting_with(PERM_OPERATE),
)
async def cancel_workflow(
    request: HttpRequest, app: str, workflow_id: str, body: CancelIn = NO_BODY[CancelIn]
) -> Outcome:
    """Cancel a workflow that has not finished (and, optionally, its descendants)."""
    chosen = Parameters(reason=body.reason, cancel_children=body.cancel_children)
    return await _act(request, app, workflow_id, Action.CANCEL, chosen)


@router.post(
    "/apps/{app}/workflows/{workflow:workflow_id}/resume",
    response=ACTION_RESPONSES,
    auth=acting_with(PERM_OPERATE),
)
async def resume_workflow(
    request: HttpRequest, app: str, workflow_id: str, body: ResumeIn = NO_BODY[ResumeIn]
) -> Outcome:
    """Enqueue a cancelled, delayed or stuck workflow again. Refused (409) for ERROR and
    SUCCESS workflows, where DBOS would silently do nothing."""
    chosen = Parameters(reason=body.reason, queue_name=body.queue_name)
    return await _act(request, app, workflow_id, Action.RESUME, chosen)


@router.post(
    "/apps/{app}/workflows/{workflow:workflow_id}/restart",
    response=ACTION_RESPONSES,
    auth=acting_with(PERM_OPERATE),
)
async def restart_workflow(
    request: HttpRequest, app: str, workflow_id: str, body: ActionIn = NO_BODY[ActionIn]
) -> Outcome:
    """Start a new workflow from the first step (a fork from step 1 in Python, 0 in
    TypeScript). `new_workflow_id` in the answer names it."""
    chosen = Parameters(reason=body.reason)
    return await _act(request, app, workflow_id, Action.RESTART, chosen)


@router.post(
    "/apps/{app}/workflows/{workflow:workflow_id}/fork",
    response=ACTION_RESPONSES,
    auth=acting_with(PERM_OPERATE),
)
async def fork_workflow(request: HttpRequest, app: str, workflow_id: str, body: ForkIn) -> Outcome:
    """Start a new workflow from `start_step`, copying the steps before it. Forking twice to
    the same `new_workflow_id` is refused (409), so a repeated request forks once."""
    chosen = Parameters(
        reason=body.reason,
        start_step=body.start_step,
        new_workflow_id=body.new_workflow_id,
        application_version=body.application_version,
        queue_name=body.queue_name,
    )
    return await _act(request, app, workflow_id, Action.FORK, chosen)


@router.post(
    "/apps/{app}/workflows/{workflow:workflow_id}/fork-from-failure",
    response=ACTION_RESPONSES,
    auth=acting_with(PERM_OPERATE),
)
async def fork_from_failure(
    request: HttpRequest,
    app: str,
    workflow_id: str,
    body: ForkFromFailureIn = NO_BODY[ForkFromFailureIn],
) -> Outcome:
    """Fork a failed or cancelled workflow from its last failed step (or its last step, a
    step number, or the last step of a name)."""
    chosen = Parameters(
        reason=body.reason,
        failure_mode=body.mode,
        start_step=body.start_step,
        step_name=body.step_name,
        application_version=body.application_version,
        queue_name=body.queue_name,
    )
    return await _act(request, app, workflow_id, Action.FORK_FROM_FAILURE, chosen)


@router.post(
    "/apps/{app}/workflows/{workflow:workflow_id}/rewind",
    response=ACTION_RESPONSES,
    auth=acting_with(PERM_OPERATE),
)
async def rewind_workflow(
    request: HttpRequest, app: str, workflow_id: str, body: RewindIn = NO_BODY[RewindIn]
) -> Outcome:
    """Re-run this same workflow from `start_step` (Python dbos 3.2+, TypeScript 5.1+)."""
    chosen = Parameters(
        reason=body.reason,
        start_step=body.start_step,
        application_version=body.application_version,
        queue_name=body.queue_name,
    )
    return await _act(request, app, workflow_id, Action.REWIND, chosen)


@router.post(
    "/apps/{app}/workflows/{workflow:workflow_id}/delete",
    response=ACTION_RESPONSES,
    auth=acting_with(PERM_OPERATE),
)
async def delete_workflow(
    request: HttpRequest, app: str, workflow_id: str, body: DeleteIn = NO_BODY[DeleteIn]
) -> Outcome:
    """Delete a finished workflow's rows (and, optionally, its descendants')."""
    chosen = Parameters(reason=body.reason, delete_children=body.delete_children)
    return await _act(request, app, workflow_id, Action.DELETE, chosen)


# Bulk actions: a job over a selection or a filter, run in the background.


WorkflowId = Annotated[str, StringConstraints(min_length=1, max_length=255)]


class BulkFilters(WorkflowFilters):
    """The list filters, in a JSON body: strictly typed, as every body is."""

    model_config = STRICT

    limit: Integer = Field(default=50, ge=1, le=MAX_LIMIT)


class BulkIn(Body):
    # One of the two is needed (`_selection` says so): declared, so clients know.
    model_config = STRICT | ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["workflow_ids"], "properties": {"workflow_ids": {"type": "array"}}},
                {"required": ["filters"], "properties": {"filters": {"type": "object"}}},
            ],
            **MODE_NEEDS,
        }
    )

    action: Literal["cancel", "resume", "delete", "fork_from_failure", "fork_to_version"]
    workflow_ids: list[WorkflowId] | None = Field(
        default=None,
        max_length=MAX_WORKFLOWS,
        description="These workflows (within `filters`, if given).",
    )
    filters: BulkFilters | None = Field(
        default=None, description="Every workflow matching these list filters."
    )
    reason: str = Field(default="", max_length=2000)
    cancel_children: bool = False
    delete_children: bool = False
    queue_name: str | None = None
    mode: Literal["last_failure", "last_step", "step", "step_name"] = "last_failure"
    start_step: StepNumber | None = None
    step_name: str | None = Field(default=None, min_length=1)
    application_version: str | None = None

    def parameters(self) -> Parameters:
        return Parameters(
            reason=self.reason,
            cancel_children=self.cancel_children,
            delete_children=self.delete_children,
            queue_name=self.queue_name,
            failure_mode=self.mode,
            start_step=self.start_step,
            step_name=self.step_name,
            application_version=self.application_version,
        )

    def describe(self) -> str:
        if self.workflow_ids is not None:
            return f"{len(self.workflow_ids)} chosen workflows"
        shown = self.filters.model_dump(exclude_defaults=True) if self.filters else {}
        return "filter " + (", ".join(f"{k}={v}" for k, v in shown.items()) or "(everything)")


class BulkPreviewOut(Schema):
    count: int
    capped: bool
    by_status: dict[str, int]
    skipped: int
    missing: list[str]
    sample: list[str]


class BulkJobOut(Schema):
    id: int
    action: str
    state: str
    reason: str
    selection: str
    parameters: dict[str, Any]
    created_by: str = Field(alias="created_by_name")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    detail: str
    progress: dict[str, int]


class BulkItemOut(Schema):
    workflow_id: str
    status: str
    state: str
    new_workflow_id: str
    request_id: str
    executor_id: str
    detail: str
    updated_at: datetime


class BulkJobDetail(BulkJobOut):
    items: list[BulkItemOut]
    next_cursor: str | None


BULK_JOB_NOT_FOUND = "No bulk job {job_id} in {app}."
BULK_RESPONSES: dict[int, Any] = dict.fromkeys(ERROR_STATUSES, ErrorOut)


async def _selection(
    request: HttpRequest, app: str, body: BulkIn, *, creating: bool
) -> tuple[Any, Any]:
    """The application and the selection; when creating a job, a selection that fails is
    audited as a failed attempt."""
    application = await aapplication_for(request, app, PERM_OPERATE)
    actor = request.user.get_username()
    try:
        if body.workflow_ids is None and body.filters is None:
            raise HttpError(400, "Give workflow_ids or filters.")
        query = body.filters.query() if body.filters else None
        selection = await bulk_select(
            application, query=query, workflow_ids=body.workflow_ids, actor=actor
        )
    except (HttpError, BadCursor, SlowQuery, UnsupportedFilter, RelayError) as exc:
        if creating:
            await db_async(bulk_selection_failed)(
                application=application,
                action=body.action,
                description=body.describe(),
                error=exc,
                user=request.user,
                request=request,
            )
        if isinstance(exc, BadCursor):
            raise HttpError(400, str(exc)) from None
        if isinstance(exc, SlowQuery):
            raise HttpError(SlowQuery.status, str(exc)) from None
        if isinstance(exc, UnsupportedFilter):
            raise HttpError(UnsupportedFilter.status, f"{exc.field}: {exc}") from None
        raise
    return application, selection


@router.post(
    "/apps/{app}/bulk-actions/preview",
    response={200: BulkPreviewOut} | BULK_RESPONSES,
    auth=acting_with(PERM_OPERATE),
)
async def bulk_preview(request: HttpRequest, app: str, body: BulkIn) -> Any:
    """How many workflows a bulk action would reach, by status, and how many it would skip
    (the action makes no sense for their status). Nothing is sent."""
    _, selection = await _selection(request, app, body, creating=False)
    return selection.preview(body.action)


@router.post(
    "/apps/{app}/bulk-actions",
    response={201: BulkJobOut} | BULK_RESPONSES,
    auth=acting_with(PERM_OPERATE),
)
async def bulk_create(request: HttpRequest, app: str, body: BulkIn) -> Any:
    """Start a bulk action as a background job; follow it at
    `/apps/{app}/bulk-actions/{id}`. At most 10,000 workflows per job."""
    application, selection = await _selection(request, app, body, creating=True)
    try:
        job = await db_async(bulk_job_create)(
            application=application,
            action=bulk_action(body.action),
            selection=selection,
            parameters=body.parameters(),
            description=body.describe(),
            user=request.user,
            request=request,
        )
    except ActionError as exc:
        raise HttpError(exc.status, str(exc)) from None
    bulk_jobs_wake()
    return Status(201, await db_async(_job_out)(job))


@router.get("/apps/{app}/bulk-actions", response=list[BulkJobOut])
def bulk_jobs(request: HttpRequest, app: str) -> list[dict[str, Any]]:
    """The application's 50 most recent bulk jobs."""
    application = application_for(request, app)
    return [_job_out(job) for job in BulkJob.objects.filter(application=application)[:50]]


@router.get("/apps/{app}/bulk-actions/{job_id}", response=BulkJobDetail)
def bulk_job(
    request: HttpRequest,
    app: str,
    job_id: int,
    cursor: Annotated[str | None, Field(pattern=NUMBER_CURSOR, description=CURSOR_HELP)] = None,
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT)] = 500,
) -> dict[str, Any]:
    """One job: its progress, and what became of each workflow (paged by `cursor`)."""
    job = _job_for(request, app, job_id)
    items = job.items.order_by("pk")
    if cursor:
        items = items.filter(pk__gt=int(cursor))
    page = list(items[: limit + 1])
    more = len(page) > limit
    return {
        **_job_out(job),
        "items": page[:limit],
        "next_cursor": str(page[limit - 1].pk) if more else None,
    }


@router.post(
    "/apps/{app}/bulk-actions/{job_id}/retry",
    response={200: BulkJobOut} | BULK_RESPONSES,
    auth=acting_with(PERM_OPERATE),
)
async def bulk_retry(request: HttpRequest, app: str, job_id: int) -> Any:
    """Queue a stopped job again; it sends only what it has not sent."""
    job = await db_async(_job_for)(request, app, job_id, PERM_OPERATE)
    try:
        job = await db_async(bulk_job_retry)(job=job, user=request.user, request=request)
    except ActionError as exc:
        raise HttpError(exc.status, str(exc)) from None
    bulk_jobs_wake()
    return await db_async(_job_out)(job)


def _job_for(
    request: HttpRequest, app: str, job_id: int, permission: str = PERM_INSPECT
) -> BulkJob:
    application = application_for(request, app, permission)
    job = BulkJob.objects.filter(application=application, pk=job_id).first()
    if job is None:
        raise Http404(BULK_JOB_NOT_FOUND.format(job_id=job_id, app=app))
    return job


def _job_out(job: BulkJob) -> dict[str, Any]:
    fields = ["id", "action", "state", "reason", "selection", "parameters", "created_by_name"]
    fields += ["created_at", "started_at", "finished_at", "detail"]
    return {field: getattr(job, field) for field in fields} | {"progress": progress(job)}


# Application versions.


class VersionOut(Schema):
    version_name: str | None = Field(description="null: the workflows pinned to no version.")
    version_id: str
    latest: bool
    registered: bool = Field(description="DBOS has a row for it in application_versions.")
    version_timestamp: datetime | None
    created_at: datetime | None
    executor_ids: list[str]
    pending: int
    enqueued: int
    stranded: bool

    @staticmethod
    def resolve_version_name(obj: Version) -> str | None:
        return obj.name

    @staticmethod
    def resolve_executor_ids(obj: Version) -> list[str]:
        return [executor.executor_id for executor in obj.executors]


class VersionsOut(Schema):
    items: list[VersionOut]
    latest: str | None
    source: str
    counted: bool = Field(description="false: the pinned counts ran out of time, all 0.")
    capped: dict[str, bool] = Field(description="Per status: its counts are lower bounds.")
    notes: list[str]


class SetLatestIn(Body):
    version_name: str = Field(min_length=1, max_length=255)
    reason: str = Field(default="", max_length=2000)


class SetLatestOut(Schema):
    version_name: str
    previous_latest: str | None
    executor_id: str
    request_id: str
    audit_id: int
    detail: str


@router.get("/apps/{app}/versions", response={200: VersionsOut} | BULK_RESPONSES)
async def list_versions(request: HttpRequest, app: str) -> Any:
    """Every version: registered in `application_versions` (or listed by an executor),
    run by a connected executor, or holding PENDING or ENQUEUED workflows, with those
    counts (bounded: see `capped`) and whether they are stranded."""
    application = await aapplication_for(request, app, PERM_INSPECT)
    found = await _read(versions_read(application, actor=request.user.get_username()))
    return {
        "items": found.versions,
        "latest": found.latest,
        "source": found.source,
        "counted": found.counted,
        "capped": found.capped,
        "notes": found.notes,
    }


@router.post(
    "/apps/{app}/versions/latest",
    response={200: SetLatestOut} | BULK_RESPONSES,
    auth=acting_with(PERM_OPERATE),
)
async def set_latest_version(request: HttpRequest, app: str, body: SetLatestIn) -> Any:
    """Make a registered version the latest (DBOS's `set_latest_application_version`):
    unpinned workflows then run on its executors. 404 for a version DBOS has no row of,
    409 for the latest one already."""
    application = await aapplication_for(request, app, PERM_OPERATE)
    try:
        return await version_set_latest(
            application=application,
            version_name=body.version_name,
            reason=body.reason,
            actor=request.user,
            request=request,
        )
    except VersionError as exc:
        raise HttpError(exc.status, str(exc)) from None
    except SlowQuery as exc:
        raise HttpError(SlowQuery.status, str(exc)) from None


# A workflow id may hold slashes ({path:...}): the workflow's own route would take the rest
# of any path under it, so it has a router of its own, added after every other router
# (stepchange/urls.py): Django tries the routes in the order they were added.
workflow_router = Router(tags=["workflows"])
workflow_router.get("/apps/{app}/workflows/{workflow:workflow_id}", response=WorkflowOut)(
    get_workflow
)


# Recovery without a connection: executors seen in the system database.


# Ids shown per executor and version; `pending` counts them all.
PENDING_IDS_SHOWN = 100


class PendingExecutorOut(Schema):
    executor_id: str
    application_version: str
    pending: int
    workflow_ids: list[str] = Field(
        description=f"The first {PENDING_IDS_SHOWN} of them, in id order; `pending` counts all."
    )


class DatabaseRecoveryIn(Body):
    executor_id: str
    reason: str = ""


class DatabaseRecoveryOut(Schema):
    executor_id: str
    path: str
    recovered: list[str]
    left: dict[str, str]
    poison_suspects: list[str]
    detail: str
    audit_id: int


@router.get(
    "/apps/{app}/database-recovery",
    response=list[PendingExecutorOut],
    auth=acting_with(PERM_INSPECT),
)
def database_recovery_preview(request: HttpRequest, app: str) -> list[Any]:
    """The executors holding PENDING workflows in the system database, with how many:
    what a recovery through the database would re-enqueue. Nothing is written."""
    from forks import native

    application = application_for(request, app, PERM_INSPECT)
    try:
        return [
            {
                **dataclasses.asdict(found),
                "workflow_ids": native.pending_workflow_ids(
                    application,
                    found.executor_id,
                    version=found.application_version,
                    limit=PENDING_IDS_SHOWN,
                ),
            }
            for found in native.pending_executors(application)
        ]
    except systemdb.SystemDatabaseError as exc:
        raise HttpError(503, str(exc)) from None


@router.post(
    "/apps/{app}/database-recovery",
    response={200: DatabaseRecoveryOut} | dict.fromkeys(ERROR_STATUSES, ErrorOut),
    auth=acting_with(PERM_OPERATE),
)
def database_recovery(request: HttpRequest, app: str, body: DatabaseRecoveryIn) -> Any:
    """Re-enqueue a gone executor's PENDING workflows in the system database, as DBOS's
    own recovery does, for an executor of their version to take up (audited)."""
    application = application_for(request, app, PERM_OPERATE)
    try:
        return database_recover(
            application=application,
            executor_id=body.executor_id,
            actor=request.user,
            request=request,
            reason=body.reason,
        )
    except ActionError as exc:
        raise HttpError(exc.status, str(exc)) from None
    except systemdb.SystemDatabaseError as exc:
        raise HttpError(503, str(exc)) from None
