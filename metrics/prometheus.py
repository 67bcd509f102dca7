"""The roll-ups in `GET /metrics`, read from StepChange's database at each scrape
(stepchange/prometheus.py says why): each application's last minute rolled up, in DBOS
Conductor's per-minute workflow series (rates per second over that minute, the longest
latency and queue wait in it), each queue's depth at its latest sample, and how far the
roll-up has come. One indexed read per application of the rows of one minute."""

from collections.abc import Iterable

from django.db.models import Max
from prometheus_client.core import GaugeMetricFamily, Metric

from metrics.models import MINUTE, QueueDepth, Rollup, RollupState
from metrics.reads import last_minute

PREFIX = "dbos_conductor_v1_"
# Conductor's name of each per-second rate, and the roll-up count it is drawn from.
WORKFLOW_RATES = {
    "workflow_started_rate": "started",
    "workflow_success_rate": "succeeded",
    "workflow_failed_rate": "failed",
    "workflow_cancelled_rate": "cancelled",
    "workflow_dequeued_rate": "dequeued",
}
STEP_RATES = {"step_success_rate": "succeeded", "step_failed_rate": "failed"}


def _gauge(name: str, text: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}{name}", text, labels=labels)


def rollups_collect() -> Iterable[Metric]:
    workflow_labels = ["application", "workflow_name"]
    rates = {
        name: _gauge(
            name, f"Workflows {count} per second over the last minute rolled up.", workflow_labels
        )
        for name, count in WORKFLOW_RATES.items()
    }
    latency = _gauge(
        "workflow_max_total_latency_seconds",
        "The longest time from creation to completion of the workflows that finished in the "
        "last minute rolled up, in seconds.",
        workflow_labels,
    )
    wait = _gauge(
        "workflow_max_queue_wait_seconds",
        "The longest time in a queue of the workflows dequeued in the last minute rolled up, "
        "in seconds.",
        workflow_labels,
    )
    # A step's name twice: `function_name`, as DBOS names it (operation_outputs, list_steps,
    # get_metrics), and `step_name`, as Conductor's step series are labelled.
    step_labels = ["application", "function_name", "step_name"]
    step_rates = {
        name: _gauge(name, f"Steps {count} per second over the last minute rolled up.", step_labels)
        for name, count in STEP_RATES.items()
    }
    step_longest = _gauge(
        "step_max_duration_seconds",
        "The longest duration of the steps completed in the last minute rolled up, in seconds.",
        step_labels,
    )
    for row in last_minute():
        app = row.application.name
        if row.kind == Rollup.Kind.WORKFLOW:
            for name, count in WORKFLOW_RATES.items():
                rates[name].add_metric([app, row.name], getattr(row, count) / MINUTE)
            if row.latency_max_ms is not None:
                latency.add_metric([app, row.name], row.latency_max_ms / 1000)
            if row.queue_wait_max_ms is not None:
                wait.add_metric([app, row.name], row.queue_wait_max_ms / 1000)
        else:
            for name, count in STEP_RATES.items():
                step_rates[name].add_metric([app, row.name, row.name], getattr(row, count) / MINUTE)
            if row.latency_max_ms is not None:
                step_longest.add_metric([app, row.name, row.name], row.latency_max_ms / 1000)
    return [
        *rates.values(),
        latency,
        wait,
        *step_rates.values(),
        step_longest,
        *_queues(),
        *_oldest(),
        _rolled(),
    ]


def _queues() -> list[Metric]:
    labels = ["application", "queue_name"]
    enqueued = _gauge(
        "workflow_enqueued_count", "Workflows ENQUEUED in each queue, at its latest sample.", labels
    )
    pending = _gauge(
        "workflow_pending_count",
        "Workflows of each queue running now (PENDING), at its latest sample.",
        labels,
    )
    latest = (
        QueueDepth.objects.filter(resolution=MINUTE)
        .values("application_id")
        .annotate(at=Max("bucket_start"))
    )
    for mark in latest:
        for row in QueueDepth.objects.filter(
            application_id=mark["application_id"], resolution=MINUTE, bucket_start=mark["at"]
        ).select_related("application"):
            enqueued.add_metric([row.application.name, row.queue_name], row.enqueued)
            pending.add_metric([row.application.name, row.queue_name], row.pending)
    return [enqueued, pending]


def _oldest() -> list[Metric]:
    """When the oldest workflow waiting in each queue, and the oldest running, was created,
    at the roll-up job's latest in-flight sample; no series where there is none."""
    enqueued = _gauge(
        "workflow_oldest_enqueued_timestamp_seconds",
        "When the oldest workflow ENQUEUED in each queue was created (Unix time), at the "
        "latest sample.",
        ["application", "queue_name"],
    )
    pending = _gauge(
        "workflow_oldest_pending_timestamp_seconds",
        "When the oldest workflow running now (PENDING) was created (Unix time), at the "
        "latest sample.",
        ["application"],
    )
    sampled = RollupState.objects.filter(queues_sampled_at__isnull=False)
    for state in sampled.select_related("application"):
        app = state.application.name
        oldest: dict[str, dict[str, int]] = state.in_flight_oldest_ms
        for queue, first in sorted(oldest.items()):
            if queue and "ENQUEUED" in first:
                enqueued.add_metric([app, queue], first["ENQUEUED"] / 1000)
        running = [first["PENDING"] for first in oldest.values() if "PENDING" in first]
        if running:
            pending.add_metric([app], min(running) / 1000)
    return [enqueued, pending]


def _rolled() -> Metric:
    rolled = GaugeMetricFamily(
        "stepchange_metrics_rolled_up_to_seconds",
        "How far each application's workflows are rolled up (Unix time): what happened "
        "later is not counted yet.",
        labels=["application"],
    )
    for state in RollupState.objects.select_related("application"):
        rolled.add_metric([state.application.name], state.rolled_to_ms / 1000)
    return rolled
