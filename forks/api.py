"""Edited forks in the JSON API (DESIGN.md "The JSON API"): make one (staged or run at
once), list them, and approve, run or discard a staged one."""

from datetime import datetime
from typing import Any, Literal

from django.http import Http404, HttpRequest
from ninja import Field, Router, Schema, Status

from conductor.registry import live_versions
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
from stepchange.roles import PERM_INSPECT, PERM_OPERATE
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
