"""Stories about the roll-up job: what it counts from hand-made rows of a real DBOS 3.2
system database (SQLite and Postgres), where late finishers land, that it reads only what
is new since its watermark, and that two processes never count a minute twice."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from metrics import rollups
from metrics.models import DAY, HOUR, MINUTE, QueueDepth, Rollup, RollupState
from metrics.reads import OUTCOMES, WINDOWS, outcome_buckets, window_figures
from stepchange.models import Application
from tests.metrics.data import SystemDatabase

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime(2026, 12, 5, 12, 30, 20, tzinfo=UTC)
# The minute everything below happens in: ten minutes before NOW.
M0 = int((NOW - timedelta(minutes=10)).timestamp()) // 60 * 60_000
DAYS_AGO = M0 - 3 * 86_400_000
Shop = tuple[Application, SystemDatabase]


def wf(workflow_id: str, name: str, status: str, created: int, **more: Any) -> dict[str, Any]:
    return {
        "workflow_uuid": workflow_id,
        "name": name,
        "status": status,
        "created_at": created,
    } | more


def day_of_shopping(db: SystemDatabase) -> None:
    db.add(
        workflows=[
            wf("a1", "charge", "SUCCESS", M0 + 1000, completed_at=M0 + 1040),
            wf("a2", "charge", "SUCCESS", M0 + 2000, completed_at=M0 + 2200),
            wf("a3", "charge", "ERROR", M0 + 3000, completed_at=M0 + 6000),
            wf("a4", "ship", "CANCELLED", M0 + 4000, completed_at=M0 + 5000),
            wf("q1", "ship", "PENDING", M0 + 5000, queue_name="shipping")
            | {"started_at_epoch_ms": M0 + 5600},
            wf("q2", "ship", "ENQUEUED", M0 + 6000, queue_name="shipping"),
            # Started three days ago, before the first roll-up's reach; finished now.
            wf("late", "charge", "SUCCESS", DAYS_AGO, completed_at=M0 + 30_000),
        ],
        steps=[
            {"workflow_uuid": "a1", "function_id": 1, "function_name": "reserve"}
            | {"started_at_epoch_ms": M0 + 1001, "completed_at_epoch_ms": M0 + 1006},
            {"workflow_uuid": "a3", "function_id": 1, "function_name": "pay", "error": "boom"}
            | {"started_at_epoch_ms": M0 + 3001, "completed_at_epoch_ms": M0 + 3021},
        ],
    )


def row(
    application: Application, name: str, resolution: int = MINUTE, kind: str = "workflow"
) -> Rollup:
    return Rollup.objects.get(application=application, resolution=resolution, kind=kind, name=name)


def test_it_counts_each_workflow_where_it_started_and_where_it_finished(shop: Shop) -> None:
    application, db = shop
    day_of_shopping(db)
    outcome = rollups.rollup_application(application, now=NOW)
    assert outcome.problem == ""
    charge = row(application, "charge")
    assert charge.bucket_start == datetime.fromtimestamp(M0 / 1000, tz=UTC)
    # The late finisher is not a start of this window, but it finished in it.
    assert (charge.started, charge.succeeded, charge.failed, charge.cancelled) == (3, 3, 1, 0)
    assert charge.latency_max_ms == M0 + 30_000 - DAYS_AGO
    ship = row(application, "ship")
    assert (ship.started, ship.cancelled, ship.dequeued, ship.queue_wait_max_ms) == (3, 1, 1, 600)
    # The hour and the day hold the same sums.
    for resolution in (HOUR, DAY):
        assert row(application, "charge", resolution).succeeded == 3
        same = row(application, "charge", resolution)
        assert rollups.Figures.of(same).latency == rollups.Figures.of(charge).latency
    pay = row(application, "pay", kind="step")
    assert (pay.succeeded, pay.failed, pay.latency_max_ms) == (0, 1, 20)
    assert row(application, "reserve", kind="step").succeeded == 1
    [depth] = QueueDepth.objects.filter(application=application, resolution=MINUTE)
    assert (depth.queue_name, depth.enqueued, depth.pending) == ("shipping", 1, 1)


def test_its_percentiles_come_from_the_summed_histograms(shop: Shop) -> None:
    application, db = shop
    day_of_shopping(db)
    rollups.rollup_application(application, now=NOW)
    figures = window_figures(application, WINDOWS["1h"], NOW)
    charge = next(n for n in figures.workflows if n.name == "charge")
    # Latencies 40 ms, 200 ms, 3 s and three days: the median is in the 250 ms bucket,
    # the p95 past every bound, so it is the longest.
    assert charge.p50_ms == 250
    assert charge.p95_ms == M0 + 30_000 - DAYS_AGO
    [step] = [n for n in figures.steps if n.name == "pay"]
    assert (step.finished, step.figures.failed, step.p95_ms) == (1, 1, 20)
    bucket = next(b for b in figures.buckets if b.figures.dequeued)
    # One wait of 600 ms: its bucket's bound is 1 s, but never more than the longest.
    assert bucket.wait(0.5) == 600
    for window in WINDOWS.values():
        totals = window_figures(application, window, NOW)
        assert sum(b.figures.succeeded for b in totals.buckets) == 3, window.key


def test_the_overviews_outcomes_are_the_metrics_pages(shop: Shop) -> None:
    """The overview's one read of every window's outcomes gives each bucket what the
    Metrics page's full read gives it, windows of one resolution (a day, a week) included."""
    application, db = shop
    day_of_shopping(db)
    rollups.rollup_application(application, now=NOW)
    windows = list(WINDOWS.values())
    outcomes = outcome_buckets(application, windows, NOW)
    for window in windows:
        full = window_figures(application, window, NOW)
        want = [(b.start, *(getattr(b.figures, n) for n in OUTCOMES)) for b in full.buckets]
        got = [(b.start, *(getattr(b.figures, n) for n in OUTCOMES)) for b in outcomes[window.key]]
        assert got == want, window.key
        assert sum(row[1] for row in got) == 3, window.key


def test_a_second_run_counts_only_what_is_new(shop: Shop) -> None:
    application, db = shop
    day_of_shopping(db)
    rollups.rollup_application(application, now=NOW)
    again = rollups.rollup_application(application, now=NOW)
    assert again.events == 0
    assert row(application, "charge").started == 3
    later = NOW + timedelta(minutes=2)
    db.add(
        workflows=[
            wf("b1", "charge", "SUCCESS", M0 + 11 * 60_000, completed_at=M0 + 11 * 60_000 + 5)
        ]
    )
    outcome = rollups.rollup_application(application, now=later)
    assert outcome.events == 2  # started and succeeded
    minutes = Rollup.objects.filter(application=application, resolution=MINUTE, name="charge")
    assert [(r.started, r.succeeded) for r in minutes.order_by("bucket_start")] == [(3, 3), (1, 1)]
    assert row(application, "charge", HOUR).started == 4
    state = RollupState.objects.get(application=application)
    assert state.rolled_to_ms == int(later.timestamp() * 1000) - 10_000


def test_what_commits_within_the_settle_time_waits_for_the_next_run(shop: Shop) -> None:
    application, db = shop
    now_ms = int(NOW.timestamp() * 1000)
    db.add(workflows=[wf("fresh", "charge", "PENDING", now_ms - 2000)])
    rollups.rollup_application(application, now=NOW)
    assert not Rollup.objects.filter(application=application, name="charge").exists()
    rollups.rollup_application(application, now=NOW + timedelta(seconds=30))
    assert row(application, "charge").started == 1


def test_a_late_finisher_counts_as_finished_when_it_finishes(shop: Shop) -> None:
    application, db = shop
    db.add(workflows=[wf("slow", "report", "PENDING", M0)])
    rollups.rollup_application(application, now=NOW)
    first = row(application, "report")
    assert (first.started, first.succeeded) == (1, 0)
    finished = int(NOW.timestamp() * 1000) + 60_000
    db.finish("slow", "SUCCESS", finished)
    rollups.rollup_application(application, now=NOW + timedelta(minutes=5))
    minutes = Rollup.objects.filter(application=application, resolution=MINUTE, name="report")
    assert sorted((r.started, r.succeeded) for r in minutes) == [(0, 1), (1, 0)]
    done = minutes.get(succeeded=1)
    assert done.bucket_start == datetime.fromtimestamp(finished // 60_000 * 60, tz=UTC)
    assert done.latency_max_ms == finished - M0


def test_two_processes_never_count_a_minute_twice(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    application, db = shop
    day_of_shopping(db)
    read = rollups.read_new
    raced: list[rollups.Outcome] = []
    others: list[str] = []

    def read_while_another_process_rolls_up(*args: Any) -> Any:
        found = read(*args)
        if not others:
            # The other process reads the same rows and moves the watermark first.
            others.append("running")
            raced.append(rollups.rollup_slice(application, now=NOW))
        return found

    monkeypatch.setattr(rollups, "read_new", read_while_another_process_rolls_up)
    outcome = rollups.rollup_slice(application, now=NOW)
    assert outcome.raced
    assert not raced[0].raced
    charge = row(application, "charge")
    assert (charge.started, charge.succeeded) == (3, 3)
    assert row(application, "charge", DAY).started == 3


def test_one_process_at_a_time_holds_the_lease(db: None) -> None:
    assert rollups.lease_claim(holder="one")
    assert not rollups.lease_claim(holder="two")
    assert rollups.lease_claim(holder="one")
    assert rollups.lease_claim(holder="two", seconds=1) is False


def test_an_unreachable_system_database_is_said_and_counts_nothing(db: None, tmp_path: Any) -> None:
    application = Application.objects.create(
        name="gone", system_database_url=f"sqlite:///{tmp_path}/missing/nowhere.sqlite"
    )
    [outcome] = rollups.rollup_all(now=NOW)
    assert outcome.application == "gone"
    assert outcome.problem
    assert not Rollup.objects.filter(application=application).exists()
