"""The console's alert pages, for admins: an application's rules (make, change, enable,
mute), its channels (make, test, see what failed) and its alert history."""

from __future__ import annotations

from datetime import UTC

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from alerts import services
from alerts.forms import PARAMETER_FIELDS, ChannelForm, MuteForm, RuleForm
from alerts.models import Alert, AlertChannel, AlertDelivery, AlertRule
from alerts.rules import describe
from stepchange.access import application_for
from stepchange.models import Application
from stepchange.roles import PERM_ADMINISTER

HISTORY_PAGE = 100
DELIVERIES_SHOWN = 50


def _rule_for(application: Application, rule_id: int) -> AlertRule:
    return get_object_or_404(AlertRule, application=application, pk=rule_id)


def _channel_for(application: Application, channel_id: int) -> AlertChannel:
    return get_object_or_404(AlertChannel, application=application, pk=channel_id)


def _rules(application: Application) -> list[AlertRule]:
    rules = list(AlertRule.objects.filter(application=application).prefetch_related("channels"))
    for rule in rules:
        rule.description = describe(rule.kind, rule.parameters)  # type: ignore[attr-defined]
        rule.firing = rule.alerts.filter(state=Alert.State.FIRING).count()  # type: ignore[attr-defined]
        rule.is_muted = rule.muted()  # type: ignore[attr-defined]
    return rules


@login_required
def rules_page(request: HttpRequest, app_name: str) -> HttpResponse:
    application = application_for(request, app_name, PERM_ADMINISTER)
    form = RuleForm(request.POST or None, application=application)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            rule = services.rule_save(
                application=application,
                request=request,
                name=data["name"],
                kind=data["kind"],
                parameters=data["parameters"],
                channel_ids=[c.pk for c in data["channels"]],
                enabled=data["enabled"],
                repeat_seconds=data["repeat_seconds"],
            )
        except services.RuleError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Rule {rule.name!r} created.")
            return redirect("alert-rules", app_name=app_name)
    context = {
        "application": application,
        "rules": _rules(application),
        "form": form,
        "parameter_fields": PARAMETER_FIELDS,
    }
    return render(request, "alerts/rules.html", context)


@login_required
def rule_page(request: HttpRequest, app_name: str, rule_id: int) -> HttpResponse:
    application = application_for(request, app_name, PERM_ADMINISTER)
    rule = _rule_for(application, rule_id)
    initial = {
        "name": rule.name,
        "kind": rule.kind,
        "repeat_seconds": rule.repeat_seconds,
        "enabled": rule.enabled,
        "channels": list(rule.channels.all()),
        **rule.parameters,
    }
    form = RuleForm(request.POST or None, application=application, editing=True, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.rule_save(
                application=application,
                request=request,
                rule=rule,
                name=data["name"],
                kind=rule.kind,
                parameters=data["parameters"],
                channel_ids=[c.pk for c in data["channels"]],
                enabled=data["enabled"],
                repeat_seconds=data["repeat_seconds"],
            )
        except services.RuleError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, "Rule saved.")
            return redirect("alert-rule", app_name=app_name, rule_id=rule.pk)
    context = {
        "application": application,
        "rule": rule,
        "description": describe(rule.kind, rule.parameters),
        "form": form,
        "mute_form": MuteForm(initial={"until": rule.muted_until}),
        "alerts": rule.alerts.all()[:20],
        "parameter_fields": PARAMETER_FIELDS,
    }
    return render(request, "alerts/rule.html", context)


@login_required
@require_POST
def rule_mute(request: HttpRequest, app_name: str, rule_id: int) -> HttpResponse:
    application = application_for(request, app_name, PERM_ADMINISTER)
    rule = _rule_for(application, rule_id)
    form = MuteForm(request.POST)
    if not form.is_valid():
        problems = "; ".join(str(e) for errors in form.errors.values() for e in errors)
        messages.error(request, f"Not muted: {problems}")
        return redirect("alert-rule", app_name=app_name, rule_id=rule.pk)
    until = form.cleaned_data["until"]
    if until is not None and until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    try:
        services.rule_mute(
            rule=rule, request=request, until=until, reason=form.cleaned_data["reason"]
        )
    except services.RuleError as exc:
        messages.error(request, f"Not muted: {exc}")
    else:
        messages.success(
            request, f"Muted until {until:%Y-%m-%d %H:%M} UTC." if until else "Unmuted."
        )
    return redirect("alert-rule", app_name=app_name, rule_id=rule.pk)


@login_required
@require_POST
def rule_delete(request: HttpRequest, app_name: str, rule_id: int) -> HttpResponse:
    application = application_for(request, app_name, PERM_ADMINISTER)
    rule = _rule_for(application, rule_id)
    services.rule_delete(rule=rule, request=request)
    messages.success(request, f"Rule {rule.name!r} deleted.")
    return redirect("alert-rules", app_name=app_name)


@login_required
def channels_page(request: HttpRequest, app_name: str) -> HttpResponse:
    application = application_for(request, app_name, PERM_ADMINISTER)
    form = ChannelForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            channel = services.channel_save(
                application=application,
                request=request,
                name=data["name"],
                kind=data["kind"],
                url=data["url"],
                secret=data["secret"],
                recipients=data["recipients"],
                enabled=data["enabled"],
            )
        except services.ChannelError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Channel {channel.name!r} created.")
            return redirect("alert-channel", app_name=app_name, channel_id=channel.pk)
    channels = list(AlertChannel.objects.filter(application=application))
    for channel in channels:
        failing = channel.deliveries.exclude(state=AlertDelivery.State.DELIVERED)
        channel.failing = failing.exclude(attempts=0).count()  # type: ignore[attr-defined]
    context = {"application": application, "channels": channels, "form": form}
    return render(request, "alerts/channels.html", context)


@login_required
def channel_page(request: HttpRequest, app_name: str, channel_id: int) -> HttpResponse:
    application = application_for(request, app_name, PERM_ADMINISTER)
    channel = _channel_for(application, channel_id)
    initial = {
        "name": channel.name,
        "kind": channel.kind,
        "url": channel.url,
        "recipients": channel.recipients,
        "enabled": channel.enabled,
    }
    form = ChannelForm(request.POST or None, editing=True, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.channel_save(
                application=application,
                request=request,
                channel=channel,
                name=data["name"],
                kind=channel.kind,
                url=data["url"],
                secret=data["secret"],
                recipients=data["recipients"],
                enabled=data["enabled"],
            )
        except services.ChannelError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, "Channel saved.")
            return redirect("alert-channel", app_name=app_name, channel_id=channel.pk)
    deliveries = channel.deliveries.select_related("alert")[:DELIVERIES_SHOWN]
    context = {
        "application": application,
        "channel": channel,
        "form": form,
        "deliveries": deliveries,
        "failed": channel.deliveries.filter(state=AlertDelivery.State.FAILED).count(),
        "retrying": channel.deliveries.filter(state=AlertDelivery.State.PENDING)
        .exclude(attempts=0)
        .count(),
        "show_secret": channel.kind == AlertChannel.Kind.WEBHOOK,
    }
    return render(request, "alerts/channel.html", context)


@login_required
@require_POST
def channel_test(request: HttpRequest, app_name: str, channel_id: int) -> HttpResponse:
    application = application_for(request, app_name, PERM_ADMINISTER)
    channel = _channel_for(application, channel_id)
    services.channel_test(channel=channel, request=request)
    messages.success(request, "A test alert is on its way; its outcome shows below.")
    return redirect("alert-channel", app_name=app_name, channel_id=channel.pk)


@login_required
@require_POST
def delivery_retry(request: HttpRequest, app_name: str, delivery_id: int) -> HttpResponse:
    application = application_for(request, app_name, PERM_ADMINISTER)
    delivery = get_object_or_404(
        AlertDelivery.objects.select_related("channel__application"),
        channel__application=application,
        pk=delivery_id,
    )
    services.delivery_retry(delivery=delivery, request=request)
    messages.success(request, "The message will be sent again.")
    return redirect("alert-channel", app_name=app_name, channel_id=delivery.channel_id)


@login_required
def history_page(request: HttpRequest, app_name: str) -> HttpResponse:
    application = application_for(request, app_name, PERM_ADMINISTER)
    alerts = Alert.objects.filter(rule__application=application).select_related("rule")
    state = request.GET.get("state")
    if state in Alert.State.values:
        alerts = alerts.filter(state=state)
    context = {
        "application": application,
        "alerts": alerts[:HISTORY_PAGE],
        "state": state,
        "states": Alert.State.values,
    }
    return render(request, "alerts/history.html", context)
