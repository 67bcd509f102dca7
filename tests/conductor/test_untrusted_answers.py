"""Stories about executors that answer with what the protocol does not allow: the answer
is a 502 with the reason and a request-log entry, never a 500, and nothing of it is kept."""

import asyncio
import json
import logging

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from conductor import relay
from conductor.consumers import CLOSE_BAD_INFO
from conductor.models import Executor, RequestLog
from conductor.protocol import (
    LONG_REQUEST_ID,
    GetWorkflowRequest,
    ListWorkflowsBody,
    ListWorkflowsRequest,
    ProtocolError,
    parse_response,
    response_problem,
)
from stepchange.asgi import application as asgi_app
from stepchange.models import Application
from tests.fake_executor import KEY, FakeExecutor
from workflows.sources import ExecutorSource, ListQuery, _time

pytestmark = pytest.mark.django_db(transaction=True)


def answer(**fields: object) -> str:
    return json.dumps({"request_id": "r-1", "error_message": None} | fields)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (
            answer(type="get_workflow", output={"WorkflowUUID": "wf-1", "CreatedAt": 1.7e18}),
            "CreatedAt",
        ),
        (answer(type="list_steps", output=[{"started_at_epoch_ms": 10**30}]), "started_at"),
        (answer(type="list_workflows", output="notalist"), "output must be a list"),
        (answer(type="list_steps", output=[5]), "output[0] must be an object"),
        (answer(type="cancel", success="yes"), "success must be a bool"),
        (answer(type="list_workflows", output=[{"QueueName": "q" * 5000}]), "QueueName"),
        (answer(type="list_queues", output=[{"concurrency": 10**30}]), "concurrency"),
    ],
    ids=[
        "1.7e18-ms",
        "10^30-ms",
        "output-not-a-list",
        "item-not-object",
        "success-text",
        "name-5000-chars",
        "count-10^30",
    ],
)
def test_an_answer_outside_the_protocol_is_named_as_such(frame: str, reason: str) -> None:
    problem = response_problem(parse_response(frame))

    assert problem is not None
    assert reason in problem


def test_a_well_formed_answer_has_no_problem() -> None:
    frame = answer(
        type="get_workflow",
        output={"WorkflowUUID": "wf-1", "CreatedAt": "1795300787000", "Output": "x" * 100_000},
    )

    assert response_problem(parse_response(frame), GetWorkflowRequest(workflow_id="wf-1")) is None


def test_an_answer_about_another_workflow_is_refused() -> None:
    frame = answer(type="get_workflow", output={"WorkflowUUID": "wf-2"})

    problem = response_problem(parse_response(frame), GetWorkflowRequest(workflow_id="wf-1"))

    assert problem is not None
    assert "wf-2" in problem
    listing = answer(type="list_workflows", output=[{"WorkflowUUID": "wf-9"}])
    asked = ListWorkflowsRequest(body=ListWorkflowsBody(workflow_uuids=["wf-1"]))
    assert response_problem(parse_response(listing), asked) is not None


@pytest.mark.parametrize(
    "fields",
    [
        {"executor_id": "a/b"},
        {"executor_id": "<script>alert(1)</script>"},
        {"executor_id": "x" * 100_000},
        {"executor_id": "ok", "executor_metadata": {"blob": "m" * 5_000_000}},
        {"executor_id": "ok", "hostname": "h" * 1000},
    ],
    ids=["slash", "html", "100k-chars", "5mb-metadata", "long-hostname"],
)
def test_executor_info_out_of_bounds_is_a_problem(fields: dict[str, object]) -> None:
    assert response_problem(parse_response(answer(type="executor_info", **fields))) is not None


def test_a_huge_request_id_is_no_envelope() -> None:
    with pytest.raises(ProtocolError, match=LONG_REQUEST_ID):
        parse_response(answer(type="cancel").replace('"r-1"', json.dumps("x" * 1_000_000)))


def test_a_time_no_datetime_can_hold_shows_as_unknown() -> None:
    assert _time(10**30) is None
    assert _time(1_700_000_000_000) is not None


async def test_an_answer_about_another_workflow_is_a_502_with_a_logged_reason(
    orders: Application, executor: FakeExecutor
) -> None:
    asking = asyncio.create_task(relay.request(orders, GetWorkflowRequest(workflow_id="wf-1")))
    request = await executor.answer("get_workflow", output={"WorkflowUUID": "wf-2"})

    with pytest.raises(relay.MalformedAnswerError, match="malformed answer") as raised:
        await asking
    assert raised.value.status == 502
    log = await RequestLog.objects.aget(request_id=request["request_id"])
    assert log.outcome == "error"
    assert "not the" in log.error_message


async def test_a_listing_with_an_absurd_time_is_a_relay_error_not_a_crash(
    orders: Application, executor: FakeExecutor
) -> None:
    source = ExecutorSource(orders)
    listing = asyncio.create_task(source.list(ListQuery(limit=10)))
    await executor.answer("list_workflows", output=[{"WorkflowUUID": "a", "CreatedAt": 1.7e18}])

    with pytest.raises(relay.RelayError, match="CreatedAt"):
        await listing


async def test_an_unknown_request_id_is_logged_escaped_and_cut(
    executor: FakeExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    forged = "abc\n2026-01-01 ERROR forged line" + "z" * 150
    with caplog.at_level(logging.WARNING, logger="conductor.consumers"):
        await executor.send({"type": "cancel", "request_id": forged})
        await executor.communicator.receive_nothing(timeout=0.2)

    (line,) = [r.getMessage() for r in caplog.records if "unknown request" in r.getMessage()]
    assert "\n" not in line
    assert "abc\\n2026" in line
    assert "z" * 150 not in line


async def refused_handshake(**fields: object) -> tuple[WebsocketCommunicator, dict[str, object]]:
    communicator = WebsocketCommunicator(asgi_app, f"/websocket/orders/{KEY}")
    connected, _ = await communicator.connect()
    assert connected
    info = json.loads(await communicator.receive_from())
    reply = {"type": "executor_info", "request_id": info["request_id"], "language": "python"}
    await communicator.send_to(text_data=json.dumps(reply | fields))
    return communicator, await communicator.receive_output(timeout=2)


@pytest.mark.parametrize("executor_id", ["a/b", "<b>x</b>", "x" * 100_000])
async def test_an_executor_with_an_unusable_id_is_closed_and_never_stored(
    orders: Application, executor_id: str
) -> None:
    _, closed = await refused_handshake(executor_id=executor_id)

    assert closed["type"] == "websocket.close"
    assert closed["code"] == CLOSE_BAD_INFO
    assert "executor_id" in str(closed["reason"])
    assert not await Executor.objects.aexists()


async def test_an_executor_with_megabytes_of_metadata_is_closed_and_never_stored(
    orders: Application,
) -> None:
    _, closed = await refused_handshake(executor_id="ok", executor_metadata={"m": "x" * 5_000_000})

    assert closed["code"] == CLOSE_BAD_INFO
    assert not await Executor.objects.aexists()


async def test_an_executor_that_never_says_who_it_is_is_disconnected(
    orders: Application, settings: object
) -> None:
    settings.EXECUTOR_INFO_TIMEOUT_SECONDS = 0.3  # type: ignore[attr-defined]
    communicator = WebsocketCommunicator(asgi_app, f"/websocket/orders/{KEY}")
    connected, _ = await communicator.connect()
    assert connected
    await communicator.receive_from()

    closed = await communicator.receive_output(timeout=2)

    assert closed == {
        "type": "websocket.close",
        "code": CLOSE_BAD_INFO,
        "reason": "no executor_info answer",
    }
    assert not await sync_to_async(Executor.objects.exists)()
