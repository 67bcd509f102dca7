"""The console's forms for rules and channels. Numbers are taken as text and checked by
`alerts.rules`, so the form and the API refuse the same input with the same words."""

from __future__ import annotations

from typing import Any

from django import forms

from alerts.channels import ChannelError, channel_clean
from alerts.models import AlertChannel, AlertRule
from alerts.rules import PARAMETERS, RuleError, parameters_clean

PARAMETER_FIELDS = (
    "workflow_name",
    "threshold",
    "window_seconds",
    "older_than_seconds",
    "queue_name",
    "status",
)


def _channel_label(channel: AlertChannel) -> str:
    return f"{channel.name} ({channel.get_kind_display()})"


class RuleForm(forms.Form):
    name = forms.CharField(max_length=100)
    kind = forms.ChoiceField(choices=AlertRule.Kind.choices)
    workflow_name = forms.CharField(required=False, max_length=300, label="Workflow name")
    threshold = forms.CharField(required=False, max_length=20, label="Threshold (N)")
    window_seconds = forms.CharField(required=False, max_length=20, label="Window (seconds)")
    older_than_seconds = forms.CharField(
        required=False, max_length=20, label="Longer than (seconds, T)"
    )
    queue_name = forms.CharField(
        required=False, max_length=300, label="Queue name", help_text="Empty: every queue."
    )
    status = forms.CharField(
        required=False,
        max_length=40,
        label="Statuses",
        help_text="PENDING, ENQUEUED or both, comma-separated.",
    )
    repeat_seconds = forms.IntegerField(
        min_value=0,
        initial=3600,
        label="Repeat every (seconds)",
        help_text="A firing alert is sent again this often; 0: only when it fires and resolves.",
    )
    channels = forms.ModelMultipleChoiceField(
        queryset=AlertChannel.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args: Any, application: Any, editing: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        channels = self.fields["channels"]
        assert isinstance(channels, forms.ModelMultipleChoiceField)
        channels.queryset = AlertChannel.objects.filter(application=application)
        channels.label_from_instance = _channel_label  # type: ignore[method-assign,assignment]
        if editing:
            self.fields["kind"].disabled = True

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        kind = cleaned.get("kind")
        if kind:
            taken = {p.name for p in PARAMETERS.get(kind, ())}
            raw = {name: cleaned.get(name) or "" for name in PARAMETER_FIELDS if name in taken}
            try:
                cleaned["parameters"] = parameters_clean(kind, raw)
            except RuleError as exc:
                self.add_error(None, str(exc))
        return cleaned


class MuteForm(forms.Form):
    until = forms.DateTimeField(
        required=False,
        label="Mute until (UTC)",
        help_text="Empty: unmute.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    reason = forms.CharField(required=False, max_length=500)


class ChannelForm(forms.Form):
    name = forms.CharField(max_length=100)
    kind = forms.ChoiceField(choices=AlertChannel.Kind.choices)
    url = forms.CharField(
        required=False,
        max_length=1000,
        label="URL",
        help_text="Webhook, Slack and PagerDuty (empty: PagerDuty's Events API v2).",
    )
    secret = forms.CharField(
        required=False,
        max_length=200,
        label="Secret or routing key",
        help_text="Webhook: the HMAC key (empty: one is made). PagerDuty: the routing key.",
        widget=forms.PasswordInput(render_value=False),
    )
    recipients = forms.CharField(
        required=False, max_length=1000, help_text="Email: addresses, comma-separated."
    )
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args: Any, editing: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.editing = editing
        if editing:
            self.fields["kind"].disabled = True
            self.fields["secret"].help_text = "Empty: keep the current one."

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        kind = cleaned.get("kind")
        if kind:
            try:
                channel_clean(
                    kind=kind,
                    url=cleaned.get("url") or "",
                    # Checked as if set: an edit keeps the secret it has.
                    secret=cleaned.get("secret") or ("kept" if self.editing else ""),
                    recipients=cleaned.get("recipients") or "",
                )
            except ChannelError as exc:
                self.add_error(None, str(exc))
        return cleaned
