"""Alerting as StepChange keeps it: an application's rules, the channels an admin points
them at, the alerts the evaluator opened and closed, and one outbox row per message to
send (so a failing channel is retried, and what it failed is on record).

Delivery outcomes are counted from `AlertDelivery`: `state` (pending, delivered, failed),
`attempts`, `last_error`, `channel.kind`; `/metrics` reads them there.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.utils import timezone

from stepchange.models import Application


class AlertChannel(models.Model):
    class Kind(models.TextChoices):
        WEBHOOK = "webhook", "Webhook (JSON, signed)"
        SLACK = "slack", "Slack incoming webhook"
        PAGERDUTY = "pagerduty", "PagerDuty Events API v2"
        EMAIL = "email", "Email"
        APPLICATION = "application", "The application's own alert handler"

    application = models.ForeignKey(
        Application, on_delete=models.CASCADE, related_name="alert_channels"
    )
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    url = models.CharField(max_length=1000, blank=True)
    # The webhook's HMAC key, or PagerDuty's routing key: needed in the clear to use it.
    secret = models.CharField(max_length=200, blank=True)
    # Email: addresses, comma-separated.
    recipients = models.CharField(max_length=1000, blank=True)
    enabled = models.BooleanField(default=True)
    created_by_name = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["application__name", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["application", "name"], name="unique_alert_channel_per_application"
            )
        ]

    def __str__(self) -> str:
        return f"{self.application.name}: {self.name} ({self.kind})"


class AlertRule(models.Model):
    class Kind(models.TextChoices):
        FAILURES = "failures", "Failures of a workflow name above N in a window"
        STUCK = "stuck", "A workflow PENDING or ENQUEUED longer than T"
        QUEUE_DEPTH = "queue_depth", "Queue depth above N"
        NO_EXECUTOR = "no_executor", "No executor connected for T"
        EXECUTOR_GONE = "executor_gone", "An executor gone"
        POISON = "poison", "A poison workflow held"
        STRANDED = "stranded", "Workflows stranded on a version no executor runs"
        FLAPPING = "flapping", "Recovery flapping"
        FORK_WAITING = "fork_waiting", "An edited fork waiting for approval longer than T"

    application = models.ForeignKey(
        Application, on_delete=models.CASCADE, related_name="alert_rules"
    )
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # What the kind takes (alerts.rules.PARAMETERS), validated there.
    parameters = models.JSONField(default=dict, blank=True)
    channels = models.ManyToManyField(AlertChannel, blank=True, related_name="rules")
    enabled = models.BooleanField(default=True)
    # A firing alert is sent again after this long; 0 = only when it fires and resolves.
    repeat_seconds = models.PositiveIntegerField(default=3600)
    muted_until = models.DateTimeField(null=True, blank=True)
    created_by_name = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["application__name", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["application", "name"], name="unique_alert_rule_per_application"
            )
        ]

    def __str__(self) -> str:
        return f"{self.application.name}: {self.name}"

    def muted(self, now: Any = None) -> bool:
        return self.muted_until is not None and self.muted_until > (now or timezone.now())


class Alert(models.Model):
    """One condition a rule found, from when it fired to when it resolved. `key` tells
    apart what one rule finds (a workflow name, a queue, an executor, a version)."""

    class State(models.TextChoices):
        FIRING = "firing"
        RESOLVED = "resolved"

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    key = models.CharField(max_length=300, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.FIRING)
    summary = models.TextField()
    link = models.CharField(max_length=1000, blank=True)
    details = models.JSONField(default=dict, blank=True)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    last_notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-first_seen_at", "-id"]
        constraints = [
            # De-duplication in the database itself: one firing alert per rule and key,
            # whichever process evaluates.
            models.UniqueConstraint(
                fields=["rule", "key"],
                condition=models.Q(state="firing"),
                name="one_firing_alert_per_rule_key",
            )
        ]
        indexes = [models.Index(fields=["rule", "state"])]

    def __str__(self) -> str:
        return f"{self.rule}: {self.key or '-'} ({self.state})"


class AlertDelivery(models.Model):
    """One message to one channel: the outbox row the delivery loop works through."""

    class Event(models.TextChoices):
        FIRING = "firing"
        REPEAT = "repeat"
        RESOLVED = "resolved"
        TEST = "test"

    class State(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"  # gave up after MAX_ATTEMPTS; shown on the channel's page

    # Null for a test message, and once its rule (and the rule's alerts) is deleted: the
    # message is still sent, and still shown on its channel's page.
    alert = models.ForeignKey(
        Alert, null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries"
    )
    channel = models.ForeignKey(AlertChannel, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=10, choices=Event.choices)
    # The message as it was when the event happened (alerts.channels.message).
    message = models.JSONField(default=dict)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["state", "next_attempt_at"]),
            models.Index(fields=["channel", "-created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.event} to {self.channel} ({self.state})"


class AlertLease(models.Model):
    """Who evaluates now: one row per loop, held by one process until `expires_at`."""

    name = models.CharField(max_length=50, unique=True)
    holder = models.CharField(max_length=100)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} held by {self.holder}"


# One process on the host, told apart from its neighbours and from an earlier self.
LEASE_HOLDER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def lease_take(name: str, *, holder: str, seconds: int) -> bool:
    """Take or renew the lease `name` for `seconds`; False while another live process
    holds it. A conditional update, then a create that only one process can win."""
    now = timezone.now()
    until = now + timedelta(seconds=seconds)
    taken = (
        AlertLease.objects.filter(name=name)
        .filter(Q(holder=holder) | Q(expires_at__lt=now))
        .update(holder=holder, expires_at=until)
    )
    if taken:
        return True
    if AlertLease.objects.filter(name=name).exists():
        return False
    try:
        with transaction.atomic():
            AlertLease.objects.create(name=name, holder=holder, expires_at=until)
    except IntegrityError:
        return False
    return True
