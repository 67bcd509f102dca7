"""Recovery of executors that went away (DESIGN.md "Recovery is StepChange's job").

An executor connected to a conductor recovers nothing on its own (PROTOCOL.md §1.6): its
PENDING workflows wait until the conductor sends `recovery` with its id to a live
executor of the same application and version. Each StepChange process runs one sweeper
task that marks executors dead after their application's grace period and recovers them.
Claiming a dead executor is one conditional UPDATE, so with several processes exactly one
of them recovers it.

A workflow left pending by several executors that died one after the other is a poison
suspect: StepChange holds the recovery and shows it to an operator, with a cancel button,
instead of handing it to executor after executor.
"""

import asyncio
import functools
import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from conductor import relay
from conductor.models import Executor, ExecutorConnection, PoisonWorkflow, RecoveryAttempt
from conductor.protocol import (
    ExistPendingWorkflowsRequest,
    ExistPendingWorkflowsResponse,
    ListWorkflowsBody,
    ListWorkflowsRequest,
    ListWorkflowsResponse,
    RecoveryRequest,
)
from conductor.registry import ENDED_BY_SHUTDOWN, stale_executors_release
from stepchange import prometheus
from stepchange.asyncdb import db_async
from stepchange.audit import Result, audit_record
from stepchange.models import Application

logger = logging.getLogger(__name__)

ACTION = "executor.recovery"
AUTOMATIC = "stepchange (automatic recovery)"
# A workflow pending on this many executors that died in turn is a poison suspect.
POISON_THRESHOLD = 2
PENDING_LIST_LIMIT = 500
RETRY_FAILED_AFTER_SECONDS = 30
ABANDONED_CLAIM_SECONDS = 300
# An executor that a StepChange process sent away when it shut down (a normal close) is
# alive and reconnecting, maybe to a process that is still starting: it is not recovered
# before this long, whatever its application's grace. If it never comes back, it is.
HANDED_OFF_GRACE_SECONDS = 120
# Close codes of an executor that closed its socket on purpose (its process shutting down):
# not a death. Its work is recovered only if still PENDING on it after the grace period,
# once, and never counted against a workflow as a poison suspect.
CLEAN_CLOSE_CODES = (1000, 1001)
CLEAN_CLOSE = (
    "It closed cleanly (code {code}), yet its work was still PENDING on it after the grace "
    "period and no live executor had taken it: recovered once, not counted as a death."
)
# Executors an operator may recover by hand: gone, whatever became of their work since.
RECOVERABLE = (Executor.State.DISCONNECTED, Executor.State.DEAD, Executor.State.RECOVERED)


def recovery_refused(
    *,
    application: Application,
    executor_ids: list[str],
    target: str,
    why: str,
    request: Any = None,
) -> None:
    """Audit a manual recovery refused before anything was claimed or sent."""
    audit_record(
        action=ACTION,
        request=request,
        application=application,
        target=target,
        parameters={"executor_ids": executor_ids, "manual": True},
        result=Result.FAILED,
        detail=why,
    )


async def sweep_forever() -> None:
    """This process's sweeper: one `sweep` every RECOVERY_SWEEP_SECONDS (a loop of
    `stepchange.background`)."""
    while True:
        await asyncio.sleep(settings.RECOVERY_SWEEP_SECONDS)
        try:
            await sweep()
        except Exception:
            logger.exception("The recovery sweep failed; it runs again shortly")


async def sweep() -> list[RecoveryAttempt]:
    """One pass: mark executors dead past their grace period and recover what can be."""
    attempts = []
    for executor in await db_async(_claim_due)():
        attempts.append(await recover(executor))
    return attempts


def _claim_due() -> list[Executor]:
    """Executors this process should recover now, each claimed by one conditional UPDATE."""
    now = timezone.now()
    candidates: list[Executor] = []
    for application in Application.objects.all():
        stale_executors_release(application=application)
        grace = now - timedelta(seconds=application.recovery_grace_seconds)
        handed_off = now - timedelta(seconds=HANDED_OFF_GRACE_SECONDS)
        candidates += (
            Executor.objects.filter(
                application=application,
                state=Executor.State.DISCONNECTED,
                disconnected_at__lte=grace,
            )
            .annotate(ended_by=Subquery(_last_connection_end))
            .exclude(ended_by=ENDED_BY_SHUTDOWN, disconnected_at__gt=handed_off)
        )
        candidates += _worth_retrying(application, now)
        # A process that died while recovering leaves its claim behind: take it over.
        candidates += Executor.objects.filter(
            application=application,
            state=Executor.State.RECOVERING,
            recovery_claimed_at__lt=now - timedelta(seconds=ABANDONED_CLAIM_SECONDS),
        )
    return [
        Executor.objects.select_related("application").get(pk=executor.pk)
        for executor in candidates
        if claim(executor)
    ]


# How an executor's latest connection ended.
_last_connection_end = (
    ExecutorConnection.objects.filter(executor=OuterRef("pk"))
    .order_by("-connected_at")
    .values("ended_by")[:1]
)


def claim(executor: Executor, *, states: tuple[str, ...] | None = None) -> bool:
    """Move an executor to RECOVERING unless another process got there first."""
    allowed = states or (executor.state,)
    return (
        Executor.objects.filter(
            pk=executor.pk, state__in=allowed, recovery_claimed_at=executor.recovery_claimed_at
        ).update(state=Executor.State.RECOVERING, recovery_claimed_at=timezone.now())
        == 1
    )


def _worth_retrying(application: Application, now: Any) -> list[Executor]:
    """Dead executors whose last attempt can now go further: a same-version executor has
    connected, a failure has cooled down, or every poison suspect has been dealt with."""
    live_versions = set(
        Executor.objects.live()
        .filter(application=application)
        .values_list("application_version", flat=True)
    )
    retry = []
    for executor in Executor.objects.filter(application=application, state=Executor.State.DEAD):
        last = RecoveryAttempt.objects.filter(
            application=application, dead_executor_id=executor.executor_id
        ).first()
        if last is None or executor.application_version not in live_versions:
            continue
        outcome = last.outcome
        if (
            outcome == RecoveryAttempt.Outcome.WAITING
            or (
                outcome == RecoveryAttempt.Outcome.FAILED
                and last.created_at < now - timedelta(seconds=RETRY_FAILED_AFTER_SECONDS)
            )
            or (outcome == RecoveryAttempt.Outcome.HELD and not _unresolved(last))
        ):
            retry.append(executor)
    return retry


def _unresolved(attempt: RecoveryAttempt) -> bool:
    return PoisonWorkflow.objects.filter(
        application=attempt.application,
        workflow_id__in=attempt.pending_workflow_ids,
        executors_killed__gte=POISON_THRESHOLD,
        resolved_at__isnull=True,
    ).exists()


async def recover(
    executor: Executor, *, manual: bool = False, requested_by: str = AUTOMATIC, request: Any = None
) -> RecoveryAttempt:
    """Send `recovery` for a dead executor to a live one of the same application and version."""
    application = executor.application
    record = functools.partial(
        _record, executor, manual=manual, requested_by=requested_by, request=request
    )
    target = await db_async(_same_version_target)(executor)
    if target is None:
        return await record(
            RecoveryAttempt.Outcome.WAITING,
            detail=f"No live executor runs version {executor.application_version!r}; "
            "recovery runs as soon as one connects.",
        )
    options: dict[str, Any] = {
        "executor": target.executor_id,
        "actor_name": requested_by,
        "source": "recovery",
    }
    try:
        exists = relay.expect(
            await relay.request(
                application,
                ExistPendingWorkflowsRequest(
                    executor_id=executor.executor_id,
                    application_version=executor.application_version,
                ),
                **options,
            ),
            ExistPendingWorkflowsResponse,
        )
        if not exists.exist:
            return await record(RecoveryAttempt.Outcome.NOTHING_PENDING, target=target)
        pending = relay.expect(
            await relay.request(
                application,
                ListWorkflowsRequest(
                    body=ListWorkflowsBody(
                        executor_id=[executor.executor_id],
                        status=["PENDING"],
                        limit=PENDING_LIST_LIMIT,
                    )
                ),
                **options,
            ),
            ListWorkflowsResponse,
        )
        pending_ids = [row.workflow_uuid for row in pending.output if row.workflow_uuid]
        clean = await db_async(_clean_close_code)(executor)
        if clean is not None:
            await relay.request(
                application, RecoveryRequest(executor_ids=[executor.executor_id]), **options
            )
            return await record(
                RecoveryAttempt.Outcome.SENT,
                target=target,
                pending=pending_ids,
                detail=CLEAN_CLOSE.format(code=clean),
            )
        poison = await db_async(tally_poison)(
            executor.application, executor.executor_id, pending_ids
        )
        if poison and not manual:
            return await record(
                RecoveryAttempt.Outcome.HELD,
                target=target,
                pending=pending_ids,
                detail="Held: poison suspects " + ", ".join(poison),
            )
        await relay.request(
            application, RecoveryRequest(executor_ids=[executor.executor_id]), **options
        )
    except relay.RelayError as exc:
        return await record(RecoveryAttempt.Outcome.FAILED, target=target, detail=str(exc))
    return await record(RecoveryAttempt.Outcome.SENT, target=target, pending=pending_ids)


def _clean_close_code(executor: Executor) -> int | None:
    """The close code of the executor's last connection if it closed cleanly, else None."""
    code = (
        ExecutorConnection.objects.filter(executor=executor)
        .order_by("-connected_at")
        .values_list("close_code", flat=True)
        .first()
    )
    return code if code in CLEAN_CLOSE_CODES else None


def _same_version_target(executor: Executor) -> Executor | None:
    return (
        Executor.objects.live()
        .filter(
            application=executor.application,
            application_version=executor.application_version,
        )
        .exclude(pk=executor.pk)
        .order_by("-connected_at")
        .first()
    )


def tally_poison(application: Application, executor_id: str, pending_ids: list[str]) -> list[str]:
    """Count an executor's death against each of its pending workflows; return the poison
    suspects. Connected executors' recovery and the database path's both count here."""
    suspects = []
    now = timezone.now()
    with transaction.atomic():
        for workflow_id in pending_ids:
            row, _ = PoisonWorkflow.objects.select_for_update().get_or_create(
                application=application, workflow_id=workflow_id
            )
            if executor_id not in row.executor_ids:
                row.executor_ids = [*row.executor_ids, executor_id]
                row.executors_killed = len(row.executor_ids)
                row.last_seen_at = now
                row.save()
            if row.executors_killed >= POISON_THRESHOLD and row.resolved_at is None:
                suspects.append(workflow_id)
    return suspects


async def _record(
    executor: Executor,
    outcome: str,
    *,
    target: Executor | None = None,
    pending: list[str] | None = None,
    manual: bool,
    requested_by: str,
    request: Any,
    detail: str = "",
) -> RecoveryAttempt:
    attempt: RecoveryAttempt = await db_async(_write_attempt)(
        executor, outcome, target, pending or [], manual, requested_by, request, detail
    )
    return attempt


def _write_attempt(
    executor: Executor,
    outcome: str,
    target: Executor | None,
    pending: list[str],
    manual: bool,
    requested_by: str,
    request: Any,
    detail: str,
) -> RecoveryAttempt:
    with transaction.atomic():
        attempt = RecoveryAttempt.objects.create(
            application=executor.application,
            dead_executor_id=executor.executor_id,
            application_version=executor.application_version,
            target_executor_id=target.executor_id if target else "",
            pending_workflow_ids=pending,
            manual=manual,
            requested_by=requested_by,
            outcome=outcome,
            detail=detail,
        )
        done = outcome in (RecoveryAttempt.Outcome.SENT, RecoveryAttempt.Outcome.NOTHING_PENDING)
        Executor.objects.filter(pk=executor.pk, state=Executor.State.RECOVERING).update(
            state=Executor.State.RECOVERED if done else Executor.State.DEAD
        )
        audit_record(
            action=ACTION,
            request=request,
            actor_name="" if request is not None else requested_by,
            application=executor.application,
            target=f"executor {executor.executor_id}",
            parameters={
                "application_version": executor.application_version,
                "target_executor_id": attempt.target_executor_id,
                "pending_workflow_ids": pending,
                "manual": manual,
            },
            result=(
                "ok"
                if outcome
                in (
                    RecoveryAttempt.Outcome.SENT,
                    RecoveryAttempt.Outcome.NOTHING_PENDING,
                    RecoveryAttempt.Outcome.WAITING,
                )
                else "failed"
            ),
            detail=f"{outcome}: {detail}" if detail else outcome,
        )
    prometheus.RECOVERIES.labels(executor.application.name, outcome).inc()
    if outcome != RecoveryAttempt.Outcome.SENT:
        logger.info("Recovery of executor %s: %s %s", executor.executor_id, outcome, detail)
    else:
        logger.info(
            "Recovered executor %s onto %s (%d pending)",
            executor.executor_id,
            attempt.target_executor_id,
            len(pending),
        )
    return attempt
