"""The metric roll-ups on the 1,000,000-workflow database `bench/seed.py` makes (only read):

1. the first roll-up of its thirty days (the backfill a new installation runs);
2. one minute's roll-up: the database time of the slice that reads one minute of new
   workflows and steps, and, from EXPLAIN ANALYZE of each of its reads, how many rows they
   touched beside how many the minute holds (the same for an hour, as a busier minute);
3. the Metrics page for every window and the overview (which draws its charts from the
   roll-ups), p50 and p95 through Django's test client, signed in;
4. what one refresh of the overview reads of the system database;
5. the overview's refresh side by side, in turn: its numbers counted afresh (queue depths
   and headline counts over every workflow in flight, as before the roll-up job sampled
   them) and from the roll-up job's in-flight sample plus what was stamped after it.

    .venv/bin/python bench/metrics.py [--url postgresql://postgres@127.0.0.1:5432/sc_bench_1m]
                                      [--runs 50] [--backfill-hours 720] [--overview-only]

--overview-only runs 1 and 5 (with --backfill-hours 26, a first roll-up of a day).

StepChange's own database is a throwaway SQLite file in a temporary directory.
"""

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SCANS = ("Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Heap Scan")


def percentiles(times: list[float]) -> tuple[float, float]:
    times = sorted(times)
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.95))]


def rows_touched(plan: dict[str, Any]) -> int:
    """Rows the scans of a plan returned, over all their loops."""
    own = plan["Actual Rows"] * plan["Actual Loops"] if plan["Node Type"] in SCANS else 0
    return own + sum(rows_touched(child) for child in plan.get("Plans", []))


def explained(url: str, statements: list[str]) -> list[tuple[int, float]]:
    """(rows touched, execution ms) of each statement, from EXPLAIN ANALYZE."""
    import psycopg

    found = []
    with psycopg.connect(url, options="-c search_path=dbos") as conn:
        for sql in statements:
            [(plan,)] = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}").fetchall()
            plan = plan if isinstance(plan, list) else json.loads(plan)
            found.append((rows_touched(plan[0]["Plan"]), plan[0]["Execution Time"]))
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/sc_bench_1m")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--backfill-hours", type=int, default=30 * 24)
    parser.add_argument("--overview-only", action="store_true")
    args = parser.parse_args()
    data = tempfile.mkdtemp(prefix="sc-metrics-bench-")
    os.environ.update(
        STEPCHANGE_DATA_DIR=data,
        DJANGO_SETTINGS_MODULE="stepchange.settings",
        METRICS_BACKFILL_HOURS=str(args.backfill_hours),
    )
    os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()
    import psycopg
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command
    from django.db import connections
    from django.db.models import F
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from metrics import rollups
    from metrics.models import QueueDepth, Rollup, RollupState
    from metrics.reads import WINDOWS
    from stepchange.models import Application
    from workflows import systemdb

    call_command("migrate", verbosity=0)
    app = Application.objects.create(name="bench", system_database_url=args.url)
    with psycopg.connect(args.url) as conn:
        [(newest,)] = conn.execute("SELECT max(created_at) FROM dbos.workflow_status").fetchall()
    # The seed's last moment is "now" for the roll-ups: its thirty days end there.
    now = datetime.fromtimestamp(newest / 1000, tz=UTC) + timedelta(minutes=1)

    print(f"1. First roll-up of {args.backfill_hours} hours (backfill)")
    started = time.perf_counter()
    slices = events = 0
    while True:
        outcome = rollups.rollup_slice(app, now=now)
        assert not outcome.problem, outcome.problem
        if outcome.rolled_to_ms == outcome.rolled_from_ms:
            break
        slices += 1
        events += outcome.events
    seconds = time.perf_counter() - started
    print(
        f"   {slices} slices, {events:,} events counted, {seconds:.1f} s, "
        f"{Rollup.objects.count():,} roll-up rows"
    )

    admin = User.objects.create_user("bench-admin", password="x")
    admin.groups.add(Group.objects.get(name="admin"))
    client = Client(HTTP_HOST="localhost")
    client.force_login(admin)
    if args.overview_only:
        overview_side_by_side(app, client, now, args)
        return
    print("2. One slice of new rows: database time, rows read")
    alias = systemdb.alias_for(app)
    print(
        f"   {'slice':8} {'workflows':>9} {'steps':>7} {'db ms':>7} {'wall ms':>8} "
        f"{'queries':>7} {'rows touched':>12}"
    )
    for label, span in (("1 minute", 60_000), ("1 hour", 3_600_000)):
        end = int(now.timestamp() * 1000) - 30 * 60_000
        start = end - span
        with psycopg.connect(args.url) as conn:
            [(created,)] = conn.execute(
                "SELECT count(*) FROM dbos.workflow_status"
                " WHERE created_at > %s AND created_at <= %s",
                [start, end],
            ).fetchall()
            [(steps,)] = conn.execute(
                "SELECT count(*) FROM dbos.operation_outputs"
                " WHERE completed_at_epoch_ms > %s AND completed_at_epoch_ms <= %s",
                [start, end],
            ).fetchall()
        db_ms, wall, touched, queries = [], [], 0, 0
        for run in range(11):
            RollupState.objects.filter(application=app).update(rolled_to_ms=start)
            clock = datetime.fromtimestamp((end + 10_000) / 1000, tz=UTC)
            with CaptureQueriesContext(connections[alias]) as captured:
                began = time.perf_counter()
                # Read only: the counts go nowhere, the reads are what is measured.
                rollups.read_new(app, start, end)
                rollups.next_stamp(app, start)
                wall.append((time.perf_counter() - began) * 1000)
            db_ms.append(sum(float(q["time"]) * 1000 for q in captured.captured_queries))
            if run == 0:
                selects = [
                    q["sql"] for q in captured.captured_queries if q["sql"].startswith("SELECT")
                ]
                plans = explained(args.url, selects)
                touched, queries = sum(rows for rows, _ in plans), len(selects)
        del clock
        print(
            f"   {label:8} {created:9,} {steps:7,} {statistics.median(db_ms[1:]):7.1f} "
            f"{statistics.median(wall[1:]):8.1f} {queries:7} {touched:12,}"
        )
    # Put the watermark back where the backfill left it.
    RollupState.objects.filter(application=app).update(
        rolled_to_ms=int(now.timestamp() * 1000) - 10_000
    )

    overview_side_by_side(app, client, now, args)

    print("3. Pages, signed in (Django test client, whole response)")
    # The pages' windows end at the clock's now, the seed ended earlier: the roll-ups
    # move forward by whole hours, so that its last hour is the last hour before now.
    # What the job keeps (minutes for two days) is what the pages read.
    rollups.forget_old(app, now)
    hours = (datetime.now(tz=UTC) - now) // timedelta(hours=1)
    if hours > 0:
        # Through a far future, so that no row lands on another's bucket on the way.
        far = timedelta(days=36_500)
        for model in (Rollup, QueueDepth):
            model.objects.update(bucket_start=F("bucket_start") + far)
            model.objects.update(bucket_start=F("bucket_start") - far + timedelta(hours=hours))
    pages: dict[str, Callable[[], Any]] = {
        f"metrics ?window={key}": partial(client.get, f"/apps/bench/metrics/?window={key}")
        for key in WINDOWS
    }
    pages["overview (htmx refresh)"] = lambda: client.get("/apps/bench/", HTTP_HX_REQUEST="true")
    print(f"   {'page':26} {'p50 ms':>8} {'p95 ms':>8} {'bytes':>8}")
    for label, get in pages.items():
        for _ in range(3):
            response = get()
            assert response.status_code == 200, response.status_code
        times = []
        for _ in range(args.runs):
            began = time.perf_counter()
            response = get()
            times.append((time.perf_counter() - began) * 1000)
        p50, p95 = percentiles(times)
        print(f"   {label:26} {p50:8.1f} {p95:8.1f} {len(response.content):8,}")

    print("4. One overview refresh: its reads of the system database")
    with CaptureQueriesContext(connections[alias]) as captured:
        client.get("/apps/bench/", HTTP_HX_REQUEST="true")
    selects = [
        q["sql"] for q in captured.captured_queries if q["sql"].lstrip("(").startswith("SELECT")
    ]
    plans = explained(args.url, selects)
    for sql, (rows, ms) in zip(selects, plans, strict=True):
        print(f"   {rows:8,} rows {ms:7.1f} ms  {sql[:90]}")
    charting = [
        s for s in selects if 'created_at" / ' in s or ("GROUP BY" in s and "created_at" in s)
    ]
    print(f"   statements grouping workflows by time (the old charts): {len(charting)}")


def overview_side_by_side(app: Any, client: Any, now: datetime, args: Any) -> None:
    """5: the overview's refresh with its numbers counted afresh (A) and from the sample
    (B), in turn, through the test client with the clock at the seed's end."""
    from unittest import mock

    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    from metrics import rollups
    from metrics.models import RollupState
    from workflows import sources, systemdb

    print("5. The overview's refresh: counted afresh (A) or from the sample (B), in turn")
    # The job sampled 90 s before the clock and rolled up to 10 s before that: the
    # refresh counts live what the seed's last 90 s stamped.
    sampled = now - timedelta(seconds=90)
    RollupState.objects.filter(application=app).update(
        queues_sampled_at=sampled,
        in_flight=rollups.read_in_flight(app).counts,
        rolled_to_ms=int(sampled.timestamp() * 1000) - 10_000,
    )
    alias = systemdb.alias_for(app)

    def refresh() -> Any:
        return client.get("/apps/bench/", HTTP_HX_REQUEST="true")

    afresh = mock.patch.object(sources, "fresh_sample", return_value=None)
    times: dict[str, list[float]] = {"A": [], "B": []}
    with mock.patch("django.utils.timezone.now", return_value=now):
        for run in range(args.runs + 3):
            for label in ("A", "B"):
                with afresh if label == "A" else contextlib.nullcontext():
                    began = time.perf_counter()
                    response = refresh()
                    took = (time.perf_counter() - began) * 1000
                assert response.status_code == 200, response.status_code
                if run >= 3:
                    times[label].append(took)
        print(f"   {'how':34} {'p50 ms':>7} {'p95 ms':>7} {'statements':>10} {'rows read':>10}")
        for label, how in (("A", "counted afresh"), ("B", "from the sample, new rows live")):
            with (
                afresh if label == "A" else contextlib.nullcontext(),
                CaptureQueriesContext(connections[alias]) as captured,
            ):
                refresh()
            selects = [
                q["sql"]
                for q in captured.captured_queries
                if q["sql"].lstrip("(").startswith("SELECT")
            ]
            plans = explained(args.url, selects)
            p50, p95 = percentiles(times[label])
            rows = sum(n for n, _ in plans)
            print(f"   {label} {how:32} {p50:7.1f} {p95:7.1f} {len(selects):10} {rows:10,}")
            for sql, (n, ms) in zip(selects, plans, strict=True):
                print(f"     {n:8,} rows {ms:7.1f} ms  {sql[:80]}")


if __name__ == "__main__":
    main()
