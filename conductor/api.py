"""API endpoints of the executor-facing side: executors, the request log, recovery,
retention."""

from datetime import datetime
from typing import Annotated, Any

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from ninja import Field, Router, Schema, Status
from ninja.errors import HttpError

from conductor import liveness, recovery, retention
from conductor.models import DatabaseExecutor, Executor, PoisonWorkflow, RecoveryAttempt, RequestLog
from conductor.protocol import ProtocolError
from conductor.relay import RelayError
from conductor.services import poison_cancel, poison_dismiss
from stepchange.access import aapplication_for, application_for
from stepchange.api.base import WHOLE, Body, acting_with
from stepchange.asyncdb import db_async
from stepchange.models import Application
from stepchange.paging import newest_first
from stepchange.roles import PERM_ADMINISTER, PERM_INSPECT, PERM_OPERATE
from workflows.actions import ActionError
from workflows.systemdb import SystemDatabaseError

router = Router(tags=["executors"])


def relay_failed(request: HttpRequest, exc: RelayError) -> tuple[Any, int]:
    """The API's answer to a RelayError (registered in stepchange/urls.py)."""
    return str(exc), exc.status


def unsendable(request: HttpRequest, exc: ProtocolError) -> tuple[Any, int]:
    """What the caller asked for cannot be put into a valid executor request: their input."""
    return str(exc), 400


REQUESTS_PAGE = 50
NOT_RECOVERABLE = "Executor {executor_id} is connected: recovering it would run its work twice."
UNKNOWN_EXECUTOR = "No executor {executor_id} is known for {app}."


class ExecutorOut(Schema):
    executor_id: str
    state: str
    application_version: str
    hostname: str
    language: str
    dbos_version: str
    metadata: Any
    remote_address: str
    connected_at: datetime
    last_seen_at: datetime
    disconnected_at: datetime | None


@router.get("/apps/{app}/executors", response=list[ExecutorOut])
def list_executors(request: HttpRequest, app: str, include_gone: bool = False) -> Any:
    """Connected executors and their `executor_info`; `include_gone` adds the departed."""
    application = application_for(request, app)
    if include_gone:
        return Executor.objects.filter(application=application).order_by("state", "-connected_at")
    return Executor.objects.live().filter(application=application)


class RequestOut(Schema):
    request_id: str
    message_type: str
    executor_id: str
    actor_name: str
    source: str
    sent_at: datetime
    duration_ms: float | None
    request_bytes: int
    response_bytes: int
    outcome: str
    error_message: str


class RequestPage(Schema):
    items: list[RequestOut]
    next_cursor: str | None


@router.get("/apps/{app}/requests", response=RequestPage)
def list_requests(
    request: HttpRequest,
    app: str,
    message_type: str | None = None,
    outcome: str | None = None,
    executor_id: str | None = None,
    cursor: Annotated[
        str | None,
        Field(pattern=r"^[0-9]*$", description="The `next_cursor` of the previous page."),
    ] = None,
) -> dict[str, Any]:
    """The request log, newest first, keyset-paginated by an opaque cursor."""
    application = application_for(request, app)
    entries = RequestLog.objects.filter(application=application)
    for field, value in [
        ("message_type", message_type),
        ("outcome", outcome),
        ("executor_id", executor_id),
    ]:
        if value:
            entries = entries.filter(**{field: value})
    page = newest_first(entries, before=int(cursor) if cursor else None, size=REQUESTS_PAGE)
    return {
        "items": page.items,
        "next_cursor": None if page.next_before is None else str(page.next_before),
    }


class RecoveryIn(Body):
    # At least one, as documented; `_claim_for_manual` refuses an empty list itself, so that
    # the refusal is audited like the attempts that go ahead.
    executor_ids: list[str] = Field(
        description="Gone executors of the app.", json_schema_extra={"minItems": 1}
    )


class RecoveryOut(Schema):
    dead_executor_id: str
    application_version: str
    target_executor_id: str
    pending_workflow_ids: list[str]
    manual: bool
    requested_by: str
    outcome: str
    detail: str
    created_at: datetime


class PoisonOut(Schema):
    workflow_id: str
    executors_killed: int
    executor_ids: list[str]
    first_seen_at: datetime
    last_seen_at: datetime


class RecoveryHistory(Schema):
    attempts: list[RecoveryOut]
    poison: list[PoisonOut]


@router.get("/apps/{app}/recovery", response=RecoveryHistory)
def recovery_history(request: HttpRequest, app: str) -> dict[str, Any]:
    """Recovery attempts, newest first, and the unresolved poison suspects."""
    application = application_for(request, app)
    return {
        "attempts": list(RecoveryAttempt.objects.filter(application=application)[:100]),
        "poison": list(
            PoisonWorkflow.objects.filter(
                application=application,
                resolved_at__isnull=True,
                executors_killed__gte=recovery.POISON_THRESHOLD,
            )
        ),
    }


class PoisonDecisionIn(Body):
    reason: str = Field(default="", max_length=1000)


def _held_poison(application: Application) -> list[PoisonWorkflow]:
    return list(
        PoisonWorkflow.objects.filter(
            application=application,
            resolved_at__isnull=True,
            executors_killed__gte=recovery.POISON_THRESHOLD,
        )
    )


@router.get("/apps/{app}/poison", response=list[PoisonOut])
async def poison_list(request: HttpRequest, app: str) -> list[Any]:
    """The workflows held as poison: their recovery waits for an operator."""
    application = await aapplication_for(request, app, PERM_INSPECT)
    return await db_async(_held_poison)(application)


@router.post(
    "/apps/{app}/poison/{workflow:workflow_id}/cancel",
    response={204: None},
    auth=acting_with(PERM_OPERATE),
)
async def poison_cancel_api(
    request: HttpRequest, app: str, workflow_id: str, body: PoisonDecisionIn | None = None
) -> Status[None]:
    """Cancel a held workflow through a live executor, or in the system database when none
    is connected (audited like the console's); its held recovery then goes ahead."""
    application = await aapplication_for(request, app, PERM_OPERATE)
    reason = body.reason if body else ""
    try:
        await poison_cancel(
            application=application, workflow_id=workflow_id, request=request, reason=reason
        )
    except ActionError as exc:
        # The database path's refusals (the workflow finished meanwhile), audited already.
        raise HttpError(exc.status, str(exc)) from None
    except SystemDatabaseError as exc:
        raise HttpError(503, str(exc)) from None
    return Status(204, None)


@router.post(
    "/apps/{app}/poison/{workflow:workflow_id}/dismiss",
    response={204: None},
    auth=acting_with(PERM_OPERATE),
)
async def poison_dismiss_api(
    request: HttpRequest, app: str, workflow_id: str, body: PoisonDecisionIn | None = None
) -> Status[None]:
    """Not poison after all: the held recovery hands it to an executor again."""
    application = await aapplication_for(request, app, PERM_OPERATE)
    reason = body.reason if body else ""
    await db_async(poison_dismiss)(
        application=application, workflow_id=workflow_id, request=request, reason=reason
    )
    return Status(204, None)


@router.post("/apps/{app}/recovery", response=list[RecoveryOut], auth=acting_with(PERM_OPERATE))
async def recover_executors(request: HttpRequest, app: str, body: RecoveryIn) -> list[Any]:
    """Recover the pending work of gone executors now, without waiting for the grace period."""
    application = await aapplication_for(request, app, PERM_OPERATE)
    actor = request.user.get_username()
    executors = await db_async(_claim_for_manual)(application, body.executor_ids, request)
    return [
        await recovery.recover(executor, manual=True, requested_by=actor, request=request)
        for executor in executors
    ]


def _claim_for_manual(
    application: Any, executor_ids: list[str], request: HttpRequest
) -> list[Executor]:
    """Check every id first, then claim them all, so a bad id claims nothing. A refusal is
    audited like the attempts that go ahead."""

    def refuse(status: int, message: str, target: str = "") -> HttpError:
        recovery.recovery_refused(
            application=application,
            executor_ids=executor_ids,
            target=target or application.name,
            why=message,
            request=request,
        )
        return HttpError(status, message)

    if not executor_ids:
        raise refuse(400, "executor_ids must name at least one executor")
    executors = []
    for executor_id in executor_ids:
        executor = Executor.objects.filter(application=application, executor_id=executor_id).first()
        target = f"executor {executor_id}"
        if executor is None:
            unknown = UNKNOWN_EXECUTOR.format(executor_id=executor_id, app=application)
            raise refuse(404, unknown, target)
        if executor.state == Executor.State.CONNECTED:
            raise refuse(409, NOT_RECOVERABLE.format(executor_id=executor_id), target)
        executors.append(executor)
    claimed = [
        executor for executor in executors if recovery.claim(executor, states=recovery.RECOVERABLE)
    ]
    return [
        Executor.objects.select_related("application").get(pk=executor.pk) for executor in claimed
    ]


class LivenessIn(Body):
    liveness_url_template: str = Field(
        ...,
        max_length=1000,
        # No pattern: each rule broken is a 400 that names it, which a pattern would not.
        description=(
            'Such as http://{executor_id}:8000/healthz; "" turns probing off. An http or '
            "https URL naming a host, holding {executor_id} once and no other braces, "
            "spaces or control characters (a 400 names the rule broken)."
        ),
    )


class DatabaseExecutorOut(Schema):
    executor_id: str
    application_version: str
    state: str
    last_probed_at: datetime | None
    answered_at: datetime | None
    failing_since: datetime | None
    probe_detail: str
    recovered_at: datetime | None


class LivenessOut(Schema):
    liveness_url_template: str
    recovery_grace_seconds: int
    executors: list[DatabaseExecutorOut]


def _liveness(application: Application) -> dict[str, Any]:
    return {
        "liveness_url_template": application.liveness_url_template,
        "recovery_grace_seconds": application.recovery_grace_seconds,
        "executors": list(DatabaseExecutor.objects.filter(application=application)),
    }


@router.get("/apps/{app}/liveness", response=LivenessOut, tags=["recovery"])
def get_liveness(request: HttpRequest, app: str) -> dict[str, Any]:
    """The liveness URL of a database-managed application's executors, and what the last
    probes of each executor seen in its PENDING workflows found."""
    return _liveness(application_for(request, app, PERM_ADMINISTER))


@router.put(
    "/apps/{app}/liveness",
    response=LivenessOut,
    tags=["recovery"],
    auth=acting_with(PERM_ADMINISTER),
)
def put_liveness(request: HttpRequest, app: str, body: LivenessIn) -> dict[str, Any]:
    """Set the liveness URL (audited). An executor whose URL fails for the grace period has
    its PENDING workflows recovered through the system database."""
    application = application_for(request, app, PERM_ADMINISTER)
    try:
        liveness.liveness_update(
            application=application,
            liveness_url_template=body.liveness_url_template,
            request=request,
        )
    except ValidationError as exc:
        raise HttpError(400, " ".join(exc.messages)) from None
    return _liveness(application)


_DAYS, _ROWS, _HOURS = (retention.LIMITS[name] for name in retention.SETTINGS)


class RetentionIn(Body):
    """All three, as PUT replaces them: null unsets a rule. Strict, so "30", 30.5 and true
    are refused rather than read as numbers."""

    retention_days: Annotated[int, Field(ge=_DAYS[0], le=_DAYS[1]), WHOLE] | None = Field(...)
    retention_rows: Annotated[int, Field(ge=_ROWS[0], le=_ROWS[1]), WHOLE] | None = Field(...)
    retention_timeout_hours: Annotated[int, Field(ge=_HOURS[0], le=_HOURS[1]), WHOLE] | None = (
        Field(...)
    )


class RetentionOut(Schema):
    retention_days: int | None
    retention_rows: int | None
    retention_timeout_hours: int | None
    retention_sent_at: datetime | None


class RetentionSentOut(Schema):
    request_id: str
    executor_id: str
    success: bool
    sent_at: datetime
    # "executor", or "database" where it was written into the system database, with counts.
    path: str
    deleted: int | None
    cancelled: int | None
    detail: str


@router.get("/apps/{app}/retention", response=RetentionOut, tags=["retention"])
def get_retention(request: HttpRequest, app: str) -> Application:
    """The retention rules and when they were last sent to an executor."""
    return application_for(request, app, PERM_ADMINISTER)


@router.put(
    "/apps/{app}/retention",
    response=RetentionOut,
    tags=["retention"],
    auth=acting_with(PERM_ADMINISTER),
)
def put_retention(request: HttpRequest, app: str, body: RetentionIn) -> Application:
    """Replace the retention rules; they are sent with the next periodic send."""
    application = application_for(request, app, PERM_ADMINISTER)
    return retention.retention_update(application=application, request=request, **body.model_dump())


@router.post(
    "/apps/{app}/retention/send",
    response=RetentionSentOut,
    tags=["retention"],
    auth=acting_with(PERM_ADMINISTER),
)
async def send_retention(request: HttpRequest, app: str) -> retention.RetentionSent:
    """Send the rules to one executor now, or, with none connected and a system database
    registered, write them into it (path "database", with the counts). DBOS garbage
    collection deletes finished workflows across the whole system database, not only this
    application's."""
    application = await aapplication_for(request, app, PERM_ADMINISTER)
    actor = request.user.get_username()
    try:
        return await retention.retention_send(
            application=application, actor_name=actor, request=request, source="api"
        )
    except retention.NoRetentionRuleError as exc:
        # Not the request's fault: the application's state (no rule yet) refuses it.
        raise HttpError(409, str(exc)) from None
    except retention.RetentionRefusedError as exc:
        raise HttpError(exc.status, str(exc)) from None
