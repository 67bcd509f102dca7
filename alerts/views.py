"""The console's alert pages, for admins: an application's rules (make, change, enable,
mute), its channels (make, test, see what failed) and its alert history."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from functools import partial
from typing import TypeVar

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
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

Saved = TypeVar("Saved", AlertRule, AlertChannel)
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


def _form_saved(
    request: HttpRequest,
    form: RuleForm | ChannelForm,
    save: Callable[..., Saved],
    done: str,
    then: Callable[[Saved], HttpResponse],
) -> HttpResponse | None:
    """A POSTed rule or channel form, saved through `save` with its cleaned fields: the
    redirect `then` after the message `done`, or None to show the form again, with the
    service's refusal on it."""
    if request.method != "POST" or not form.is_valid():
        return None
    data = form.cleaned_data
    if isinstance(form, RuleForm):
        fields = {
            "name": data["name"],
            "kind": data["kind"],
            "parameters": data["parameters"],
            "channel_ids": [c.pk for c in data["channels"]],
            "enabled": data["enabled"],
            "repeat_seconds": data["repeat_seconds"],
        }
    else:
        names = ("name", "kind", "url", "secret", "recipients", "enabled")
        fields = {name: data[name] for name in names}
    try:
        saved = save(request=request, **fields)
    except (services.RuleError, services.ChannelError) as exc:
        form.add_error(None, str(exc))
        return None
    messages.success(request, done.format(name=saved.name))
    return then(saved)


@login_required
def rules_page(request: HttpRequest, app_name: str) -> HttpResponse:
    application = application_for(request, app_name, PERM_ADMINISTER)
    form = RuleForm(request.POST or None, application=application)
    saved = _form_saved(
        request,
        form,
        partial(services.rule_save, application=application),
        "Rule {name!r} created.",
        lambda rule: redirect("alert-rules", app_name=app_name),
    )
    if saved is not None:
        return saved
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
    saved = _form_saved(
        request,
        form,
        partial(services.rule_save, application=application, rule=rule),
        "Rule saved.",
        lambda rule: redirect("alert-rule", app_name=app_name, rule_id=rule.pk),
    )
    if saved is not None:
        return saved
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


def _channel_page(channel: AlertChannel) -> HttpResponse:
    return redirect("alert-channel", app_name=channel.application.name, channel_id=channel.pk)


@login_required
def channels_page(request: HttpRequest, app_name: str) -> HttpResponse:
    application = application_for(request, app_name, PERM_ADMINISTER)
    form = ChannelForm(request.POST or None)
    saved = _form_saved(
        request,
        form,
        partial(services.channel_save, application=application),
        "Channel {name!r} created.",
        _channel_page,
    )
    if saved is not None:
        return saved
    # Messages that failed at least once and are not delivered: retried, or given up on.
    failing = Q(
        deliveries__attempts__gt=0,
        deliveries__state__in=[AlertDelivery.State.PENDING, AlertDelivery.State.FAILED],
    )
    channels = AlertChannel.objects.filter(application=application).annotate(
        failing=Count("deliveries", filter=failing)
    )
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
    saved = _form_saved(
        request,
        form,
        partial(services.channel_save, application=application, channel=channel),
        "Channel saved.",
        _channel_page,
    )
    if saved is not None:
        return saved
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
