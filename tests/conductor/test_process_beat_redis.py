"""The process beat through the real Redis channel layer and cache, as at scale: a dead
holder's executors are not offered for new requests, what waits on one fails at once, and
a Redis that cannot be read leaves requests waiting as before beats.

Two processes in one test: the fake executors are held by this process's channel layer
(the holder, which beats once), and the relay is then told it runs in another process."""

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from conductor import processes, relay
from conductor.models import Executor, RequestLog
from conductor.protocol import CancelRequest, ListWorkflowsRequest
from stepchange.models import Application
from tests.fake_executor import FakeExecutor, connect_executor

pytestmark = pytest.mark.django_db(transaction=True)

RUN = uuid.uuid4().hex[:8]
REDIS_LAYER = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": ["redis://127.0.0.1:6379/7"], "prefix": f"test-beat-{RUN}"},
    }
}
REDIS_CACHE = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:6379/7",
        "KEY_PREFIX": f"test-beat-{RUN}",
    }
}
# Nothing listens on the discard port: every read of the cache fails.
UNREACHABLE_CACHE = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:9/0",
    }
}
EXPIRY = 2
# A process that never beat: it died before its executors' rows went stale.
DEAD = "specific.dead-process!0123"


@pytest.fixture
def through_redis(settings: Any) -> Iterator[None]:
    settings.PROCESS_BEAT_EXPIRY_SECONDS = EXPIRY
    processes._own.name = ""
    with override_settings(CHANNEL_LAYERS=REDIS_LAYER, CACHES=REDIS_CACHE):
        yield
    processes._own.name = ""


@pytest.fixture
async def held(through_redis: None, orders: Application) -> AsyncIterator[FakeExecutor]:
    """An executor of this process, which beats once (its beat lasts EXPIRY) and then
    becomes a stranger to the relay."""
    fake = await connect_executor(executor_id="held")
    await processes.beat()
    processes._own.name = "specific.asker"
    yield fake
    await fake.communicator.disconnect()


async def ghost(application: Application) -> None:
    """An executor whose row says connected and seen just now, held by the dead process,
    and connected last: the registry alone would name it first."""
    now = timezone.now()
    await Executor.objects.acreate(
        application=application,
        executor_id="ghost",
        channel_name=DEAD,
        state=Executor.State.CONNECTED,
        connected_at=now + timedelta(seconds=1),
        last_seen_at=now,
    )


def since(started: float) -> float:
    return asyncio.get_running_loop().time() - started


async def test_a_request_waiting_on_a_holder_whose_beat_expires_fails_within_seconds(
    orders: Application, held: FakeExecutor
) -> None:
    started = asyncio.get_running_loop().time()
    asking = asyncio.create_task(relay.ask(orders, CancelRequest(workflow_id="wf-1"), timeout=30))
    assert (await held.receive())["type"] == "cancel"
    with pytest.raises(relay.ExecutorDisconnectedError) as failed:
        await asking
    assert failed.value.status == 502
    assert str(failed.value) == relay.PROCESS_GONE.format(
        executor_id="held", type="cancel", expiry=EXPIRY
    )
    assert since(started) < EXPIRY + relay.LIVENESS_CHECK_SECONDS + 1
    log = await RequestLog.objects.aget(message_type="cancel")
    assert (log.executor_id, log.outcome) == ("held", RequestLog.Outcome.DISCONNECTED)


async def test_an_executor_of_a_dead_process_is_not_offered_while_another_is_live(
    orders: Application, held: FakeExecutor
) -> None:
    await ghost(orders)
    asking = asyncio.create_task(relay.ask(orders, CancelRequest(workflow_id="wf-1"), timeout=30))
    await held.answer("cancel")
    assert (await asking).executor.executor_id == "held"
    assert not await RequestLog.objects.filter(executor_id="ghost").aexists()


async def test_a_named_executor_of_a_dead_process_fails_at_once_saying_why(
    orders: Application, held: FakeExecutor
) -> None:
    await ghost(orders)
    started = asyncio.get_running_loop().time()
    with pytest.raises(relay.ExecutorDisconnectedError, match=r"has stopped \(no beat for 2 s\)"):
        await relay.ask(orders, ListWorkflowsRequest(), executor="ghost", timeout=30)
    assert since(started) < 1
    assert await held.communicator.receive_nothing(timeout=0.1)


async def test_with_redis_unreachable_for_the_beats_requests_wait_as_before_and_it_is_logged_once(
    orders: Application, held: FakeExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    processes._unreadable.warned_at = None
    with override_settings(CACHES=UNREACHABLE_CACHE), caplog.at_level(logging.WARNING):
        await ghost(orders)
        # The dead process cannot be told dead: it is offered first, and waited on.
        assert await processes.processes_dead([processes.process_of(DEAD)]) == set()
        asking = asyncio.create_task(
            relay.ask(orders, ListWorkflowsRequest(), executor="held", timeout=30)
        )
        # Past the held one's beat expiry and a liveness check or two.
        await asyncio.sleep(EXPIRY + relay.LIVENESS_CHECK_SECONDS)
        assert not asking.done()
        await held.answer("list_workflows", output=[])
        assert (await asking).executor.executor_id == "held"
    warnings = [r.getMessage() for r in caplog.records if r.name == "conductor.processes"]
    assert len(warnings) == 1
    assert warnings[0].startswith("Cannot read the processes' beats, counting every process")
