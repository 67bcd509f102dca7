"""How long the alert evaluator's reads take on a large system database: each kind of rule
that reads the system database, evaluated again and again against the 1,000,000-workflow
database `bench/seed.py` makes (it is only read).

    .venv/bin/python bench/alerts.py [--url postgresql://postgres@127.0.0.1:5432/sc_bench_1m]
                                     [--runs 30]

StepChange's own database is a throwaway SQLite file in a temporary directory.
"""

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/sc_bench_1m")
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    data = tempfile.mkdtemp(prefix="sc-alerts-bench-")
    os.environ.update(
        STEPCHANGE_DATA_DIR=data, DJANGO_SETTINGS_MODULE="stepchange.settings", DATABASE_URL=""
    )
    os.environ.pop("DATABASE_URL")
    import django

    django.setup()
    from django.core.management import call_command
    from django.utils import timezone

    from alerts.evaluator import findings
    from alerts.models import AlertRule
    from stepchange.models import Application

    call_command("migrate", verbosity=0)
    app = Application.objects.create(name="bench", system_database_url=args.url)
    kinds = {
        "failures (order_workflow, > 10 in 1 h)": (
            "failures",
            {"workflow_name": "order_workflow", "threshold": 10, "window_seconds": 3600},
        ),
        "stuck (PENDING > 1 h)": ("stuck", {"status": "PENDING", "older_than_seconds": 3600}),
        "queue_depth (any queue > 100)": ("queue_depth", {"threshold": 100}),
        "stranded": ("stranded", {}),
    }
    print(f"{'rule':42} {'p50 ms':>8} {'p95 ms':>8} {'found':>6}")
    for label, (kind, parameters) in kinds.items():
        rule = AlertRule.objects.create(
            application=app, name=label, kind=kind, parameters=parameters
        )
        times, found = [], 0
        for _ in range(args.runs):
            started = time.perf_counter()
            found = len(asyncio.run(findings(rule, timezone.now())))
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
        print(f"{label:42} {statistics.median(times):8.2f} {p95:8.2f} {found:6}")


if __name__ == "__main__":
    main()
