"""The offline viewer's pages: open an export file, and browse its workflows read-only with
the workflow page's own views and templates (`workflows.views.workflow_answer`), reading
through `forks.offline.ExportSource`. No application is needed, none is reached."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone

from forks import exports
from forks.models import OpenedExport
from forks.offline import (
    KEEP_DAYS,
    KEEP_PER_USER,
    NO_FILE,
    ExportSource,
    kept_since,
    may_open,
    opened_export_create,
    opened_export_read,
    opened_export_view,
)
from stepchange.asyncdb import arender, db_async
from stepchange.converters import WorkflowUrls
from stepchange.http import HtmxHttpRequest
from workflows.views import workflow_answer

NOT_YOURS = "No opened export file {opened_id}: it was forgotten, or it is not yours."
# What each signature state says on the banner.
SIGNATURE_WORDS = {
    exports.SIGNED: "signed by this StepChange",
    exports.UNSIGNED: "unsigned",
    exports.BAD_SIGNATURE: "bad signature",
}


class OpenExportForm(forms.Form):
    file = forms.FileField(label="Export file", error_messages={"required": NO_FILE})

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        limit = exports.max_bytes()
        # Refused before it is read into memory.
        if upload.size > limit:
            raise forms.ValidationError(exports.TOO_LARGE.format(size=upload.size, limit=limit))
        return upload


@login_required
def export_open(request: HttpRequest) -> HttpResponse:
    """Open an export file (the form), and the caller's recently opened files."""
    posted = request.method == "POST"
    form = OpenExportForm(request.POST if posted else None, request.FILES if posted else None)
    if posted and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            opened = opened_export_create(
                user=request.user,  # type: ignore[arg-type]
                name=upload.name or "export",
                raw=upload.read(),
                request=request,
            )
        except exports.BadExportFile as exc:
            form.add_error("file", str(exc))
        else:
            return redirect(_workflow_url(opened.record.pk, opened.export.root_id))
    recent = OpenedExport.objects.filter(
        owner_id=request.user.pk, uploaded_at__gte=kept_since(timezone.now())
    )
    return render(
        request,
        "forks/export_open.html",
        {
            "form": form,
            "recent": recent.defer("data"),
            "keep_days": KEEP_DAYS,
            "keep_count": KEEP_PER_USER,
            "max_bytes": exports.max_bytes(),
        },
        status=400 if form.errors else 200,
    )


@login_required
def opened_export(request: HttpRequest, opened_id: int) -> HttpResponse:
    """A kept file opened again: its root workflow's page (audited)."""
    record = _opened(request, opened_id)
    opened = opened_export_view(record=record, user=request.user, request=request)  # type: ignore[arg-type]
    return redirect(_workflow_url(record.pk, opened.export.root_id))


def _workflow_url(opened_id: int, workflow_id: str) -> str:
    return WorkflowUrls("export-workflow", opened_id)(workflow_id)


def _opened(request: HttpRequest, opened_id: int) -> OpenedExport:
    """A kept file the caller may open (its owner, or an admin), still within its time."""
    record = OpenedExport.objects.filter(
        pk=opened_id, uploaded_at__gte=kept_since(timezone.now())
    ).first()
    if record is None or not may_open(request.user, record):
        raise Http404(NOT_YOURS.format(opened_id=opened_id))
    return record


def _opened_and_read(request: HttpRequest, opened_id: int) -> tuple[OpenedExport, Any]:
    record = _opened(request, opened_id)
    return record, opened_export_read(record)


@login_required
async def export_workflow(
    request: HtmxHttpRequest, opened_id: int, workflow_id: str
) -> HttpResponse:
    """A workflow of an opened file, read-only, as the workflow page shows it (or a part of
    that page, for htmx): no actions, no live refresh, links staying within the file."""
    record, export = await db_async(_opened_and_read)(request, opened_id)
    source = ExportSource(export)
    context = {
        "application": None,
        "offline": True,
        "opened": record,
        "export": export,
        "signature_words": SIGNATURE_WORDS[export.signature],
        "source": source.name,
        "notice": "",
        "workflow_url": WorkflowUrls("export-workflow", record.pk),
        "open_url": reverse("export-open"),
    }
    return await workflow_answer(
        request,
        source,
        workflow_id,
        context,
        page=_render_offline,
        not_found="forks/export_not_found.html",
    )


async def _render_offline(request: HtmxHttpRequest, context: dict[str, Any]) -> HttpResponse:
    # An export is a picture taken once: nothing in it moves, so nothing is followed live.
    context["active"] = False
    export: exports.ExportFile = context["export"]
    urls: WorkflowUrls = context["workflow_url"]
    context["in_file"] = [
        (element.status, urls(element.workflow_id)) for element in export.workflows
    ]
    return await arender(request, "forks/export_workflow.html", context)
