"""Stories about the overview's numbers once the roll-up job runs: they start from its
in-flight sample and its roll-ups, and count live only what was stamped after them, so
a refresh reads the rows new since the last sample, not every workflow in flight."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connections
from django.test.utils import CaptureQueriesContext

from metrics import prometheus, rollups
from metrics.models import RollupState
from stepchange.models import Application
from tests.metrics.data import SystemDatabase
from tests.metrics.test_rollups import DAYS_AGO, M0, NOW, wf
from workflows import systemdb
from workflows.sources import FAILED, DatabaseSource, ListQuery, Overview, source_for

pytestmark = pytest.mark.django_db(transaction=True)

Shop = tuple[Application, SystemDatabase]
NOW_MS = int(NOW.timestamp() * 1000)
LATER = NOW + timedelta(seconds=30)


def source(application: Application) -> DatabaseSource:
    found = async_to_sync(source_for)(application)
    assert isinstance(found, DatabaseSource)
    return found


def numbers(overview: Overview) -> tuple[Any, ...]:
    headline = overview.headline
    assert headline is not None
    assert overview.queues is not None
    tallies = (headline.in_flight, headline.queued, headline.failed)
    return (*(t.count for t in tallies), overview.queues.depths)


def sampled_then_moved_on(db: SystemDatabase, application: Application) -> None:
    """A sample at NOW of: q1 running and q2 waiting in "shipping", p1 running in no
    queue, two failures today (one of a workflow started days ago) and one long ago; then
    q2 is let go, q1 fails, p1 succeeds, n1 is enqueued and n2 runs and succeeds."""
    db.add(
        workflows=[
            wf("a3", "charge", "ERROR", M0 + 3000, completed_at=M0 + 6000),
            wf("late", "charge", "ERROR", DAYS_AGO, completed_at=M0 + 30_000),
            wf("old", "charge", "ERROR", DAYS_AGO, completed_at=DAYS_AGO + 10),
            wf("q1", "ship", "PENDING", M0 + 5000, queue_name="shipping")
            | {"started_at_epoch_ms": M0 + 5600},
            wf("q2", "ship", "ENQUEUED", M0 + 6000, queue_name="shipping"),
            wf("p1", "report", "PENDING", M0 + 7000),
            # Failed past the roll-up's watermark (NOW less the settle time).
            wf("f1", "charge", "ERROR", NOW_MS - 8000, completed_at=NOW_MS - 5000),
        ]
    )
    rollups.rollup_application(application, now=NOW)
    state = RollupState.objects.get(application=application)
    assert state.in_flight == {
        "shipping": {"PENDING": 1, "ENQUEUED": 1},
        "": {"PENDING": 1},
    }
    # And when the oldest of each was created, for GET /metrics.
    assert state.in_flight_oldest_ms == {
        "shipping": {"PENDING": M0 + 5000, "ENQUEUED": M0 + 6000},
        "": {"PENDING": M0 + 7000},
    }
    db.finish("q1", "ERROR", NOW_MS + 6000)
    db.finish("p1", "SUCCESS", NOW_MS + 9000)
    db.add(
        workflows=[
            wf("n1", "ship", "ENQUEUED", NOW_MS + 7000, queue_name="shipping"),
            wf("n2", "charge", "SUCCESS", NOW_MS + 8000, completed_at=NOW_MS + 8100),
        ]
    )
    db.dequeue("q2", NOW_MS + 5000)


def test_the_numbers_start_from_the_sample_and_add_what_happened_since(shop: Shop) -> None:
    application, db = shop
    sampled_then_moved_on(db, application)
    overview = source(application)._overview(LATER)
    # q2 runs; n1 waits; failed today by completion: a3, late, f1 and q1, not old.
    depths = {"shipping": {"PENDING": 1, "ENQUEUED": 1}}
    assert numbers(overview) == (1, 1, 4, depths)
    # Counted afresh, the numbers are the same.
    assert source(application)._headline(LATER) == overview.headline


def test_a_refresh_reads_nothing_stamped_before_the_sample(shop: Shop) -> None:
    """A workflow that was in flight before the sample but is not in it (here written in
    behind the sample's back) is not seen until the next sample: the refresh reads only
    rows stamped after it."""
    application, db = shop
    sampled_then_moved_on(db, application)
    db.add(workflows=[wf("unseen", "report", "PENDING", NOW_MS - 60_000)])
    alias = systemdb.alias_for(application)
    with CaptureQueriesContext(connections[alias]) as captured:
        overview = source(application)._overview(LATER)
    assert numbers(overview)[:2] == (1, 1)
    counts = [q["sql"] for q in captured.captured_queries if "COUNT(" in q["sql"].upper()]
    assert len(counts) == 3
    assert all(str(NOW_MS) in sql or str(NOW_MS - 10_000) in sql for sql in counts), counts
    # The next sample has it.
    rollups.rollup_application(application, now=NOW + timedelta(minutes=1))
    later = source(application)._overview(NOW + timedelta(minutes=1, seconds=5))
    assert numbers(later)[0] == 2


def test_without_a_fresh_sample_the_numbers_are_counted_afresh(shop: Shop) -> None:
    application, db = shop
    sampled_then_moved_on(db, application)
    db.add(workflows=[wf("unseen", "report", "PENDING", NOW_MS - 60_000)])
    stale = NOW + timedelta(minutes=10)
    overview = source(application)._overview(stale)
    assert numbers(overview)[:2] == (2, 1)
    # Nothing rolled up at all: counted afresh too.
    RollupState.objects.filter(application=application).delete()
    assert numbers(source(application)._overview(LATER))[:3] == (2, 1, 4)


def test_the_failed_tile_links_to_the_failures_it_counted(shop: Shop) -> None:
    """By completion time: the list filtered by `completed_after` holds what it counts."""
    application, db = shop
    sampled_then_moved_on(db, application)
    headline = source(application)._overview(LATER).headline
    assert headline is not None
    assert headline.by_completion
    assert headline.failed_since == datetime(2026, 12, 4, 12, 30, tzinfo=UTC)
    listed = source(application)._list(
        ListQuery(status=FAILED, completed_after=headline.failed_since, limit=100)
    )
    assert sorted(w.workflow_id for w in listed.items) == ["a3", "f1", "late", "q1"]


def test_metrics_serve_when_the_oldest_waiting_and_running_were_created(shop: Shop) -> None:
    application, db = shop
    sampled_then_moved_on(db, application)
    enqueued, pending = prometheus._oldest()
    assert [(s.labels, s.value) for s in enqueued.samples] == [
        ({"application": "shop", "queue_name": "shipping"}, (M0 + 6000) / 1000)
    ]
    # The oldest running, in any queue or none: q1.
    assert [(s.labels, s.value) for s in pending.samples] == [
        ({"application": "shop"}, (M0 + 5000) / 1000)
    ]
