"""Console pages for an application's dynamic schedules: the list (with its bulk pause and
resume), the actions on one schedule, and the backfill form that says how many runs a
range means before anything is sent.

Reads go through `workflows.sources` (the system database, else an executor); actions
through `workflows.schedules` (relayed to a live executor, audited).
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from conductor import relay
from stepchange.access import aapplication_for
from stepchange.asyncdb import arender, db_async
from stepchange.roles import PERM_INSPECT, PERM_OPERATE
from workflows.schedules import (
    CONFIRM_ABOVE,
    MAX_BACKFILL_RUNS,
    ConfirmationNeededError,
    ScheduleAction,
    ScheduleError,
    backfill_plan,
    backfill_reach_now,
    fire_times,
    schedule_act,
    schedules_bulk,
)
from workflows.sources import (
    Schedule,
    ScheduleQuery,
    SlowQuery,
    source_for,
    split_names,
)

STATUS_CHOICES = [("", "any"), ("ACTIVE", "active"), ("PAUSED", "paused")]
CONFIRM_NEEDED = "This backfill means {runs:,} runs: tick “I mean it” to enqueue them."


class ScheduleFilterForm(forms.Form):
    status = forms.ChoiceField(required=False, choices=STATUS_CHOICES)
    workflow_name = forms.CharField(required=False, max_length=500, label="Workflow")
    name_prefix = forms.CharField(required=False, max_length=500, label="Name starts with")

    def query(self) -> ScheduleQuery:
        data = self.cleaned_data
        return ScheduleQuery(
            status=[data["status"]] if data.get("status") else None,
            workflow_name=split_names(data.get("workflow_name") or ""),
            name_prefix=split_names(data.get("name_prefix") or ""),
        )


@dataclass(frozen=True)
class ScheduleRow:
    schedule: Schedule
    next_fires: list[datetime] | None
    workflows_url: str


def _rows(app_name: str, schedules: list[Schedule]) -> list[ScheduleRow]:
    now = timezone.now()
    started = reverse("workflows", args=[app_name])
    rows = []
    for schedule in schedules:
        try:
            upcoming: list[datetime] | None = fire_times(
                schedule.cron, timezone=schedule.timezone, after=now
            )
        except ScheduleError:
            upcoming = None
        link = f"{started}?{urlencode({'schedule_name': schedule.name})}"
        rows.append(ScheduleRow(schedule, upcoming, link))
    return rows


@login_required
async def schedules_page(request: HttpRequest, app_name: str) -> HttpResponse:
    application = await aapplication_for(request, app_name)
    form = ScheduleFilterForm(request.GET)
    context: dict[str, Any] = {
        "application": application,
        "form": form,
        "may_act": await _may_act(request),
        "filter_text": request.GET.urlencode(),
    }
    if form.is_valid():
        source = await source_for(application)
        try:
            found = await source.schedules(form.query(), actor=request.user.get_username())
        except (relay.RelayError, SlowQuery) as exc:
            context["unavailable"] = str(exc)
        else:
            context["rows"] = _rows(app_name, found.items)
            context["unstored"] = found.unstored
            context["source"] = found.source
            context["notice"] = found.notice
            context["workflows_url"] = reverse("workflows", args=[app_name])
    return await arender(request, "workflows/schedules.html", context)


async def _may_act(request: HttpRequest) -> bool:
    return bool(await db_async(request.user.has_perm)(PERM_OPERATE))


class ScheduleActionForm(forms.Form):
    name = forms.CharField(max_length=1000)
    action = forms.ChoiceField(
        choices=[(a.value, a.label) for a in ScheduleAction if a is not ScheduleAction.BACKFILL]
    )
    reason = forms.CharField(required=False, max_length=2000)
    back = forms.CharField(required=False, max_length=4000)


def _back(app_name: str, query: str) -> str:
    url = reverse("schedules", args=[app_name])
    return f"{url}?{query}" if query else url


@login_required
@require_POST
async def schedule_action(request: HttpRequest, app_name: str) -> HttpResponse:
    application = await aapplication_for(request, app_name, PERM_OPERATE)
    form = ScheduleActionForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Schedule action: {form.errors.as_text()}")
        return redirect(_back(app_name, ""))
    data = form.cleaned_data
    action = ScheduleAction(data["action"])
    back = _back(app_name, data["back"])
    try:
        outcome = await schedule_act(
            application=application,
            action=action,
            schedule_name=data["name"],
            reason=data["reason"],
            actor=request.user,
            request=request,
            source="console",
        )
    except (ScheduleError, relay.RelayError) as exc:
        messages.error(request, f"{action.label} failed: {exc}")
        return redirect(back)
    messages.success(request, outcome.detail)
    if outcome.workflow_ids:
        return redirect("workflow-detail", app_name, outcome.workflow_ids[0])
    return redirect(back)


class BackfillForm(forms.Form):
    name = forms.CharField(max_length=1000, widget=forms.HiddenInput)
    start = forms.DateTimeField(
        label="From (UTC, exclusive)", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    end = forms.DateTimeField(
        label="To (UTC, exclusive)", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    confirm = forms.BooleanField(required=False, label="I mean it")
    reason = forms.CharField(required=False, max_length=2000, widget=forms.Textarea)


@login_required
async def schedule_backfill(request: HttpRequest, app_name: str) -> HttpResponse:
    """GET: the form, and once it has a range, how many runs it means. POST: backfill."""
    permission = PERM_OPERATE if request.method == "POST" else PERM_INSPECT
    application = await aapplication_for(request, app_name, permission)
    data: QueryDict = request.POST if request.method == "POST" else request.GET
    name = data.get("name", "")
    source = await source_for(application)
    context: dict[str, Any] = {
        "application": application,
        "name": name,
        "confirm_above": CONFIRM_ABOVE,
        "max_runs": f"{MAX_BACKFILL_RUNS:,}",
    }
    try:
        schedule = await source.schedule(name, actor=request.user.get_username()) if name else None
    except (relay.RelayError, SlowQuery) as exc:
        schedule, context["unavailable"] = None, str(exc)
    context["schedule"] = schedule
    has_range = "start" in data or "end" in data
    form = BackfillForm(data if has_range else None, initial={"name": name})
    context["form"] = form
    if request.method == "POST":
        return await _backfill(request, application, form, context)
    if schedule is not None and has_range and form.is_valid():
        try:
            window = {"start": form.cleaned_data["start"], "end": form.cleaned_data["end"]}
            plan = backfill_plan(schedule, **window)
            await backfill_reach_now(application, **window)
            context["plan"] = plan
        except ScheduleError as exc:
            form.add_error(None, str(exc))
    status = 404 if name and schedule is None and "unavailable" not in context else 200
    return await arender(request, "workflows/schedule_backfill.html", context, status=status)


async def _backfill(
    request: HttpRequest, application: Any, form: BackfillForm, context: dict[str, Any]
) -> HttpResponse:
    if not form.is_valid():
        return await arender(request, "workflows/schedule_backfill.html", context, status=400)
    data = form.cleaned_data
    try:
        outcome = await schedule_act(
            application=application,
            action=ScheduleAction.BACKFILL,
            schedule_name=data["name"],
            start=data["start"],
            end=data["end"],
            confirmed=data["confirm"],
            reason=data["reason"],
            actor=request.user,
            request=request,
            source="console",
        )
    except ConfirmationNeededError as exc:
        form.add_error("confirm", CONFIRM_NEEDED.format(runs=exc.runs))
        return await arender(request, "workflows/schedule_backfill.html", context, status=400)
    except (ScheduleError, relay.RelayError) as exc:
        messages.error(request, f"Backfill failed: {exc}")
        return redirect(_back(application.name, ""))
    messages.success(request, outcome.detail)
    started = reverse("workflows", args=[application.name])
    return redirect(f"{started}?{urlencode({'schedule_name': data['name']})}")


class BulkScheduleForm(ScheduleFilterForm):
    action = forms.ChoiceField(
        choices=[(ScheduleAction.PAUSE.value, "Pause"), (ScheduleAction.RESUME.value, "Resume")]
    )
    reason = forms.CharField(required=False, max_length=2000)


@login_required
@require_POST
async def schedules_bulk_view(request: HttpRequest, app_name: str) -> HttpResponse:
    application = await aapplication_for(request, app_name, PERM_OPERATE)
    form = BulkScheduleForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Bulk schedule action: {form.errors.as_text()}")
        return redirect(_back(app_name, ""))
    filters = {k: form.cleaned_data[k] for k in ("status", "workflow_name", "name_prefix")}
    back = _back(app_name, urlencode({k: v for k, v in filters.items() if v}))
    try:
        outcome = await schedules_bulk(
            application=application,
            action=ScheduleAction(form.cleaned_data["action"]),
            query=form.query(),
            reason=form.cleaned_data["reason"],
            actor=request.user,
            request=request,
            source="console",
        )
    except (ScheduleError, relay.RelayError) as exc:
        messages.error(request, f"Bulk schedule action failed: {exc}")
        return redirect(back)
    verb = "Paused" if outcome.action is ScheduleAction.PAUSE else "Resumed"
    text = f"{verb} {len(outcome.done)} schedule{'s' if len(outcome.done) != 1 else ''}"
    if outcome.skipped:
        text += f"; {len(outcome.skipped)} already {verb.lower()}"
    if outcome.failed:
        failures = "; ".join(f"{name}: {why}" for name, why in outcome.failed.items())
        messages.error(request, f"{text}; {len(outcome.failed)} failed: {failures}")
    else:
        messages.success(request, text + ".")
    return redirect(back)
