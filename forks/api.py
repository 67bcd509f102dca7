"""Edited forks in the JSON API (DESIGN.md "The JSON API"): make one (staged or run at
once), list them, and approve, run or discard a staged one."""

from datetime import datetime
from typing import Any, Literal

from django.http import Http404, HttpRequest, HttpResponse
from ninja import Field, Router, Schema, Status

from conductor.registry import live_versions
from forks import exports, transfers
from forks.models import EditedFork
from forks.plans import ForkError, ForkInvalidError
from forks.services import (
    NEEDS_APPROVAL,
    Draft,
    edited_fork_approve,
    edited_fork_discard,
    edited_fork_run,
    edited_fork_stage,
)
from stepchange.access import application_for
from stepchange.api.base import Body, Integer, acting_with
from stepchange.roles import PERM_ADMINISTER, PERM_INSPECT, PERM_OPERATE
from workflows.actions import SAFE_ID

router = Router(tags=["edited forks"])

FORK_NOT_FOUND = "No edited fork {fork_id} in {app}."
QUEUE_HELP = "Leave out for DBOS's internal queue."
# Declared, and checked by the planner with every other field, so one 400 names them all.
NOT_BLANK: dict[str, Any] = {"pattern": r"\S"}


class EditedForkIn(Body):
    start_step: Integer = Field(
        ge=0, description="The function_id of the first step that runs again."
    )
    input: Any = Field(
        default=None,
        description='New workflow input, {"args": [...], "kwargs": {...}}; leave out to keep it.',
    )
    step_outputs: dict[str, Any] = Field(
        default_factory=dict,
        description='{"<function_id>": value} for steps before start_step; clears their error.',
    )
    new_workflow_id: str | None = Field(default=None, pattern=SAFE_ID.pattern)
    application_version: str | None = None
    queue_name: str | None = Field(
        default=None, description=QUEUE_HELP, json_schema_extra=NOT_BLANK
    )
    serialization: Literal["portable_json", "py_pickle", "js_superjson"] | None = Field(
        default=None,
        description="portable_json, py_pickle or js_superjson; default: the source's own "
        "where it can be written, else portable_json.",
    )
    reason: str = Field(max_length=2000, description="Why.", json_schema_extra=NOT_BLANK)
    run: bool = Field(default=False, description="false: stage it for review.")


class EditedForkOut(Schema):
    id: int
    status: str
    source_workflow_id: str
    start_step: int
    new_workflow_id: str
    application_version: str
    queue_name: str
    serialization: str
    input_edited: bool
    edited_steps: list[int]
    reason: str
    warnings: list[str]
    error: str
    created_by: str
    created_at: datetime
    approved_by: str
    approved_at: datetime | None
    run_by: str
    run_at: datetime | None


class ForkErrorOut(Schema):
    detail: Any


RESPONSES: dict[int, Any] = dict.fromkeys((400, 401, 403, 404, 409, 503), ForkErrorOut)
ANSWERS: dict[int, Any] = {200: EditedForkOut} | RESPONSES


def _out(fork: EditedFork) -> dict[str, Any]:
    fields = ["id", "status", "source_workflow_id", "start_step", "new_workflow_id"]
    fields += ["application_version", "queue_name", "serialization", "input_edited", "reason"]
    fields += ["warnings", "error", "created_at", "approved_at", "run_at"]
    return {name: getattr(fork, name) for name in fields} | {
        "edited_steps": fork.edited_steps(),
        "created_by": fork.created_by_name,
        "approved_by": fork.approved_by_name,
        "run_by": fork.run_by_name,
    }


def fork_failed(request: HttpRequest, exc: ForkError) -> tuple[Any, int]:
    """The API's answer to a ForkError (registered in stepchange/urls.py). A 400 lists every
    wrong field (and step): {"detail": [{"field", "step"?, "message"}]}."""
    detail: Any = exc.errors if isinstance(exc, ForkInvalidError) else str(exc)
    return detail, exc.status


@router.post(
    "/apps/{app}/workflows/{workflow:workflow_id}/edited-forks",
    response={201: EditedForkOut} | RESPONSES,
    auth=acting_with(PERM_OPERATE),
)
def create_edited_fork(request: HttpRequest, app: str, workflow_id: str, body: EditedForkIn) -> Any:
    """Stage (`run: false`) or run an edited fork of a workflow. Every value is checked
    first; a 400 lists each wrong field (and step). Nothing reaches the system database
    unless every value is valid and the whole transaction commits."""
    application = application_for(request, app, PERM_OPERATE)
    draft = Draft(
        source_workflow_id=workflow_id,
        start_step=body.start_step,
        input=body.input,
        input_edited="input" in body.model_fields_set,
        step_outputs=body.step_outputs,
        new_workflow_id=body.new_workflow_id,
        application_version=body.application_version,
        queue_name=body.queue_name,
        serialization=body.serialization,
        reason=body.reason,
    )
    versions = live_versions(application)
    fork, _ = edited_fork_stage(
        application=application,
        draft=draft,
        live_versions=versions,
        user=request.user,
        request=request,
    )
    if body.run and application.fork_approval_required:
        # Kept for review rather than refused: the answer says what it waits for.
        fork.warnings = [*fork.warnings, NEEDS_APPROVAL.format(app=application.name)]
        fork.save(update_fields=["warnings"])
    elif body.run:
        fork, _ = edited_fork_run(
            fork=fork, live_versions=versions, user=request.user, request=request
        )
    return Status(201, _out(fork))


@router.get("/apps/{app}/edited-forks", response=list[EditedForkOut])
def list_edited_forks(request: HttpRequest, app: str, status: str | None = None) -> Any:
    """The application's edited forks, newest first (at most 100); `status` filters."""
    forks = EditedFork.objects.filter(application=application_for(request, app))
    if status:
        forks = forks.filter(status=status)
    return [_out(fork) for fork in forks[:100]]


@router.get("/apps/{app}/edited-forks/{fork_id}", response=EditedForkOut)
def get_edited_fork(request: HttpRequest, app: str, fork_id: int) -> Any:
    return _out(_fork_for(request, app, fork_id))


@router.post(
    "/apps/{app}/edited-forks/{fork_id}/approve",
    response={200: EditedForkOut} | RESPONSES,
    auth=acting_with(PERM_OPERATE),
)
def approve_edited_fork(request: HttpRequest, app: str, fork_id: int) -> Any:
    """Approve a staged fork: a second operator, not the one who staged it."""
    fork = _fork_for(request, app, fork_id, PERM_OPERATE)
    return _out(edited_fork_approve(fork=fork, user=request.user, request=request))


@router.post(
    "/apps/{app}/edited-forks/{fork_id}/run", response=ANSWERS, auth=acting_with(PERM_OPERATE)
)
def run_edited_fork(request: HttpRequest, app: str, fork_id: int) -> Any:
    """Write a staged (or approved) fork into the system database, checked again first."""
    fork = _fork_for(request, app, fork_id, PERM_OPERATE)
    fork, _ = edited_fork_run(
        fork=fork,
        live_versions=live_versions(fork.application),
        user=request.user,
        request=request,
    )
    return _out(fork)


@router.post(
    "/apps/{app}/edited-forks/{fork_id}/discard",
    response={200: EditedForkOut} | RESPONSES,
    auth=acting_with(PERM_OPERATE),
)
def discard_edited_fork(request: HttpRequest, app: str, fork_id: int) -> Any:
    fork = _fork_for(request, app, fork_id, PERM_OPERATE)
    return _out(edited_fork_discard(fork=fork, user=request.user, request=request))


def _fork_for(
    request: HttpRequest, app: str, fork_id: int, permission: str = PERM_INSPECT
) -> EditedFork:
    application = application_for(request, app, permission)
    fork = (
        EditedFork.objects.select_related("application")
        .filter(application=application, pk=fork_id)
        .first()
    )
    if fork is None:
        raise Http404(FORK_NOT_FOUND.format(fork_id=fork_id, app=app))
    return fork


# Exporting and importing whole workflows (forks.transfers).

transfer_router = Router(tags=["export and import"])


class ImportOut(Schema):
    preview: bool
    sha256: str
    source_application: str
    source_workflow_id: str
    language: str
    schema_version: int | None
    exported_by: str
    exported_at: datetime
    signature: str
    route: str
    ids: dict[str, str]
    workflow_ids: list[str]
    existing: list[str]
    warnings: list[str]
    problems: list[str]


@transfer_router.get(
    "/apps/{app}/workflows/{workflow:workflow_id}/export",
    response={200: None} | RESPONSES,
    auth=acting_with(PERM_OPERATE),
    openapi_extra={
        "responses": {200: {"description": "The signed export file (JSON)", "content": {}}}
    },
)
def export_workflow(request: HttpRequest, app: str, workflow_id: str) -> Any:
    """The signed export file of a workflow and its descendants (operators: exporting reads
    every stored value in full). Audited with the file's sha256."""
    application = application_for(request, app, PERM_OPERATE)
    exported = transfers.workflow_export(
        application=application, workflow_id=workflow_id, user=request.user, request=request
    )
    response = HttpResponse(exported.content, content_type=exports.CONTENT_TYPE)
    response["Content-Disposition"] = f'attachment; filename="{exported.filename}"'
    return response


@transfer_router.post(
    "/apps/{app}/imports",
    response={200: ImportOut, 201: ImportOut} | dict.fromkeys((413,), ForkErrorOut) | RESPONSES,
    auth=acting_with(PERM_ADMINISTER),
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "An export file as StepChange wrote it (JSON, or gzip of it).",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
def import_workflows(
    request: HttpRequest,
    app: str,
    new_ids: bool = False,
    resume: bool = False,
    preview: bool = False,
) -> Any:
    """Import an export file, sent as the request body (admins). Only files this StepChange
    signed; every value checked. `new_ids`: a copy with new ids; `resume`: enqueue what
    did not finish; `preview`: check and describe, write nothing. 413 above
    EXPORT_FILE_MAX_BYTES, 409 when an id exists (keeping ids), 400 naming every other
    reason; nothing written then."""
    application = application_for(request, app, PERM_ADMINISTER)
    limit = exports.max_bytes()
    length = _length(request)
    if length > limit:
        problem = exports.TOO_LARGE.format(size=length, limit=limit)
        transfers.refused_upload(application=application, problem=problem, request=request)
        raise transfers.FileTooLargeError(problem)
    raw = request.read(limit + 1)
    if len(raw) > limit:
        problem = exports.TOO_LARGE.format(size=len(raw), limit=limit)
        transfers.refused_upload(application=application, problem=problem, request=request)
        raise transfers.FileTooLargeError(problem)
    if preview:
        try:
            plan = transfers.import_preview(application, raw, copy=new_ids, resume=resume)
        except transfers.TransferError as exc:
            transfers.refused_upload(application=application, problem=str(exc), request=request)
            raise
        return Status(200, _import_out(plan, preview=True))
    plan = transfers.workflow_import(
        application=application,
        raw=raw,
        copy=new_ids,
        resume=resume,
        user=request.user,
        request=request,
    )
    return Status(201, _import_out(plan, preview=False))


def _length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def _import_out(plan: transfers.ImportPlan, *, preview: bool) -> dict[str, Any]:
    file = plan.file
    return {
        "preview": preview,
        "sha256": file.sha256,
        "source_application": file.application,
        "source_workflow_id": file.root_id,
        "language": file.language,
        "schema_version": file.schema_version,
        "exported_by": file.exported_by,
        "exported_at": file.exported_at,
        "signature": file.signature,
        "route": plan.route,
        "ids": {e.workflow_id: plan.ids.get(e.workflow_id, e.workflow_id) for e in file.workflows},
        "workflow_ids": plan.new_ids,
        "existing": plan.existing,
        "warnings": plan.warnings,
        "problems": plan.problems,
    }
