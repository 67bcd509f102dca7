"""The JSON API of an application's dynamic schedules: read them (from the system database
when it is reachable, else through an executor), see what a backfill means, and pause,
resume, trigger or backfill one, or pause or resume those a filter selects.

A schedule's name may hold slashes: the route that reads one takes the rest of the path,
so it is declared after the routes under a schedule.
"""

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from django.http import HttpRequest
from django.utils import timezone
from ninja import Field, Query, Router, Schema
from ninja.errors import HttpError
from pydantic import StringConstraints

from stepchange.access import aapplication_for
from stepchange.api.base import Body, acting_with
from stepchange.models import Application
from stepchange.roles import PERM_INSPECT, PERM_OPERATE
from workflows.schedules import (
    MAX_BACKFILL_RUNS,
    NEXT_FIRES,
    SCHEDULE_NOT_FOUND,
    ScheduleAction,
    ScheduleError,
    ScheduleOutcome,
    backfill_plan,
    backfill_reach_now,
    fire_times,
    schedule_act,
    schedules_bulk,
)
from workflows.sources import Schedule, ScheduleQuery, SlowQuery, source_for, split_names

router = Router(tags=["schedules"])

BAD_TIME = "{name} must be an ISO 8601 time such as 2026-11-21T10:00:00+00:00; got {value!r}"
BAD_STATUS = "status must be ACTIVE or PAUSED; got {value!r}"
TIME_HELP = "ISO 8601, such as 2026-11-21T10:00:00+00:00; UTC when it has no offset."
WINDOW_HELP = f"Exclusive. {TIME_HELP}"
_STATUS = "(?:[Aa][Cc][Tt][Ii][Vv][Ee]|[Pp][Aa][Uu][Ss][Ee][Dd])"
# What `ScheduleFilters.query` accepts, declared: statuses in any case, comma-separated.
STATUS_PATTERN = rf"^\s*(?:{_STATUS}\s*(?:,\s*{_STATUS}\s*)*)?$"


class ScheduleOut(Schema):
    name: str
    workflow_name: str
    class_name: str | None
    cron: str
    timezone: str | None
    status: str
    context: str | None
    last_fired_at: datetime | None
    next_fire_times: list[datetime] | None = Field(
        description=f"The next {NEXT_FIRES}; null when the cron text does not parse."
    )
    automatic_backfill: bool
    queue_name: str | None
    application_name: str | None


class ScheduleList(Schema):
    items: list[ScheduleOut]
    unstored: list[str] | None = Field(
        description="Schedule names that workflows carry and no stored schedule has "
        "(declared in code); null when the source cannot tell."
    )
    source: str
    notice: str


class ScheduleFilters(Schema):
    status: str | None = Field(
        default=None, pattern=STATUS_PATTERN, description="ACTIVE or PAUSED, comma-separated."
    )
    workflow_name: str | None = Field(default=None, description="Comma-separated.")
    name_prefix: str | None = Field(default=None, description="Comma-separated prefixes.")

    def query(self) -> ScheduleQuery:
        statuses = [s.upper() for s in split_names(self.status or "") or []]
        for status in statuses:
            if status not in ("ACTIVE", "PAUSED"):
                raise HttpError(400, BAD_STATUS.format(value=status))
        return ScheduleQuery(
            status=statuses or None,
            workflow_name=split_names(self.workflow_name or ""),
            name_prefix=split_names(self.name_prefix or ""),
        )


def instant(name: str, value: str) -> datetime:
    """An ISO 8601 time (UTC without an offset); 400 for text that is not one."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise HttpError(400, BAD_TIME.format(name=name, value=value)) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def schedule_out(schedule: Schedule, now: datetime) -> dict[str, Any]:
    try:
        upcoming: list[datetime] | None = fire_times(
            schedule.cron, timezone=schedule.timezone, after=now
        )
    except ScheduleError:
        upcoming = None
    return {
        "name": schedule.name,
        "workflow_name": schedule.workflow_name,
        "class_name": schedule.class_name,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "status": schedule.status,
        "context": schedule.context,
        "last_fired_at": schedule.last_fired_at,
        "next_fire_times": upcoming,
        "automatic_backfill": schedule.automatic_backfill,
        "queue_name": schedule.queue_name,
        "application_name": schedule.application_name,
    }


@router.get("/apps/{app}/schedules", response=ScheduleList)
async def list_schedules(request: HttpRequest, app: str, filters: Query[ScheduleFilters]) -> Any:
    """The application's dynamic schedules, by name, with their next fire times."""
    source = await source_for(await aapplication_for(request, app, PERM_INSPECT))
    try:
        found = await source.schedules(filters.query(), actor=request.user.get_username())
    except SlowQuery as exc:
        raise HttpError(SlowQuery.status, str(exc)) from None
    now = timezone.now()
    return {
        "items": [schedule_out(schedule, now) for schedule in found.items],
        "unstored": found.unstored,
        "source": found.source,
        "notice": found.notice,
    }


class BackfillPreview(Schema):
    runs: int
    first_fire_times: list[datetime]
    needs_confirmation: bool


class BackfillWindow(Schema):
    start: str = Field(description=WINDOW_HELP, json_schema_extra={"format": "date-time"})
    end: str = Field(description=WINDOW_HELP, json_schema_extra={"format": "date-time"})


async def _schedule(request: HttpRequest, app: str, name: str) -> tuple[Application, Schedule]:
    application = await aapplication_for(request, app, PERM_INSPECT)
    source = await source_for(application)
    found = await source.schedule(name, actor=request.user.get_username())
    if found is None:
        raise HttpError(404, SCHEDULE_NOT_FOUND.format(name=name, app=app))
    return application, found


@router.get("/apps/{app}/schedules/{workflow:schedule_name}/backfill", response=BackfillPreview)
async def backfill_preview(
    request: HttpRequest, app: str, schedule_name: str, window: Query[BackfillWindow]
) -> Any:
    """How many runs backfilling from `start` to `end` means (both exclusive, as DBOS
    backfills), and whether the backfill needs `confirm`. Sends nothing."""
    application, schedule = await _schedule(request, app, schedule_name)
    try:
        start, end = instant("start", window.start), instant("end", window.end)
        plan = backfill_plan(schedule, start=start, end=end)
        # What the executor would refuse or choke on, said before anything is sent.
        await backfill_reach_now(application, start=start, end=end)
    except ScheduleError as exc:
        raise HttpError(exc.status, str(exc)) from None
    return {
        "runs": plan.runs,
        "first_fire_times": plan.first,
        "needs_confirmation": plan.needs_confirmation,
    }


class ScheduleActionIn(Body):
    reason: str = Field(default="", max_length=2000, description="Why; kept in the audit record.")


class BackfillIn(ScheduleActionIn):
    start: str = Field(
        description=WINDOW_HELP, max_length=64, json_schema_extra={"format": "date-time"}
    )
    end: str = Field(
        description=WINDOW_HELP, max_length=64, json_schema_extra={"format": "date-time"}
    )
    confirm: bool = Field(
        default=False,
        description="Needed when the range means more than 100 runs (at most "
        f"{MAX_BACKFILL_RUNS:,}).",
    )


class ScheduleActionOut(Schema):
    action: str
    schedule_name: str
    detail: str
    request_id: str
    executor_id: str
    workflow_ids: list[str]
    audit_id: int


NO_BODY = ScheduleActionIn()


async def _act(
    request: HttpRequest, app: str, name: str, action: ScheduleAction, **options: Any
) -> ScheduleOutcome:
    application = await aapplication_for(request, app, PERM_OPERATE)
    try:
        return await schedule_act(
            application=application,
            action=action,
            schedule_name=name,
            actor=request.user,
            request=request,
            **options,
        )
    except ScheduleError as exc:
        raise HttpError(exc.status, str(exc)) from None


@router.post(
    "/apps/{app}/schedules/{workflow:schedule_name}/pause",
    response=ScheduleActionOut,
    auth=acting_with(PERM_OPERATE),
)
async def pause_schedule(
    request: HttpRequest, app: str, schedule_name: str, body: ScheduleActionIn = NO_BODY
) -> ScheduleOutcome:
    """Pause a schedule: it stops firing until resumed."""
    return await _act(request, app, schedule_name, ScheduleAction.PAUSE, reason=body.reason)


@router.post(
    "/apps/{app}/schedules/{workflow:schedule_name}/resume",
    response=ScheduleActionOut,
    auth=acting_with(PERM_OPERATE),
)
async def resume_schedule(
    request: HttpRequest, app: str, schedule_name: str, body: ScheduleActionIn = NO_BODY
) -> ScheduleOutcome:
    """Resume a paused schedule."""
    return await _act(request, app, schedule_name, ScheduleAction.RESUME, reason=body.reason)


@router.post(
    "/apps/{app}/schedules/{workflow:schedule_name}/trigger",
    response=ScheduleActionOut,
    auth=acting_with(PERM_OPERATE),
)
async def trigger_schedule(
    request: HttpRequest, app: str, schedule_name: str, body: ScheduleActionIn = NO_BODY
) -> ScheduleOutcome:
    """Start the schedule's workflow now (`workflow_ids` names it)."""
    return await _act(request, app, schedule_name, ScheduleAction.TRIGGER, reason=body.reason)


@router.post(
    "/apps/{app}/schedules/{workflow:schedule_name}/backfill",
    response=ScheduleActionOut,
    auth=acting_with(PERM_OPERATE),
)
async def backfill_schedule(
    request: HttpRequest, app: str, schedule_name: str, body: BackfillIn
) -> ScheduleOutcome:
    """Enqueue a run for every time the schedule fires strictly between `start` and `end`
    (runs that exist already are not run twice). Over 100 runs needs `confirm`; over
    10,000 is refused."""
    return await _act(
        request,
        app,
        schedule_name,
        ScheduleAction.BACKFILL,
        start=instant("start", body.start),
        end=instant("end", body.end),
        confirmed=body.confirm,
        reason=body.reason,
    )


Text = Annotated[str, StringConstraints(min_length=1, max_length=500)]


class BulkScheduleIn(ScheduleActionIn):
    action: Literal["pause", "resume"]
    status: list[Literal["ACTIVE", "PAUSED"]] | None = None
    workflow_name: list[Text] | None = None
    name_prefix: list[Text] | None = None


class BulkScheduleOut(Schema):
    action: str
    done: list[str]
    skipped: list[str]
    failed: dict[str, str]
    audit_id: int


@router.post(
    "/apps/{app}/schedule-bulk-actions",
    response=BulkScheduleOut,
    auth=acting_with(PERM_OPERATE),
)
async def bulk_schedules(request: HttpRequest, app: str, body: BulkScheduleIn) -> Any:
    """Pause or resume every schedule the filter selects (no filter: all of them); those
    already paused or active are skipped. One audit record per schedule and one in all."""
    application = await aapplication_for(request, app, PERM_OPERATE)
    query = ScheduleQuery(
        status=list(body.status) if body.status else None,
        workflow_name=body.workflow_name or None,
        name_prefix=body.name_prefix or None,
    )
    try:
        return await schedules_bulk(
            application=application,
            action=ScheduleAction(body.action),
            query=query,
            actor=request.user,
            reason=body.reason,
            request=request,
        )
    except ScheduleError as exc:
        raise HttpError(exc.status, str(exc)) from None


# Last: it takes the rest of the path.
@router.get("/apps/{app}/schedules/{workflow:schedule_name}", response=ScheduleOut)
async def get_schedule(request: HttpRequest, app: str, schedule_name: str) -> Any:
    """One schedule, with its next fire times."""
    _, schedule = await _schedule(request, app, schedule_name)
    return schedule_out(schedule, timezone.now())
