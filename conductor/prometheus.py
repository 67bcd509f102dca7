"""The executor side's series in `GET /metrics`, read from StepChange's database at each
scrape (stepchange/prometheus.py says why): executors per application and version, in
DBOS Conductor's `dbos_conductor_v1_executor_count` and StepChange's own connected count,
and the poison workflows recovery holds for an operator."""

from collections import Counter
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db.models import BooleanField, Count, ExpressionWrapper, Q
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from conductor.models import Executor, PoisonWorkflow
from conductor.recovery import POISON_THRESHOLD

# DBOS Conductor's executor statuses, from StepChange's states. A recovered executor's
# work went elsewhere: like Conductor, it is no longer counted.
HEALTHY, DISCONNECTED, DEAD = "HEALTHY", "DISCONNECTED", "DEAD"
STATUS_OF_STATE = {
    Executor.State.CONNECTED: HEALTHY,
    Executor.State.DISCONNECTED: DISCONNECTED,
    Executor.State.RECOVERING: DEAD,
    Executor.State.DEAD: DEAD,
}


def executors_collect() -> Iterable[Metric]:
    cutoff = timezone.now() - timedelta(seconds=settings.EXECUTOR_HEARTBEAT_SECONDS * 3)
    rows = (
        Executor.objects.exclude(state=Executor.State.RECOVERED)
        .annotate(fresh=ExpressionWrapper(Q(last_seen_at__gte=cutoff), BooleanField()))
        .values("application__name", "application_version", "state", "fresh")
        .annotate(n=Count("id"))
        .order_by()
    )
    counts: Counter[tuple[str, str, str]] = Counter()
    for row in rows:
        status = STATUS_OF_STATE[row["state"]]
        if status == HEALTHY and not row["fresh"]:
            # Its process stopped beating: as good as disconnected (ExecutorQuerySet.live).
            status = DISCONNECTED
        version = row["application_version"] or "unknown"
        counts[(row["application__name"], version, status)] += row["n"]
    conductor = GaugeMetricFamily(
        "dbos_conductor_v1_executor_count",
        "Executors registered per application, by status and application version.",
        labels=["application", "application_version", "status"],
    )
    connected = GaugeMetricFamily(
        "stepchange_executors_connected",
        "Executors connected now, per application and application version.",
        labels=["application", "application_version"],
    )
    for (application, version, status), n in sorted(counts.items()):
        conductor.add_metric([application, version, status], n)
        if status == HEALTHY:
            connected.add_metric([application, version], n)
    return [conductor, connected]


def poison_collect() -> Iterable[Metric]:
    rows = (
        PoisonWorkflow.objects.filter(
            resolved_at__isnull=True, executors_killed__gte=POISON_THRESHOLD
        )
        .values("application__name")
        .annotate(n=Count("id"))
        .order_by("application__name")
    )
    held = GaugeMetricFamily(
        "stepchange_poison_workflows",
        "Poison workflows (their recovery kept killing executors) held for an operator.",
        labels=["application"],
    )
    for row in rows:
        held.add_metric([row["application__name"]], row["n"])
    return [held]
