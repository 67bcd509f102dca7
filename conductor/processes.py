"""Which StepChange processes are alive: each keeps a beat in the shared cache.

A process that dies (SIGKILL, a crashed host) says nothing; the executors it held stay
marked connected in the database until three executor heartbeats pass. To fail what waits
on such a process at once, each process writes a beat into the cache every
PROCESS_BEAT_SECONDS that expires after PROCESS_BEAT_EXPIRY_SECONDS. With REDIS_URL the
cache is the Redis the channel layer uses, so every process sees every beat.

A process is named by the part of its consumers' channel names before "!": channels_redis
gives each process its own client prefix there, so the channel an executor is held by in
the registry names its process without another column. With the in-memory channel layer
there is one process only, and it is always this one.
"""

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.core.signals import setting_changed

logger = logging.getLogger(__name__)

KEY = "stepchange:process-beat:{process}"


def process_of(channel_name: str) -> str:
    """The process a consumer's channel belongs to ("" if the name does not say)."""
    process, bang, _ = channel_name.partition("!")
    return process if bang else ""


class _Own:
    name = ""


_own = _Own()


def _layer_changed(*, setting: str, **kwargs: Any) -> None:
    # A new channel layer (tests override it, as Channels' own manager notices) names this
    # process anew: the name of the old one would make its executors look held elsewhere.
    if setting == "CHANNEL_LAYERS":
        _own.name = ""


setting_changed.connect(_layer_changed)


async def own_process() -> str:
    """This process's name, as its channel names carry it."""
    if not _own.name:
        _own.name = process_of(await get_channel_layer().new_channel())
    return _own.name


async def beat() -> None:
    """Say that this process is alive, for PROCESS_BEAT_EXPIRY_SECONDS."""
    await cache.aset(
        KEY.format(process=await own_process()), 1, timeout=settings.PROCESS_BEAT_EXPIRY_SECONDS
    )


async def process_alive(channel_name: str) -> bool:
    """Whether the process holding this channel has beaten recently. This process always
    is, and so is one whose channel names do not name it. With the cache unreachable no
    process can be told dead: the request waits as it did before beats (its executor's
    heartbeat, or the relay timeout, ends it)."""
    return not await processes_dead([process_of(channel_name)])


async def processes_dead(processes: Iterable[str]) -> set[str]:
    """Those of these processes (as `process_of` names them) whose beat has expired, in one
    read of the cache: none when the cache cannot be read (see `process_alive`)."""
    others = set(processes) - {"", await own_process()}
    if not others:
        return set()
    keys = {KEY.format(process=process): process for process in others}
    try:
        found = await cache.aget_many(list(keys))
    except Exception as exc:
        _unreadable_warn(exc)
        return set()
    return {process for key, process in keys.items() if not found.get(key)}


# Every relayed request reads the beats: with Redis down, one warning a minute, not one each.
UNREADABLE_WARNING_SECONDS = 60.0


class _Unreadable:
    warned_at: float | None = None


_unreadable = _Unreadable()


def _unreadable_warn(exc: Exception) -> None:
    now = time.monotonic()
    last = _unreadable.warned_at
    if last is None or now - last >= UNREADABLE_WARNING_SECONDS:
        _unreadable.warned_at = now
        logger.warning(
            "Cannot read the processes' beats, counting every process alive: %s: %s",
            type(exc).__name__,
            exc,
        )


def process_gone(process: str) -> bool:
    """Whether `process` (another one) has stopped beating: from synchronous code, after
    `own_process` has named this one. Unknown or unreadable counts as not gone."""
    if not process or process == _own.name:
        return False
    try:
        return not cache.get(KEY.format(process=process))
    except Exception as exc:
        _unreadable_warn(exc)
        return False


async def beat_forever() -> None:
    """Beat every PROCESS_BEAT_SECONDS (a loop of `stepchange.background`)."""
    while True:
        try:
            await beat()
        except Exception:
            logger.exception("The process beat failed; it beats again shortly")
        await asyncio.sleep(settings.PROCESS_BEAT_SECONDS)
