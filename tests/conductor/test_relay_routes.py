"""The relay's cache of live executors (conductor.relay.Routes): one reload at a time per
application, however many requests find it empty at once."""

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from conductor import relay
from conductor.models import Executor
from stepchange.models import Application

pytestmark = pytest.mark.django_db(transaction=True)


class SlowRegistry:
    """Stands in for the registry query: slow, counted, and made to fail when told."""

    def __init__(self) -> None:
        self.calls = 0
        self.fail = False
        self.lock = threading.Lock()

    def __call__(self, application: Application) -> list[Executor]:
        with self.lock:
            self.calls += 1
        time.sleep(0.2)
        if self.fail:
            raise RuntimeError("the database went away")
        return [Executor(application=application, executor_id=f"exec-{self.calls}")]


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlowRegistry]:
    slow = SlowRegistry()
    monkeypatch.setattr(relay, "live_executors", slow)
    yield slow
    relay.routes.listening = None
    relay.routes.forget()


def listened() -> relay.Routes:
    routes = relay.Routes()
    # As while `listen` runs on this loop: the cache is in use.
    routes.listening = asyncio.get_running_loop()
    return routes


async def pick(routes: relay.Routes, application: Application) -> Any:
    return await routes.candidates(application, executor_id=None, latest_version=False)


async def test_fifty_requests_finding_the_cache_empty_share_one_reload(
    registry: SlowRegistry,
) -> None:
    routes = listened()
    orders = Application(pk=7, name="orders")
    chosen = await asyncio.gather(*(pick(routes, orders) for _ in range(50)))
    assert registry.calls == 1
    assert {found[0].executor_id for found in chosen} == {"exec-1"}
    assert routes.reloading == {}
    # Cached now; dropped (an executor came or went), the next request reloads once more.
    await pick(routes, orders)
    assert registry.calls == 1
    routes.forget()
    await asyncio.gather(pick(routes, orders), pick(routes, orders))
    assert registry.calls == 2


async def test_each_application_reloads_on_its_own(registry: SlowRegistry) -> None:
    routes = listened()
    orders, billing = Application(pk=7, name="orders"), Application(pk=8, name="billing")
    await asyncio.gather(pick(routes, orders), pick(routes, billing), pick(routes, orders))
    assert registry.calls == 2


async def test_a_request_given_up_on_does_not_cancel_the_reload_others_await(
    registry: SlowRegistry,
) -> None:
    routes = listened()
    orders = Application(pk=7, name="orders")
    impatient = asyncio.create_task(pick(routes, orders))
    await asyncio.sleep(0.05)
    patient = asyncio.create_task(pick(routes, orders))
    impatient.cancel()
    found = await patient
    assert found[0].executor_id == "exec-1"
    assert registry.calls == 1


async def test_a_failed_reload_fails_its_waiters_and_the_next_request_tries_again(
    registry: SlowRegistry,
) -> None:
    routes = listened()
    orders = Application(pk=7, name="orders")
    registry.fail = True
    results = await asyncio.gather(
        pick(routes, orders), pick(routes, orders), return_exceptions=True
    )
    assert [str(result) for result in results] == ["the database went away"] * 2
    assert registry.calls == 1
    registry.fail = False
    found = await pick(routes, orders)
    assert found[0].executor_id == "exec-2"


async def test_an_old_entry_is_served_while_it_is_read_again_apart(
    registry: SlowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Old by the clock only: no request waits for the reload (a fleet's rows take ~0.1 s).
    routes = listened()
    orders = Application(pk=7, name="orders")
    assert (await pick(routes, orders))[0].executor_id == "exec-1"
    monkeypatch.setattr(routes, "ROUTE_SECONDS", 0.0)
    started = time.perf_counter()
    served = await asyncio.gather(*(pick(routes, orders) for _ in range(10)))
    assert time.perf_counter() - started < 0.1  # the registry takes 0.2 s
    assert {found[0].executor_id for found in served} == {"exec-1"}
    reload = routes.reloading[orders.pk]
    await reload
    assert registry.calls == 2
    monkeypatch.setattr(routes, "ROUTE_SECONDS", 60.0)
    assert (await pick(routes, orders))[0].executor_id == "exec-2"
    assert registry.calls == 2


async def test_a_reload_begun_before_a_drop_answers_its_waiters_but_is_not_kept(
    registry: SlowRegistry,
) -> None:
    routes = listened()
    orders = Application(pk=7, name="orders")
    waiting = asyncio.create_task(pick(routes, orders))
    await asyncio.sleep(0.05)
    routes.forget()  # an executor came or went while the registry was being read
    assert (await waiting)[0].executor_id == "exec-1"
    assert routes.entries == {}
    assert (await pick(routes, orders))[0].executor_id == "exec-2"


async def test_a_failed_reload_of_an_old_entry_keeps_serving_it_and_says_so(
    registry: SlowRegistry, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    routes = listened()
    orders = Application(pk=7, name="orders")
    await pick(routes, orders)
    monkeypatch.setattr(routes, "ROUTE_SECONDS", 0.0)
    registry.fail = True
    assert (await pick(routes, orders))[0].executor_id == "exec-1"
    with pytest.raises(RuntimeError):
        await routes.reloading[orders.pk]
    await asyncio.sleep(0)
    assert "Could not read the live executors again: the database went away" in caplog.text
    assert (await pick(routes, orders))[0].executor_id == "exec-1"
