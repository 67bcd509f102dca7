"""Console pages of the executor-facing side: executors, their connections, recovery and
poison notices, the request log, and retention."""

import functools
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import InvalidPage, Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from conductor import recovery, relay, retention
from conductor.models import (
    DATABASE_PATH,
    DatabaseExecutor,
    Executor,
    PoisonWorkflow,
    RecoveryAttempt,
    RequestLog,
)
from conductor.services import poison_cancel, poison_dismiss
from forks import native
from stepchange.access import aapplication_for, application_for
from stepchange.asyncdb import arender, db_async
from stepchange.http import HtmxHttpRequest
from stepchange.models import Application, AuditRecord
from stepchange.paging import Page, newest_first, query_without_cursor
from stepchange.roles import PERM_ADMINISTER, PERM_OPERATE
from workflows import systemdb
from workflows.actions import NOTHING_PENDING, STILL_CONNECTED, ActionError, database_recover

REQUESTS_PAGE = 50
# Connected executors shown per page: a fleet of thousands is paged, not rendered at once.
EXECUTORS_PAGE = 50
BAD_PAGE = "No such page of connected executors: {page}."
# An executor recovered through the system database stays listed (with nothing pending)
# this long, so that what its probe found is still there to read after the recovery.
RECENTLY_RECOVERED = timedelta(hours=1)
# Executors seen in PENDING workflows shown at most.
SEEN_EXECUTORS = 200


@login_required
def executors(request: HtmxHttpRequest, app_name: str) -> HttpResponse:
    application = application_for(request, app_name)
    live = Executor.objects.live().filter(application=application).order_by("-connected_at", "pk")
    try:
        page = Paginator(live, EXECUTORS_PAGE).page(request.GET.get("page", 1))
    except InvalidPage:
        return HttpResponse(BAD_PAGE.format(page=request.GET["page"][:20]), status=400)
    gone = (
        Executor.objects.filter(application=application)
        .exclude(pk__in=Executor.objects.live().values("pk"))
        .order_by("-connected_at")[:50]
    )
    context = {
        "application": application,
        "live": page,
        "gone": gone,
        "attempts": RecoveryAttempt.objects.filter(application=application)[:20],
        "poison": PoisonWorkflow.objects.filter(
            application=application,
            resolved_at__isnull=True,
            executors_killed__gte=recovery.POISON_THRESHOLD,
        ),
        "can_operate": request.user.has_perm(PERM_OPERATE),
        "system_database": systemdb.status_of(application),
    }
    if application.system_database_url and not request.htmx:
        # Not in the panels an htmx refresh redraws: read for a whole page only.
        context["database_pending"] = _database_pending(application)
    template = "conductor/executors.html"
    if request.htmx:
        template += "#executor-panels"
    return render(request, template, context)


@dataclass(frozen=True)
class SeenExecutor:
    """An executor seen in PENDING workflows of the system database and not connected:
    its version(s), how many it left, and what its liveness probe last found (if any)."""

    executor_id: str
    versions: list[str]
    pending: int
    probe: DatabaseExecutor | None = None


@dataclass(frozen=True)
class DatabasePending:
    """The executors seen in PENDING workflows of the system database and not connected,
    or why they could not be read."""

    executors: list[SeenExecutor]
    error: str = ""
    probed: bool = False  # a liveness URL is set, or some executor was probed


def _database_pending(application: Application) -> DatabasePending:
    probes = DatabaseExecutor.objects.filter(application=application)
    probed = bool(application.liveness_url_template) or probes.exists()
    try:
        found = native.pending_executors(application)
    except systemdb.SystemDatabaseError as exc:
        return DatabasePending([], str(exc), probed)
    connected = set(
        Executor.objects.live()
        .filter(application=application)
        .values_list("executor_id", flat=True)
    )
    seen: dict[str, tuple[list[str], int]] = {}
    for e in found:
        if e.executor_id in connected:
            continue
        versions, count = seen.get(e.executor_id, ([], 0))
        if e.application_version:
            versions.append(e.application_version)
        seen[e.executor_id] = (versions, count + e.pending)
    ids = list(seen)[:SEEN_EXECUTORS]
    by_id = {row.executor_id: row for row in probes.filter(executor_id__in=ids)} if probed else {}
    rows = [SeenExecutor(i, seen[i][0], seen[i][1], by_id.get(i)) for i in ids]
    if probed:
        # Recovered a moment ago and nothing pending since: kept, with what its probe found.
        recent = probes.filter(
            recovered_at__gte=timezone.now() - RECENTLY_RECOVERED,
            state=DatabaseExecutor.State.RECOVERED,
        ).exclude(executor_id__in=list(seen) + list(connected))
        rows += [
            SeenExecutor(row.executor_id, [row.application_version], 0, row)
            for row in recent.order_by("-recovered_at")[:20]
        ]
    return DatabasePending(rows, "", probed)


class DatabaseRecoveryForm(forms.Form):
    executor_id = forms.CharField(max_length=255)
    reason = forms.CharField(max_length=2000, required=False)


@login_required
def database_recovery(request: HttpRequest, app_name: str) -> HttpResponse:
    """GET: what recovering a gone executor through the system database would re-enqueue,
    and a confirmation. POST: recover it (`workflows.actions.database_recover`, audited)."""
    application = application_for(request, app_name, PERM_OPERATE)
    form = DatabaseRecoveryForm(request.POST if request.method == "POST" else request.GET)
    if not form.is_valid():
        return HttpResponse(form.errors.as_text(), status=400)
    executor_id = form.cleaned_data["executor_id"]
    context: dict[str, Any] = {"application": application, "executor_id": executor_id}
    if request.method == "POST":
        try:
            done = database_recover(
                application=application,
                executor_id=executor_id,
                actor=request.user,
                request=request,
                reason=form.cleaned_data["reason"],
            )
        except ActionError as exc:
            return _recovery_refused(request, context, str(exc), exc.status)
        except systemdb.SystemDatabaseError as exc:
            return _recovery_refused(request, context, str(exc), 503)
        level = messages.WARNING if done["poison_suspects"] else messages.SUCCESS
        messages.add_message(request, level, done["detail"])
        return redirect("executors", app_name=app_name)
    if Executor.objects.live().filter(application=application, executor_id=executor_id):
        why = STILL_CONNECTED.format(executor_id=executor_id)
        return _recovery_refused(request, context, why, 409)
    try:
        found = native.pending_executors(application)
    except systemdb.SystemDatabaseError as exc:
        return _recovery_refused(request, context, str(exc), 503)
    seen = [e for e in found if e.executor_id == executor_id]
    if not seen:
        return _recovery_refused(
            request, context, NOTHING_PENDING.format(executor_id=executor_id), 404
        )
    context["seen"] = seen
    context["count"] = sum(e.pending for e in seen)
    return render(request, "conductor/database_recovery.html", context)


def _recovery_refused(
    request: HttpRequest, context: dict[str, Any], why: str, status: int
) -> HttpResponse:
    """The preview page saying why nothing is (or was) recovered."""
    context = context | {"error": why}
    return render(request, "conductor/database_recovery.html", context, status=status)


@login_required
def executor_detail(request: HttpRequest, app_name: str, executor_id: str) -> HttpResponse:
    application = application_for(request, app_name)
    executor = get_object_or_404(Executor, application=application, executor_id=executor_id)
    return render(
        request,
        "conductor/executor_detail.html",
        {
            "application": application,
            "executor": executor,
            "connections": executor.connections.all()[:100],
            "requests": RequestLog.objects.filter(
                application=application, executor_id=executor_id
            ).order_by("-pk")[:20],
        },
    )


class RequestFilterForm(forms.Form):
    message_type = forms.CharField(required=False, label="Type")
    outcome = forms.ChoiceField(
        required=False, choices=[("", "any outcome"), *RequestLog.Outcome.choices]
    )
    executor_id = forms.CharField(required=False, label="Executor")
    before = forms.IntegerField(required=False, widget=forms.HiddenInput)


@login_required
def requests(request: HtmxHttpRequest, app_name: str) -> HttpResponse:
    application = application_for(request, app_name)
    form = RequestFilterForm(request.GET or None)
    page = Page[RequestLog]([], None)
    if not form.is_bound or form.is_valid():
        data = form.cleaned_data if form.is_bound else {}
        query = RequestLog.objects.filter(application=application)
        for field in ("message_type", "outcome", "executor_id"):
            if data.get(field):
                query = query.filter(**{field: data[field]})
        page = newest_first(query, before=data.get("before"), size=REQUESTS_PAGE)
    template = "conductor/requests.html"
    if request.htmx:
        template += "#request-rows"
    return render(
        request,
        template,
        {
            "application": application,
            "form": form,
            "entries": page.items,
            "next_before": page.next_before,
            "query": query_without_cursor(request),
        },
    )


@login_required
def request_detail(request: HttpRequest, app_name: str, entry_id: int) -> HttpResponse:
    application = application_for(request, app_name)
    entry = get_object_or_404(RequestLog, application=application, pk=entry_id)
    return render(
        request, "conductor/request_detail.html", {"application": application, "entry": entry}
    )


@login_required
@require_POST
async def recover_executor(request: HttpRequest, app_name: str, executor_id: str) -> HttpResponse:
    application = await aapplication_for(request, app_name, PERM_OPERATE)
    executor = await db_async(
        lambda: (
            Executor.objects.select_related("application")
            .filter(application=application, executor_id=executor_id)
            .first()
        )
    )()
    refused = functools.partial(
        db_async(recovery.recovery_refused),
        application=application,
        executor_ids=[executor_id],
        target=f"executor {executor_id}",
        request=request,
    )
    if executor is None:
        missing = f"No executor {executor_id} of {app_name}."
        await refused(why=missing)
        raise Http404(missing)
    if not await db_async(recovery.claim)(executor, states=recovery.RECOVERABLE):
        busy = f"Executor {executor_id} is connected or being recovered already."
        await refused(why=busy)
        messages.error(request, busy)
        return redirect("executors", app_name=app_name)
    executor = await db_async(Executor.objects.select_related("application").get)(pk=executor.pk)
    actor = await db_async(lambda: request.user.get_username())()
    attempt = await recovery.recover(executor, manual=True, requested_by=actor, request=request)
    level = messages.SUCCESS if attempt.outcome == "sent" else messages.WARNING
    messages.add_message(request, level, f"Recovery of {executor_id}: {attempt.outcome}.")
    return redirect("executors", app_name=app_name)


@login_required
@require_POST
async def poison_action(
    request: HttpRequest, app_name: str, workflow_id: str, action: str
) -> HttpResponse:
    if action not in ("cancel", "dismiss"):
        raise Http404(f"No poison action {action!r}.")
    application = await aapplication_for(request, app_name, PERM_OPERATE)
    reason = str(request.POST.get("reason", ""))
    try:
        if action == "cancel":
            await poison_cancel(
                application=application, workflow_id=workflow_id, request=request, reason=reason
            )
            messages.success(request, f"Workflow {workflow_id} cancelled; recovery resumes.")
        else:
            await db_async(poison_dismiss)(
                application=application, workflow_id=workflow_id, request=request, reason=reason
            )
            messages.success(request, f"{workflow_id} is no longer held as poison.")
    except (relay.RelayError, ActionError, systemdb.SystemDatabaseError) as exc:
        messages.error(request, str(exc))
    return redirect("executors", app_name=app_name)


def _rule_field(name: str, label: str, help_text: str) -> forms.IntegerField:
    low, high = retention.LIMITS[name]
    return forms.IntegerField(
        required=False, min_value=low, max_value=high, label=label, help_text=help_text
    )


class RetentionForm(forms.Form):
    retention_days = _rule_field(
        "retention_days",
        "Delete finished workflows older than (days)",
        "Deletes every finished workflow (succeeded, failed or cancelled) in the system database "
        "that completed more than this many days ago, with its steps, inputs, outputs and "
        "events. Empty: no age limit.",
    )
    retention_rows = _rule_field(
        "retention_rows",
        "Keep at most this many finished workflows",
        "Keeps the this-many most recently completed workflows of the system database and "
        "deletes every finished workflow that completed before them. Empty: no count limit.",
    )
    retention_timeout_hours = _rule_field(
        "retention_timeout_hours",
        "Cancel waiting workflows older than (hours)",
        "Cancels this application's workflows still pending, enqueued or delayed that were "
        "created more than this many hours ago. Nothing is deleted. Empty: nothing is cancelled.",
    )


@login_required
async def retention_settings(request: HttpRequest, app_name: str) -> HttpResponse:
    application = await aapplication_for(request, app_name, PERM_ADMINISTER)
    actor = request.user.get_username()
    form = RetentionForm(request.POST or None, initial=retention.retention_settings(application))
    if request.method == "POST" and form.is_valid():
        await db_async(retention.retention_update)(
            application=application, request=request, **form.cleaned_data
        )
        if "send" in request.POST:
            await _retention_send_now(request, application, actor)
        else:
            messages.success(request, "Retention settings saved.")
        return redirect("retention", app_name=app_name)
    context = {
        "application": application,
        "form": form,
        "interval_minutes": settings.RETENTION_INTERVAL_SECONDS // 60,
        "records": await db_async(_retention_records)(application),
    }
    return await arender(request, "conductor/retention.html", context)


def _retention_records(application: Application) -> list[AuditRecord]:
    return list(AuditRecord.objects.filter(application=application, action=retention.ACTION)[:10])


async def _retention_send_now(request: HttpRequest, application: Application, actor: str) -> None:
    try:
        sent = await retention.retention_send(
            application=application, actor_name=actor, request=request, source="console"
        )
    except (
        retention.NoRetentionRuleError,
        retention.RetentionRefusedError,
        relay.RelayError,
    ) as exc:
        messages.error(request, f"Saved, but not sent: {exc}")
        return
    if sent.path == DATABASE_PATH:
        messages.success(request, f"Saved. {sent.detail}")
    elif sent.success:
        messages.success(
            request, f"Saved and sent to executor {sent.executor_id}; it runs in the background."
        )
    else:
        messages.warning(request, f"Saved; executor {sent.executor_id} did not accept it.")
