"""How fast dbos-mcp's read tools answer through StepChange's Conductor-compatible API on
the 1,000,000-workflow system database `bench/seed.py` makes (it is only read).

    .venv/bin/python bench/conductor_api.py [--url postgresql://postgres@127.0.0.1:5432/sc_bench_1m]
                                            [--runs 40]

One StepChange under Daphne (its own SQLite database in a temporary directory) with the
seeded database registered as the application's system database, and no executor: every
read below comes from the system database. Each tool is called as an MCP client calls it
(`mcp.call_tool`), dbos-mcp's client pointed at this StepChange by its Conductor URL and a
credentials file in a temporary HOME, so a figure is the whole round trip a tool call
takes: dbos-mcp's client, HTTP, the bearer token, the permission checks, the read, the
translation to Conductor's shapes.

`get_workflow_aggregates` is answered from the system database too (one GROUP BY,
workflows/aggregates.py): over all the workflows, over those in flight, and over the last
hour of the seeded ones in minutes. `--tools get_workflow_aggregates` times only those.
"""

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

APP = "bench-1m"
ORG = "bench"


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


class _KeptAlive:
    """Stands for the httpx.AsyncClient dbos-mcp's client opens for each call: `async with`
    hands it one client, open for the whole run, so every call reuses its connection."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def __aenter__(self) -> Any:
        return self.client

    async def __aexit__(self, *exc: object) -> None:
        return None


# The roll-ups are caught up when their watermark is within this much of now.
CAUGHT_UP_MS = 15 * 60_000
CATCH_UP_SECONDS = 1200
ROLLED_TO = (
    "import time; from metrics.models import RollupState; "
    "s = RollupState.objects.filter(application__name={app!r}).first(); "
    "print(-1 if s is None else int(time.time() * 1000) - s.rolled_to_ms)"
)


def rollups_caught_up(server: Any) -> float:
    """Wait for the application's metric roll-ups to reach the present; the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < CATCH_UP_SECONDS:
        behind = int(server.manage("shell", "-c", ROLLED_TO.format(app=APP)).split()[-1])
        if 0 <= behind <= CAUGHT_UP_MS:
            return time.monotonic() - started
        time.sleep(5)
    raise SystemExit(f"the metric roll-ups did not catch up within {CATCH_UP_SECONDS} s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/sc_bench_1m")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--tools", nargs="*", help="time only these tools (default: all)")
    args = parser.parse_args()

    import psycopg

    from tests.e2e.servers import StepChange

    with psycopg.connect(args.url) as conn:
        row = conn.execute(
            "SELECT workflows, typical_id, thousand_steps_id FROM public.sc_bench_seed"
        ).fetchone()
        if row is None:
            raise SystemExit("not seeded: run .venv/bin/python bench/seed.py first")
        workflows, typical, thousand = row
        # The last hour of the seeded workflows (the seed ends when it was run).
        newest = conn.execute("SELECT MAX(created_at) FROM dbos.workflow_status").fetchone()
        newest_ms = newest[0] if newest else 0
        last_hour = datetime.fromtimestamp(newest_ms / 1000 - 3600, tz=UTC).isoformat()
        [schedule] = conn.execute(
            "SELECT schedule_name FROM dbos.workflow_schedules ORDER BY schedule_name LIMIT 1"
        ).fetchone() or [None]

    work = Path(tempfile.mkdtemp(prefix="sc-conductor-bench-"))
    # Nothing but the calls measured: the metric roll-ups' first run (thirty days of the
    # million workflows, a few minutes of queries once per application) is waited out.
    server = StepChange(work, name="stepchange")
    server.start()
    try:
        server.manage("register_app", APP, "--system-database-url", args.url, "--schema", "dbos")
        rolled_up_in = rollups_caught_up(server)
        token = server.token()
        home = work / "home"
        (home / ".dbos-mcp").mkdir(parents=True)
        credentials = home / ".dbos-mcp" / "credentials"
        credentials.write_text(json.dumps({"token": token, "organization": ORG}))
        os.environ["HOME"] = str(home)

        # dbos-mcp ships no type information.
        from dbos_mcp import client  # type: ignore[import-untyped]
        from dbos_mcp import server as mcp_server

        # Its client logs every request: not what is measured.
        logging.getLogger("httpx").setLevel(logging.WARNING)

        client.CREDENTIALS_DIR = home / ".dbos-mcp"
        client.CREDENTIALS_PATH = credentials
        client.CONDUCTOR_URL = f"{server.url}/conductor/v2"

        calls: list[tuple[str, str, dict[str, Any]]] = [
            ("list_applications", "", {}),
            ("list_executors", "", {"application_name": APP}),
            ("list_workflows", "default (oldest first, 100)", {"application_name": APP}),
            (
                "list_workflows",
                "newest 50 ERROR",
                {"application_name": APP, "status": "ERROR", "sort_desc": True, "limit": 50},
            ),
            (
                "list_workflows",
                "newest 20 order_workflow, with input and output",
                {
                    "application_name": APP,
                    "workflow_name": "order_workflow",
                    "sort_desc": True,
                    "limit": 20,
                    "load_input": True,
                    "load_output": True,
                },
            ),
            (
                "list_workflows",
                "queue orders, ENQUEUED",
                {"application_name": APP, "queue_name": "orders", "status": "ENQUEUED"},
            ),
            (
                "list_workflows",
                "newest 20, offset 200",
                {"application_name": APP, "sort_desc": True, "limit": 20, "offset": 200},
            ),
            ("get_workflow", "typical", {"application_name": APP, "workflow_id": typical}),
            ("list_steps", "typical", {"application_name": APP, "workflow_id": typical}),
            ("list_steps", "1,000 steps", {"application_name": APP, "workflow_id": thousand}),
            (
                "get_workflow_events",
                "typical",
                {"application_name": APP, "workflow_id": typical},
            ),
            (
                "get_workflow_notifications",
                "typical",
                {"application_name": APP, "workflow_id": typical},
            ),
            ("list_schedules", "", {"application_name": APP}),
            ("list_application_versions", "", {"application_name": APP}),
            (
                "get_workflow_aggregates",
                "per status, every workflow",
                {"application_name": APP, "group_by_status": True, "select_count": True},
            ),
            (
                "get_workflow_aggregates",
                "ENQUEUED and PENDING per queue, oldest",
                {
                    "application_name": APP,
                    "group_by_queue_name": True,
                    "group_by_status": True,
                    "select_count": True,
                    "select_min_created_at": True,
                    "status": ["ENQUEUED", "PENDING"],
                },
            ),
            (
                "get_workflow_aggregates",
                "last hour per status and name, by minute",
                {
                    "application_name": APP,
                    "group_by_status": True,
                    "group_by_name": True,
                    "select_count": True,
                    "select_max_total_latency_ms": True,
                    "time_bucket_size_ms": 60_000,
                    "start_time": last_hour,
                },
            ),
        ]
        if schedule:
            calls.append(
                ("get_schedule", schedule, {"application_name": APP, "schedule_name": schedule})
            )
        if args.tools:
            calls = [call for call in calls if call[0] in args.tools]

        async def call(name: str, arguments: dict[str, Any]) -> float:
            started = time.perf_counter()
            result = await mcp_server.mcp.call_tool(name, arguments)
            elapsed = (time.perf_counter() - started) * 1000
            assert not result.is_error, result
            return elapsed

        async def measure() -> list[tuple[str, str, list[float], list[float]]]:
            import httpx

            fresh = client.httpx
            kept = httpx.AsyncClient()
            measured = []
            for name, label, arguments in calls:
                runs = []
                # As dbos-mcp calls: a new connection per call; then over one kept alive.
                for connections in (fresh, SimpleNamespace(AsyncClient=lambda: _KeptAlive(kept))):
                    client.httpx = connections
                    for _ in range(3):  # warm up: connections, caches
                        await call(name, arguments)
                    runs.append([await call(name, arguments) for _ in range(args.runs)])
                client.httpx = fresh
                measured.append((name, label, runs[0], runs[1]))
            await kept.aclose()
            return measured

        measured = asyncio.run(measure())
    finally:
        server.stop()

    print(f"{workflows:,} workflows; {args.runs} calls each after 3 to warm up")
    print(f"(measured once the metric roll-ups had caught up, {rolled_up_in:.0f} s after start)")
    print("ms; as dbos-mcp calls (a new connection each call) | over one kept-alive connection")
    print(f"{'tool':28} {'what':48} {'p50':>7} {'p95':>7} | {'p50':>7} {'p95':>7}")
    for name, label, fresh, kept in measured:
        shown = [statistics.median(fresh), percentile(fresh, 0.95)]
        shown += [statistics.median(kept), percentile(kept, 0.95)]
        p50, p95, kept_p50, kept_p95 = shown
        print(f"{name:28} {label:48} {p50:7.1f} {p95:7.1f} | {kept_p50:7.1f} {kept_p95:7.1f}")
    for column, which in ((2, "as dbos-mcp calls"), (3, "kept alive")):
        worst = max(percentile(row[column], 0.95) for row in measured)
        print(f"worst p95, {which}: {worst:.1f} ms (target 100 ms)")


if __name__ == "__main__":
    main()
