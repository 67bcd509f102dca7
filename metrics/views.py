"""The Metrics page of an application: a window's charts and tables, drawn from the
roll-ups (metrics/reads.py), never from the system database itself."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from metrics import charts
from metrics.charts import Chart, Series
from metrics.reads import (
    DEFAULT_WINDOW,
    WINDOWS,
    Bucket,
    UnknownWindow,
    Window,
    WindowFigures,
    window_figures,
    window_named,
)
from stepchange.access import application_for

# How many queues the depth chart draws (the busiest); the table lists them all.
QUEUES_DRAWN = 6


@login_required
def metrics_page(request: HttpRequest, app_name: str) -> HttpResponse:
    application = application_for(request, app_name)
    context = {"application": application, "windows": WINDOWS.values()}
    try:
        window = window_named(request.GET.get("window", DEFAULT_WINDOW))
    except UnknownWindow as exc:
        return render(request, "metrics/metrics.html", {**context, "error": str(exc)}, status=400)
    context["window"] = window
    figures = window_figures(application, window, timezone.now())
    context |= {"figures": figures, "charts": window_charts(figures)}
    return render(request, "metrics/metrics.html", context)


def outcome_chart(window: Window, buckets: list[Bucket], title: str) -> Chart:
    """Workflows finished per bucket, by outcome (the overview draws this one too)."""
    return charts.stacked_bars(
        title,
        "workflows",
        [b.start for b in buckets],
        window.bucket,
        [
            Series("failed", "seg-error", [b.figures.failed for b in buckets]),
            Series("cancelled", "seg-cancelled", [b.figures.cancelled for b in buckets]),
            Series("succeeded", "seg-success", [b.figures.succeeded for b in buckets]),
        ],
    )


def window_charts(figures: WindowFigures) -> list[Chart]:
    buckets, resolution = figures.buckets, figures.window.bucket
    starts = [b.start for b in buckets]
    started = charts.stacked_bars(
        "Workflows started",
        "workflows",
        starts,
        resolution,
        [Series("started", "seg-pending", [b.figures.started for b in buckets])],
    )
    latency = charts.lines(
        "Latency, creation to completion",
        "duration",
        starts,
        resolution,
        [
            Series("p50", "line-p50", [b.latency(0.5) for b in buckets]),
            Series("p95", "line-p95", [b.latency(0.95) for b in buckets]),
            Series("max", "line-max", [b.figures.latency_max_ms for b in buckets]),
        ],
        charts.duration,
    )
    wait = charts.lines(
        "Queue wait, enqueued to dequeued",
        "duration",
        starts,
        resolution,
        [
            Series("p50", "line-p50", [b.wait(0.5) for b in buckets]),
            Series("p95", "line-p95", [b.wait(0.95) for b in buckets]),
            Series("max", "line-max", [b.figures.queue_wait_max_ms for b in buckets]),
        ],
        charts.duration,
    )
    busiest = sorted(
        figures.queues, key=lambda q: -max((b.queues.get(q, 0) for b in buckets), default=0)
    )[:QUEUES_DRAWN]
    depth = charts.lines(
        "Queue depth (enqueued, largest sample)",
        "workflows",
        starts,
        resolution,
        [
            Series(queue, f"line-q{i}", [b.queues.get(queue) for b in buckets])
            for i, queue in enumerate(busiest)
        ],
        lambda value: f"{value:,.0f}",
        whole=True,
    )
    return [
        started,
        outcome_chart(figures.window, buckets, "Workflows finished"),
        latency,
        wait,
        depth,
    ]
