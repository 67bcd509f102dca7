"""Stories about a StepChange process that shuts down: its executors are sent elsewhere
with a normal close, what they were asked fails at once saying why, and none of them is
recovered as if it had died."""

import asyncio
import logging
from collections.abc import Iterator

import pytest
from asgiref.sync import sync_to_async

from conductor import consumers, recovery, relay
from conductor.models import Executor, ExecutorConnection, RecoveryAttempt
from conductor.protocol import CancelRequest, GetWorkflowRequest
from conductor.registry import ENDED_BY_SHUTDOWN
from stepchange.logs import RequestIdFilter, request_id_set
from stepchange.models import Application
from tests.conductor.test_recovery import die, grace
from tests.fake_executor import FakeExecutor, connect_executor

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _waiting_again() -> Iterator[None]:
    yield
    relay.waiting.abandoned = False


async def send_away(executor: FakeExecutor) -> dict[str, object]:
    """What a shutdown does to the executor's socket, and the executor's answering close
    (both SDKs echo the code, as Daphne then reports it)."""
    [consumer] = consumers.executor_sockets_open()
    await consumer.go_away()
    closed = await executor.communicator.receive_output(timeout=2)
    await executor.communicator.disconnect(code=closed["code"])
    return closed


async def test_a_shutdown_tells_the_executor_to_go_with_a_normal_close(
    orders: Application,
) -> None:
    executor = await connect_executor()
    closed = await send_away(executor)
    assert closed == {"type": "websocket.close", "code": 1000}
    connection = await sync_to_async(ExecutorConnection.objects.get)()
    assert connection.close_code == 1000
    assert connection.ended_by == ENDED_BY_SHUTDOWN
    assert consumers.executor_sockets_open() == []


async def test_what_the_executor_was_asked_fails_at_once_saying_why(orders: Application) -> None:
    executor = await connect_executor()
    asking = asyncio.create_task(relay.request(orders, CancelRequest(workflow_id="wf-1")))
    await executor.receive()
    assert consumers.requests_waiting() == 1
    await send_away(executor)
    with pytest.raises(relay.ExecutorDisconnectedError) as failed:
        await asyncio.wait_for(asking, 1)
    assert "shutting down and sent it elsewhere; try again" in str(failed.value)
    assert failed.value.status == 502


async def test_a_process_that_stops_waiting_answers_its_callers_502(orders: Application) -> None:
    # The executor is held by another process, which never answers.
    executor = await connect_executor()
    asking = asyncio.create_task(relay.request(orders, CancelRequest(workflow_id="wf-1")))
    await executor.receive()
    assert relay.relays_in_flight() == 1
    relay.relays_abandon()
    with pytest.raises(relay.ExecutorDisconnectedError) as failed:
        await asyncio.wait_for(asking, relay.LIVENESS_CHECK_SECONDS + 1)
    assert "this StepChange process is shutting down" in str(failed.value)
    assert relay.relays_in_flight() == 0
    await executor.communicator.disconnect()


async def test_an_executor_sent_away_is_not_recovered_while_it_reconnects(
    orders: Application,
) -> None:
    await grace(orders, 0)
    handed_off, crashed = await connect_executor(), await connect_executor()
    # Only the first is sent away; the other crashes (close code 1006).
    [consumer] = [
        c
        for c in consumers.executor_sockets_open()
        if c.executor is not None and c.executor.executor_id == handed_off.executor_id
    ]
    await consumer.go_away()
    await handed_off.communicator.receive_output(timeout=2)
    await handed_off.communicator.disconnect(code=1000)
    crashed_socket = crashed.communicator
    await crashed_socket.disconnect(code=1006)
    claimed = await sync_to_async(recovery._claim_due)()
    assert [executor.executor_id for executor in claimed] == [crashed.executor_id]
    assert not await sync_to_async(
        RecoveryAttempt.objects.filter(dead_executor_id=handed_off.executor_id).exists
    )()
    # Back with the same id: connected, and never recovered.
    back = await connect_executor(executor_id=handed_off.executor_id)
    row = await sync_to_async(Executor.objects.get)(executor_id=handed_off.executor_id)
    assert row.state == "connected"
    await back.communicator.disconnect()


async def test_an_executor_sent_away_that_never_comes_back_is_recovered_in_the_end(
    orders: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    await grace(orders, 0)
    handed_off = await connect_executor()
    await send_away(handed_off)
    assert await sync_to_async(recovery._claim_due)() == []
    monkeypatch.setattr(recovery, "HANDED_OFF_GRACE_SECONDS", 0)
    [claimed] = await sync_to_async(recovery._claim_due)()
    assert claimed.executor_id == handed_off.executor_id


async def test_a_crashed_executor_is_still_recovered_after_the_grace(orders: Application) -> None:
    await grace(orders, 0)
    crashed = await connect_executor()
    await die(crashed)
    [claimed] = await sync_to_async(recovery._claim_due)()
    assert claimed.executor_id == crashed.executor_id


class _Keep(logging.Handler):
    def __init__(self, lines: list[logging.LogRecord]) -> None:
        super().__init__()
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record)


async def test_the_answer_is_logged_with_the_id_of_the_http_request_that_asked(
    orders: Application,
) -> None:
    lines: list[logging.LogRecord] = []
    handler = _Keep(lines)
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("conductor.consumers")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    executor = await connect_executor()
    try:
        with request_id_set("req-42"):
            asking = asyncio.create_task(relay.request(orders, GetWorkflowRequest(workflow_id="w")))
        await executor.answer("get_workflow", output=None)
        await asking
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    [line] = [r for r in lines if " answered " in r.getMessage()]
    assert "answered get_workflow" in line.getMessage()
    assert getattr(line, "request_id", None) == "req-42"
    await executor.communicator.disconnect()
