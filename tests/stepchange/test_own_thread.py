"""A long pass of background database work on a thread of its own does not wait for, nor
hold up, the one thread the other background loops share."""

import asyncio
import contextvars
import threading
import time

from stepchange.asyncdb import db_async, own_thread


def _busy(seconds: float) -> int:
    time.sleep(seconds)
    return threading.get_ident()


async def test_work_in_its_own_thread_does_not_wait_for_the_shared_one() -> None:
    # Background loops run in contexts of their own, with no thread-sensitive context:
    # their `db_async` work all goes to asgiref's one shared thread.
    async def background(seconds: float) -> int:
        return await db_async(_busy)(seconds)

    shared = asyncio.get_running_loop().create_task(background(1.0), context=contextvars.Context())
    await asyncio.sleep(0.1)
    started = time.monotonic()
    async with own_thread():
        mine = await db_async(threading.get_ident)()
    assert time.monotonic() - started < 0.8
    assert mine != await shared


async def test_the_shared_thread_is_not_held_by_work_in_its_own_thread() -> None:
    async def long_pass() -> int:
        async with own_thread():
            return await db_async(_busy)(1.0)

    loop = asyncio.get_running_loop()
    long = loop.create_task(long_pass(), context=contextvars.Context())
    await asyncio.sleep(0.1)
    started = time.monotonic()

    async def beat() -> int:
        return await db_async(threading.get_ident)()

    shared = await loop.create_task(beat(), context=contextvars.Context())
    assert time.monotonic() - started < 0.8
    assert shared != await long
