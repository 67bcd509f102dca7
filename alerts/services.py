"""The one writer of alert rules and channels: each change checked first, then written,
then audited with what it was before and after."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, Min
from django.http import HttpRequest
from django.template.defaultfilters import pluralize
from django.utils import timezone

from alerts.channels import ChannelError, channel_clean
from alerts.evaluator import message
from alerts.models import Alert, AlertChannel, AlertDelivery, AlertRule
from alerts.rules import RuleError, parameters_clean
from stepchange.audit import audit_record
from stepchange.models import Application

RULE_CREATE = "alert_rule.create"
RULE_UPDATE = "alert_rule.update"
RULE_DELETE = "alert_rule.delete"
RULE_MUTE = "alert_rule.mute"
CHANNEL_CREATE = "alert_channel.create"
CHANNEL_UPDATE = "alert_channel.update"
CHANNEL_DELETE = "alert_channel.delete"
CHANNEL_TEST = "alert_channel.test"
DELIVERY_RETRY = "alert_delivery.retry"

NAME_TAKEN = "{application} already has a {what} named {name!r}."
NAME_REQUIRED = "A name is required."
NOT_THIS_APP = "Channel {id} is not one of {application}'s channels."
BAD_REPEAT = "The repeat interval must be a whole number of seconds, 0 or more; got {value!r}."
MUTE_IN_PAST = "Mute until must be in the future; got {value}."
STILL_TO_DELIVER = (
    "Channel {name!r} still has {count} message{s} to deliver, which would be lost with it: "
    "delete it once they are delivered or given up on (they are retried with backoff; "
    "the next attempt is at {at} UTC)."
)

__all__ = ["ChannelError", "RuleError"]


class NameTakenError(RuleError, ChannelError):
    """Another rule or channel of the application has the name."""


class UnknownChannelError(RuleError):
    """A rule names a channel its application does not have."""


class PendingDeliveriesError(ChannelError):
    """A channel still has messages to deliver."""


@dataclass(frozen=True)
class _Written:
    """What the services write, as its audit records name it."""

    what: str
    snapshot: Callable[[Any], dict[str, Any]]


def _actor_name(request: HttpRequest | None) -> str:
    actor = getattr(request, "user", None)
    return actor.get_username() if actor else ""


def _audited(
    written: _Written,
    action: str,
    obj: AlertRule | AlertChannel,
    request: HttpRequest | None,
    before: dict[str, Any] | None,
    write: Callable[[], object] | None = None,
) -> None:
    """`write` (by default, save `obj`) and its audit record, with `obj` as it was `before`
    and as it is after (None once deleted), in one transaction. A name the application's
    other rules or channels have is NameTakenError, and nothing is written."""
    key = obj.pk
    try:
        with transaction.atomic():
            (write or obj.save)()
            # Django clears the key of what it deleted.
            after = None if obj.pk is None else written.snapshot(obj)
            audit_record(
                action=action,
                request=request,
                application=obj.application,
                target=f"alert {written.what} {key or obj.pk}",
                parameters={"before": before, "after": after},
            )
    except IntegrityError:
        raise NameTakenError(
            NAME_TAKEN.format(application=obj.application.name, what=written.what, name=obj.name)
        ) from None


def rule_snapshot(rule: AlertRule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "kind": rule.kind,
        "parameters": rule.parameters,
        "enabled": rule.enabled,
        "repeat_seconds": rule.repeat_seconds,
        "muted_until": rule.muted_until.isoformat() if rule.muted_until else None,
        "channels": sorted(rule.channels.values_list("pk", flat=True)) if rule.pk else [],
    }


def _repeat(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise RuleError(BAD_REPEAT.format(value=value))
    try:
        number = int(value)
    except ValueError:
        raise RuleError(BAD_REPEAT.format(value=value)) from None
    if number < 0:
        raise RuleError(BAD_REPEAT.format(value=value))
    return number


def _channels_of(application: Application, ids: list[int]) -> list[AlertChannel]:
    found = {c.pk: c for c in AlertChannel.objects.filter(application=application, pk__in=ids)}
    for channel_id in ids:
        if channel_id not in found:
            raise UnknownChannelError(
                NOT_THIS_APP.format(id=channel_id, application=application.name)
            )
    return [found[i] for i in ids]


def rule_save(
    *,
    application: Application,
    request: HttpRequest | None,
    name: str,
    kind: str,
    parameters: dict[str, Any],
    channel_ids: list[int],
    enabled: bool = True,
    repeat_seconds: Any = 3600,
    rule: AlertRule | None = None,
) -> AlertRule:
    """Create a rule (or change `rule`); RuleError says what is refused, nothing written."""
    name = name.strip()
    if not name:
        raise RuleError(NAME_REQUIRED)
    if rule is not None:
        kind = rule.kind  # a rule's kind is what it is; a new kind is a new rule
    cleaned = parameters_clean(kind, parameters)
    repeat = _repeat(repeat_seconds)
    chosen = _channels_of(application, channel_ids)
    before = rule_snapshot(rule) if rule is not None else None
    if rule is None:
        rule = AlertRule(application=application, kind=kind, created_by_name=_actor_name(request))
    rule.name, rule.parameters, rule.enabled, rule.repeat_seconds = name, cleaned, enabled, repeat

    def write() -> None:
        rule.save()
        rule.channels.set(chosen)

    _audited(RULE, RULE_UPDATE if before else RULE_CREATE, rule, request, before, write)
    return rule


def rule_mute(
    *, rule: AlertRule, request: HttpRequest | None, until: datetime | None, reason: str = ""
) -> AlertRule:
    """Mute `rule` until a time (None: unmute). Alerts still open and close while muted;
    nothing is sent until it ends."""
    if until is not None and until <= timezone.now():
        raise RuleError(MUTE_IN_PAST.format(value=until.isoformat()))
    before = rule.muted_until
    with transaction.atomic():
        rule.muted_until = until
        rule.save(update_fields=["muted_until", "updated_at"])
        audit_record(
            action=RULE_MUTE,
            request=request,
            application=rule.application,
            target=f"alert rule {rule.pk}",
            parameters={
                "before": before.isoformat() if before else None,
                "after": until.isoformat() if until else None,
            },
            reason=reason,
        )
    return rule


def rule_delete(*, rule: AlertRule, request: HttpRequest | None) -> None:
    """Delete `rule` and its alerts. Messages already queued for them stay: they are sent
    and shown on their channels' pages as before (AlertDelivery.alert is set to null)."""
    _audited(RULE, RULE_DELETE, rule, request, rule_snapshot(rule), rule.delete)


def channel_snapshot(channel: AlertChannel) -> dict[str, Any]:
    # Never the secret: the audit log is read by every admin.
    return {
        "name": channel.name,
        "kind": channel.kind,
        "url": channel.url,
        "recipients": channel.recipients,
        "enabled": channel.enabled,
        "has_secret": bool(channel.secret),
    }


RULE = _Written("rule", rule_snapshot)
CHANNEL = _Written("channel", channel_snapshot)


def channel_save(
    *,
    application: Application,
    request: HttpRequest | None,
    name: str,
    kind: str,
    url: str = "",
    secret: str = "",
    recipients: str = "",
    enabled: bool = True,
    channel: AlertChannel | None = None,
) -> AlertChannel:
    """Create a channel (or change `channel`: an empty secret keeps the one it has);
    ChannelError says what is refused, nothing written."""
    name = name.strip()
    if not name:
        raise ChannelError(NAME_REQUIRED)
    if channel is not None:
        kind = channel.kind
        secret = secret or channel.secret
    fields = channel_clean(
        kind=kind, url=url, secret=secret, recipients=recipients, request=request
    )
    before = channel_snapshot(channel) if channel is not None else None
    if channel is None:
        channel = AlertChannel(
            application=application, kind=kind, created_by_name=_actor_name(request)
        )
    channel.name, channel.enabled = name, enabled
    channel.url, channel.secret, channel.recipients = (
        fields["url"],
        fields["secret"],
        fields["recipients"],
    )
    _audited(CHANNEL, CHANNEL_UPDATE if before else CHANNEL_CREATE, channel, request, before)
    return channel


def channel_delete(*, channel: AlertChannel, request: HttpRequest | None) -> None:
    """Delete `channel` and the messages it delivered or gave up on (counted in the audit
    record); refused while it has messages still to deliver, which would go with it."""
    pending = channel.deliveries.filter(state=AlertDelivery.State.PENDING)
    due = pending.aggregate(count=Count("pk"), next=Min("next_attempt_at"))
    if due["count"]:
        raise PendingDeliveriesError(
            STILL_TO_DELIVER.format(
                name=channel.name,
                count=due["count"],
                s=pluralize(due["count"]),
                at=f"{due['next']:%Y-%m-%d %H:%M:%S}",
            )
        )
    before = {**channel_snapshot(channel), "deliveries": channel.deliveries.count()}
    _audited(CHANNEL, CHANNEL_DELETE, channel, request, before, channel.delete)


def channel_test(*, channel: AlertChannel, request: HttpRequest | None) -> AlertDelivery:
    """Queue a sample message to `channel`; the delivery loop sends it like any other."""
    now = timezone.now()
    rule = AlertRule(
        pk=0,
        application=channel.application,
        name="Test alert",
        kind=AlertRule.Kind.FAILURES,
    )
    sample = Alert(
        pk=0,
        rule=rule,
        key="test",
        summary=f"A test alert from StepChange for channel {channel.name!r}",
        link="",
        first_seen_at=now,
        last_seen_at=now,
    )
    body = message(sample, AlertDelivery.Event.TEST, now)
    body["dedup_key"] = f"stepchange-test-{channel.pk}-{int(now.timestamp())}"
    with transaction.atomic():
        delivery = AlertDelivery.objects.create(
            channel=channel, event=AlertDelivery.Event.TEST, message=body, next_attempt_at=now
        )
        audit_record(
            action=CHANNEL_TEST,
            request=request,
            application=channel.application,
            target=f"alert channel {channel.pk}",
            parameters={"delivery": delivery.pk},
        )
    return delivery


def delivery_retry(*, delivery: AlertDelivery, request: HttpRequest | None) -> None:
    """Send a failed message again, from its first attempt."""
    with transaction.atomic():
        AlertDelivery.objects.filter(pk=delivery.pk, state=AlertDelivery.State.FAILED).update(
            state=AlertDelivery.State.PENDING, attempts=0, next_attempt_at=timezone.now()
        )
        audit_record(
            action=DELIVERY_RETRY,
            request=request,
            application=delivery.channel.application,
            target=f"alert delivery {delivery.pk}",
        )
