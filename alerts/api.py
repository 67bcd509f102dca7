"""The JSON API of alerts, for admins: an application's rules and channels (read, make,
change, mute, test, delete) and its alert history. Refusals are 400s that say why; every
change is audited by `alerts.services`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Body as BodyOf
from ninja import Field, Router, Schema, Status
from ninja.errors import HttpError
from pydantic import create_model

from alerts import services
from alerts.models import Alert, AlertChannel, AlertDelivery, AlertRule
from alerts.rules import PARAMETERS
from stepchange.access import application_for
from stepchange.api.base import WHOLE, Body, Integer, acting_with
from stepchange.models import Application
from stepchange.roles import PERM_ADMINISTER

router = Router(tags=["alerts"])
HISTORY_LIMIT = 200
BAD_TIME = "until must be an ISO 8601 time such as 2026-11-21T10:00:00+00:00; got {value!r}"


NAME = Annotated[str, Field(min_length=1, max_length=100, pattern=r"\S")]


def _parameters_model(kind: str) -> type[Body]:
    """The parameters of one kind of rule, as the API documents them (the same bounds
    `alerts.rules` checks)."""
    fields: dict[str, Any] = {}
    for param in PARAMETERS[kind]:
        if param.number:
            kind_type: Any = Annotated[int, Field(ge=param.low, le=param.high), WHOLE]
        else:
            kind_type = Annotated[
                str, Field(min_length=1, max_length=300, pattern=param.pattern or r"\S")
            ]
        if param.required:
            fields[param.name] = (kind_type, Field(description=param.label))
        else:
            fields[param.name] = (kind_type | None, Field(default=None, description=param.label))
    name = "".join(part.title() for part in kind.split("_")) + "Parameters"
    return create_model(name, __base__=Body, **fields)


def _literal(value: str) -> Any:
    """`Literal[value]` for a value known only at run time (mypy cannot check it)."""
    return Literal.__getitem__(value)


def _rule_model(kind: str) -> type[Body]:
    name = "".join(part.title() for part in kind.split("_")) + "RuleIn"
    return create_model(
        name,
        __base__=Body,
        __doc__=str(AlertRule.Kind(kind).label),
        name=(NAME, ...),
        kind=(_literal(kind), ...),
        parameters=(_parameters_model(kind), ...),
        channels=(list[Integer], Field(default_factory=list, description="Channel ids.")),
        enabled=(bool, True),
        repeat_seconds=(
            Annotated[int, Field(ge=0, le=10**9), WHOLE],
            Field(default=3600, description="0 = sent only when it fires and resolves."),
        ),
    )


# One body per kind, told apart by `kind`: the document says what each kind takes.
RuleIn: Any = Annotated[
    Union[tuple(_rule_model(kind) for kind in AlertRule.Kind.values)],  # noqa: UP007
    Field(discriminator="kind"),
]
if TYPE_CHECKING:
    RuleBody = Any
else:
    RuleBody = BodyOf[RuleIn]


class RuleOut(Schema):
    id: int
    name: str
    kind: str
    parameters: dict[str, Any]
    channels: list[int]
    enabled: bool
    repeat_seconds: int
    muted_until: datetime | None
    created_by_name: str
    created_at: datetime
    updated_at: datetime


class MuteIn(Body):
    until: str | None = Field(
        description="A future time, ISO 8601 (UTC without an offset); null unmutes."
    )
    reason: str = Field(default="", max_length=500)


HTTP_URL = Annotated[str, Field(min_length=8, max_length=1000, pattern=r"^https?://[^/\s?#]+")]
# Django's own check of each address still applies; this is its shape, for the document.
EMAILS = Annotated[
    str,
    Field(
        max_length=1000,
        pattern=r"^\s*[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
        r"(\s*,\s*[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})*\s*$",
    ),
]
SECRET_HELP = "Empty: one is made (on a change: the current one is kept)."


class _ChannelBase(Body):
    name: NAME
    enabled: bool = True


class WebhookChannelIn(_ChannelBase):
    """A generic webhook: JSON, signed with HMAC-SHA256 under `secret`."""

    kind: Literal["webhook"]
    url: HTTP_URL
    secret: str = Field(default="", max_length=200, description=SECRET_HELP)


class SlackChannelIn(_ChannelBase):
    """A Slack incoming webhook."""

    kind: Literal["slack"]
    url: HTTP_URL


class PagerDutyChannelIn(_ChannelBase):
    """PagerDuty's Events API v2."""

    kind: Literal["pagerduty"]
    url: HTTP_URL | Literal[""] = Field(default="", description="Empty: PagerDuty's own.")
    secret: str = Field(
        min_length=1, max_length=200, pattern=r"\S", description="The integration's routing key."
    )


class EmailChannelIn(_ChannelBase):
    """Email, through Django's mail settings."""

    kind: Literal["email"]
    recipients: EMAILS


class ApplicationChannelIn(_ChannelBase):
    """The application's own alert handler, through a connected executor."""

    kind: Literal["application"]


ChannelIn: Any = Annotated[
    WebhookChannelIn | SlackChannelIn | PagerDutyChannelIn | EmailChannelIn | ApplicationChannelIn,
    Field(discriminator="kind"),
]
if TYPE_CHECKING:
    ChannelBody = Any
else:
    ChannelBody = BodyOf[ChannelIn]


class ChannelOut(Schema):
    id: int
    name: str
    kind: str
    url: str
    recipients: str
    enabled: bool
    has_secret: bool
    pending: int
    failed: int
    created_at: datetime


class ChannelCreated(ChannelOut):
    secret: str = Field(description="Shown here and on the channel's page, to admins.")


class AlertOut(Schema):
    id: int
    rule_id: int
    rule_name: str
    key: str
    state: str
    summary: str
    link: str
    details: dict[str, Any]
    first_seen_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    last_notified_at: datetime | None


class DeliveryOut(Schema):
    id: int
    event: str
    state: str
    attempts: int
    next_attempt_at: datetime
    last_error: str
    delivered_at: datetime | None


def _rule_out(rule: AlertRule) -> dict[str, Any]:
    return {
        "id": rule.pk,
        "name": rule.name,
        "kind": rule.kind,
        "parameters": rule.parameters,
        "channels": sorted(rule.channels.values_list("pk", flat=True)),
        "enabled": rule.enabled,
        "repeat_seconds": rule.repeat_seconds,
        "muted_until": rule.muted_until,
        "created_by_name": rule.created_by_name,
        "created_at": rule.created_at,
        "updated_at": rule.updated_at,
    }


def _channel_out(channel: AlertChannel) -> dict[str, Any]:
    deliveries = channel.deliveries
    return {
        "id": channel.pk,
        "name": channel.name,
        "kind": channel.kind,
        "url": channel.url,
        "recipients": channel.recipients,
        "enabled": channel.enabled,
        "has_secret": bool(channel.secret),
        "pending": deliveries.filter(state=AlertDelivery.State.PENDING).count(),
        "failed": deliveries.filter(state=AlertDelivery.State.FAILED).count(),
        "created_at": channel.created_at,
    }


def _status(exc: Exception) -> int:
    """409 for a name in use or a channel with messages still to deliver, 404 for a channel
    the application does not have, else 400."""
    if isinstance(exc, services.NameTakenError | services.PendingDeliveriesError):
        return 409
    if isinstance(exc, services.UnknownChannelError):
        return 404
    return 400


def _admin_app(request: HttpRequest, app: str) -> Application:
    return application_for(request, app, PERM_ADMINISTER)


def _rule(application: Application, rule_id: int) -> AlertRule:
    return get_object_or_404(AlertRule, application=application, pk=rule_id)


def _channel(application: Application, channel_id: int) -> AlertChannel:
    return get_object_or_404(AlertChannel, application=application, pk=channel_id)


def _save_rule(request: HttpRequest, application: Application, body: Any, rule: Any) -> Any:
    try:
        return services.rule_save(
            application=application,
            request=request,
            rule=rule,
            name=body.name,
            kind=body.kind,
            parameters=body.parameters.model_dump(exclude_none=True),
            channel_ids=body.channels,
            enabled=body.enabled,
            repeat_seconds=body.repeat_seconds,
        )
    except services.RuleError as exc:
        raise HttpError(_status(exc), str(exc)) from None


@router.get("/apps/{app}/alert-rules", response=list[RuleOut])
def list_rules(request: HttpRequest, app: str) -> list[dict[str, Any]]:
    """The application's alert rules."""
    application = _admin_app(request, app)
    rules = AlertRule.objects.filter(application=application).prefetch_related("channels")
    return [_rule_out(rule) for rule in rules]


@router.post(
    "/apps/{app}/alert-rules",
    response={201: RuleOut},
    auth=acting_with(PERM_ADMINISTER),
)
def create_rule(request: HttpRequest, app: str, body: RuleBody) -> Any:
    """Make a rule; a bad kind, parameter, channel or repeat interval is a 400 saying why."""
    application = _admin_app(request, app)
    return Status(201, _rule_out(_save_rule(request, application, body, None)))


@router.get("/apps/{app}/alert-rules/{rule_id}", response=RuleOut)
def get_rule(request: HttpRequest, app: str, rule_id: int) -> dict[str, Any]:
    return _rule_out(_rule(_admin_app(request, app), rule_id))


@router.put(
    "/apps/{app}/alert-rules/{rule_id}", response=RuleOut, auth=acting_with(PERM_ADMINISTER)
)
def put_rule(request: HttpRequest, app: str, rule_id: int, body: RuleBody) -> dict[str, Any]:
    """Replace a rule's settings (its kind stays what it is)."""
    application = _admin_app(request, app)
    rule = _rule(application, rule_id)
    if body.kind != rule.kind:
        raise HttpError(400, f"A rule's kind cannot change ({rule.kind}); make a new rule.")
    return _rule_out(_save_rule(request, application, body, rule))


@router.post(
    "/apps/{app}/alert-rules/{rule_id}/mute",
    response=RuleOut,
    auth=acting_with(PERM_ADMINISTER),
)
def mute_rule(request: HttpRequest, app: str, rule_id: int, body: MuteIn) -> dict[str, Any]:
    """Mute a rule until a time (null: unmute). Alerts still open and resolve; none is sent."""
    rule = _rule(_admin_app(request, app), rule_id)
    until = None
    if body.until is not None:
        try:
            until = datetime.fromisoformat(body.until)
        except ValueError:
            raise HttpError(400, BAD_TIME.format(value=body.until)) from None
        until = until if until.tzinfo else until.replace(tzinfo=UTC)
    try:
        services.rule_mute(rule=rule, request=request, until=until, reason=body.reason)
    except services.RuleError as exc:
        raise HttpError(_status(exc), str(exc)) from None
    return _rule_out(rule)


@router.delete(
    "/apps/{app}/alert-rules/{rule_id}", response={204: None}, auth=acting_with(PERM_ADMINISTER)
)
def delete_rule(request: HttpRequest, app: str, rule_id: int) -> Any:
    services.rule_delete(rule=_rule(_admin_app(request, app), rule_id), request=request)
    return Status(204, None)


@router.get("/apps/{app}/alert-channels", response=list[ChannelOut])
def list_channels(request: HttpRequest, app: str) -> list[dict[str, Any]]:
    application = _admin_app(request, app)
    return [_channel_out(c) for c in AlertChannel.objects.filter(application=application)]


def _save_channel(
    request: HttpRequest, application: Application, body: Any, channel: Any
) -> AlertChannel:
    try:
        return services.channel_save(
            application=application,
            request=request,
            channel=channel,
            name=body.name,
            kind=body.kind,
            url=getattr(body, "url", ""),
            secret=getattr(body, "secret", ""),
            recipients=getattr(body, "recipients", ""),
            enabled=body.enabled,
        )
    except services.ChannelError as exc:
        raise HttpError(_status(exc), str(exc)) from None


@router.post(
    "/apps/{app}/alert-channels",
    response={201: ChannelCreated},
    auth=acting_with(PERM_ADMINISTER),
)
def create_channel(request: HttpRequest, app: str, body: ChannelBody) -> Any:
    """Make a channel; a URL that is not http(s), or that points at StepChange itself, is
    a 400 saying why."""
    channel = _save_channel(request, _admin_app(request, app), body, None)
    return Status(201, {**_channel_out(channel), "secret": channel.secret})


@router.get("/apps/{app}/alert-channels/{channel_id}", response=ChannelOut)
def get_channel(request: HttpRequest, app: str, channel_id: int) -> dict[str, Any]:
    return _channel_out(_channel(_admin_app(request, app), channel_id))


@router.put(
    "/apps/{app}/alert-channels/{channel_id}",
    response=ChannelOut,
    auth=acting_with(PERM_ADMINISTER),
)
def put_channel(request: HttpRequest, app: str, channel_id: int, body: ChannelBody) -> Any:
    application = _admin_app(request, app)
    channel = _channel(application, channel_id)
    if body.kind != channel.kind:
        raise HttpError(400, f"A channel's kind cannot change ({channel.kind}); make a new one.")
    return _channel_out(_save_channel(request, application, body, channel))


@router.delete(
    "/apps/{app}/alert-channels/{channel_id}",
    response={204: None},
    auth=acting_with(PERM_ADMINISTER),
)
def delete_channel(request: HttpRequest, app: str, channel_id: int) -> Any:
    """Delete a channel; while it has messages still to deliver, a 409 saying so (they
    would be lost with it)."""
    channel = _channel(_admin_app(request, app), channel_id)
    try:
        services.channel_delete(channel=channel, request=request)
    except services.ChannelError as exc:
        raise HttpError(_status(exc), str(exc)) from None
    return Status(204, None)


@router.post(
    "/apps/{app}/alert-channels/{channel_id}/test",
    response={202: DeliveryOut},
    auth=acting_with(PERM_ADMINISTER),
)
def test_channel(request: HttpRequest, app: str, channel_id: int) -> Any:
    """Queue a sample alert to the channel; its outcome shows in the channel's deliveries."""
    channel = _channel(_admin_app(request, app), channel_id)
    return Status(202, services.channel_test(channel=channel, request=request))


@router.get("/apps/{app}/alert-channels/{channel_id}/deliveries", response=list[DeliveryOut])
def channel_deliveries(request: HttpRequest, app: str, channel_id: int) -> Any:
    """The channel's newest messages, with attempts and the last error."""
    channel = _channel(_admin_app(request, app), channel_id)
    return list(channel.deliveries.all()[:HISTORY_LIMIT])


@router.get("/apps/{app}/alerts", response=list[AlertOut])
def list_alerts(
    request: HttpRequest, app: str, state: Literal["firing", "resolved"] | None = None
) -> list[dict[str, Any]]:
    """The alert history, newest first (firing or resolved with `state`)."""
    application = _admin_app(request, app)
    alerts = Alert.objects.filter(rule__application=application).select_related("rule")
    if state is not None:
        alerts = alerts.filter(state=state)
    return [
        {
            "id": a.pk,
            "rule_id": a.rule_id,
            "rule_name": a.rule.name,
            "key": a.key,
            "state": a.state,
            "summary": a.summary,
            "link": a.link,
            "details": a.details,
            "first_seen_at": a.first_seen_at,
            "last_seen_at": a.last_seen_at,
            "resolved_at": a.resolved_at,
            "last_notified_at": a.last_notified_at,
        }
        for a in alerts[:HISTORY_LIMIT]
    ]
