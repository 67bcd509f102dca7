"""What the Metrics page and the overview draw, read from the roll-ups alone: a window's
buckets (started, succeeded, failed, cancelled; latency and queue-wait percentiles; queue
depths) and its figures per workflow name and per step name. Each window reads the rows
of one resolution (minutes for an hour, hours for a day or a week, days for thirty days),
so the longest window reads as few rows as the shortest."""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import reduce
from typing import Any

from django.db.models import Max, Q, Sum

from metrics.models import (
    DAY,
    HISTOGRAM_BOUNDS_MS,
    HOUR,
    LATENCY_COLUMNS,
    MINUTE,
    WAIT_COLUMNS,
    QueueDepth,
    Rollup,
    RollupState,
)
from metrics.rollups import Figures
from stepchange.models import Application

UNKNOWN_WINDOW = "Unknown window “{window}”: choose one of {choices}."


@dataclass(frozen=True)
class Window:
    """A window of the page: its roll-up rows are those of `resolution`, drawn in buckets
    of `bucket` seconds (a whole number of rows each)."""

    key: str
    label: str
    span: timedelta
    resolution: int
    bucket: int


WINDOWS = {
    w.key: w
    for w in (
        Window("1h", "1 hour", timedelta(hours=1), MINUTE, MINUTE),
        Window("24h", "24 hours", timedelta(hours=24), HOUR, HOUR),
        Window("7d", "7 days", timedelta(days=7), HOUR, 6 * HOUR),
        Window("30d", "30 days", timedelta(days=30), DAY, DAY),
    )
}
DEFAULT_WINDOW = "24h"


class UnknownWindow(ValueError):
    pass


def window_named(key: str) -> Window:
    try:
        return WINDOWS[key]
    except KeyError:
        choices = ", ".join(WINDOWS)
        raise UnknownWindow(UNKNOWN_WINDOW.format(window=key[:40], choices=choices)) from None


def percentile(histogram: list[int], fraction: float, longest: int | None) -> int | None:
    """The `fraction` quantile of a histogram of HISTOGRAM_BOUNDS_MS, in ms: the upper bound
    of the bucket it falls in (never more than the longest seen); None when empty."""
    total = sum(histogram)
    if not total:
        return None
    rank = fraction * total
    seen = 0
    for index, count in enumerate(histogram):
        seen += count
        if count and seen >= rank:
            if index == len(HISTOGRAM_BOUNDS_MS):
                return longest
            bound = HISTOGRAM_BOUNDS_MS[index]
            return bound if longest is None else min(bound, longest)
    return longest


@dataclass
class Named:
    """One workflow or step name's figures over the window."""

    name: str
    figures: Figures = field(default_factory=Figures)

    @property
    def finished(self) -> int:
        return self.figures.succeeded + self.figures.failed + self.figures.cancelled

    @property
    def p50_ms(self) -> int | None:
        return percentile(self.figures.latency, 0.5, self.figures.latency_max_ms)

    @property
    def p95_ms(self) -> int | None:
        return percentile(self.figures.latency, 0.95, self.figures.latency_max_ms)


@dataclass
class Bucket:
    start: datetime
    figures: Figures = field(default_factory=Figures)
    queues: dict[str, int] = field(default_factory=dict)

    def latency(self, fraction: float) -> int | None:
        return percentile(self.figures.latency, fraction, self.figures.latency_max_ms)

    def wait(self, fraction: float) -> int | None:
        return percentile(self.figures.queue_wait, fraction, self.figures.queue_wait_max_ms)


@dataclass
class WindowFigures:
    window: Window
    start: datetime
    end: datetime
    buckets: list[Bucket]
    workflows: list[Named]
    steps: list[Named]
    queues: list[str]
    rolled_to: datetime | None
    problem: str = ""


def bucket_starts(window: Window, now: datetime) -> list[datetime]:
    """Every bucket of the window, oldest first, the one now running last."""
    step = window.bucket
    last = int(now.timestamp()) // step * step
    first = int((now - window.span).timestamp()) // step * step + step
    return [datetime.fromtimestamp(at, tz=UTC) for at in range(first, last + 1, step)]


# What each group of roll-up rows adds up to: the database sums them.
SUMS: dict[str, Any] = {
    **{name: Sum(name) for name in (*Figures.COUNTS, *LATENCY_COLUMNS, *WAIT_COLUMNS)},
    "latency_max_ms": Max("latency_max_ms"),
    "queue_wait_max_ms": Max("queue_wait_max_ms"),
}


def _folded(at: datetime, window: Window) -> datetime:
    step = window.bucket
    return datetime.fromtimestamp(int(at.timestamp()) // step * step, tz=UTC)


def window_figures(application: Application, window: Window, now: datetime) -> WindowFigures:
    """The window ending now: its roll-up rows summed by the database, once per bucket
    and once per name (two grouped reads of one index range), and its queue depths."""
    starts = bucket_starts(window, now)
    buckets = {at: Bucket(at) for at in starts}
    rows = Rollup.objects.filter(
        application=application, resolution=window.resolution, bucket_start__gte=starts[0]
    ).order_by()
    per_bucket = rows.filter(kind=Rollup.Kind.WORKFLOW).values("bucket_start").annotate(**SUMS)
    for sums in per_bucket:
        bucket = buckets.get(_folded(sums["bucket_start"], window))
        if bucket is not None:
            bucket.figures.add(Figures.of(sums))
    workflows: list[Named] = []
    steps: list[Named] = []
    for sums in rows.values("kind", "name").annotate(**SUMS):
        named = workflows if sums["kind"] == Rollup.Kind.WORKFLOW else steps
        named.append(Named(sums["name"], Figures.of(sums)))
    queues: set[str] = set()
    for depth in QueueDepth.objects.filter(
        application=application, resolution=window.resolution, bucket_start__gte=starts[0]
    ):
        bucket = buckets.get(_folded(depth.bucket_start, window))
        if bucket is not None:
            held = bucket.queues.get(depth.queue_name, 0)
            bucket.queues[depth.queue_name] = max(held, depth.enqueued)
            queues.add(depth.queue_name)
    state = RollupState.objects.filter(application=application).first()
    rolled_to = None
    if state is not None and state.rolled_at is not None:
        rolled_to = datetime.fromtimestamp(state.rolled_to_ms / 1000, tz=UTC)
    return WindowFigures(
        window=window,
        start=starts[0],
        end=now,
        buckets=list(buckets.values()),
        workflows=sorted(workflows, key=lambda n: (-n.figures.started, n.name)),
        steps=sorted(steps, key=lambda n: (-n.finished, n.name)),
        queues=sorted(queues),
        rolled_to=rolled_to,
        problem=state.problem if state is not None else "",
    )


# What the outcome charts need of a bucket: the overview's refresh sums only these.
OUTCOMES = ("succeeded", "failed", "cancelled")


def outcome_buckets(
    application: Application, windows: list[Window], now: datetime
) -> dict[str, list[Bucket]]:
    """Each window's buckets with only their outcome counts (`OUTCOMES`), for the overview's
    charts: one grouped read of the windows' rows together, where `window_figures` makes
    four reads a window and sums every histogram column."""
    buckets: dict[str, dict[datetime, Bucket]] = {}
    wanted = []
    for window in windows:
        starts = bucket_starts(window, now)
        buckets[window.key] = {at: Bucket(at) for at in starts}
        wanted.append(Q(resolution=window.resolution, bucket_start__gte=starts[0]))
    rows = (
        Rollup.objects.filter(
            reduce(operator.or_, wanted), application=application, kind=Rollup.Kind.WORKFLOW
        )
        .order_by()
        .values("resolution", "bucket_start")
        .annotate(**{name: Sum(name) for name in OUTCOMES})
    )
    for sums in rows:
        for window in windows:
            if window.resolution != sums["resolution"]:
                continue
            bucket = buckets[window.key].get(_folded(sums["bucket_start"], window))
            if bucket is not None:
                for name in OUTCOMES:
                    setattr(bucket.figures, name, getattr(bucket.figures, name) + sums[name])
    return {key: list(held.values()) for key, held in buckets.items()}


def last_minute() -> list[Rollup]:
    """Each application's last minute rolled up in full (for `GET /metrics`)."""
    wanted = []
    for state in RollupState.objects.filter(rolled_at__isnull=False):
        minute = state.rolled_to_ms // 60_000 * 60_000 - 60_000
        at = datetime.fromtimestamp(minute / 1000, tz=UTC)
        wanted.append(Q(application_id=state.application_id, bucket_start=at))
    if not wanted:
        return []
    rows = Rollup.objects.filter(reduce(operator.or_, wanted), resolution=MINUTE)
    return list(rows.select_related("application").order_by("application__name", "kind", "name"))


def fresh_sample(
    application: Application, now: datetime, *, within: timedelta
) -> RollupState | None:
    """The roll-up state when its in-flight sample is at most `within` old (the overview
    counts live what happened since it: an old one would make that a long read)."""
    state = RollupState.objects.filter(application=application).first()
    if state is None or state.queues_sampled_at is None or state.rolled_at is None:
        return None
    return state if now - state.queues_sampled_at <= within else None


def failures_rolled_up(application: Application, since: datetime) -> int:
    """Workflows that failed from `since` (a whole minute) to the roll-ups' watermark."""
    rows = Rollup.objects.filter(
        application=application,
        resolution=MINUTE,
        kind=Rollup.Kind.WORKFLOW,
        bucket_start__gte=since,
    )
    return int(rows.aggregate(failed=Sum("failed"))["failed"] or 0)
