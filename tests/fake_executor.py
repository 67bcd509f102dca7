"""Fixtures for the executor-facing stories: a registered application with a key, and fake
executors speaking the protocol through Channels' WebsocketCommunicator."""

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from stepchange.asgi import application as asgi_app
from stepchange.models import Application
from stepchange.services import executor_key_create
from tests.conftest import make_app
from tests.executor_replies import executor_info_reply

KEY = "orders-test-key-0123456789"


@pytest.fixture(autouse=True)
def _inline_request_log(settings: Any) -> None:
    # Entries are written at once, so a test can read them back.
    settings.REQUEST_LOG_INLINE = True


@pytest.fixture
def orders(transactional_db: None) -> Application:
    app = make_app(name="orders")
    executor_key_create(application=app, key=KEY)
    return app


class FakeExecutor:
    """An executor that answers `executor_info` like Python 3.2.0 and whatever a test says."""

    def __init__(
        self,
        communicator: WebsocketCommunicator,
        executor_id: str,
        version: str,
        *,
        language: str = "python",
        dbos_version: str = "3.2.0",
    ) -> None:
        self.communicator = communicator
        self.executor_id = executor_id
        self.version = version
        self.language = language
        self.dbos_version = dbos_version

    async def handshake(self) -> None:
        info = await self.receive()
        assert info["type"] == "executor_info"
        await self.send(
            executor_info_reply(
                info,
                executor_id=self.executor_id,
                version=self.version,
                language=self.language,
                dbos_version=self.dbos_version,
            )
        )

    async def receive(self, timeout: float = 2) -> dict[str, Any]:
        return json.loads(await self.communicator.receive_from(timeout=timeout))

    async def send(self, message: dict[str, Any]) -> None:
        await self.communicator.send_to(text_data=json.dumps(message))

    async def answer(self, expected_type: str | None = None, **fields: Any) -> dict[str, Any]:
        """Receive the next request (of `expected_type`) and reply to it with `fields`."""
        request = await self.receive()
        if expected_type is not None:
            assert request["type"] == expected_type, request
        await self.reply(request, **fields)
        return request

    async def reply(self, request: dict[str, Any], **fields: Any) -> None:
        """Reply to `request` with `fields` (and no error unless they give one)."""
        await self.send(
            {"type": request["type"], "request_id": request["request_id"], "error_message": None}
            | fields
        )

    async def receive_not_counting(self) -> dict[str, Any]:
        """The next request but get_workflow_aggregates, which is answered as an SDK from
        before it answers: an unknown message."""
        while (request := await self.receive())["type"] == "get_workflow_aggregates":
            await self.reply(request, error_message="Unknown message type")
        return request


async def connect_executor(
    app_name: str = "orders",
    key: str = KEY,
    *,
    executor_id: str | None = None,
    version: str = "v1",
    language: str = "python",
    dbos_version: str = "3.2.0",
) -> FakeExecutor:
    communicator = WebsocketCommunicator(asgi_app, f"/websocket/{app_name}/{key}")
    connected, _ = await communicator.connect()
    assert connected, "the executor was refused"
    executor = FakeExecutor(
        communicator,
        executor_id or str(uuid.uuid4()),
        version,
        language=language,
        dbos_version=dbos_version,
    )
    await executor.handshake()
    await wait_registered(executor.executor_id)
    return executor


async def wait_registered(executor_id: str) -> None:
    from conductor.models import Executor

    for _ in range(100):
        if await sync_to_async(
            Executor.objects.filter(executor_id=executor_id, state="connected").exists
        )():
            return
        import asyncio

        await asyncio.sleep(0.01)
    raise AssertionError(f"executor {executor_id} was never registered")


@pytest.fixture
async def executor(orders: Application) -> AsyncIterator[FakeExecutor]:
    fake = await connect_executor()
    yield fake
    await fake.communicator.disconnect()
