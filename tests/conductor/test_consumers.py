"""Stories about executors connecting, being registered, and answering relayed requests."""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from conductor import relay
from conductor.consumers import CLOSE_REPLACED
from conductor.models import Executor, ExecutorConnection, RequestLog
from conductor.protocol import (
    CancelRequest,
    GetWorkflowRequest,
    GetWorkflowResponse,
    ListStepsRequest,
    ListWorkflowsRequest,
)
from stepchange.asgi import application as asgi_app
from stepchange.models import Application
from stepchange.services import executor_key_revoke
from tests.fake_executor import KEY, FakeExecutor, connect_executor

pytestmark = pytest.mark.django_db(transaction=True)


async def test_it_refuses_an_unknown_key_before_the_handshake(orders: Application) -> None:
    communicator = WebsocketCommunicator(asgi_app, "/websocket/orders/not-the-right-key-000")
    connected, _ = await communicator.connect()
    assert not connected
    communicator = WebsocketCommunicator(asgi_app, f"/websocket/billing/{KEY}")
    connected, _ = await communicator.connect()
    assert not connected
    assert not await sync_to_async(Executor.objects.exists)()


async def test_it_refuses_a_revoked_key(orders: Application) -> None:
    key = await sync_to_async(orders.keys.get)()
    await sync_to_async(executor_key_revoke)(executor_key=key)
    communicator = WebsocketCommunicator(asgi_app, f"/websocket/orders/{KEY}")
    connected, _ = await communicator.connect()
    assert not connected


async def test_it_asks_who_connected_and_records_the_executor(executor: FakeExecutor) -> None:
    row = await sync_to_async(Executor.objects.get)(executor_id=executor.executor_id)
    assert row.state == "connected"
    assert (row.language, row.dbos_version, row.application_version) == ("python", "3.2.0", "v1")
    assert row.hostname == "test-host"
    assert row.metadata == {"role": "test"}
    assert await sync_to_async(ExecutorConnection.objects.filter(executor=row).count)() == 1


async def test_a_relayed_request_reaches_the_executor_and_its_answer_comes_back(
    orders: Application, executor: FakeExecutor
) -> None:
    asking = asyncio.create_task(
        relay.request(orders, GetWorkflowRequest(workflow_id="wf-1"), actor_name="otto")
    )
    request = await executor.answer(
        output={"WorkflowUUID": "wf-1", "Status": "SUCCESS", "CreatedAt": "1795300787000"}
    )
    assert request == {
        "type": "get_workflow",
        "request_id": request["request_id"],
        "workflow_id": "wf-1",
        "load_input": True,
        "load_output": True,
    }
    response = relay.expect(await asking, GetWorkflowResponse)
    assert response.output is not None
    assert response.output.status == "SUCCESS"
    assert response.output.created_at == 1795300787000
    log = await sync_to_async(RequestLog.objects.get)(request_id=request["request_id"])
    assert (log.outcome, log.message_type, log.actor_name) == ("ok", "get_workflow", "otto")
    assert log.executor_id == executor.executor_id
    assert log.response_bytes > 0
    assert log.duration_ms is not None


async def test_replies_are_matched_by_request_id_even_out_of_order(
    orders: Application, executor: FakeExecutor
) -> None:
    first = asyncio.create_task(relay.request(orders, ListStepsRequest(workflow_id="wf-a")))
    second = asyncio.create_task(relay.request(orders, ListStepsRequest(workflow_id="wf-b")))
    requests = [await executor.receive(), await executor.receive()]
    for request in reversed(requests):
        await executor.send(
            {
                "type": "list_steps",
                "request_id": request["request_id"],
                "output": [{"function_id": 1, "function_name": request["workflow_id"]}],
            }
        )
    names = {
        (await task).output[0].function_name  # type: ignore[attr-defined]
        for task in (first, second)
    }
    assert names == {"wf-a", "wf-b"}


async def test_an_executor_error_is_raised_with_its_message(
    orders: Application, executor: FakeExecutor
) -> None:
    asking = asyncio.create_task(relay.request(orders, CancelRequest(workflow_id="wf-1")))
    request = await executor.receive()
    await executor.send(
        {
            "type": "cancel",
            "request_id": request["request_id"],
            "success": False,
            "error_message": "Exception encountered when cancelling",
        }
    )
    with pytest.raises(relay.ExecutorFailedError, match="could not cancel"):
        await asking
    log = await sync_to_async(RequestLog.objects.get)(request_id=request["request_id"])
    assert log.outcome == "error"


async def test_a_request_times_out_with_a_clear_error(
    orders: Application, executor: FakeExecutor
) -> None:
    with pytest.raises(relay.ExecutorTimeoutError, match="did not answer get_workflow within"):
        await relay.request(orders, GetWorkflowRequest(workflow_id="wf-1"), timeout=0.2)
    assert await sync_to_async(RequestLog.objects.filter(outcome="timeout").count)() == 1


async def test_a_disconnect_fails_every_waiting_request_at_once(
    orders: Application, executor: FakeExecutor
) -> None:
    waiting = [
        asyncio.create_task(relay.request(orders, GetWorkflowRequest(workflow_id=f"wf-{n}")))
        for n in range(3)
    ]
    for _ in waiting:
        await executor.receive()
    started = asyncio.get_running_loop().time()
    await executor.communicator.disconnect()
    for task in waiting:
        with pytest.raises(relay.ExecutorDisconnectedError, match="disconnected before answering"):
            await task
    assert asyncio.get_running_loop().time() - started < 1
    row = await sync_to_async(Executor.objects.get)(executor_id=executor.executor_id)
    assert row.state == "disconnected"
    assert row.disconnected_at is not None


async def test_a_request_sent_to_an_executor_that_just_left_fails_within_a_second(
    orders: Application, executor: FakeExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request was routed before the executor's consumer closed, so that consumer never
    reads it and no failure comes back: the relay notices the executor is gone."""
    target = await sync_to_async(Executor.objects.get)(executor_id=executor.executor_id)
    await executor.communicator.disconnect()

    async def stale_route(*args: object, **kwargs: object) -> list[Executor]:
        return [target]

    monkeypatch.setattr(relay.routes, "candidates", stale_route)
    started = asyncio.get_running_loop().time()
    with pytest.raises(relay.ExecutorDisconnectedError, match="disconnected before answering"):
        await relay.request(orders, GetWorkflowRequest(workflow_id="wf-1"), timeout=30)
    assert asyncio.get_running_loop().time() - started < 2
    assert await RequestLog.objects.filter(outcome="disconnected").acount() == 1


async def test_with_no_executor_connected_the_relay_says_so(orders: Application) -> None:
    with pytest.raises(relay.NoExecutorConnectedError, match="No executor of orders"):
        await relay.request(orders, GetWorkflowRequest(workflow_id="wf-1"))
    assert await sync_to_async(RequestLog.objects.filter(outcome="no_executor").count)() == 1


async def test_bad_frames_are_dropped_and_the_executor_keeps_working(
    orders: Application, executor: FakeExecutor
) -> None:
    communicator = executor.communicator
    await communicator.send_to(text_data="this is not json")
    await communicator.send_to(bytes_data=b"\x00\x01binary")
    await communicator.send_to(text_data="[1, 2, 3]")
    await communicator.send_to(text_data=json.dumps({"type": "get_workflow"}))
    await communicator.send_to(
        text_data=json.dumps({"type": "get_workflow", "request_id": "nobody-asked"})
    )
    await communicator.send_to(text_data=json.dumps({"type": "bogus", "request_id": "x"}))
    assert await communicator.receive_nothing(timeout=0.2)
    asking = asyncio.create_task(relay.request(orders, GetWorkflowRequest(workflow_id="wf-1")))
    await executor.answer(output=None)
    response = relay.expect(await asking, GetWorkflowResponse)
    assert response.output is None


async def test_a_reconnecting_executor_replaces_its_old_connection(
    orders: Application, executor: FakeExecutor
) -> None:
    again = await connect_executor(executor_id=executor.executor_id)
    closed = await executor.communicator.receive_output(timeout=2)
    assert closed == {"type": "websocket.close", "code": CLOSE_REPLACED}
    row = await sync_to_async(Executor.objects.get)(executor_id=executor.executor_id)
    assert row.state == "connected"
    # Requests now go to the new socket.
    asking = asyncio.create_task(relay.request(orders, GetWorkflowRequest(workflow_id="wf-1")))
    await again.answer(output=None)
    await asking
    await again.communicator.disconnect()


async def test_a_named_executor_gets_the_request(orders: Application) -> None:
    first = await connect_executor()
    second = await connect_executor()
    asking = asyncio.create_task(
        relay.request(orders, GetWorkflowRequest(workflow_id="wf-1"), executor=first.executor_id)
    )
    await first.answer(output=None)
    await asking
    assert await second.communicator.receive_nothing(timeout=0.1)
    with pytest.raises(relay.NoExecutorConnectedError, match="not connected"):
        await relay.request(orders, GetWorkflowRequest(workflow_id="x"), executor="ghost")
    for fake in (first, second):
        await fake.communicator.disconnect()


async def test_the_apps_list_counts_connected_executors(
    orders: Application, executor: FakeExecutor
) -> None:
    from django.test import AsyncClient

    from tests.conftest import make_user

    viewer = await sync_to_async(make_user)(username="vera", role="viewer")
    await sync_to_async(Application.objects.create)(name="billing")
    client = AsyncClient()
    await client.aforce_login(viewer)
    apps = {app["name"]: app for app in (await client.get("/api/v1/apps")).json()}
    assert apps["orders"]["connected_executors"] == 1
    assert apps["billing"]["connected_executors"] == 0


async def test_a_frame_of_too_many_values_fails_its_request_at_once_unparsed(
    orders: Application, executor: FakeExecutor
) -> None:
    asking = asyncio.create_task(relay.request(orders, ListWorkflowsRequest(), timeout=30))
    request = await executor.receive()
    absurd = "[" + "{}," * 1_000_001 + "{}]"
    head = json.dumps({"type": "list_workflows", "request_id": request["request_id"]})
    started = asyncio.get_running_loop().time()
    await executor.communicator.send_to(text_data=head[:-1] + ', "output": ' + absurd + "}")
    with pytest.raises(relay.MalformedAnswerError, match="more than 2000000 JSON values"):
        await asking
    assert asyncio.get_running_loop().time() - started < 1
    # A bare array says nothing to answer: dropped, and the executor keeps answering.
    await executor.communicator.send_to(text_data=absurd)
    asking = asyncio.create_task(relay.request(orders, ListWorkflowsRequest()))
    await executor.answer("list_workflows", output=[])
    await asking
