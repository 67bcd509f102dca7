"""Stories about rolling up an application without a system database: a connected
executor is asked, a whole minute at a time, for the workflows created, finished and
dequeued and the steps completed in it (DBOS's aggregates: counts and the longest times)."""

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from conductor.models import RequestLog
from metrics import rollups
from metrics.models import MINUTE, QueueDepth, Rollup, RollupState
from metrics.reads import WINDOWS, window_figures
from stepchange.models import Application
from tests.fake_executor import FakeExecutor, connect_executor

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime(2026, 12, 5, 12, 30, 20, tzinfo=UTC)
M0 = int(datetime(2026, 12, 5, 12, 28, tzinfo=UTC).timestamp() * 1000)
BUSY = {
    "started": [{"group": {"name": "charge"}, "count": 3}],
    "finished": [
        {"group": {"name": "charge", "status": "ERROR"}, "count": 1, "max_total_latency_ms": 1500},
        {"group": {"name": "charge", "status": "SUCCESS"}, "count": 2, "max_total_latency_ms": 900},
    ],
    "dequeued": [{"group": {"name": "ship"}, "count": 1, "max_queue_wait_ms": 600}],
    "steps": [
        {"group": {"function_name": "pay", "status": "ERROR"}, "count": 1, "max_duration_ms": 20}
    ],
}


def kind_of(request: dict[str, Any]) -> str:
    if request["type"] == "get_step_aggregates":
        return "steps"
    body = request["body"]
    for field, kind in (
        ("start_time", "started"),
        ("completed_after", "finished"),
        ("dequeued_after", "dequeued"),
    ):
        if field in body:
            return kind
    assert body.get("group_by_queue_name"), body
    return "queues"


QUEUES = [
    {"group": {"queue_name": "shipping", "status": "ENQUEUED"}, "count": 4}
    | {"min_created_at": M0 - 5000},
    {"group": {"queue_name": "shipping", "status": "PENDING"}, "count": 1}
    | {"min_created_at": M0 - 9000},
    {"group": {"queue_name": None, "status": "PENDING"}, "count": 2, "min_created_at": M0},
    # Delayed in no queue: not a queue's.
    {"group": {"queue_name": None, "status": "DELAYED"}, "count": 7, "min_created_at": M0},
]


async def answer_queues(executor: FakeExecutor) -> dict[str, Any]:
    request = await executor.receive()
    assert kind_of(request) == "queues"
    await executor.send(
        {"type": request["type"], "request_id": request["request_id"], "error_message": None}
        | {"output": QUEUES}
    )
    return request


async def answer_minute(executor: FakeExecutor, outputs: dict[str, Any]) -> dict[str, Any]:
    """Answer the four requests of one minute (they come at once, in any order)."""
    asked = {}
    for _ in range(4):
        request = await executor.receive()
        kind = kind_of(request)
        asked[kind] = request
        await executor.send(
            {"type": request["type"], "request_id": request["request_id"], "error_message": None}
            | {"output": outputs.get(kind, [])}
        )
    return asked


@pytest.fixture(autouse=True)
def _two_minutes_back(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    settings.METRICS_SETTLE_SECONDS = 10
    monkeypatch.setattr(rollups, "RELAYED_BACKFILL_MS", 2 * 60_000)


def row(application: Application, name: str, kind: str = "workflow") -> Rollup:
    return Rollup.objects.get(application=application, resolution=MINUTE, kind=kind, name=name)


async def test_each_whole_minute_is_asked_of_an_executor_and_counted(
    orders: Application, executor: FakeExecutor
) -> None:
    run = asyncio.create_task(rollups.rollup_through_executor(orders, now=NOW))
    first = await answer_minute(executor, BUSY)
    await answer_minute(executor, {})
    # Then, once a minute, the workflows in flight per queue.
    assert set((await answer_queues(executor))["body"]["status"]) == {
        "ENQUEUED",
        "PENDING",
        "DELAYED",
    }
    outcome = await run
    assert (outcome.problem, outcome.events) == ("", 3 + 3 + 1 + 1)
    # Each request covers the minute exactly, to the millisecond.
    started = first["started"]["body"]
    assert (started["start_time"], started["end_time"]) == (
        "2026-12-05T12:28:00+00:00",
        "2026-12-05T12:28:59.999+00:00",
    )
    assert first["finished"]["body"]["completed_after"] == "2026-12-05T12:28:00+00:00"
    assert first["dequeued"]["body"]["dequeued_before"] == "2026-12-05T12:28:59.999+00:00"
    # The minute now running (12:30, its end past the settle time) waits for the next run.
    state = await sync_to_async(RollupState.objects.get)(application=orders)
    assert state.rolled_to_ms == M0 + 2 * 60_000 - 1

    charge = await sync_to_async(row)(orders, "charge")
    assert charge.bucket_start == datetime(2026, 12, 5, 12, 28, tzinfo=UTC)
    assert (charge.started, charge.succeeded, charge.failed) == (3, 2, 1)
    # The longest time, without a histogram: no percentiles through an executor.
    assert (charge.latency_max_ms, charge.lat_00 + charge.lat_17) == (1500, 0)
    ship = await sync_to_async(row)(orders, "ship")
    assert (ship.dequeued, ship.queue_wait_max_ms) == (1, 600)
    pay = await sync_to_async(row)(orders, "pay", "step")
    assert (pay.failed, pay.succeeded, pay.latency_max_ms) == (1, 0, 20)
    assert state.in_flight == {"shipping": {"ENQUEUED": 4, "PENDING": 1}, "": {"PENDING": 2}}
    assert state.in_flight_oldest_ms["shipping"] == {"ENQUEUED": M0 - 5000, "PENDING": M0 - 9000}
    depth = await sync_to_async(QueueDepth.objects.get)(application=orders, resolution=MINUTE)
    assert (depth.queue_name, depth.enqueued, depth.pending) == ("shipping", 4, 1)


async def test_without_an_executor_nothing_is_counted_and_the_problem_is_kept(
    orders: Application,
) -> None:
    outcome = await rollups.rollup_through_executor(orders, now=NOW)
    assert outcome.problem
    state = await sync_to_async(RollupState.objects.get)(application=orders)
    assert state.problem == outcome.problem
    assert state.rolled_to_ms == M0 - 1
    assert not await sync_to_async(Rollup.objects.filter(application=orders).exists)()


async def test_an_executor_that_fails_one_request_moves_nothing(
    orders: Application, executor: FakeExecutor
) -> None:
    run = asyncio.create_task(rollups.rollup_through_executor(orders, now=NOW))
    for _ in range(4):
        request = await executor.receive()
        error = "boom" if request["type"] == "get_step_aggregates" else None
        await executor.send(
            {"type": request["type"], "request_id": request["request_id"], "error_message": error}
            | {"output": BUSY[kind_of(request)]}
        )
    outcome = await run
    assert "boom" in outcome.problem
    state = await sync_to_async(RollupState.objects.get)(application=orders)
    assert state.rolled_to_ms == M0 - 1
    assert not await sync_to_async(Rollup.objects.filter(application=orders).exists)()


async def test_the_roll_up_job_asks_only_applications_with_an_executor_connected(
    orders: Application,
) -> None:
    outcomes = await rollups.rollup_if_leader(holder="this-process")
    assert outcomes is not None
    assert "orders" not in [o.application for o in outcomes]
    assert not await sync_to_async(RequestLog.objects.filter(application=orders).exists)()
    executor = await connect_executor()
    try:
        # On the clock's now: one minute or two are whole, past the settle time.
        run = asyncio.create_task(rollups.rollup_if_leader(holder="this-process"))
        await answer_minute(executor, BUSY)
        while not run.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(answer_minute(executor, {}), 1)
        outcomes = run.result()
    finally:
        await executor.communicator.disconnect()
    assert outcomes is not None
    [relayed] = [o for o in outcomes if o.application == "orders"]
    assert (relayed.problem, relayed.events) == ("", 8)


async def test_the_metrics_drawn_from_them_have_counts_and_maxima_but_no_percentiles(
    orders: Application, executor: FakeExecutor
) -> None:
    run = asyncio.create_task(rollups.rollup_through_executor(orders, now=NOW))
    await answer_minute(executor, BUSY)
    await answer_minute(executor, {})
    await answer_queues(executor)
    await run
    figures = await sync_to_async(window_figures)(orders, WINDOWS["1h"], NOW)
    [charge] = [n for n in figures.workflows if n.name == "charge"]
    assert (charge.finished, charge.figures.latency_max_ms, charge.p95_ms) == (3, 1500, None)
    assert sum(b.figures.failed for b in figures.buckets) == 1
