"""Workflow metrics rolled up into StepChange's own database, so that no chart reads an
application's system database: per minute, hour and day, per workflow name (and per step
name), and each queue's depth sampled once a minute. `metrics/rollups.py` writes them.

Durations are kept as small fixed histograms beside their maximum: a column per bucket
of HISTOGRAM_BOUNDS_MS (`lat_00` …, `wait_00` …). Histograms add up, so the p95 of thirty
days is the p95 of the sum of thirty day rows, summed by the database (SUM per column)
and never a scan of the workflows.
"""

from django.db import models

from stepchange.models import Application

MINUTE, HOUR, DAY = 60, 3600, 86400
RESOLUTIONS = (MINUTE, HOUR, DAY)

# Upper bounds (ms) of the histogram buckets; one more bucket holds what is longer.
HISTOGRAM_BOUNDS_MS = (
    10,
    25,
    50,
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    30_000,
    60_000,
    300_000,
    900_000,
    3_600_000,
    21_600_000,
    86_400_000,
)
HISTOGRAM_SIZE = len(HISTOGRAM_BOUNDS_MS) + 1
LATENCY_COLUMNS = tuple(f"lat_{i:02d}" for i in range(HISTOGRAM_SIZE))
WAIT_COLUMNS = tuple(f"wait_{i:02d}" for i in range(HISTOGRAM_SIZE))


class Rollup(models.Model):
    """One bucket of one workflow name (kind workflow) or step name (kind step).

    Workflows: `started` counts those created in the bucket; `succeeded`, `failed` (ERROR
    or MAX_RECOVERY_ATTEMPTS_EXCEEDED) and `cancelled` those that finished in it, whenever
    they started, with the latency histogram their time from creation to completion;
    `dequeued` those a queue let go in it, with the wait histogram their time in the queue.
    Steps: `succeeded` and `failed` count the steps that completed in the bucket, the
    latency histogram their duration.
    """

    class Kind(models.TextChoices):
        WORKFLOW = "workflow"
        STEP = "step"

    application = models.ForeignKey(Application, on_delete=models.CASCADE)
    resolution = models.PositiveIntegerField()
    bucket_start = models.DateTimeField()
    kind = models.CharField(max_length=10, choices=Kind.choices)
    name = models.TextField()
    started = models.PositiveBigIntegerField(default=0)
    succeeded = models.PositiveBigIntegerField(default=0)
    failed = models.PositiveBigIntegerField(default=0)
    cancelled = models.PositiveBigIntegerField(default=0)
    dequeued = models.PositiveBigIntegerField(default=0)
    latency_max_ms = models.BigIntegerField(null=True)
    queue_wait_max_ms = models.BigIntegerField(null=True)
    # The latency histogram (LATENCY_COLUMNS), then the wait histogram (WAIT_COLUMNS).
    lat_00 = models.PositiveBigIntegerField(default=0)
    lat_01 = models.PositiveBigIntegerField(default=0)
    lat_02 = models.PositiveBigIntegerField(default=0)
    lat_03 = models.PositiveBigIntegerField(default=0)
    lat_04 = models.PositiveBigIntegerField(default=0)
    lat_05 = models.PositiveBigIntegerField(default=0)
    lat_06 = models.PositiveBigIntegerField(default=0)
    lat_07 = models.PositiveBigIntegerField(default=0)
    lat_08 = models.PositiveBigIntegerField(default=0)
    lat_09 = models.PositiveBigIntegerField(default=0)
    lat_10 = models.PositiveBigIntegerField(default=0)
    lat_11 = models.PositiveBigIntegerField(default=0)
    lat_12 = models.PositiveBigIntegerField(default=0)
    lat_13 = models.PositiveBigIntegerField(default=0)
    lat_14 = models.PositiveBigIntegerField(default=0)
    lat_15 = models.PositiveBigIntegerField(default=0)
    lat_16 = models.PositiveBigIntegerField(default=0)
    lat_17 = models.PositiveBigIntegerField(default=0)
    wait_00 = models.PositiveBigIntegerField(default=0)
    wait_01 = models.PositiveBigIntegerField(default=0)
    wait_02 = models.PositiveBigIntegerField(default=0)
    wait_03 = models.PositiveBigIntegerField(default=0)
    wait_04 = models.PositiveBigIntegerField(default=0)
    wait_05 = models.PositiveBigIntegerField(default=0)
    wait_06 = models.PositiveBigIntegerField(default=0)
    wait_07 = models.PositiveBigIntegerField(default=0)
    wait_08 = models.PositiveBigIntegerField(default=0)
    wait_09 = models.PositiveBigIntegerField(default=0)
    wait_10 = models.PositiveBigIntegerField(default=0)
    wait_11 = models.PositiveBigIntegerField(default=0)
    wait_12 = models.PositiveBigIntegerField(default=0)
    wait_13 = models.PositiveBigIntegerField(default=0)
    wait_14 = models.PositiveBigIntegerField(default=0)
    wait_15 = models.PositiveBigIntegerField(default=0)
    wait_16 = models.PositiveBigIntegerField(default=0)
    wait_17 = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["application", "resolution", "bucket_start", "kind", "name"],
                name="metrics_rollup_one_per_bucket",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.name} at {self.bucket_start} ({self.resolution} s)"


class QueueDepth(models.Model):
    """How many workflows one queue held: sampled once a minute; an hour's or a day's row
    keeps the largest sample of its minutes."""

    application = models.ForeignKey(Application, on_delete=models.CASCADE)
    resolution = models.PositiveIntegerField()
    bucket_start = models.DateTimeField()
    queue_name = models.TextField()
    enqueued = models.PositiveBigIntegerField(default=0)
    pending = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["application", "resolution", "bucket_start", "queue_name"],
                name="metrics_queue_depth_one_per_bucket",
            )
        ]

    def __str__(self) -> str:
        return f"{self.queue_name} at {self.bucket_start}: {self.enqueued} enqueued"


class RollupState(models.Model):
    """How far an application's workflows are rolled up: every event stamped at or before
    `rolled_to_ms` (epoch ms, the system database's clock) is counted, none after it. Only
    a write naming the value it replaces moves it, so two processes never count a minute
    twice.

    `in_flight` is the sample taken at `queues_sampled_at`: how many workflows each queue
    ("" for none) held, by status (ENQUEUED, PENDING, and DELAYED in a queue). The overview
    starts from it and counts live only what was stamped after it. `in_flight_oldest_ms`
    is when the oldest of each was created (epoch ms), for `GET /metrics`."""

    application = models.OneToOneField(Application, on_delete=models.CASCADE)
    rolled_to_ms = models.BigIntegerField()
    rolled_at = models.DateTimeField(null=True)
    queues_sampled_at = models.DateTimeField(null=True)
    in_flight = models.JSONField(default=dict)
    in_flight_oldest_ms = models.JSONField(default=dict)
    problem = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"{self.application} rolled up to {self.rolled_to_ms}"
