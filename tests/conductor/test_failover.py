"""Two executors of orders, one of them frozen: reads go on from the other one, soon;
actions are never sent twice."""

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from conductor import relay
from conductor.models import RequestLog
from conductor.protocol import CancelRequest, ListWorkflowsRequest, MessageType
from stepchange.models import Application
from tests.fake_executor import FakeExecutor, connect_executor

FAILOVER = 0.5


@pytest.fixture(autouse=True)
def _short_failover(settings: Any) -> Iterator[None]:
    settings.RELAY_READ_FAILOVER_SECONDS = FAILOVER
    relay.health = relay.Health()
    yield
    relay.health = relay.Health()


@pytest.fixture
async def healthy(orders: Application) -> AsyncIterator[FakeExecutor]:
    fake = await connect_executor(executor_id="healthy")
    yield fake
    await fake.communicator.disconnect()


@pytest.fixture
async def frozen(healthy: FakeExecutor) -> AsyncIterator[FakeExecutor]:
    # Connected last, so it is the one the registry names first.
    fake = await connect_executor(executor_id="frozen")
    yield fake
    await fake.communicator.disconnect()


def test_every_read_only_message_type_and_no_other_is_a_read() -> None:
    changes = {
        MessageType.RECOVERY,
        MessageType.CANCEL,
        MessageType.DELETE,
        MessageType.RESUME,
        MessageType.RESTART,
        MessageType.FORK_WORKFLOW,
        MessageType.FORK_FROM_FAILURE,
        MessageType.REWIND_WORKFLOW,
        MessageType.RETENTION,
        MessageType.ALERT,
        MessageType.IMPORT_WORKFLOW,
        MessageType.PAUSE_SCHEDULE,
        MessageType.RESUME_SCHEDULE,
        MessageType.BACKFILL_SCHEDULE,
        MessageType.TRIGGER_SCHEDULE,
        MessageType.SET_LATEST_APPLICATION_VERSION,
    }
    reads = set(MessageType) - changes
    assert reads == relay.READS


async def test_a_read_the_frozen_executor_ignores_is_answered_by_the_other_soon(
    orders: Application, healthy: FakeExecutor, frozen: FakeExecutor
) -> None:
    started = asyncio.get_running_loop().time()
    asking = asyncio.create_task(relay.ask(orders, ListWorkflowsRequest(), timeout=30))
    first = await frozen.receive()
    second = await healthy.answer("list_workflows", output=[])
    answer = await asking
    assert answer.executor.executor_id == "healthy"
    assert asyncio.get_running_loop().time() - started < FAILOVER + 1
    # Both attempts are in the request log, each under its own request_id.
    logs = [
        (log.request_id, log.executor_id, log.outcome)
        async for log in RequestLog.objects.exclude(source="handshake").order_by("pk")
    ]
    assert logs == [
        (first["request_id"], "frozen", "timeout"),
        (second["request_id"], "healthy", "ok"),
    ]

    # The next read goes to the executor that answered, without waiting on the frozen one.
    asking = asyncio.create_task(relay.ask(orders, ListWorkflowsRequest(), timeout=30))
    await healthy.answer("list_workflows", output=[])
    assert (await asking).executor.executor_id == "healthy"
    assert await frozen.communicator.receive_nothing(timeout=0.1)


async def test_an_action_is_never_sent_to_a_second_executor(
    orders: Application, healthy: FakeExecutor, frozen: FakeExecutor
) -> None:
    started = asyncio.get_running_loop().time()
    with pytest.raises(relay.ExecutorTimeoutError, match="did not answer cancel within 2 s"):
        await relay.ask(orders, CancelRequest(workflow_id="wf-1"), timeout=2)
    assert asyncio.get_running_loop().time() - started >= 2
    assert (await frozen.receive())["type"] == "cancel"
    assert await healthy.communicator.receive_nothing(timeout=0.1)
    outcomes = [
        (log.executor_id, log.outcome)
        async for log in RequestLog.objects.filter(message_type="cancel")
    ]
    assert outcomes == [("frozen", "timeout")]


async def test_a_read_of_a_named_executor_waits_for_that_one(
    orders: Application, healthy: FakeExecutor, frozen: FakeExecutor
) -> None:
    with pytest.raises(relay.ExecutorTimeoutError):
        await relay.ask(orders, ListWorkflowsRequest(), executor="frozen", timeout=1)
    assert await healthy.communicator.receive_nothing(timeout=0.1)


def test_the_suspect_go_last_and_the_rest_keep_their_order(monkeypatch: Any) -> None:
    import time

    from conductor.models import Executor

    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    health = relay.Health()
    a, b, c, d = (Executor(channel_name=name) for name in "abcd")
    executors = [a, b, c, d]
    assert health.ordered(executors) == [a, b, c, d]
    health.failed(b)
    health.failed(c)
    health.answered(c)  # answered since it failed: trusted again
    assert health.ordered(executors) == [a, c, d, b]
    assert executors == [a, b, c, d]  # the shared list is not reordered in place
    now[0] += relay.Health.SUSPECT_SECONDS + 1
    assert health.ordered(executors) == [a, b, c, d]
