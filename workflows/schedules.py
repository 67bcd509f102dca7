"""Dynamic schedules (PROTOCOL.md §2.2 `*_schedule`, §3 `workflow_schedules`): when a
schedule fires, how many runs a backfill means, and the audited actions on schedules.

Fire times are computed as DBOS computes them: the cron text read with the seconds field
first when it has six fields, in the schedule's time zone (UTC without one), and a
backfill runs at every fire time strictly between its start and its end. Each action goes
through the relay to a live executor, as the workflow actions do, and each attempt leaves
exactly one audit record (`schedule.pause`, `schedule.resume`, `schedule.trigger`,
`schedule.backfill`); a bulk pause or resume leaves one per schedule and one for the whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from django.http import HttpRequest

from conductor import relay
from conductor.models import Executor
from conductor.protocol import (
    BackfillScheduleRequest,
    BackfillScheduleResponse,
    PauseScheduleRequest,
    Request,
    Response,
    ResumeScheduleRequest,
    SuccessResponse,
    TriggerScheduleRequest,
    TriggerScheduleResponse,
)
from conductor.registry import NO_EXECUTOR, live_executors
from stepchange.asyncdb import db_async
from stepchange.audit import Result, audit_record
from stepchange.models import Application
from workflows.sources import Schedule, ScheduleQuery, source_for

# How many fire times the page shows ahead.
NEXT_FIRES = 3
# A backfill of more runs than this asks the operator to confirm it.
CONFIRM_ABOVE = 100
# A backfill of more runs than this is refused: split it, or it is a mistake.
MAX_BACKFILL_RUNS = 10_000
# A bulk action takes at most this many schedules.
MAX_BULK_SCHEDULES = 500
# A TypeScript executor (@dbos-inc/dbos-sdk 5.x) finds a backfill's fire times by testing
# every second of the range, answering nothing else meanwhile (about 1.6 s of CPU per month
# of range, however few the runs): a longer range outlasts the relay's wait and stalls it.
TS_BACKFILL_MAX_DAYS = 31

SCHEDULE_NOT_FOUND = "No schedule {name} in {app}."
BAD_CRON = "“{cron}” is not a cron expression DBOS reads (five fields, or six with seconds first)."
BAD_TIMEZONE = "“{timezone}” is not a time zone (an IANA name such as Europe/Paris)."
BAD_RANGE = "The backfill's end must come after its start."
TOO_MANY_RUNS = (
    "From {start} to {end}, {cron} fires more than {limit:,} times: nothing was backfilled. "
    "Choose a shorter range."
)
CONFIRM_RUNS = (
    "From {start} to {end}, {cron} fires {runs:,} times: confirm to enqueue that many workflows."
)
NOTHING_TO_BACKFILL = (
    "{cron} does not fire between {start} and {end}: there is nothing to backfill."
)
TS_BACKFILL_TOO_LONG = (
    "A TypeScript executor (@dbos-inc/dbos-sdk {version}) checks every second of a backfill's "
    "range and answers nothing else meanwhile, so it backfills at most {limit} days at a time; "
    "this range spans {days} days. Choose a range around the runs you need, or split it."
)
NOT_DONE = "Executor {executor_id} answered that it could not {action} {name}: {error}"
EXECUTOR_SAID_NO = "Executor {executor_id} did not {action} {name} and gave no reason."
TOO_MANY_SCHEDULES = (
    "{count:,} schedules match: one bulk action takes at most {limit:,}. Narrow the filter."
)


class ScheduleAction(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    TRIGGER = "trigger"
    BACKFILL = "backfill"

    @property
    def audit_action(self) -> str:
        return f"schedule.{self.value}"

    @property
    def label(self) -> str:
        return "Trigger now" if self is ScheduleAction.TRIGGER else self.value.capitalize()


class ScheduleError(Exception):
    """A schedule action that was not carried out; `status` is the API's code."""

    status = 400
    request_id = ""
    response: dict[str, Any] | None = None


class ScheduleNotFoundError(ScheduleError):
    status = 404


class ConfirmationNeededError(ScheduleError):
    """A backfill of more than CONFIRM_ABOVE runs, not confirmed."""

    status = 409

    def __init__(self, message: str, *, runs: int) -> None:
        super().__init__(message)
        self.runs = runs


class ScheduleActionFailedError(ScheduleError):
    """The executor answered, and the answer was no."""

    status = 502

    def __init__(self, message: str, *, request_id: str, response: dict[str, Any]) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.response = response


# Cron arithmetic, as DBOS does it.


def zone(name: str | None) -> tzinfo:
    """The schedule's time zone (UTC without one); ScheduleError for a name no zone has."""
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(BAD_TIMEZONE.format(timezone=name)) from None


def _iterator(cron: str, start: datetime, timezone: str | None) -> Any:
    if not croniter.is_valid(cron, second_at_beginning=True):
        raise ScheduleError(BAD_CRON.format(cron=cron))
    return croniter(cron, start.astimezone(zone(timezone)), second_at_beginning=True)


def fire_times(
    cron: str, *, timezone: str | None, after: datetime, count: int = NEXT_FIRES
) -> list[datetime]:
    """The next `count` fire times strictly after `after`, in the schedule's time zone."""
    times = _iterator(cron, after, timezone)
    return [times.get_next(datetime) for _ in range(count)]


def runs_between(
    cron: str, *, timezone: str | None, start: datetime, end: datetime, cap: int
) -> int:
    """How many times the schedule fires strictly between `start` and `end`, counted up to
    `cap` + 1 (more than `cap` answers `cap` + 1)."""
    times = _iterator(cron, start, timezone)
    runs = 0
    while runs <= cap and times.get_next(datetime) < end:
        runs += 1
    return runs


@dataclass(frozen=True)
class BackfillPlan:
    runs: int
    first: list[datetime]
    needs_confirmation: bool


def backfill_plan(schedule: Schedule, *, start: datetime, end: datetime) -> BackfillPlan:
    """What backfilling `schedule` from `start` to `end` means; ScheduleError when it
    cannot be done (a bad range, a cron or zone DBOS would not read, too many runs)."""
    if end <= start:
        raise ScheduleError(BAD_RANGE)
    named = {"start": start.isoformat(), "end": end.isoformat(), "cron": schedule.cron}
    runs = runs_between(
        schedule.cron, timezone=schedule.timezone, start=start, end=end, cap=MAX_BACKFILL_RUNS
    )
    if runs > MAX_BACKFILL_RUNS:
        raise ScheduleError(TOO_MANY_RUNS.format(limit=MAX_BACKFILL_RUNS, **named))
    if runs == 0:
        raise ScheduleError(NOTHING_TO_BACKFILL.format(**named))
    first = fire_times(schedule.cron, timezone=schedule.timezone, after=start, count=min(runs, 3))
    return BackfillPlan(runs, first, runs > CONFIRM_ABOVE)


def backfill_reach(executor: Executor, *, start: datetime, end: datetime) -> None:
    """Refuse a range `executor`'s SDK cannot walk within the relay's wait (ScheduleError)."""
    span = end - start
    if executor.language == "typescript" and span > timedelta(days=TS_BACKFILL_MAX_DAYS):
        raise ScheduleError(
            TS_BACKFILL_TOO_LONG.format(
                version=executor.dbos_version or "5.x",
                limit=TS_BACKFILL_MAX_DAYS,
                days=f"{span / timedelta(days=1):,.0f}",
            )
        )


async def backfill_reach_now(application: Application, *, start: datetime, end: datetime) -> None:
    """`backfill_reach` against the executor a backfill would go to now (for a preview);
    with none connected there is nothing to say yet."""
    executors = await db_async(live_executors)(application)
    if executors:
        backfill_reach(executors[0], start=start, end=end)


# The actions.


@dataclass(frozen=True, kw_only=True)
class ScheduleOutcome:
    action: ScheduleAction
    schedule_name: str
    detail: str
    request_id: str
    executor_id: str
    workflow_ids: list[str] = field(default_factory=list)
    audit_id: int = 0


async def schedule_act(
    *,
    application: Application,
    action: ScheduleAction,
    schedule_name: str,
    actor: Any,
    start: datetime | None = None,
    end: datetime | None = None,
    confirmed: bool = False,
    reason: str = "",
    request: HttpRequest | None = None,
    source: str = "api",
) -> ScheduleOutcome:
    """Carry out `action` on one schedule through a live executor, and audit the attempt.

    Raises ScheduleNotFoundError (404), ConfirmationNeededError (409), ScheduleError (400),
    ScheduleActionFailedError (502, the executor said no) or a relay.RelayError (503 no
    executor, 504 timeout); each is audited before it is raised.
    """
    parameters: dict[str, Any] = {}
    if start is not None and end is not None:
        parameters = {"start": start.isoformat(), "end": end.isoformat()}
    if reason:
        parameters["reason"] = reason
    audit = {
        "action": action.audit_action,
        "request": request,
        "actor": actor,
        "application": application,
        "target": schedule_name,
        "parameters": parameters,
        "reason": reason,
    }
    attempt = _Attempt(application, action, schedule_name, actor, source)
    try:
        detail, workflow_ids = await attempt.run(start=start, end=end, confirmed=confirmed)
    except (ScheduleError, relay.RelayError) as exc:
        response = getattr(exc, "response", None)
        if isinstance(response, Response):
            response = response.raw
        await db_async(audit_record)(
            **audit,
            result=Result.FAILED,
            detail=str(exc),
            request_id=getattr(exc, "request_id", "") or attempt.request_id,
            response=response,
        )
        raise
    record = await db_async(audit_record)(
        **audit, detail=detail, request_id=attempt.request_id, response=attempt.response
    )
    return ScheduleOutcome(
        action=action,
        schedule_name=schedule_name,
        detail=detail,
        request_id=attempt.request_id,
        executor_id=attempt.executor_id,
        workflow_ids=workflow_ids,
        audit_id=record.pk,
    )


class _Attempt:
    """One schedule action on its way: the checks, the request, and what came back."""

    def __init__(
        self,
        application: Application,
        action: ScheduleAction,
        schedule_name: str,
        actor: Any,
        source: str,
    ) -> None:
        self.application = application
        self.action = action
        self.name = schedule_name
        self.actor_name = actor.get_username() if actor is not None else ""
        self.source = source
        self.request_id = ""
        self.executor_id = ""
        self.response: dict[str, Any] | None = None

    async def run(
        self, *, start: datetime | None, end: datetime | None, confirmed: bool
    ) -> tuple[str, list[str]]:
        reads = await source_for(self.application)
        schedule = await reads.schedule(self.name, actor=self.actor_name)
        if schedule is None:
            raise ScheduleNotFoundError(
                SCHEDULE_NOT_FOUND.format(name=self.name, app=self.application.name)
            )
        message: Request
        if self.action is ScheduleAction.BACKFILL:
            if start is None or end is None:
                raise ScheduleError(BAD_RANGE)
            plan = backfill_plan(schedule, start=start, end=end)
            if plan.needs_confirmation and not confirmed:
                named = {"start": start.isoformat(), "end": end.isoformat()}
                raise ConfirmationNeededError(
                    CONFIRM_RUNS.format(runs=plan.runs, cron=schedule.cron, **named),
                    runs=plan.runs,
                )
            message = BackfillScheduleRequest(self.name, start, end)
        elif self.action is ScheduleAction.TRIGGER:
            message = TriggerScheduleRequest(self.name)
        elif self.action is ScheduleAction.PAUSE:
            message = PauseScheduleRequest(self.name)
        else:
            message = ResumeScheduleRequest(self.name)
        executors = await db_async(live_executors)(self.application)
        if not executors:
            raise relay.NoExecutorConnectedError(NO_EXECUTOR.format(app=self.application.name))
        if isinstance(message, BackfillScheduleRequest):
            backfill_reach(executors[0], start=message.start, end=message.end)
        self.request_id = message.request_id
        answer = await relay.ask(
            self.application,
            message,
            executor=executors[0].executor_id,
            actor_name=self.actor_name,
            source=self.source,
            raise_on_error=False,
        )
        self.executor_id = executors[0].executor_id
        self.response = answer.response.raw or None
        return self._read(answer.response)

    def _read(self, response: Response) -> tuple[str, list[str]]:
        names = {
            "executor_id": self.executor_id,
            "action": self.action.label.lower(),
            "name": self.name,
        }
        workflow_ids: list[str] = []
        done = False
        if isinstance(response, SuccessResponse):
            done = response.success
        elif isinstance(response, TriggerScheduleResponse):
            workflow_ids = [response.workflow_id] if response.workflow_id else []
            done = bool(workflow_ids)
        elif isinstance(response, BackfillScheduleResponse):
            workflow_ids = list(response.workflow_ids)
            done = True
        if response.error_message or not done:
            message = (
                NOT_DONE.format(error=response.error_message, **names)
                if response.error_message
                else EXECUTOR_SAID_NO.format(**names)
            )
            raise ScheduleActionFailedError(
                message, request_id=self.request_id, response=response.raw or {}
            )
        detail = f"{self.action.label} {self.name}: done by executor {self.executor_id}"
        if self.action is ScheduleAction.BACKFILL:
            detail += f", {len(workflow_ids)} workflow{'s' if len(workflow_ids) != 1 else ''}"
        elif workflow_ids:
            detail += f", workflow {workflow_ids[0]}"
        return detail + ".", workflow_ids


# Bulk pause and resume.


@dataclass(frozen=True)
class BulkOutcome:
    action: ScheduleAction
    done: list[str]
    skipped: list[str]
    failed: dict[str, str]
    audit_id: int


async def schedules_select(
    application: Application, query: ScheduleQuery, *, actor: str = ""
) -> list[Schedule]:
    """The schedules a filter selects, refused past MAX_BULK_SCHEDULES."""
    reads = await source_for(application)
    selected = (await reads.schedules(query, actor=actor)).items
    if len(selected) > MAX_BULK_SCHEDULES:
        raise ScheduleError(
            TOO_MANY_SCHEDULES.format(count=len(selected), limit=MAX_BULK_SCHEDULES)
        )
    return selected


async def schedules_bulk(
    *,
    application: Application,
    action: ScheduleAction,
    query: ScheduleQuery,
    actor: Any,
    reason: str = "",
    request: HttpRequest | None = None,
    source: str = "api",
) -> BulkOutcome:
    """Pause or resume every schedule `query` selects (those already so are skipped), one
    audited action each, and one audit record for the whole."""
    if action not in (ScheduleAction.PAUSE, ScheduleAction.RESUME):
        raise ScheduleError("A bulk action pauses or resumes.")
    actor_name = actor.get_username() if actor is not None else ""
    audit = {
        "action": f"schedule.bulk_{action.value}",
        "request": request,
        "actor": actor,
        "application": application,
        "target": "",
        "reason": reason,
    }
    filters = {k: v for k, v in vars(query).items() if v}
    try:
        selected = await schedules_select(application, query, actor=actor_name)
    except (ScheduleError, relay.RelayError) as exc:
        await db_async(audit_record)(
            **audit, parameters=filters, result=Result.FAILED, detail=str(exc)
        )
        raise
    wanted = "PAUSED" if action is ScheduleAction.PAUSE else "ACTIVE"
    done: list[str] = []
    skipped = [s.name for s in selected if s.status == wanted]
    failed: dict[str, str] = {}
    for schedule in selected:
        if schedule.status == wanted:
            continue
        try:
            await schedule_act(
                application=application,
                action=action,
                schedule_name=schedule.name,
                actor=actor,
                reason=reason,
                request=request,
                source=source,
            )
        except (ScheduleError, relay.RelayError) as exc:
            failed[schedule.name] = str(exc)
        else:
            done.append(schedule.name)
    detail = f"{action.label}d {len(done)}, skipped {len(skipped)}, failed {len(failed)}."
    record = await db_async(audit_record)(
        **audit,
        parameters={**filters, "done": done, "skipped": skipped, "failed": failed},
        result=Result.FAILED if failed else Result.OK,
        detail=detail,
    )
    return BulkOutcome(action, done, skipped, failed, record.pk)
