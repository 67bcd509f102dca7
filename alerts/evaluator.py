"""The evaluator: each enabled rule's condition read with a bounded query, turned into
alerts that fire, repeat and resolve, and into outbox rows for the delivery loop.

One process evaluates at a time: it holds a lease row (`AlertLease`) that it renews each
pass and that expires if the process dies. Even without it, an alert is opened, notified
and resolved by conditional writes (a partial unique index of firing alerts, and updates
that name the value they replace), so two evaluators never send one event twice.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.urls import reverse
from django.utils import timezone

from alerts.models import LEASE_HOLDER, Alert, AlertDelivery, AlertRule, lease_take
from conductor import recovery
from conductor.models import Executor, PoisonWorkflow, RecoveryAttempt
from forks.models import EditedFork
from stepchange.asyncdb import db_async
from workflows.sources import ListQuery, source_for

logger = logging.getLogger(__name__)

Kind = AlertRule.Kind
LEASE = "alerts-evaluator"
HOLDER = LEASE_HOLDER
# How many workflows, executors or forks one alert names at most.
LISTED = 20
GONE_STATES = (Executor.State.DISCONNECTED, Executor.State.DEAD, Executor.State.RECOVERING)
FLAPPING_OUTCOMES = (
    RecoveryAttempt.Outcome.SENT,
    RecoveryAttempt.Outcome.FAILED,
    RecoveryAttempt.Outcome.HELD,
)


@dataclass
class Finding:
    """One condition a rule holds for now: `key` names it across passes."""

    key: str
    summary: str
    link: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def absolute(path: str) -> str:
    return f"{settings.SITE_URL}{path}" if path.startswith("/") else path


# The lease.


def lease_claim(*, holder: str = HOLDER, seconds: int | None = None) -> bool:
    """Take or renew the evaluator's lease; False while another live process holds it."""
    return lease_take(LEASE, holder=holder, seconds=seconds or settings.ALERT_EVALUATE_SECONDS * 3)


# Reading each kind's condition.


async def findings(rule: AlertRule, now: datetime) -> list[Finding]:
    """What `rule` finds now. Reads that need an executor or a system database raise
    when neither answers; the caller leaves the rule's alerts as they were."""
    p = rule.parameters
    match rule.kind:
        case Kind.FAILURES:
            return await _failures(rule, now, p)
        case Kind.STUCK:
            return await _stuck(rule, now, p)
        case Kind.QUEUE_DEPTH:
            return await _queue_depth(rule, p)
        case Kind.STRANDED:
            return await _stranded(rule)
    return await db_async(_registry_findings)(rule, now)


async def _failures(rule: AlertRule, now: datetime, p: dict[str, Any]) -> list[Finding]:
    """Workflows that failed in the window, however long ago they started: DBOS stamps
    `completed_at` when a workflow ends (ERROR included) and indexes it, where
    `updated_at` has no index. At most threshold + 1 rows are read, newest first along that
    index. A system database from before DBOS added the column refuses the filter
    (UnsupportedFilter, naming it): the rule is then reported as not evaluated."""
    source = await source_for(rule.application)
    threshold = p["threshold"]
    listing = await source.list(
        ListQuery(
            status=["ERROR"],
            workflow_name=[p["workflow_name"]],
            completed_after=now - timedelta(seconds=p["window_seconds"]),
            limit=threshold + 1,
        ),
        actor="stepchange (alerts)",
    )
    count = len(listing.items)
    if count <= threshold:
        return []
    app = rule.application.name
    return [
        Finding(
            key=p["workflow_name"],
            summary=(
                f"More than {threshold} workflows {p['workflow_name']} failed in the last "
                f"{p['window_seconds']} s"
            ),
            link=reverse("workflows", args=[app])
            + f"?status=ERROR&workflow_name={p['workflow_name']}",
            details={"workflow_ids": [w.workflow_id for w in listing.items][:LISTED]},
        )
    ]


async def _stuck(rule: AlertRule, now: datetime, p: dict[str, Any]) -> list[Finding]:
    source = await source_for(rule.application)
    statuses = p["status"].split(",")
    older = timedelta(seconds=p["older_than_seconds"])
    listing = await source.list(
        ListQuery(
            status=statuses,
            workflow_name=[p["workflow_name"]] if p.get("workflow_name") else None,
            end_time=now - older,
            limit=LISTED,
            sort_desc=False,
        ),
        actor="stepchange (alerts)",
    )
    if not listing.items:
        return []
    oldest = listing.items[0]
    more = "+" if len(listing.items) >= LISTED else ""
    return [
        Finding(
            key="",
            summary=(
                f"{len(listing.items)}{more} workflows {'/'.join(statuses)} for more than "
                f"{p['older_than_seconds']} s (oldest: {oldest.workflow_id})"
            ),
            link=reverse("workflow-detail", args=[rule.application.name, oldest.workflow_id]),
            details={"workflow_ids": [w.workflow_id for w in listing.items]},
        )
    ]


async def _queue_depth(rule: AlertRule, p: dict[str, Any]) -> list[Finding]:
    source = await source_for(rule.application)
    depths = await source.queue_depths(actor="stepchange (alerts)")
    wanted = p.get("queue_name") or None
    found = []
    for queue, counts in depths.depths.items():
        if wanted is not None and queue != wanted:
            continue
        depth = counts.get("ENQUEUED", 0)
        if depth > p["threshold"]:
            found.append(
                Finding(
                    key=queue,
                    summary=f"Queue {queue} holds {depth} enqueued workflows "
                    f"(threshold {p['threshold']})",
                    link=reverse("queued-workflows", args=[rule.application.name])
                    + f"?queue_name={queue}",
                    details={"queue_name": queue, "depth": depth},
                )
            )
    return found


async def _stranded(rule: AlertRule) -> list[Finding]:
    from workflows.versions import versions_read

    versions = await versions_read(rule.application, actor="stepchange (alerts)")
    link = reverse("versions", args=[rule.application.name])
    return [
        Finding(
            key=version.name or "",
            summary=f"{version.pinned} workflows wait on version "
            f"{version.name or '(none: the latest)'}, which no connected executor runs",
            link=link,
            details={"pending": version.pending, "enqueued": version.enqueued},
        )
        for version in versions.stranded
    ]


def _registry_findings(rule: AlertRule, now: datetime) -> list[Finding]:
    """The kinds StepChange's own tables answer."""
    app = rule.application
    p = rule.parameters
    if rule.kind == Kind.NO_EXECUTOR:
        if Executor.objects.live().filter(application=app).exists():
            return []
        seen = Executor.objects.filter(application=app).aggregate(at=Max("last_seen_at"))["at"]
        since = max(filter(None, [seen, app.created_at, rule.created_at]))
        if now - since < timedelta(seconds=p["older_than_seconds"]):
            return []
        return [
            Finding(
                key="",
                summary=f"No executor of {app.name} has been connected since "
                f"{since:%Y-%m-%d %H:%M:%S} UTC",
                link=reverse("executors", args=[app.name]),
            )
        ]
    if rule.kind == Kind.EXECUTOR_GONE:
        gone = Executor.objects.filter(application=app, state__in=GONE_STATES).order_by(
            "-disconnected_at"
        )[:LISTED]
        return [
            Finding(
                key=executor.executor_id,
                summary=f"Executor {executor.executor_id} ({executor.hostname or '?'}, "
                f"version {executor.application_version or '?'}) is gone: {executor.state}",
                link=reverse("executor-detail", args=[app.name, executor.executor_id]),
                details={"state": executor.state, "hostname": executor.hostname},
            )
            for executor in gone
        ]
    if rule.kind == Kind.POISON:
        held = PoisonWorkflow.objects.filter(
            application=app,
            resolved_at__isnull=True,
            executors_killed__gte=recovery.POISON_THRESHOLD,
        )[:LISTED]
        return [
            Finding(
                key=poison.workflow_id,
                summary=f"Workflow {poison.workflow_id} is held as poison: it was pending on "
                f"{poison.executors_killed} executors that died",
                link=reverse("workflow-detail", args=[app.name, poison.workflow_id]),
                details={"executor_ids": poison.executor_ids},
            )
            for poison in held
        ]
    if rule.kind == Kind.FLAPPING:
        since = now - timedelta(seconds=p["window_seconds"])
        count = RecoveryAttempt.objects.filter(
            application=app, created_at__gte=since, outcome__in=FLAPPING_OUTCOMES
        ).count()
        if count <= p["threshold"]:
            return []
        return [
            Finding(
                key="",
                summary=f"{count} recoveries of {app.name} in the last "
                f"{p['window_seconds']} s (threshold {p['threshold']})",
                link=reverse("executors", args=[app.name]),
                details={"recoveries": count},
            )
        ]
    if rule.kind == Kind.FORK_WAITING:
        before = now - timedelta(seconds=p["older_than_seconds"])
        waiting = EditedFork.objects.filter(
            application=app, status=EditedFork.Status.STAGED, created_at__lte=before
        ).order_by("created_at")[:LISTED]
        return [
            Finding(
                key=str(fork.pk),
                summary=f"Edited fork {fork.pk} of {fork.source_workflow_id} by "
                f"{fork.created_by_name} has waited for approval since "
                f"{fork.created_at:%Y-%m-%d %H:%M:%S} UTC",
                link=reverse("edited-fork", args=[app.name, fork.pk]),
            )
            for fork in waiting
        ]
    raise ValueError(f"Unknown rule kind {rule.kind!r}")


# Turning findings into alerts and messages.


def message(alert: Alert, event: str, now: datetime) -> dict[str, Any]:
    """What every channel is sent, whatever its shape: the closed schema of a message."""
    rule = alert.rule
    return {
        "event": event,
        "application": rule.application.name,
        "summary": alert.summary,
        "link": absolute(alert.link),
        "history": absolute(reverse("alert-history", args=[rule.application.name])),
        "rule": {"id": rule.pk, "name": rule.name, "kind": rule.kind},
        "alert": {
            "id": alert.pk,
            "key": alert.key,
            "state": alert.state,
            "first_seen_at": alert.first_seen_at.isoformat(),
            "last_seen_at": alert.last_seen_at.isoformat(),
            "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
        },
        "details": alert.details,
        "dedup_key": f"stepchange-alert-{alert.pk}",
        "sent_at": now.isoformat(),
    }


def _notify(alert: Alert, event: str, now: datetime, previous: datetime | None) -> int:
    """Queue `event` of `alert` for each of its rule's enabled channels, once: only the
    writer that moves `last_notified_at` on from `previous` queues it."""
    moved = Alert.objects.filter(pk=alert.pk, last_notified_at=previous).update(
        last_notified_at=now
    )
    if moved != 1:
        return 0
    alert.last_notified_at = now
    body = message(alert, event, now)
    channels = list(alert.rule.channels.filter(enabled=True))
    AlertDelivery.objects.bulk_create(
        AlertDelivery(alert=alert, channel=channel, event=event, message=body, next_attempt_at=now)
        for channel in channels
    )
    return len(channels)


def reconcile(rule: AlertRule, found: list[Finding], now: datetime) -> dict[str, int]:
    """Open, refresh, repeat and resolve `rule`'s alerts to match what it found."""
    counts = {"fired": 0, "repeated": 0, "resolved": 0, "queued": 0}
    muted = rule.muted(now)
    firing = {a.key: a for a in Alert.objects.filter(rule=rule, state=Alert.State.FIRING)}
    for finding in found:
        alert = firing.pop(finding.key, None)
        if alert is None:
            try:
                with transaction.atomic():
                    alert = Alert.objects.create(
                        rule=rule,
                        key=finding.key,
                        summary=finding.summary,
                        link=finding.link,
                        details=finding.details,
                        first_seen_at=now,
                        last_seen_at=now,
                    )
            except IntegrityError:
                continue  # another evaluator opened it a moment ago
            counts["fired"] += 1
        else:
            Alert.objects.filter(pk=alert.pk).update(
                summary=finding.summary, details=finding.details, last_seen_at=now
            )
            alert.summary, alert.details, alert.last_seen_at = (
                finding.summary,
                finding.details,
                now,
            )
        alert.rule = rule
        if muted:
            continue
        previous = alert.last_notified_at
        if previous is None:
            counts["queued"] += _notify(alert, AlertDelivery.Event.FIRING, now, None)
        elif rule.repeat_seconds and now - previous >= timedelta(seconds=rule.repeat_seconds):
            counts["repeated"] += 1
            counts["queued"] += _notify(alert, AlertDelivery.Event.REPEAT, now, previous)
    for alert in firing.values():
        closed = Alert.objects.filter(pk=alert.pk, state=Alert.State.FIRING).update(
            state=Alert.State.RESOLVED, resolved_at=now
        )
        if closed != 1:
            continue
        counts["resolved"] += 1
        alert.state, alert.resolved_at, alert.rule = Alert.State.RESOLVED, now, rule
        # An alert nobody was told of (muted throughout) resolves quietly.
        if alert.last_notified_at is not None and not muted:
            counts["queued"] += _notify(
                alert, AlertDelivery.Event.RESOLVED, now, alert.last_notified_at
            )
    return counts


def _enabled_rules() -> list[AlertRule]:
    return list(AlertRule.objects.filter(enabled=True).select_related("application"))


async def evaluate(*, now: datetime | None = None) -> dict[str, int]:
    """One pass over every enabled rule. A rule whose read fails keeps its alerts as they
    were (an unreachable system database resolves nothing)."""
    totals = {"fired": 0, "repeated": 0, "resolved": 0, "queued": 0, "failed": 0}
    for rule in await db_async(_enabled_rules)():
        moment = now or timezone.now()
        try:
            found = await findings(rule, moment)
        except Exception as exc:
            logger.warning("Alert rule %s could not be evaluated: %s", rule.pk, exc)
            totals["failed"] += 1
            continue
        for name, count in (await db_async(reconcile)(rule, found, moment)).items():
            totals[name] += count
    return totals


async def evaluate_if_leader(*, holder: str = HOLDER) -> dict[str, int] | None:
    """One pass, if this process holds (or takes) the lease; None if another does."""
    if not await db_async(lease_claim)(holder=holder):
        return None
    return await evaluate()


async def evaluate_forever() -> None:
    """The evaluator (a loop of `stepchange.background`)."""
    while True:
        await asyncio.sleep(settings.ALERT_EVALUATE_SECONDS)
        try:
            await evaluate_if_leader()
        except Exception:
            logger.exception("The alert evaluation failed; it runs again shortly")
