"""Stories about revoking an executor key while executors that used it are connected."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from conductor import relay
from conductor.consumers import CLOSE_KEY_REVOKED
from conductor.models import Executor
from conductor.protocol import GetWorkflowRequest
from stepchange.models import Application
from stepchange.services import executor_key_create, executor_key_revoke
from tests.fake_executor import connect_executor

pytestmark = pytest.mark.django_db(transaction=True)

REDIS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": ["redis://127.0.0.1:6379/7"], "prefix": "test-revoke"},
    }
}


async def revoke_closes_the_executors_of_that_key_only(orders: Application) -> None:
    revoked_key = await sync_to_async(orders.keys.get)()
    other_key = "orders-other-key-0123456789"
    await sync_to_async(executor_key_create)(application=orders, key=other_key)
    first = await connect_executor()
    second = await connect_executor()
    untouched = await connect_executor(key=other_key)

    await sync_to_async(executor_key_revoke)(executor_key=revoked_key)

    for fake in (first, second):
        closed = await fake.communicator.receive_output(timeout=3)
        assert closed["type"] == "websocket.close"
        assert closed["code"] == CLOSE_KEY_REVOKED
        await fake.communicator.disconnect()
    assert await untouched.communicator.receive_nothing(timeout=0.3)
    live = await sync_to_async(
        lambda: set(Executor.objects.live().values_list("executor_id", flat=True))
    )()
    assert live == {untouched.executor_id}
    # Relayed requests now reach only the executor whose key still holds.
    asking = asyncio.create_task(relay.request(orders, GetWorkflowRequest(workflow_id="wf-1")))
    await untouched.answer("get_workflow", output=None)
    await asking
    await untouched.communicator.disconnect()


async def test_revoking_a_key_closes_its_executors_at_once(orders: Application) -> None:
    await revoke_closes_the_executors_of_that_key_only(orders)


async def test_revoking_a_key_closes_its_executors_through_redis(orders: Application) -> None:
    """Through the Redis layer the close crosses processes: the revoking process only
    sends to the key's group."""
    with override_settings(CHANNEL_LAYERS=REDIS):
        await revoke_closes_the_executors_of_that_key_only(orders)
