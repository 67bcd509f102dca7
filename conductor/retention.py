"""Retention (PROTOCOL.md §2.2 `retention`): the garbage collection and global timeout that
an application's settings ask of DBOS, sent to one executor by an admin or by the sweeper.
An application with no executor connected and a system database registered has them
written into that database instead (`forks.native_retention`), audited with path "database".

DBOS's garbage collection is not scoped to an application: it deletes finished workflows
across the whole system database, so it goes to one executor at a time, never to all of
them. With several StepChange processes, exactly one sends it per interval: the claim is
one conditional UPDATE on `retention_sent_at`, as recovery claims a dead executor.
"""

import asyncio
import functools
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone

from conductor import relay
from conductor.models import DATABASE_PATH, EXECUTOR_PATH, Executor
from conductor.protocol import RetentionBody, RetentionRequest, SuccessResponse
from stepchange.asyncdb import db_async, own_thread
from stepchange.audit import AuditAction, Result, audit_record
from stepchange.models import Application

logger = logging.getLogger(__name__)

ACTION = "application.retention"
AUTOMATIC = "stepchange (automatic retention)"
NO_RULE = "{app} has no retention rule: set an age, a number of rows or a timeout first."
NOT_ACKNOWLEDGED = "Executor {executor_id} did not accept retention (success: false)."
ACKNOWLEDGED = "Accepted by executor {executor_id}; it runs in the background there."
DATABASE_DONE = (
    "Written into the system database: {deleted} finished workflows deleted,"
    " {cancelled} timed-out workflows cancelled in {batches} batches."
)
DATABASE_LEFT = " Left as they were, changed in between: {left}."
DATABASE_FAILED = "The system database failed during retention: {error}"

# The settings, with the bounds both the API and the console enforce. DBOS fails on a row
# threshold of 0, and 0 days or hours would delete or cancel everything at once; the upper
# bounds (100 years, Postgres's integer) keep every cutoff representable.
LIMITS: dict[str, tuple[int, int]] = {
    "retention_days": (1, 36_500),
    "retention_rows": (1, 2_147_483_647),
    "retention_timeout_hours": (1, 876_000),
}
SETTINGS = tuple(LIMITS)
HAS_RULE = (
    Q(retention_days__isnull=False)
    | Q(retention_rows__isnull=False)
    | Q(retention_timeout_hours__isnull=False)
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class NoRetentionRuleError(ValueError):
    """Nothing to send: every rule of the application is unset."""


class RetentionRefusedError(Exception):
    """The database path wrote nothing (or stopped on an error); `status` is the API's."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RetentionSent:
    request_id: str
    executor_id: str
    success: bool
    sent_at: datetime
    path: str = EXECUTOR_PATH
    # The database path's counts and its own account (None and "" on the executor path,
    # where DBOS works in the background and reports nothing back).
    deleted: int | None = None
    cancelled: int | None = None
    detail: str = ""


def retention_settings(application: Application) -> dict[str, int | None]:
    return {name: getattr(application, name) for name in SETTINGS}


def _epoch_ms(moment: datetime) -> int:
    # Integer arithmetic: a float timestamp can be a millisecond off.
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def retention_body(application: Application, now: datetime) -> RetentionBody:
    """What `retention` asks of DBOS for these settings, counted back from `now`."""
    days, hours = application.retention_days, application.retention_timeout_hours
    return RetentionBody(
        gc_cutoff_epoch_ms=None if days is None else _epoch_ms(now - timedelta(days=days)),
        gc_rows_threshold=application.retention_rows,
        timeout_cutoff_epoch_ms=None if hours is None else _epoch_ms(now - timedelta(hours=hours)),
    )


def retention_update(
    *,
    application: Application,
    retention_days: int | None,
    retention_rows: int | None,
    retention_timeout_hours: int | None,
    request: HttpRequest | None = None,
) -> Application:
    """Set the three rules (None unsets one); audited with the values before and after."""
    before = retention_settings(application)
    application.retention_days = retention_days
    application.retention_rows = retention_rows
    application.retention_timeout_hours = retention_timeout_hours
    with transaction.atomic():
        application.save(update_fields=[*SETTINGS, "updated_at"])
        audit_record(
            action=AuditAction.APPLICATION_UPDATE,
            request=request,
            application=application,
            target=application.name,
            parameters={"before": before, "after": retention_settings(application)},
            detail="retention settings",
        )
    return application


async def retention_send(
    *,
    application: Application,
    actor_name: str,
    request: HttpRequest | None = None,
    source: str,
) -> RetentionSent:
    """Send the application's rules to one live executor and audit the outcome.

    Raises NoRetentionRuleError when no rule is set, and the relay's errors (audited as
    failed first) when no executor took the request.
    """
    if not any(value is not None for value in retention_settings(application).values()):
        refused = NO_RULE.format(app=application.name)
        await db_async(audit_record)(
            action=ACTION,
            request=request,
            actor_name="" if request is not None else actor_name,
            application=application,
            target=application.name,
            result=Result.FAILED,
            detail=refused,
        )
        raise NoRetentionRuleError(refused)
    now = timezone.now()
    if await _database_path(application):
        return await db_async(_database_send)(
            application, actor_name="" if request is not None else actor_name,
            request=request, now=now,
        )  # fmt: skip
    message = RetentionRequest(body=retention_body(application, now))
    record = functools.partial(
        db_async(_record),
        application,
        # With a request, the audit record names its signed-in user.
        actor_name="" if request is not None else actor_name,
        request=request,
        request_id=message.request_id,
        parameters={
            **retention_settings(application),
            "gc_cutoff_epoch_ms": message.body.gc_cutoff_epoch_ms,
            "gc_rows_threshold": message.body.gc_rows_threshold,
            "timeout_cutoff_epoch_ms": message.body.timeout_cutoff_epoch_ms,
        },
    )
    try:
        answer = await relay.ask(application, message, actor_name=actor_name, source=source)
    except relay.RelayError as exc:
        failed = exc.response.raw if isinstance(exc, relay.ExecutorFailedError) else None
        await record(result=Result.FAILED, detail=str(exc), response=failed)
        raise
    executor_id = answer.executor.executor_id
    success = isinstance(answer.response, SuccessResponse) and answer.response.success
    await record(
        result=Result.OK if success else Result.FAILED,
        detail=(ACKNOWLEDGED if success else NOT_ACKNOWLEDGED).format(executor_id=executor_id),
        response=answer.response.raw,
        executor_id=executor_id,
        sent_at=now if success else None,
    )
    if success:
        application.retention_sent_at = now
    return RetentionSent(message.request_id, executor_id, success, now)


async def _database_path(application: Application) -> bool:
    """With a system database and no executor a request can reach (none connected, or only
    those whose StepChange process died), as actions and bulk jobs choose their path."""
    if not application.system_database_url:
        return False
    _, reachable = await relay.reachable_executors(application)
    return not reachable


def _database_send(
    application: Application, *, actor_name: str, request: HttpRequest | None, now: datetime
) -> RetentionSent:
    """The rules written into the system database in batches, audited with the counts;
    raises RetentionRefusedError (audited as failed first) when nothing could be done."""
    # forks.native imports workflows.actions, which imports this app's modules.
    from forks import native, native_retention

    body = retention_body(application, now)
    parameters: dict[str, Any] = {
        **retention_settings(application),
        "gc_cutoff_epoch_ms": body.gc_cutoff_epoch_ms,
        "gc_rows_threshold": body.gc_rows_threshold,
        "timeout_cutoff_epoch_ms": body.timeout_cutoff_epoch_ms,
        "path": DATABASE_PATH,
        "batch_rows": settings.RETENTION_BATCH_ROWS,
        "statement_timeout_ms": settings.RETENTION_STATEMENT_TIMEOUT_MS,
    }
    record = functools.partial(
        _record, application, actor_name=actor_name, request=request, request_id="", response=None
    )
    try:
        swept = native_retention.native_retention(
            application=application,
            gc_cutoff_epoch_ms=body.gc_cutoff_epoch_ms,
            gc_rows_threshold=body.gc_rows_threshold,
            timeout_cutoff_epoch_ms=body.timeout_cutoff_epoch_ms,
            batch_rows=settings.RETENTION_BATCH_ROWS,
            statement_timeout_ms=settings.RETENTION_STATEMENT_TIMEOUT_MS,
        )
    except native.NativeError as exc:
        record(parameters=parameters, result=Result.FAILED, detail=str(exc))
        raise RetentionRefusedError(str(exc), status=exc.status) from None
    except DatabaseError as exc:
        # Batches committed before the failure stand; their count is lost with it.
        failed = DATABASE_FAILED.format(error=exc)
        record(parameters=parameters, result=Result.FAILED, detail=failed)
        raise RetentionRefusedError(failed, status=503) from None
    detail = DATABASE_DONE.format(
        deleted=swept.deleted, cancelled=swept.cancelled, batches=swept.batches
    )
    if swept.left:
        left = ", ".join(f"{wid} ({status})" for wid, status in sorted(swept.left.items()))
        detail += DATABASE_LEFT.format(left=left)
    if swept.stopped:
        detail += " " + swept.stopped
    record(
        parameters={
            **parameters,
            "gc_cutoff_used_epoch_ms": swept.gc_cutoff_epoch_ms,
            "deleted": swept.deleted,
            "cancelled": swept.cancelled,
            "batches": swept.batches,
            "left": swept.left,
            "stopped": bool(swept.stopped),
        },
        result=Result.OK,
        detail=detail,
        sent_at=now,
    )
    application.retention_sent_at = now
    return RetentionSent("", "", True, now, DATABASE_PATH, swept.deleted, swept.cancelled, detail)


def _record(
    application: Application,
    *,
    actor_name: str,
    request: HttpRequest | None,
    request_id: str,
    parameters: dict[str, Any],
    result: str,
    detail: str,
    response: Any,
    executor_id: str = "",
    sent_at: datetime | None = None,
) -> None:
    with transaction.atomic():
        if sent_at is not None:
            # Only this column: the settings may have been edited since they were read.
            Application.objects.filter(pk=application.pk).update(retention_sent_at=sent_at)
        audit_record(
            action=ACTION,
            request=request,
            actor_name=actor_name,
            application=application,
            target=f"executor {executor_id}" if executor_id else application.name,
            parameters=parameters,
            result=result,
            detail=detail,
            request_id=request_id,
            response=response,
        )


async def retention_forever() -> None:
    """This process's periodic sender (a loop of `stepchange.background`). It looks as often
    as the recovery sweep does, in a loop of its own: an executor slow to answer
    `retention` holds up no recovery."""
    while True:
        await asyncio.sleep(settings.RECOVERY_SWEEP_SECONDS)
        try:
            async with own_thread():
                await retention_sweep()
        except Exception:
            logger.exception("The retention sweep failed; it runs again shortly")


async def retention_sweep() -> list[RetentionSent]:
    """One pass of the periodic sender: every application due, claimed by this process."""
    sent = []
    for application in await db_async(_claim_due)():
        try:
            sent.append(
                await retention_send(
                    application=application, actor_name=AUTOMATIC, source="automatic"
                )
            )
        except (relay.RelayError, RetentionRefusedError) as exc:
            # Audited already; the claim stands, so the next try is an interval away.
            logger.warning("Automatic retention of %s failed: %s", application.name, exc)
    return sent


def _claim_due() -> list[Application]:
    """Applications with a rule, an executor or a system database to run it, and no send
    within the interval."""
    now = timezone.now()
    due = Q(retention_sent_at__isnull=True) | Q(
        retention_sent_at__lte=now - timedelta(seconds=settings.RETENTION_INTERVAL_SECONDS)
    )
    # Only where an executor is live or the database path is open: otherwise every interval
    # would audit one more failure.
    candidates = Application.objects.filter(HAS_RULE, due).filter(
        Q(pk__in=Executor.objects.live().values("application")) | ~Q(system_database_url="")
    )
    return [application for application in candidates if retention_claim(application, now)]


def retention_claim(application: Application, now: datetime) -> bool:
    """Take this interval's send unless another process took it first."""
    claimed = (
        Application.objects.filter(
            pk=application.pk, retention_sent_at=application.retention_sent_at
        ).update(retention_sent_at=now)
        == 1
    )
    if claimed:
        application.retention_sent_at = now
    return claimed
