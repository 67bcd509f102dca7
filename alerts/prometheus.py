"""Alerts in `GET /metrics`, read from StepChange's database at each scrape
(stepchange/prometheus.py says why): the alerts firing now, and the messages still to
deliver or given up on. Delivered messages are counted as they go
(`stepchange_alert_deliveries_total`), so these queries read only what is unfinished."""

from collections.abc import Iterable

from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily, Metric

from alerts.models import Alert, AlertDelivery

UNFINISHED = (AlertDelivery.State.PENDING, AlertDelivery.State.FAILED)


def alerts_collect() -> Iterable[Metric]:
    firing = GaugeMetricFamily(
        "stepchange_alerts_firing",
        "Alerts firing now, by application and rule kind.",
        labels=["application", "kind"],
    )
    for row in (
        Alert.objects.filter(state=Alert.State.FIRING)
        .values("rule__application__name", "rule__kind")
        .annotate(n=Count("id"))
        .order_by()
    ):
        firing.add_metric([row["rule__application__name"], row["rule__kind"]], row["n"])
    waiting = GaugeMetricFamily(
        "stepchange_alert_deliveries_unfinished",
        "Alert messages not delivered: pending (to be tried, or retried with backoff) or "
        "failed (given up; an admin may send them again), by application and channel kind.",
        labels=["application", "channel_kind", "state"],
    )
    for row in (
        AlertDelivery.objects.filter(state__in=UNFINISHED)
        .values("channel__application__name", "channel__kind", "state")
        .annotate(n=Count("id"))
        .order_by()
    ):
        labels = [row["channel__application__name"], row["channel__kind"], row["state"]]
        waiting.add_metric(labels, row["n"])
    return [firing, waiting]
