"""A request waiting on an executor whose StepChange process stopped beating fails at once
(502, saying why) rather than at the relay timeout; one held by a live process is relayed."""

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from django.core.cache import cache

from conductor import processes, relay
from conductor.models import RequestLog
from conductor.protocol import CancelRequest
from stepchange.models import Application
from tests.fake_executor import FakeExecutor, connect_executor

# The in-memory channel layer names every channel after one process; the tests make this
# process another one, so the executor's consumer counts as held elsewhere.
HOLDER = "specific..inmemory"


@pytest.fixture(autouse=True)
def _elsewhere(settings: Any) -> Iterator[None]:
    settings.PROCESS_BEAT_EXPIRY_SECONDS = 2
    processes._own.name = "specific.this-process"
    cache.delete(processes.KEY.format(process=HOLDER))
    yield
    processes._own.name = ""
    cache.delete(processes.KEY.format(process=HOLDER))


@pytest.fixture
async def executor(orders: Application) -> AsyncIterator[FakeExecutor]:
    fake = await connect_executor()
    yield fake
    await fake.communicator.disconnect()


async def holder_beats() -> None:
    await cache.aset(processes.KEY.format(process=HOLDER), 1, timeout=2)


async def cancel_sent(orders: Application, executor: FakeExecutor) -> tuple[Any, Any]:
    """A cancel relayed to the executor, as a task, and the frame the executor received."""
    await holder_beats()
    asking = asyncio.create_task(
        relay.request(orders, CancelRequest(workflow_id="wf-1"), timeout=30)
    )
    return asking, await executor.receive()


def test_a_process_is_named_by_its_channel_names() -> None:
    assert processes.process_of("specific.abc123!def") == "specific.abc123"
    assert processes.process_of("no-process-here") == ""


async def test_a_request_to_a_process_without_a_beat_fails_at_once(
    orders: Application, executor: FakeExecutor
) -> None:
    started = asyncio.get_running_loop().time()
    with pytest.raises(relay.ExecutorDisconnectedError) as failed:
        await relay.request(orders, CancelRequest(workflow_id="wf-1"), timeout=30)
    assert asyncio.get_running_loop().time() - started < 1
    assert failed.value.status == 502
    assert "the StepChange process holding it has stopped (no beat for 2 s)" in str(failed.value)
    # Never sent: the executor saw nothing.
    assert await executor.communicator.receive_nothing(timeout=0.3)
    log = await RequestLog.objects.exclude(source="handshake").aget()
    assert log.outcome == RequestLog.Outcome.DISCONNECTED


async def test_a_waiting_request_fails_within_seconds_once_the_beat_stops(
    orders: Application, executor: FakeExecutor
) -> None:
    asking, _ = await cancel_sent(orders, executor)
    await asyncio.sleep(1.2)
    assert not asking.done()
    # The holder dies: its beat is not renewed and expires.
    started = asyncio.get_running_loop().time()
    with pytest.raises(relay.ExecutorDisconnectedError) as failed:
        await asyncio.wait_for(asking, 5)
    assert asyncio.get_running_loop().time() - started < 2 + relay.LIVENESS_CHECK_SECONDS + 0.5
    assert failed.value.status == 502
    assert "has stopped (no beat" in str(failed.value)


async def test_a_request_to_a_live_process_is_relayed_as_before(
    orders: Application, executor: FakeExecutor
) -> None:
    asking, sent = await cancel_sent(orders, executor)
    # Kept beating past the expiry, it is waited on.
    for _ in range(3):
        await asyncio.sleep(1)
        await holder_beats()
    assert not asking.done()
    await executor.send(
        {"type": "cancel", "request_id": sent["request_id"], "success": True, "error_message": None}
    )
    response = await asyncio.wait_for(asking, 2)
    assert response.error_message is None


async def test_with_the_cache_unreachable_the_process_counts_alive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def unreachable(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("redis is down")

    monkeypatch.setattr(cache, "aget_many", unreachable)
    assert await processes.process_alive(f"{HOLDER}!abc")


async def test_this_process_beats_and_counts_itself_alive() -> None:
    processes._own.name = ""
    await processes.beat()
    own = await processes.own_process()
    assert own == HOLDER
    assert await cache.aget(processes.KEY.format(process=own))
    assert await processes.process_alive(f"{own}!anything")


async def test_an_executor_held_by_a_process_without_a_beat_is_live_but_not_reachable(
    orders: Application, executor: FakeExecutor
) -> None:
    # Actions and bulk jobs take the system database instead, where there is one.
    live, reachable = await relay.reachable_executors(orders)
    assert [e.executor_id for e in live] == [executor.executor_id]
    assert reachable == []
    await holder_beats()
    live, reachable = await relay.reachable_executors(orders)
    assert [e.executor_id for e in reachable] == [executor.executor_id]
