"""Everything a StepChange process runs beside the requests it serves, listed in one place:
started when the server starts, stopped when it stops. Each loop's work stays in its own
module; this one only starts and stops them.

Why at the server's start, not on first use: each loop used to be started, each its own
way, by whichever request or executor first needed it, so what ran depended on what had
happened (a process no executor had reached yet swept for no recovery and took over no
bulk job left behind), and nothing stopped them (the request-log writer, a daemon thread,
could be cut off mid-write at exit). Now every process runs the whole set from its start;
on a stop each loop is cancelled and awaited, and the writer writes what it holds before
it is joined. With several processes (the Redis channel layer) each runs its own set, as
before: whatever two of them could both do is claimed in the database first.

Why the server's start, not Django's (`AppConfig.ready`): that also runs in management
commands, shells and tests, where no event loop runs for the loops. Nothing here starts
at import either; tests start the set where they need it (the `background` fixture).

Why two ways in: Daphne 4.2 does not speak ASGI's lifespan protocol, so
`stepchange.server` starts the set once Twisted's reactor runs its asyncio loop, and stops
it in a shutdown trigger the reactor waits for (SIGTERM and SIGINT go through it). A server
that speaks lifespan (uvicorn) starts and stops the same set through the application's
`lifespan` scope instead, and never runs `stepchange.server`: either way it starts once.
"""

import asyncio
import contextvars
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from alerts import delivery, evaluator
from conductor import consumers, liveness, processes, recovery, relay, requestlog, retention
from metrics import rollups
from workflows import jobs, names

logger = logging.getLogger(__name__)

RESTART_SECONDS = 1.0
ELSEWHERE = "The background loops already run on another event loop."


@dataclass(frozen=True)
class Loop:
    name: str
    forever: Callable[[], Coroutine[Any, Any, None]]


# Every loop of the process. Besides them, one thread: the request-log writer.
LOOPS = (
    Loop("relay-routes", relay.routes.listen),
    Loop("heartbeat", consumers.heartbeat_forever),
    Loop("process-beat", processes.beat_forever),
    Loop("recovery", recovery.sweep_forever),
    Loop("liveness", liveness.probe_forever),
    Loop("retention", retention.retention_forever),
    Loop("bulk-jobs", jobs.runner.forever),
    Loop("workflow-names", names.names_refresh_forever),
    Loop("alert-evaluator", evaluator.evaluate_forever),
    Loop("alert-delivery", delivery.deliver_forever),
    Loop("metric-rollups", rollups.rollup_forever),
)

_tasks: dict[str, "asyncio.Task[None]"] = {}


def background_start() -> None:
    """Start every loop on the running event loop, and the request-log writer; once: a
    second call while they run does nothing."""
    running = asyncio.get_running_loop()
    if any(not task.done() for task in _tasks.values()):
        if all(task.get_loop() is running for task in _tasks.values()):
            return
        raise RuntimeError(ELSEWHERE)
    for loop in LOOPS:
        # A fresh context: a task inherits its starter's, and with it whatever thread
        # asgiref keeps for the starter's thread-sensitive work.
        _tasks[loop.name] = running.create_task(
            _supervised(loop), name=loop.name, context=contextvars.Context()
        )
    # With REQUEST_LOG_INLINE (tests), entries are written at once: nothing to drain.
    if not settings.REQUEST_LOG_INLINE:
        requestlog.request_log_start()
    logger.info("Background work started: %s", ", ".join(background_running()))


async def background_stop() -> None:
    """Cancel every loop and wait for it to end, then stop the writer once it has written
    what it holds."""
    tasks = list(_tasks.values())
    _tasks.clear()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    # Joining the thread blocks: off the event loop, which still serves the shutdown.
    await asyncio.to_thread(requestlog.request_log_stop)
    logger.info("Background work stopped")


def background_running() -> list[str]:
    """The names of what runs now."""
    names = [name for name, task in _tasks.items() if not task.done()]
    if requestlog.request_log_running():
        names.append(requestlog.WRITER_NAME)
    return names


async def _supervised(loop: Loop) -> None:
    """Run a loop for as long as the process runs. One that fails (a channel layer gone
    away) starts again shortly, as the next request or executor used to restart it."""
    while True:
        try:
            await loop.forever()
        except Exception:
            logger.exception("The %s loop failed; it starts again shortly", loop.name)
        await asyncio.sleep(RESTART_SECONDS)


async def lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI's lifespan scope, for servers that send one (Daphne does not)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                background_start()
            except RuntimeError as exc:
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await background_stop()
            await send({"type": "lifespan.shutdown.complete"})
            return
