"""The executor-facing side's records: executors and their connections, the request log,
and recovery attempts.

An executor row is keyed by the `executor_id` the executor reports in `executor_info`
(a fresh UUID per process, kept across reconnects: PROTOCOL.md §1.5, §1.6).
"""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

from django.conf import settings
from django.db import models
from django.utils import timezone

from stepchange.models import Application


class ExecutorQuerySet(models.QuerySet["Executor"]):
    def live(self) -> ExecutorQuerySet:
        """Connected, and heard from recently: a crashed StepChange process leaves rows that
        still say connected, but its heartbeat stops."""
        cutoff = timezone.now() - timedelta(seconds=settings.EXECUTOR_HEARTBEAT_SECONDS * 3)
        return self.filter(state=Executor.State.CONNECTED, last_seen_at__gte=cutoff)


class Executor(models.Model):
    class State(models.TextChoices):
        CONNECTED = "connected"
        DISCONNECTED = "disconnected"  # gone, within its application's grace period
        RECOVERING = "recovering"  # claimed by one process, which is recovering it now
        DEAD = "dead"  # gone past the grace period; recovery waits, failed or is held
        RECOVERED = "recovered"  # its pending work was handed to a live executor

    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="executors")
    executor_id = models.CharField(max_length=100)
    state = models.CharField(max_length=20, choices=State.choices, default=State.CONNECTED)
    application_version = models.CharField(max_length=200, blank=True)
    hostname = models.CharField(max_length=255, blank=True)
    language = models.CharField(max_length=50, blank=True)
    dbos_version = models.CharField(max_length=50, blank=True)
    metadata = models.JSONField(null=True, blank=True)
    remote_address = models.CharField(max_length=100, blank=True)
    # The Channels channel of the consumer that holds this executor's socket.
    channel_name = models.CharField(max_length=200, blank=True)
    first_connected_at = models.DateTimeField(default=timezone.now)
    connected_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    disconnected_at = models.DateTimeField(null=True, blank=True)
    recovery_claimed_at = models.DateTimeField(null=True, blank=True)

    objects: ClassVar[ExecutorQuerySet] = ExecutorQuerySet.as_manager()  # type: ignore[assignment]

    class Meta:
        ordering = ["-connected_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["application", "executor_id"], name="unique_executor_per_application"
            )
        ]
        indexes = [models.Index(fields=["application", "state"])]

    def __str__(self) -> str:
        return f"{self.application.name}/{self.executor_id}"


class ExecutorConnection(models.Model):
    """One WebSocket session of an executor: the connection history."""

    executor = models.ForeignKey(Executor, on_delete=models.CASCADE, related_name="connections")
    remote_address = models.CharField(max_length=100, blank=True)
    connected_at = models.DateTimeField(default=timezone.now)
    disconnected_at = models.DateTimeField(null=True, blank=True)
    close_code = models.IntegerField(null=True, blank=True)
    ended_by = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["-connected_at"]

    def __str__(self) -> str:
        return f"{self.executor} at {self.connected_at:%Y-%m-%d %H:%M:%S}"


class RequestLog(models.Model):
    """One request StepChange sent to an executor, and how it ended."""

    class Outcome(models.TextChoices):
        OK = "ok"
        ERROR = "error"  # the executor answered with an error_message
        TIMEOUT = "timeout"
        DISCONNECTED = "disconnected"
        NO_EXECUTOR = "no_executor"

    application = models.ForeignKey(
        Application, on_delete=models.CASCADE, related_name="request_log"
    )
    request_id = models.CharField(max_length=64, db_index=True)
    message_type = models.CharField(max_length=64)
    executor_id = models.CharField(max_length=100, blank=True)
    actor_name = models.CharField(max_length=150, blank=True)
    source = models.CharField(max_length=30, blank=True)
    sent_at = models.DateTimeField(db_index=True)
    duration_ms = models.FloatField(null=True, blank=True)
    request_bytes = models.PositiveIntegerField(default=0)
    response_bytes = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    error_message = models.TextField(blank=True)
    request_body = models.TextField(blank=True)
    response_body = models.TextField(blank=True)
    truncated = models.BooleanField(default=False)

    class Meta:
        ordering = ["-sent_at", "-id"]
        indexes = [models.Index(fields=["application", "-sent_at"])]

    def __str__(self) -> str:
        return f"{self.message_type} {self.request_id} ({self.outcome})"


# Which way an action or a recovery went: through a live executor, or written into the
# application's system database (RecoveryAttempt.path, audit records' "path").
EXECUTOR_PATH = "executor"
DATABASE_PATH = "database"


class RecoveryAttempt(models.Model):
    """StepChange handing a dead executor's pending workflows to a live one."""

    class Outcome(models.TextChoices):
        WAITING = "waiting"  # no live executor of that version yet
        NOTHING_PENDING = "nothing_pending"
        SENT = "sent"
        FAILED = "failed"
        HELD = "held"  # a poison workflow is among them: an operator decides

    application = models.ForeignKey(
        Application, on_delete=models.CASCADE, related_name="recovery_attempts"
    )
    dead_executor_id = models.CharField(max_length=100)
    application_version = models.CharField(max_length=200, blank=True)
    target_executor_id = models.CharField(max_length=100, blank=True)
    pending_workflow_ids = models.JSONField(default=list, blank=True)
    manual = models.BooleanField(default=False)
    requested_by = models.CharField(max_length=150, blank=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    detail = models.TextField(blank=True)
    # "executor" (a `recovery` message to a live executor) or "database" (re-enqueued in
    # the system database, forks.native.native_recover).
    path = models.CharField(max_length=20, default=EXECUTOR_PATH)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"recovery of {self.dead_executor_id} ({self.outcome})"


class PoisonWorkflow(models.Model):
    """A workflow whose recovery keeps killing the executors that run it."""

    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="+")
    workflow_id = models.CharField(max_length=255)
    executors_killed = models.PositiveIntegerField(default=0)
    executor_ids = models.JSONField(default=list, blank=True)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["-last_seen_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["application", "workflow_id"], name="unique_poison_per_application"
            )
        ]

    def __str__(self) -> str:
        return f"poison {self.workflow_id}"


class DatabaseExecutor(models.Model):
    """An executor StepChange knows only from the `executor_id` of its application's
    PENDING workflows (an SDK with no open Conductor client), probed at the application's
    liveness URL (conductor/liveness.py)."""

    class State(models.TextChoices):
        ALIVE = "alive"  # its URL answered 2xx
        FAILING = "failing"  # its URL fails, not yet for the grace period
        UNPROBED = "unprobed"  # its id makes no usable URL: never recovered automatically
        RECOVERING = "recovering"  # claimed by one process, which is recovering it now
        RECOVERED = "recovered"  # its PENDING workflows were re-enqueued
        HELD = "held"  # recovered but for poison suspects, held for an operator
        FAILED = "failed"  # the recovery failed (a system database away): retried

    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="+")
    executor_id = models.CharField(max_length=255)
    application_version = models.CharField(max_length=200, blank=True)
    state = models.CharField(max_length=20, choices=State.choices, default=State.ALIVE)
    last_probed_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    failing_since = models.DateTimeField(null=True, blank=True)
    probe_detail = models.CharField(max_length=500, blank=True)
    recovery_claimed_at = models.DateTimeField(null=True, blank=True)
    recovered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["executor_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["application", "executor_id"], name="unique_database_executor"
            )
        ]

    def __str__(self) -> str:
        return f"{self.application.name}/{self.executor_id} (database)"
