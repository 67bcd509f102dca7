"""Bulk-job progress in `GET /metrics`, read from StepChange's database at each scrape
(stepchange/prometheus.py says why): the unfinished jobs, and their workflows by state.
Finished jobs are left out, so the queries stay as small as the work in flight."""

from collections.abc import Iterable

from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily, Metric

from workflows.models import BulkJob, BulkJobItem

UNFINISHED = (BulkJob.State.QUEUED, BulkJob.State.RUNNING)


def bulk_jobs_collect() -> Iterable[Metric]:
    jobs = GaugeMetricFamily(
        "stepchange_bulk_jobs",
        "Bulk jobs not finished yet, by application, action and state (queued, running).",
        labels=["application", "action", "state"],
    )
    for row in (
        BulkJob.objects.filter(state__in=UNFINISHED)
        .values("application__name", "action", "state")
        .annotate(n=Count("id"))
        .order_by("application__name", "action", "state")
    ):
        jobs.add_metric([row["application__name"], row["action"], row["state"]], row["n"])
    items = GaugeMetricFamily(
        "stepchange_bulk_job_items",
        "The workflows of unfinished bulk jobs, by application, action and item state "
        "(pending, sent, ok, failed, skipped, unknown).",
        labels=["application", "action", "state"],
    )
    for row in (
        BulkJobItem.objects.filter(job__state__in=UNFINISHED)
        .values("job__application__name", "job__action", "state")
        .annotate(n=Count("id"))
        .order_by("job__application__name", "job__action", "state")
    ):
        labels = [row["job__application__name"], row["job__action"], row["state"]]
        items.add_metric(labels, row["n"])
    return [jobs, items]
