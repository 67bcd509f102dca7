"""The roll-up job: what is new in each application's system database since the last run,
counted per minute, hour and day into StepChange's own database (metrics/models.py).

Each run reads four ranges of DBOS's own indexes past the application's watermark, and
no further than METRICS_SETTLE_SECONDS ago (a row is stamped before its transaction
commits): workflows created (`created_at`), finished (`completed_at`: a workflow started
last week and finished now counts as finished now), let go by a queue
(`started_at_epoch_ms`), and steps completed (`completed_at_epoch_ms`). Each is grouped
in the database, so what comes back is a few rows per minute and name, however many
workflows ran. A first run reaches back METRICS_BACKFILL_HOURS, a slice at a time.

One process rolls up at a time: it holds a lease row (like the alert evaluator's). Even
without it nothing is counted twice: the counts are written in the transaction that moves
the watermark, and only an update naming the watermark it read moves it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, models, transaction
from django.db.models import F, Q
from django.utils import timezone

from alerts.models import LEASE_HOLDER, lease_take
from conductor import relay
from conductor.protocol import (
    GetStepAggregatesBody,
    GetStepAggregatesRequest,
    GetStepAggregatesResponse,
    GetWorkflowAggregatesBody,
    GetWorkflowAggregatesRequest,
    GetWorkflowAggregatesResponse,
    Request,
    Response,
)
from metrics.models import (
    DAY,
    HISTOGRAM_BOUNDS_MS,
    HISTOGRAM_SIZE,
    HOUR,
    LATENCY_COLUMNS,
    MINUTE,
    RESOLUTIONS,
    WAIT_COLUMNS,
    QueueDepth,
    Rollup,
    RollupState,
)
from stepchange.asyncdb import db_async
from stepchange.models import Application
from workflows import systemdb
from workflows.models import FAILED_STATUSES, OperationOutput, WorkflowStatus, per_minute

logger = logging.getLogger(__name__)

LEASE = "metric-rollups"
HOLDER = LEASE_HOLDER
# The most one run reads of an application, in time: a first run, or one after a long
# stop, catches up slice by slice, each in its own transaction.
SLICE_MS = 6 * 3_600_000
# How many slices one pass takes of an application before it moves on to the next.
SLICES_PER_PASS = 8
# Applications without a system database are rolled up through an executor: a first run
# reaches back this far, and one pass takes at most this many minutes.
RELAYED_BACKFILL_MS = 3_600_000
RELAYED_MINUTES_PER_PASS = 10
# How the roll-up's requests are named in the request log.
RELAY_SOURCE = "metrics"
# How long rows of each resolution are kept: enough for the windows drawn from them.
KEPT = {MINUTE: timedelta(days=2), HOUR: timedelta(days=35), DAY: timedelta(days=400)}
UNNAMED = ""
IN_FLIGHT = ("ENQUEUED", "PENDING")
FINISHED = {"SUCCESS": "succeeded", "CANCELLED": "cancelled"} | dict.fromkeys(
    FAILED_STATUSES, "failed"
)


def _empty() -> list[int]:
    return [0] * HISTOGRAM_SIZE


def _longest(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else max(a, b)


@dataclass
class Figures:
    """What one bucket of one name adds up to (see `Rollup`)."""

    started: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    dequeued: int = 0
    latency: list[int] = field(default_factory=_empty)
    latency_max_ms: int | None = None
    queue_wait: list[int] = field(default_factory=_empty)
    queue_wait_max_ms: int | None = None

    COUNTS = ("started", "succeeded", "failed", "cancelled", "dequeued")

    def add(self, other: Figures) -> None:
        for name in self.COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latency = [a + b for a, b in zip(self.latency, other.latency, strict=True)]
        self.queue_wait = [a + b for a, b in zip(self.queue_wait, other.queue_wait, strict=True)]
        self.latency_max_ms = _longest(self.latency_max_ms, other.latency_max_ms)
        self.queue_wait_max_ms = _longest(self.queue_wait_max_ms, other.queue_wait_max_ms)

    @classmethod
    def of(cls, row: Rollup | dict[str, Any]) -> Figures:
        """A roll-up row's figures, or those of a row of sums with the same names."""
        values = row if isinstance(row, dict) else None

        def get(name: str) -> Any:
            return values.get(name) if values is not None else getattr(row, name)

        return cls(
            **{name: get(name) or 0 for name in cls.COUNTS},
            latency=[get(column) or 0 for column in LATENCY_COLUMNS],
            latency_max_ms=get("latency_max_ms"),
            queue_wait=[get(column) or 0 for column in WAIT_COLUMNS],
            queue_wait_max_ms=get("queue_wait_max_ms"),
        )

    def onto(self, row: Rollup) -> Rollup:
        for name in self.COUNTS:
            setattr(row, name, getattr(self, name))
        for column, count in zip(LATENCY_COLUMNS, self.latency, strict=True):
            setattr(row, column, count)
        for column, count in zip(WAIT_COLUMNS, self.queue_wait, strict=True):
            setattr(row, column, count)
        row.latency_max_ms, row.queue_wait_max_ms = self.latency_max_ms, self.queue_wait_max_ms
        return row


# (kind, name, bucket start in epoch ms) -> its figures.
Deltas = dict[tuple[str, str, int], Figures]


@dataclass(frozen=True)
class Outcome:
    """One application's run: the watermark it moved from and to, how many workflow and
    step events it counted, and the problem when it could not."""

    application: str
    rolled_from_ms: int | None = None
    rolled_to_ms: int | None = None
    events: int = 0
    problem: str = ""
    raced: bool = False


# The lease.


def lease_claim(*, holder: str = HOLDER, seconds: int | None = None) -> bool:
    """Take or renew the roll-up's lease; False while another live process holds it."""
    return lease_take(LEASE, holder=holder, seconds=seconds or settings.METRICS_ROLLUP_SECONDS * 3)


# Reading what is new.


def _record(deltas: Deltas, kind: str, name: str | None, minute: int) -> Figures:
    return deltas.setdefault((kind, name or UNNAMED, int(minute)), Figures())


def _histogram(figures: Figures, attribute: str, row: dict[str, Any]) -> None:
    if row["bucket"] < 0:
        return
    getattr(figures, attribute)[row["bucket"]] += row["n"]
    longest = max(int(row["longest"]), 0)
    setattr(
        figures, f"{attribute}_max_ms", _longest(getattr(figures, f"{attribute}_max_ms"), longest)
    )


def read_new(application: Application, after_ms: int, until_ms: int) -> Deltas:
    """Everything stamped in (after_ms, until_ms] in the application's system database,
    per minute and name (four grouped reads, each on one of DBOS's indexes)."""
    # Reading the rows first introspects the database: then what it lacks is known.
    workflows = systemdb.workflows(application)
    alias = systemdb.alias_for(application)
    missing = systemdb.missing_fields(alias, WorkflowStatus)
    window: dict[str, Any] = {"after_ms": after_ms, "until_ms": until_ms}
    deltas: Deltas = {}
    for row in per_minute(workflows, stamp="created_at_ms", group=("name",), **window):
        _record(deltas, Rollup.Kind.WORKFLOW, row["name"], row["minute"]).started += row["n"]
    if "completed_at_ms" not in missing:
        latency = F("completed_at_ms") - F("created_at_ms")
        for row in per_minute(
            workflows.filter(status__in=FINISHED),
            stamp="completed_at_ms",
            group=("name", "status"),
            duration=latency,
            bounds_ms=HISTOGRAM_BOUNDS_MS,
            **window,
        ):
            figures = _record(deltas, Rollup.Kind.WORKFLOW, row["name"], row["minute"])
            outcome = FINISHED[row["status"]]
            setattr(figures, outcome, getattr(figures, outcome) + row["n"])
            _histogram(figures, "latency", row)
    if "started_at_epoch_ms" not in missing:
        wait = F("started_at_epoch_ms") - F("created_at_ms")
        for row in per_minute(
            workflows,
            stamp="started_at_epoch_ms",
            group=("name",),
            duration=wait,
            bounds_ms=HISTOGRAM_BOUNDS_MS,
            **window,
        ):
            figures = _record(deltas, Rollup.Kind.WORKFLOW, row["name"], row["minute"])
            figures.dequeued += row["n"]
            _histogram(figures, "queue_wait", row)
    if "completed_at_epoch_ms" not in systemdb.missing_fields(alias, OperationOutput):
        steps = systemdb.steps(application).annotate(
            erred=models.ExpressionWrapper(Q(error__isnull=False), models.BooleanField())
        )
        took = F("completed_at_epoch_ms") - F("started_at_epoch_ms")
        for row in per_minute(
            steps,
            stamp="completed_at_epoch_ms",
            group=("function_name", "erred"),
            duration=took,
            bounds_ms=HISTOGRAM_BOUNDS_MS,
            **window,
        ):
            figures = _record(deltas, Rollup.Kind.STEP, row["function_name"], row["minute"])
            if row["erred"]:
                figures.failed += row["n"]
            else:
                figures.succeeded += row["n"]
            _histogram(figures, "latency", row)
    return deltas


def next_stamp(application: Application, after_ms: int) -> int | None:
    """The first moment after `after_ms` anything happened (a workflow created, finished
    or dequeued, a step completed), or None: one probe of each index, so that a first
    run, or one after a quiet spell, skips what holds nothing instead of reading it."""
    workflows = systemdb.workflows(application)
    alias = systemdb.alias_for(application)
    stamps = ["created_at_ms", "completed_at_ms", "started_at_epoch_ms"]
    missing = systemdb.missing_fields(alias, WorkflowStatus)
    found = [
        workflows.filter(**{f"{stamp}__gt": after_ms}).aggregate(at=models.Min(stamp))["at"]
        for stamp in stamps
        if stamp not in missing
    ]
    if "completed_at_epoch_ms" not in systemdb.missing_fields(alias, OperationOutput):
        steps = systemdb.steps(application).filter(completed_at_epoch_ms__gt=after_ms)
        found.append(steps.aggregate(at=models.Min("completed_at_epoch_ms"))["at"])
    return min((at for at in found if at is not None), default=None)


@dataclass(frozen=True)
class InFlight:
    """The workflows in flight at a sample, per queue ("" for none) and status: how many,
    and when the oldest of them was created (epoch ms)."""

    counts: dict[str, dict[str, int]]
    oldest_ms: dict[str, dict[str, int]]


def read_in_flight(application: Application) -> InFlight:
    """The workflows in flight now: ENQUEUED and PENDING through DBOS's partial index of
    in-flight workflows (which holds their creation time), DELAYED ones in a queue through
    theirs. The overview starts from this sample (see `RollupState.in_flight`)."""
    in_flight = models.Q(status__in=IN_FLIGHT) | models.Q(
        status="DELAYED", queue_name__isnull=False
    )
    counts: dict[str, dict[str, int]] = {}
    oldest: dict[str, dict[str, int]] = {}
    for queue, status, count, first in (
        systemdb.workflows(application)
        .filter(in_flight)
        .order_by()
        .values_list("queue_name", "status")
        .annotate(count=models.Count("*"), first=models.Min("created_at_ms"))
    ):
        counts.setdefault(queue or UNNAMED, {})[status] = count
        if first is not None:
            oldest.setdefault(queue or UNNAMED, {})[status] = int(first)
    return InFlight(counts, oldest)


def queue_depths(sample: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """The queues of an in-flight sample, without the workflows in none."""
    return {queue: counts for queue, counts in sample.items() if queue != UNNAMED}


# Writing the roll-ups.


def _floor(epoch_ms: int, resolution: int) -> int:
    step = resolution * 1000
    return epoch_ms // step * step


def _moment(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)


def merge(application: Application, deltas: Deltas) -> None:
    """Add per-minute figures into the application's minute, hour and day rows."""
    for resolution in RESOLUTIONS:
        grouped: Deltas = {}
        for (kind, name, minute), figures in deltas.items():
            key = (kind, name, _floor(minute, resolution))
            grouped.setdefault(key, Figures()).add(figures)
        if not grouped:
            continue
        starts = {_moment(at) for _, _, at in grouped}
        existing = {
            (row.kind, row.name, int(row.bucket_start.timestamp() * 1000)): row
            for row in Rollup.objects.filter(
                application=application, resolution=resolution, bucket_start__in=starts
            )
        }
        changed, added = [], []
        for key, figures in grouped.items():
            row = existing.get(key)
            if row is None:
                kind, name, at = key
                fresh = Rollup(
                    application=application,
                    resolution=resolution,
                    bucket_start=_moment(at),
                    kind=kind,
                    name=name,
                )
                added.append(figures.onto(fresh))
                continue
            total = Figures.of(row)
            total.add(figures)
            changed.append(total.onto(row))
        Rollup.objects.bulk_create(added)
        Rollup.objects.bulk_update(
            changed,
            [
                *Figures.COUNTS,
                "latency_max_ms",
                "queue_wait_max_ms",
                *LATENCY_COLUMNS,
                *WAIT_COLUMNS,
            ],
        )


def merge_queue_depths(
    application: Application, depths: dict[str, dict[str, int]], at: datetime
) -> None:
    """One minute's sample, and the largest of each hour and day."""
    now_ms = int(at.timestamp() * 1000)
    for resolution in RESOLUTIONS:
        start = _moment(_floor(now_ms, resolution))
        for queue, counts in depths.items():
            enqueued, pending = counts.get("ENQUEUED", 0), counts.get("PENDING", 0)
            row, made = QueueDepth.objects.get_or_create(
                application=application,
                resolution=resolution,
                bucket_start=start,
                queue_name=queue,
                defaults={"enqueued": enqueued, "pending": pending},
            )
            if not made and (enqueued > row.enqueued or pending > row.pending):
                row.enqueued, row.pending = max(enqueued, row.enqueued), max(pending, row.pending)
                row.save(update_fields=["enqueued", "pending"])


def forget_old(application: Application, now: datetime) -> None:
    for resolution, kept in KEPT.items():
        old = {"application": application, "resolution": resolution}
        Rollup.objects.filter(**old, bucket_start__lt=now - kept).delete()
        QueueDepth.objects.filter(**old, bucket_start__lt=now - kept).delete()


# One run.


def _state(application: Application, now_ms: int) -> RollupState:
    start = now_ms - settings.METRICS_BACKFILL_HOURS * 3_600_000
    state, _ = RollupState.objects.get_or_create(
        application=application, defaults={"rolled_to_ms": start}
    )
    return state


def rollup_slice(application: Application, *, now: datetime | None = None) -> Outcome:
    """Roll up the next slice of what is new (at most SLICE_MS of it); the watermark
    moves in the transaction that writes the counts, and only from the value read here:
    a run that finds it moved meanwhile writes nothing (`raced`)."""
    now = now or timezone.now()
    now_ms = int(now.timestamp() * 1000)
    state = _state(application, now_ms)
    after = state.rolled_to_ms
    settled = now_ms - settings.METRICS_SETTLE_SECONDS * 1000
    if settled <= after:
        return Outcome(application.name, after, after)
    try:
        # A slice at most from the first thing that happened (nothing happened before it).
        first = next_stamp(application, after)
        until = settled if first is None else min(settled, max(after, first - 1) + SLICE_MS)
        deltas = read_new(application, after, until)
        sample = read_in_flight(application) if _due(state.queues_sampled_at, now_ms) else None
    except (DatabaseError, systemdb.SystemDatabaseError) as exc:
        RollupState.objects.filter(pk=state.pk).update(problem=str(exc)[:1000])
        return Outcome(application.name, after, after, problem=str(exc))
    with transaction.atomic():
        moved = RollupState.objects.filter(pk=state.pk, rolled_to_ms=after).update(
            rolled_to_ms=until,
            rolled_at=now,
            problem="",
            **(
                {
                    "queues_sampled_at": now,
                    "in_flight": sample.counts,
                    "in_flight_oldest_ms": sample.oldest_ms,
                }
                if sample is not None
                else {}
            ),
        )
        if not moved:
            return Outcome(application.name, after, after, raced=True)
        merge(application, deltas)
        if sample is not None:
            merge_queue_depths(application, queue_depths(sample.counts), now)
    if sample is not None:
        forget_old(application, now)
    events = sum(
        f.started + f.succeeded + f.failed + f.cancelled + f.dequeued for f in deltas.values()
    )
    return Outcome(application.name, after, until, events)


def rollup_application(application: Application, *, now: datetime | None = None) -> Outcome:
    """Slices until caught up (or SLICES_PER_PASS of them): from the first watermark to the
    last, and every event counted on the way."""
    first = outcome = rollup_slice(application, now=now)
    events = outcome.events
    for _ in range(SLICES_PER_PASS - 1):
        if outcome.problem or outcome.raced or outcome.rolled_to_ms == outcome.rolled_from_ms:
            break
        outcome = rollup_slice(application, now=now)
        events += outcome.events
    return replace(outcome, rolled_from_ms=first.rolled_from_ms, events=events)


def rollup_all(*, now: datetime | None = None) -> list[Outcome]:
    """One run over every application with a system database."""
    outcomes = []
    for application in Application.objects.exclude(system_database_url=""):
        try:
            outcomes.append(rollup_application(application, now=now))
        except Exception as exc:
            logger.exception("The metrics of %s could not be rolled up", application.name)
            outcomes.append(Outcome(application.name, problem=str(exc)))
    return outcomes


# Through an executor.


def _through_executor_state(application: Application, now_ms: int) -> RollupState:
    # Whole minutes only, from the end of one: each slice is one minute's requests.
    start = _floor(now_ms - RELAYED_BACKFILL_MS, MINUTE) - 1
    state, _ = RollupState.objects.get_or_create(
        application=application, defaults={"rolled_to_ms": start}
    )
    return state


def relayed_requests(after_ms: int, until_ms: int) -> list[Request]:
    """What an executor is asked for a slice (after_ms, until_ms]: workflows created,
    finished and dequeued in it per name, and steps completed in it per function name."""
    after, until = _moment(after_ms + 1), _moment(until_ms)
    workflows = GetWorkflowAggregatesBody
    return [
        GetWorkflowAggregatesRequest(
            workflows(group_by_name=True, select_count=True, start_time=after, end_time=until)
        ),
        GetWorkflowAggregatesRequest(
            workflows(
                group_by_name=True,
                group_by_status=True,
                select_count=True,
                select_max_total_latency_ms=True,
                status=list(FINISHED),
                completed_after=after,
                completed_before=until,
            )
        ),
        GetWorkflowAggregatesRequest(
            workflows(
                group_by_name=True,
                select_count=True,
                select_max_queue_wait_ms=True,
                dequeued_after=after,
                dequeued_before=until,
            )
        ),
        GetStepAggregatesRequest(
            GetStepAggregatesBody(
                group_by_function_name=True,
                group_by_status=True,
                select_count=True,
                select_max_duration_ms=True,
                completed_after=after,
                completed_before=until,
            )
        ),
    ]


def relayed_deltas(minute: int, answers: list[Response]) -> Deltas:
    """One minute's figures from the executor's answers to `relayed_requests`: counts and
    the longest times, no histograms (the aggregates carry a maximum, not a spread)."""
    started, finished, dequeued = (
        relay.expect(answer, GetWorkflowAggregatesResponse).output for answer in answers[:3]
    )
    steps = relay.expect(answers[3], GetStepAggregatesResponse).output
    deltas: Deltas = {}
    for row in started:
        _record(deltas, Rollup.Kind.WORKFLOW, row.group.get("name"), minute).started += (
            row.count or 0
        )
    for row in finished:
        outcome = FINISHED.get(row.group.get("status") or "")
        if outcome is None:
            continue
        figures = _record(deltas, Rollup.Kind.WORKFLOW, row.group.get("name"), minute)
        setattr(figures, outcome, getattr(figures, outcome) + (row.count or 0))
        figures.latency_max_ms = _longest(figures.latency_max_ms, row.max_total_latency_ms)
    for row in dequeued:
        figures = _record(deltas, Rollup.Kind.WORKFLOW, row.group.get("name"), minute)
        figures.dequeued += row.count or 0
        figures.queue_wait_max_ms = _longest(figures.queue_wait_max_ms, row.max_queue_wait_ms)
    for step in steps:
        figures = _record(deltas, Rollup.Kind.STEP, step.group.get("function_name"), minute)
        if step.group.get("status") == "ERROR":
            figures.failed += step.count or 0
        else:
            figures.succeeded += step.count or 0
        figures.latency_max_ms = _longest(figures.latency_max_ms, step.max_duration_ms)
    return deltas


def _commit(
    application: Application, after: int, until: int, deltas: Deltas, now: datetime
) -> bool:
    """Move the watermark from `after` and write the counts, in one transaction."""
    with transaction.atomic():
        moved = RollupState.objects.filter(application=application, rolled_to_ms=after).update(
            rolled_to_ms=until, rolled_at=now, problem=""
        )
        if moved:
            merge(application, deltas)
    return bool(moved)


def queues_request() -> GetWorkflowAggregatesRequest:
    """What an executor is asked for the in-flight sample: workflows per queue and status,
    and when the oldest of each was created."""
    return GetWorkflowAggregatesRequest(
        GetWorkflowAggregatesBody(
            group_by_queue_name=True,
            group_by_status=True,
            select_count=True,
            select_min_created_at=True,
            status=[*IN_FLIGHT, "DELAYED"],
        )
    )


def relayed_in_flight(answer: Response) -> InFlight:
    counts: dict[str, dict[str, int]] = {}
    oldest: dict[str, dict[str, int]] = {}
    for row in relay.expect(answer, GetWorkflowAggregatesResponse).output:
        queue, status = row.group.get("queue_name") or UNNAMED, row.group.get("status") or ""
        # DELAYED ones count in a queue only, as `read_in_flight` reads them.
        if status not in IN_FLIGHT and not (status == "DELAYED" and queue):
            continue
        counts.setdefault(queue, {})[status] = row.count or 0
        if row.min_created_at is not None:
            oldest.setdefault(queue, {})[status] = int(row.min_created_at)
    return InFlight(counts, oldest)


def _sampled(application: Application, sample: InFlight, now: datetime) -> None:
    with transaction.atomic():
        RollupState.objects.filter(application=application).update(
            queues_sampled_at=now, in_flight=sample.counts, in_flight_oldest_ms=sample.oldest_ms
        )
        merge_queue_depths(application, queue_depths(sample.counts), now)


def _due(sampled: datetime | None, now_ms: int) -> bool:
    """Whether the queues are to be sampled: once a minute."""
    if sampled is None:
        return True
    return _floor(int(sampled.timestamp() * 1000), MINUTE) < _floor(now_ms, MINUTE)


def _problem(application: Application, problem: str) -> None:
    RollupState.objects.filter(application=application).update(problem=problem[:1000])


async def rollup_through_executor(
    application: Application, *, now: datetime | None = None
) -> Outcome:
    """An application without a system database, rolled up by asking a connected executor
    for each whole minute past the watermark (four aggregate requests a minute, at most
    RELAYED_MINUTES_PER_PASS minutes a pass; a first run reaches back RELAYED_BACKFILL_MS)."""
    now = now or timezone.now()
    now_ms = int(now.timestamp() * 1000)
    state = await db_async(_through_executor_state)(application, now_ms)
    first = after = state.rolled_to_ms
    settled = now_ms - settings.METRICS_SETTLE_SECONDS * 1000
    events = 0
    for _ in range(RELAYED_MINUTES_PER_PASS):
        minute = _floor(after + 1, MINUTE)
        until = minute + MINUTE * 1000 - 1
        if until > settled:
            break
        try:
            answers = await asyncio.gather(
                *(
                    relay.request(application, message, source=RELAY_SOURCE)
                    for message in relayed_requests(after, until)
                )
            )
            deltas = relayed_deltas(minute, list(answers))
        except relay.RelayError as exc:
            await db_async(_problem)(application, str(exc))
            return Outcome(application.name, first, after, events, problem=str(exc))
        if not await db_async(_commit)(application, after, until, deltas, now):
            return Outcome(application.name, first, after, events, raced=True)
        events += sum(
            f.started + f.succeeded + f.failed + f.cancelled + f.dequeued for f in deltas.values()
        )
        after = until
    if _due(state.queues_sampled_at, now_ms):
        try:
            answer = await relay.request(application, queues_request(), source=RELAY_SOURCE)
            sample = relayed_in_flight(answer)
        except relay.RelayError as exc:
            await db_async(_problem)(application, str(exc))
            return Outcome(application.name, first, after, events, problem=str(exc))
        await db_async(_sampled)(application, sample, now)
    return Outcome(application.name, first, after, events)


def _without_system_database() -> list[Application]:
    """Those with an executor to ask: the others would only fill the request log with
    requests nobody can answer."""
    from conductor.models import Executor

    asked = Executor.objects.live().values("application")
    return list(Application.objects.filter(system_database_url="", pk__in=asked))


async def rollup_if_leader(*, holder: str = HOLDER) -> list[Outcome] | None:
    """One run, if this process holds (or takes) the lease; None if another does."""
    if not await db_async(lease_claim)(holder=holder):
        return None
    outcomes = await db_async(rollup_all)()
    for application in await db_async(_without_system_database)():
        try:
            outcomes.append(await rollup_through_executor(application))
        except Exception as exc:
            logger.exception("The metrics of %s could not be rolled up", application.name)
            outcomes.append(Outcome(application.name, problem=str(exc)))
    return outcomes


async def rollup_forever() -> None:
    """The roll-up job (a loop of `stepchange.background`)."""
    while True:
        await asyncio.sleep(settings.METRICS_ROLLUP_SECONDS)
        try:
            await rollup_if_leader()
        except Exception:
            logger.exception("The metrics roll-up failed; it runs again shortly")
