"""Console pages for edited forks: the editor, the drafts, one draft, and the comparison
of a fork with its source."""

import difflib
import hashlib
import json
import uuid
from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST

from conductor.registry import live_versions
from forks import exports, starts, transfers
from forks.models import EditedFork, ImportUpload
from forks.plans import ForkError, ForkInvalidError, Source
from forks.services import (
    INTERNAL_QUEUE,
    Draft,
    edited_fork_approve,
    edited_fork_discard,
    edited_fork_refused,
    edited_fork_run,
    edited_fork_stage,
    fork_origin,
    source_diff,
)
from stepchange.access import application_for
from stepchange.roles import PERM_ADMINISTER, PERM_OPERATE
from workflows import serialization as codec
from workflows import systemdb
from workflows.actions import WORKFLOW_NOT_FOUND
from workflows.models import OperationOutput

INVALID_JSON = "Not valid JSON: {error}"
# Room for the import form's other fields and the multipart boundaries around its file.
FORM_OVERHEAD = 64 * 1024
WRITTEN = "Wrote workflow {new_id}: an executor runs it next."
# Errors shown beside an editor rather than at the top of the page.
EDITOR_FIELDS = ("input", "step_outputs")
STEP_PREFIX = "step_"


@login_required
def edit_fork(request: HttpRequest, app_name: str, workflow_id: str) -> HttpResponse:
    """GET: the editor, seeded from the stored values. POST: stage or run the fork."""
    application = application_for(request, app_name, PERM_OPERATE)
    data = request.POST if request.method == "POST" else request.GET
    try:
        source = fork_origin(application, workflow_id).source
    except ForkError as exc:
        if request.method == "POST":
            asked = Draft(
                source_workflow_id=workflow_id,
                start_step=_int(data.get("start_step"), default=0),
                reason=data.get("reason", ""),
            )
            edited_fork_refused(
                application=application, draft=asked, error=exc, user=request.user, request=request
            )
        context = {"application": application, "workflow_id": workflow_id, "problem": str(exc)}
        return render(request, "forks/edit.html", context, status=exc.status)
    start_step = _int(data.get("start_step"), default=_first_step(source))
    editors = _editors(source, start_step, data if request.method == "POST" else None)
    errors: list[dict[str, Any]] = []
    if request.method == "POST":
        draft, errors = _draft(data, workflow_id, start_step, editors)
        if not errors:
            try:
                return _submit(request, application, draft, run=data.get("submit") == "run")
            except ForkInvalidError as exc:
                errors = exc.errors
            except ForkError as exc:
                errors = [{"field": "__all__", "message": str(exc)}]
    _attach(errors, editors)
    versions = live_versions(application)
    context = {
        "application": application,
        "workflow_id": workflow_id,
        "source": source,
        "start_step": start_step,
        "steps": [_step_summary(step, start_step) for step in source.steps],
        "input_editor": editors["input"],
        "step_editors": [editors[key] for key in editors if key != "input"],
        "errors": [error for error in errors if error.get("field") not in EDITOR_FIELDS],
        "values": data,
        "new_id": data.get("new_workflow_id") or str(uuid.uuid4()),
        "versions": versions,
        "source_version": source.status.get("application_version") or "",
        "internal_queue": INTERNAL_QUEUE,
        "formats": codec.WRITABLE_SERIALIZATIONS,
        "source_format": source.serialization or "",
        "approval_required": application.fork_approval_required,
    }
    return render(request, "forks/edit.html", context, status=400 if errors else 200)


def _first_step(source: Source) -> int:
    ids = [int(step["function_id"]) for step in source.steps]
    return min(ids) if ids else 1


def _int(value: Any, *, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _seed(stored: str | None, serialization: str | None, kind: Any) -> dict[str, Any]:
    """How a stored value opens in the editor: as JSON when it can be edited in place,
    else shown raw, to be replaced only."""
    decoded = codec.decode(stored, serialization, kind=kind)
    editable = codec.editable(decoded)
    return {
        "editable": editable,
        "format": decoded.format,
        "notes": decoded.notes,
        "raw": decoded.raw or stored or "",
        "original": json.dumps(decoded.value, indent=2, ensure_ascii=False) if editable else "",
    }


def _editors(source: Source, start_step: int, posted: QueryDict | None) -> dict[str, Any]:
    """One editor for the input and one per recorded step before the restart step."""
    editors: dict[str, Any] = {
        "input": {
            "key": "input",
            "label": "Workflow input",
            **_seed(source.inputs, source.serialization, "inputs"),
        }
    }
    for step in source.steps:
        function_id = int(step["function_id"])
        if function_id >= start_step:
            continue
        seeded = _seed(step.get("output"), step.get("serialization"), "value")
        failed = step.get("error") is not None
        if failed:
            # A failed step has no output to edit: it can be given one.
            seeded |= {"editable": False, "original": ""}
        editors[f"{STEP_PREFIX}{function_id}"] = {
            "key": f"{STEP_PREFIX}{function_id}",
            "label": f"Step {function_id}: {step.get('function_name')}",
            "function_id": function_id,
            "failed": failed,
            "error": codec.decode(step.get("error"), step.get("serialization"), kind="error").value
            if failed
            else None,
            **seeded,
        }
    for key, editor in editors.items():
        editor["text"] = posted.get(key, editor["original"]) if posted else editor["original"]
        editor["replace"] = bool(posted and posted.get(f"{key}_replace"))
        editor["problems"] = []
    return editors


def _draft(
    data: QueryDict, workflow_id: str, start_step: int, editors: dict[str, Any]
) -> tuple[Draft, list[dict[str, Any]]]:
    """The draft the editor's form asks for; a value counts as edited when its JSON differs
    from the stored one (or it replaces one that could not be edited)."""
    errors: list[dict[str, Any]] = []
    input_value: Any = None
    input_edited = False
    step_outputs: dict[str, Any] = {}
    for key, editor in editors.items():
        if not editor["editable"] and not editor["replace"]:
            continue
        step = editor.get("function_id")
        field_name = "input" if key == "input" else "step_outputs"
        try:
            value = json.loads(editor["text"])
        except json.JSONDecodeError as exc:
            error: dict[str, Any] = {"field": field_name, "message": INVALID_JSON.format(error=exc)}
            if step is not None:
                error["step"] = step
            errors.append(error)
            continue
        unchanged = editor["editable"] and value == json.loads(editor["original"])
        if unchanged and not editor["replace"]:
            continue
        if key == "input":
            input_value, input_edited = value, True
        else:
            step_outputs[str(step)] = value
    draft = Draft(
        source_workflow_id=workflow_id,
        start_step=start_step,
        input=input_value,
        input_edited=input_edited,
        step_outputs=step_outputs,
        new_workflow_id=data.get("new_workflow_id") or None,
        application_version=data.get("application_version") or None,
        queue_name=data.get("queue_name") or None,
        serialization=data.get("serialization") or None,
        reason=data.get("reason", ""),
    )
    return draft, errors


def _attach(errors: list[dict[str, Any]], editors: dict[str, Any]) -> None:
    """Put each value's errors beside its editor."""
    for error in errors:
        if error.get("field") == "input":
            editors["input"]["problems"].append(error["message"])
        elif error.get("field") == "step_outputs" and error.get("step") is not None:
            editor = editors.get(f"{STEP_PREFIX}{error['step']}")
            if editor is not None:
                editor["problems"].append(error["message"])
                continue
            error["field"] = f"step {error['step']}"
        if error.get("field") == "step_outputs":
            error["field"] = "steps"


def _submit(request: HttpRequest, application: Any, draft: Draft, *, run: bool) -> HttpResponse:
    versions = live_versions(application)
    fork, plan = edited_fork_stage(
        application=application,
        draft=draft,
        live_versions=versions,
        user=request.user,
        request=request,
    )
    for warning in plan.warnings:
        messages.warning(request, warning)
    if run and not application.fork_approval_required:
        fork, _ = edited_fork_run(
            fork=fork, live_versions=versions, user=request.user, request=request
        )
        messages.success(request, WRITTEN.format(new_id=fork.new_workflow_id))
    else:
        messages.success(request, f"Staged edited fork {fork.pk} for review.")
    return redirect("edited-fork", application.name, fork.pk)


def _step_summary(step: dict[str, Any], start_step: int) -> dict[str, Any]:
    function_id = int(step["function_id"])
    started, completed = step.get("started_at_epoch_ms"), step.get("completed_at_epoch_ms")
    return {
        "function_id": function_id,
        "function_name": step.get("function_name"),
        "failed": step.get("error") is not None,
        "took_ms": completed - started if started is not None and completed is not None else None,
        "copied": function_id < start_step,
    }


@login_required
def edited_forks(request: HttpRequest, app_name: str) -> HttpResponse:
    application = application_for(request, app_name)
    forks = EditedFork.objects.filter(application=application)[:100]
    return render(request, "forks/list.html", {"application": application, "forks": forks})


@login_required
def edited_fork(request: HttpRequest, app_name: str, fork_id: int) -> HttpResponse:
    application = application_for(request, app_name)
    fork = get_object_or_404(EditedFork, application=application, pk=fork_id)
    try:
        diff = source_diff(fork)
    except ForkError as exc:
        diff, problem = {}, str(exc)
    else:
        problem = ""
    user = request.user
    may_act = user.has_perm(PERM_OPERATE)
    context = {
        "application": application,
        "fork": fork,
        "problem": problem,
        "input_diff": _lines(diff.get("input")),
        "step_diffs": [
            {"function_id": key, **value, "lines": _lines(value)}
            for key, value in diff.get("steps", {}).items()
        ],
        "may_act": may_act and fork.open,
        "may_approve": may_act
        and fork.status == EditedFork.Status.STAGED
        and fork.created_by_name != user.get_username(),
        "may_run": may_act
        and (fork.status == EditedFork.Status.APPROVED or not application.fork_approval_required),
        "new_workflow": _workflow_status(application, fork.new_workflow_id)
        if fork.status == EditedFork.Status.DONE
        else None,
    }
    return render(request, "forks/detail.html", context)


def _lines(change: dict[str, Any] | None) -> list[tuple[str, str]]:
    """A line diff of a value's before and after, as (kind, text) pairs."""
    if not change:
        return []
    before = json.dumps(change.get("before"), indent=2, ensure_ascii=False, default=str)
    after = json.dumps(change.get("after"), indent=2, ensure_ascii=False, default=str)
    out = []
    for line in difflib.ndiff(before.splitlines(), after.splitlines()):
        if line.startswith("?"):
            continue
        kind = {"+": "added", "-": "removed"}.get(line[0], "same")
        out.append((kind, line[2:]))
    return out


def _workflow_status(application: Any, workflow_id: str) -> str | None:
    try:
        row = systemdb.workflows(application).filter(workflow_uuid=workflow_id).first()
    except systemdb.SystemDatabaseError:
        return None
    return row.status if row else None


@login_required
@require_POST
def edited_fork_act(request: HttpRequest, app_name: str, fork_id: int, verb: str) -> HttpResponse:
    application = application_for(request, app_name, PERM_OPERATE)
    fork = get_object_or_404(EditedFork, application=application, pk=fork_id)
    try:
        if verb == "approve":
            edited_fork_approve(fork=fork, user=request.user, request=request)
            messages.success(request, f"Approved edited fork {fork.pk}.")
        elif verb == "run":
            versions = live_versions(application)
            edited_fork_run(fork=fork, live_versions=versions, user=request.user, request=request)
            messages.success(request, WRITTEN.format(new_id=fork.new_workflow_id))
        elif verb == "discard":
            edited_fork_discard(fork=fork, user=request.user, request=request)
            messages.success(request, f"Discarded edited fork {fork.pk}.")
        else:
            return HttpResponse(status=404)
    except ForkError as exc:
        messages.error(request, str(exc))
    return redirect("edited-fork", app_name, fork.pk)


@login_required
def compare(request: HttpRequest, app_name: str, fork_id: int) -> HttpResponse:
    """The source and its fork side by side, step by step."""
    application = application_for(request, app_name)
    fork = get_object_or_404(EditedFork, application=application, pk=fork_id)
    rows = _compare_rows(application, fork)
    return render(request, "forks/compare.html", {"application": application, "fork": fork, **rows})


COMPARE_LIMIT = 1000


def _compare_rows(application: Any, fork: EditedFork) -> dict[str, Any]:
    try:
        workflows = {
            row.workflow_uuid: row
            for row in systemdb.workflows(application)
            .with_payloads(payload_tables=systemdb.schema_of(application).has_payload_tables)
            .filter(workflow_uuid__in=[fork.source_workflow_id, fork.new_workflow_id])
        }
        steps = {
            workflow_id: {
                step.function_id: step
                for step in systemdb.steps(application).of(workflow_id)[:COMPARE_LIMIT]
            }
            for workflow_id in (fork.source_workflow_id, fork.new_workflow_id)
        }
    except systemdb.SystemDatabaseError as exc:
        return {"problem": str(exc)}
    source_steps, fork_steps = steps[fork.source_workflow_id], steps[fork.new_workflow_id]
    edited = set(fork.edited_steps())
    lines = []
    for function_id in sorted(set(source_steps) | set(fork_steps)):
        before, after = source_steps.get(function_id), fork_steps.get(function_id)
        if function_id in edited:
            how = "edited"
        elif function_id < fork.start_step:
            how = "copied"
        else:
            how = "re-run"
        lines.append(
            {"function_id": function_id, "how": how, "source": _cell(before), "fork": _cell(after)}
        )
    return {
        "lines": lines,
        "source_workflow": _workflow_cell(workflows.get(fork.source_workflow_id)),
        "fork_workflow": _workflow_cell(workflows.get(fork.new_workflow_id)),
    }


def _cell(step: OperationOutput | None) -> dict[str, Any] | None:
    if step is None:
        return None
    failed = step.error is not None
    if failed:
        value = codec.decode(step.error, step.serialization, kind="error")
    else:
        value = codec.decode(step.output, step.serialization)
    return {
        "name": step.function_name,
        "failed": failed,
        "value": value.value,
        "format": value.format,
        "took_ms": step.duration_ms,
    }


def _workflow_cell(row: Any) -> dict[str, Any] | None:
    if row is None:
        return None
    serialization = row.serialization
    took = None
    if row.completed_at_ms is not None and row.created_at_ms is not None:
        took = row.completed_at_ms - row.created_at_ms
    return {
        "workflow_id": row.workflow_uuid,
        "status": row.status,
        "input": codec.decode(row.payload("input"), serialization, kind="inputs").value,
        "output": codec.decode(row.payload("output"), serialization).value,
        "error": codec.decode(row.payload("error"), serialization, kind="error").value
        if row.payload("error")
        else None,
        "took_ms": took,
    }


# Exporting and importing whole workflows (forks.transfers).


@login_required
def export_workflow(request: HttpRequest, app_name: str, workflow_id: str) -> HttpResponse:
    """The signed export file of a workflow and its children, as a download."""
    application = application_for(request, app_name, PERM_OPERATE)
    try:
        exported = transfers.workflow_export(
            application=application, workflow_id=workflow_id, user=request.user, request=request
        )
    except ForkError as exc:
        messages.error(request, str(exc))
        return redirect("workflow-detail", application.name, workflow_id)
    response = HttpResponse(exported.content, content_type=exports.CONTENT_TYPE)
    response["Content-Disposition"] = f'attachment; filename="{exported.filename}"'
    return response


@csrf_exempt
def import_workflow(request: HttpRequest, app_name: str) -> HttpResponse:
    """The size is checked before the form is parsed (and so before the CSRF check, which
    parses it): an oversized upload is refused without being read."""
    if request.method == "POST" and _content_length(request) > _upload_limit():
        application = application_for(request, app_name, PERM_ADMINISTER)
        problem = exports.TOO_LARGE.format(size=_content_length(request), limit=exports.max_bytes())
        transfers.refused_upload(application=application, problem=problem, request=request)
        context = {"application": application, "problems": [problem]}
        return render(request, "forks/import.html", context, status=413)
    return _import_workflow(request, app_name)


@csrf_protect
@login_required
def _import_workflow(request: HttpRequest, app_name: str) -> HttpResponse:
    """GET: the upload form. POST with a file: the preview. POST with `upload`: the import."""
    application = application_for(request, app_name, PERM_ADMINISTER)
    context: dict[str, Any] = {"application": application, "copy": True, "resume": True}
    if request.method != "POST":
        return render(request, "forks/import.html", context)
    copy = request.POST.get("ids", "copy") != "keep"
    resume = request.POST.get("resume") == "on"
    context |= {"copy": copy, "resume": resume}
    upload = _held_upload(request, application)
    if upload is None:
        context["problems"] = [NO_FILE]
        return render(request, "forks/import.html", context, status=400)
    raw = bytes(upload.content)
    if request.POST.get("confirm"):
        try:
            plan = transfers.workflow_import(
                application=application,
                raw=raw,
                copy=copy,
                resume=resume,
                user=request.user,
                request=request,
            )
        except transfers.TransferError as exc:
            context |= {"problems": exc.problems, "upload": upload}
            return render(request, "forks/import.html", context, status=exc.status)
        upload.delete()
        messages.success(request, IMPORTED.format(count=len(plan.new_ids)))
        return redirect("workflow-detail", application.name, plan.new_ids[0])
    try:
        plan = transfers.import_preview(application, raw, copy=copy, resume=resume)
    except transfers.TransferError as exc:
        upload.delete()
        transfers.refused_upload(application=application, problem=str(exc), request=request)
        context["problems"] = exc.problems
        return render(request, "forks/import.html", context, status=exc.status)
    if not plan.ok:
        refusal = " ".join(plan.problems)
        transfers.refused_upload(application=application, problem=refusal, request=request)
    context |= {"plan": plan, "upload": upload, "problems": plan.problems, "rows": _rows(plan)}
    return render(request, "forks/import.html", context, status=200 if plan.ok else 400)


NO_FILE = "Choose an export file to upload."
IMPORTED = "Imported {count} workflow(s)."


def _upload_limit() -> int:
    return exports.max_bytes() + FORM_OVERHEAD


def _content_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def _held_upload(request: HttpRequest, application: Any) -> ImportUpload | None:
    """The file just uploaded (kept for the confirmation), or the one the preview named."""
    uploaded = request.FILES.get("file")
    if uploaded is not None:
        raw = uploaded.read(exports.max_bytes() + 1)
        stale = timezone.now() - timedelta(days=1)
        ImportUpload.objects.filter(uploaded_at__lt=stale).delete()
        return ImportUpload.objects.create(
            application=application,
            sha256=hashlib.sha256(raw).hexdigest(),
            content=raw,
            uploaded_by_name=request.user.get_username(),
        )
    held = _int(request.POST.get("upload"), default=0)
    return ImportUpload.objects.filter(
        pk=held, application=application, uploaded_by_name=request.user.get_username()
    ).first()


def _rows(plan: transfers.ImportPlan) -> list[dict[str, Any]]:
    existing = set(plan.existing)
    return [
        {
            "workflow_id": element.workflow_id,
            "name": element.status.get("name") or "",
            "status": element.status.get("status") or "",
            "steps": len(element.steps),
            "new_id": plan.ids.get(element.workflow_id, element.workflow_id),
            "exists": element.workflow_id in existing and not plan.copy,
        }
        for element in plan.file.workflows
    ]


# Starting a workflow (forks.starts).

START_FIELDS = ("args", "kwargs")


@login_required
def start_workflow(request: HttpRequest, app_name: str) -> HttpResponse:
    """GET: the start form, prefilled from an earlier run (`?like=<id>`). POST: start it,
    then show the new workflow."""
    application = application_for(request, app_name, PERM_OPERATE)
    data = request.POST if request.method == "POST" else request.GET
    try:
        starts.start_database(application)
    except ForkError as exc:
        if request.method == "POST":
            # Tried and refused: audited like every other refusal (workflow_start does it).
            _start_or_errors(request, application, _start_request(data, {}))
        context = {"application": application, "problem": str(exc)}
        return render(request, "forks/start.html", context, status=exc.status)
    errors: list[dict[str, Any]] = []
    values: dict[str, Any] = {key: data.get(key, "") for key in _START_INPUTS}
    if request.method == "POST":
        parsed, errors = _start_input(data)
        if not errors:
            plan, errors = _start_or_errors(request, application, _start_request(data, parsed))
            if plan is not None:
                messages.success(request, STARTED.format(workflow_id=plan.workflow_id))
                for warning in plan.warnings:
                    messages.warning(request, warning)
                return redirect("workflow-detail", application.name, plan.workflow_id)
    if request.method == "GET" and data.get("like"):
        values |= _like_values(application, data["like"], errors)
    elif data.get("like"):
        # Asked again after a refusal: what the operator typed stays, the format is named.
        known = _like_values(application, data["like"], [])
        values |= {key: known.get(key) for key in ("like_format", "like_undecodable")}
    versions = live_versions(application)
    if not values.get("application_version"):
        values["application_version"] = starts.latest_version(application, versions) or ""
    context = {
        "application": application,
        "values": values,
        "errors": errors,
        "field_errors": {error["field"] for error in errors},
        "doubts": [error for error in errors if error.get("confirm")],
        "names": starts.names_startable(application),
        "queues": starts.queues_seen(application),
        "versions": versions,
        "formats": codec.WRITABLE_SERIALIZATIONS,
        "internal_queue": INTERNAL_QUEUE,
        "max_priority": starts.MAX_PRIORITY,
    }
    return render(request, "forks/start.html", context, status=400 if errors else 200)


STARTED = "Started workflow {workflow_id}: an executor of its version runs it next."
_START_INPUTS = (
    "workflow_name",
    "class_name",
    "config_name",
    "like",
    "args",
    "kwargs",
    "queue_name",
    "workflow_id",
    "application_version",
    "priority",
    "deduplication_id",
    "serialization",
    "reason",
)


def _start_input(data: QueryDict) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The arguments and keyword arguments as JSON, as the SDK takes them."""
    parsed: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    for key, default, kind, problem in (
        ("args", [], list, starts.ARGS_NOT_LIST),
        ("kwargs", {}, dict, starts.KWARGS_NOT_OBJECT),
    ):
        text = (data.get(key) or "").strip()
        try:
            value = json.loads(text) if text else default
        except json.JSONDecodeError as exc:
            errors.append({"field": key, "message": INVALID_JSON.format(error=exc)})
            continue
        if not isinstance(value, kind):
            errors.append({"field": key, "message": problem})
            continue
        parsed[key] = value
    return parsed, errors


def _start_request(data: QueryDict, parsed: dict[str, Any]) -> starts.StartRequest:
    def given(key: str) -> str | None:
        return data.get(key) or None

    return starts.StartRequest(
        workflow_name=data.get("workflow_name", ""),
        input={"args": parsed.get("args", []), "kwargs": parsed.get("kwargs", {})},
        class_name=given("class_name"),
        config_name=given("config_name"),
        like=given("like"),
        queue_name=given("queue_name"),
        workflow_id=given("workflow_id"),
        application_version=given("application_version"),
        priority=given("priority"),
        deduplication_id=given("deduplication_id"),
        serialization=given("serialization"),
        accept_warnings=bool(data.get("accept_warnings")),
        reason=data.get("reason", ""),
    )


def _start_or_errors(
    request: HttpRequest, application: Any, asked: starts.StartRequest
) -> tuple[starts.StartPlan | None, list[dict[str, Any]]]:
    try:
        plan = starts.workflow_start(
            application=application,
            asked=asked,
            live_versions=live_versions(application),
            user=request.user,
            request=request,
        )
    except ForkInvalidError as exc:
        return None, exc.errors
    except ForkError as exc:
        return None, [{"field": "__all__", "message": str(exc)}]
    return plan, []


def _like_values(application: Any, like: str, errors: list[dict[str, Any]]) -> dict[str, Any]:
    """What "start like this one" fills in: the earlier run's name, class, config, input
    (as the SDK takes it: an args list, plus kwargs for Python), queue and version."""
    found = systemdb.workflows(application).filter(workflow_uuid=like).first()
    if found is None or not found.name:
        errors.append(
            {
                "field": "like",
                "message": WORKFLOW_NOT_FOUND.format(workflow_id=like, app=application.name),
            }
        )
        return {"like": ""}
    [earlier] = starts.earlier_runs(
        application, systemdb.schema_of(application), found.name, like=like
    )[:1]
    value: Any = earlier.input.value if earlier.input.ok else None
    args: Any = []
    kwargs: Any = {}
    if isinstance(value, dict):
        args, kwargs = value.get("args") or [], value.get("kwargs") or {}
    queue = found.queue_name if found.queue_name else ""
    return {
        "like": like,
        "workflow_name": found.name,
        "class_name": found.class_name or "",
        "config_name": found.config_name or "",
        "args": json.dumps(args, indent=2, ensure_ascii=False),
        "kwargs": json.dumps(kwargs, indent=2, ensure_ascii=False) if kwargs else "",
        "queue_name": queue,
        "application_version": found.application_version or "",
        "like_format": found.serialization or earlier.input.format or "",
        "like_undecodable": not earlier.input.ok,
    }
