"""Requests borrow pooled worker threads (stepchange/asgi.py): one thread per request while
it runs, kept for the next request only when nothing of this one can still run on it."""

import asyncio
import threading
from typing import Any

import pytest
from asgiref.sync import ThreadSensitiveContext
from channels.testing import HttpCommunicator
from django.core.signals import request_finished

from stepchange.asgi import Handler, RequestThreads, application
from stepchange.asyncdb import db_async, process_task

pytestmark = pytest.mark.django_db(transaction=True)


async def fetch(path: str) -> dict[str, Any]:
    communicator = HttpCommunicator(application, "GET", path, headers=[(b"host", b"127.0.0.1")])
    response = await communicator.get_response()
    await communicator.wait()
    return response


@pytest.fixture
def finishing_threads() -> Any:
    """The thread each request's end-of-request work (closing connections) ran on."""
    seen: list[int] = []

    def record(**_: Any) -> None:
        seen.append(threading.get_ident())

    request_finished.connect(record)
    yield seen
    request_finished.disconnect(record)


async def test_consecutive_requests_reuse_one_thread(finishing_threads: list[int]) -> None:
    for _ in range(3):
        assert (await fetch("/accounts/login/"))["status"] == 200
    assert len(finishing_threads) == 3
    assert len(set(finishing_threads)) == 1
    # Not the event loop's thread: the work still leaves the loop.
    assert finishing_threads[0] != threading.get_ident()


async def test_concurrent_requests_get_threads_of_their_own() -> None:
    threads = RequestThreads(idle=4)
    first, second = threads.take(), threads.take()
    assert first is not second
    threads.give_back(first, finished=True)
    threads.give_back(second, finished=True)
    assert {id(threads.take()), id(threads.take())} == {id(first), id(second)}


async def test_a_request_that_did_not_finish_lets_its_thread_go() -> None:
    class Failing(Handler):
        threads = RequestThreads(idle=4)

        async def handle(self, scope: Any, receive: Any, send: Any) -> None:
            raise RuntimeError("the view blew up")

    handler = Failing()
    with pytest.raises(RuntimeError):
        await handler({"type": "http"}, None, None)
    assert handler.threads.idle == []

    class Unanswered(Handler):
        threads = RequestThreads(idle=4)

        async def handle(self, scope: Any, receive: Any, send: Any) -> None:
            # A client gone before the answer: Django returns without sending one.
            await asyncio.sleep(0)

    unanswered = Unanswered()
    await unanswered({"type": "http"}, None, None)
    assert unanswered.threads.idle == []


async def test_the_pool_keeps_at_most_its_size() -> None:
    threads = RequestThreads(idle=2)
    taken = [threads.take() for _ in range(3)]
    for executor in taken:
        threads.give_back(executor, finished=True)
    assert len(threads.idle) == 2
    assert taken[2]._shutdown  # the third was let go


async def _thread_of_database_work(started: asyncio.Event) -> int:
    started.set()
    await asyncio.sleep(0.05)  # until after the request's context has ended
    ident: int = await db_async(threading.get_ident)()
    return ident


async def test_a_process_task_started_by_a_request_outlives_it() -> None:
    """A task of the process (a job runner, say) started while a request runs keeps doing
    database work after the request is over and its thread is lent to the next one."""
    request_thread = RequestThreads(idle=1).take()
    started, plain_started = asyncio.Event(), asyncio.Event()
    async with ThreadSensitiveContext(executor=request_thread):
        task = process_task(_thread_of_database_work(started), name="test")
        # What a plain task inherits: the request's context, refused once it has ended.
        plain = asyncio.get_running_loop().create_task(_thread_of_database_work(plain_started))
        await started.wait()
        await plain_started.wait()
    ident = await task
    assert ident != threading.get_ident()
    with pytest.raises(RuntimeError, match="has exited"):
        await plain
    request_thread.shutdown()
