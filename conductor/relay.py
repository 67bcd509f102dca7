"""Send a request to an executor and await its reply, from any process.

The executor's socket lives in whichever Daphne process it connected to. The relay finds
that consumer's channel in the registry, hands it the encoded request together with a
one-off reply channel, and waits on that channel. With the Redis channel layer this
crosses processes; with the in-memory layer it stays in one. Nothing is sticky.
"""

import asyncio
import contextvars
import logging
import time
from dataclasses import dataclass, replace
from typing import Any, NoReturn, TypeVar

from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from conductor import events
from conductor.models import Executor, RequestLog
from conductor.processes import process_alive, process_of, processes_dead
from conductor.protocol import (
    MessageType,
    Request,
    Response,
    encode_request,
    new_request_id,
    parse_response,
    response_problem,
)
from conductor.registry import (
    ENDED_BY_SHUTDOWN,
    NO_EXECUTOR,
    NO_SUCH_EXECUTOR,
    NoExecutorError,
    executor_pick,
    live_executors,
)
from conductor.requestlog import clip, request_log_add
from stepchange import prometheus
from stepchange.asyncdb import db_async, own_thread
from stepchange.logs import request_id_get
from stepchange.models import Application

logger = logging.getLogger(__name__)

ResponseT = TypeVar("ResponseT", bound=Response)

TIMED_OUT = "Executor {executor_id} did not answer {type} within {timeout:g} s."
DISCONNECTED = "Executor {executor_id} disconnected before answering {type}."
EXECUTOR_FAILED = "Executor {executor_id} could not {type}: {error}"
MALFORMED = "Executor {executor_id} sent a malformed answer to {type}: {problem}"
SHUTTING_DOWN = (
    "Executor {executor_id} did not answer {type}: the StepChange process holding it is "
    "shutting down and sent it elsewhere; try again."
)
PROCESS_GONE = (
    "Executor {executor_id} cannot answer {type}: the StepChange process holding it has "
    "stopped (no beat for {expiry} s); it reconnects to another process, try again then."
)
ABANDONED = (
    "No answer to {type} from executor {executor_id}: this StepChange process is shutting "
    "down; try again."
)


class RelayError(Exception):
    """A relayed request that did not produce an answer; `status` is the API's code."""

    status = 502


class ExecutorTimeoutError(RelayError):
    status = 504


class ExecutorDisconnectedError(RelayError):
    status = 502


class ExecutorFailedError(RelayError):
    """The executor answered, with an error_message."""

    status = 502

    def __init__(self, message: str, response: Response) -> None:
        super().__init__(message)
        self.response = response


class MalformedAnswerError(RelayError):
    """The executor answered with something the protocol does not allow: nothing of it is
    shown or stored."""

    status = 502


class NoExecutorConnectedError(RelayError):
    status = 503


@dataclass(frozen=True)
class Answer:
    """A reply and the executor that gave it (its language decides how to read the reply)."""

    response: Response
    executor: Executor


async def request(application: Application, message: Request, **options: Any) -> Response:
    """Relay `message` to a live executor of `application` and return its parsed reply.
    See `ask` for the options and errors."""
    return (await ask(application, message, **options)).response


async def ask(
    application: Application,
    message: Request,
    *,
    executor: str | None = None,
    latest_version: bool = False,
    timeout: float | None = None,
    actor_name: str = "",
    source: str = "api",
    raise_on_error: bool = True,
) -> Answer:
    """Relay `message` to a live executor (the named one, else one on the latest version
    when asked, else the one that answered most reliably of late) and return its reply.

    A read that the first executor does not answer within RELAY_READ_FAILOVER_SECONDS is
    sent once more, to another executor, within what is left of `timeout`; an action never
    is (it may have run). Both attempts are in the request log.

    Raises NoExecutorConnectedError, ExecutorTimeoutError, ExecutorDisconnectedError, or
    (with raise_on_error) ExecutorFailedError when the executor answered with an error.
    """
    timeout = settings.RELAY_TIMEOUT_SECONDS if timeout is None else timeout
    frame = encode_request(message)
    log = _log_entry(application, message, frame, actor_name=actor_name, source=source)
    try:
        candidates = await routes.candidates(
            application, executor_id=executor, latest_version=latest_version
        )
    except NoExecutorError as exc:
        await record(log, outcome=RequestLog.Outcome.NO_EXECUTOR, error=str(exc))
        raise NoExecutorConnectedError(str(exc)) from None
    failover = float(settings.RELAY_READ_FAILOVER_SECONDS)
    if message.type not in READS or len(candidates) < 2 or failover >= timeout:
        reply = await _attempt(application, candidates[0], message, frame, timeout, log)
        return await _answer(message, candidates[0], reply, log, raise_on_error)
    started = time.perf_counter()
    try:
        reply = await _attempt(application, candidates[0], message, frame, failover, log)
        return await _answer(message, candidates[0], reply, log, raise_on_error)
    except (ExecutorTimeoutError, ExecutorDisconnectedError) as exc:
        logger.warning("Asking another executor: %s", exc)
    # A fresh request_id: the first executor may still answer the first one, into nowhere.
    message = replace(message, request_id=new_request_id())
    frame = encode_request(message)
    log = _log_entry(application, message, frame, actor_name=actor_name, source=source)
    left = timeout - (time.perf_counter() - started)
    reply = await _attempt(application, candidates[1], message, frame, left, log)
    return await _answer(message, candidates[1], reply, log, raise_on_error)


def _log_entry(
    application: Application, message: Request, frame: str, *, actor_name: str, source: str
) -> dict[str, Any]:
    return {
        "application": application,
        "request_id": message.request_id,
        "message_type": str(message.type),
        "actor_name": actor_name,
        "source": source,
        "sent_at": timezone.now(),
        "request_bytes": len(frame.encode()),
        "request_body": frame,
    }


async def _attempt(
    application: Application,
    target: Executor,
    message: Request,
    frame: str,
    timeout: float,
    log: dict[str, Any],
) -> str:
    """One exchange with `target`, remembered in `health` either way."""
    log["executor_id"] = target.executor_id
    try:
        reply = await _exchange(target, message, frame, timeout, log)
    except RelayError:
        health.failed(target)
        routes.forget(application)
        raise
    health.answered(target)
    return reply


async def _answer(
    message: Request, target: Executor, reply: str, log: dict[str, Any], raise_on_error: bool
) -> Answer:
    response = parse_response(reply)
    log["response_bytes"] = len(reply.encode())
    problem = response_problem(response, message)
    if problem:
        error = MALFORMED.format(executor_id=target.executor_id, type=message.type, problem=problem)
        await record(log, response_frame=reply, outcome=RequestLog.Outcome.ERROR, error=error)
        raise MalformedAnswerError(error)
    if not response.error_message:
        await record(log, response_frame=reply, outcome=RequestLog.Outcome.OK)
        return Answer(response, target)
    await record(
        log, response_frame=reply, outcome=RequestLog.Outcome.ERROR, error=response.error_message
    )
    if raise_on_error:
        raise ExecutorFailedError(
            EXECUTOR_FAILED.format(
                executor_id=target.executor_id, type=message.type, error=response.error_message
            ),
            response,
        )
    return Answer(response, target)


# While waiting for an answer, how often to check that the executor is still connected.
LIVENESS_CHECK_SECONDS = 1.0


class _Waiting:
    """The exchanges this process waits on, and whether it has stopped waiting: a process
    that is shutting down answers them 502 rather than leaving their callers hanging."""

    def __init__(self) -> None:
        self.count = 0
        self.abandoned = False


waiting = _Waiting()


def relays_in_flight() -> int:
    """How many relayed requests this process is waiting on an answer for."""
    return waiting.count


def relays_abandon() -> None:
    """Fail every exchange still waiting here, within LIVENESS_CHECK_SECONDS, and any
    started from now on (the process is shutting down)."""
    waiting.abandoned = True


def _still_held(target: Executor) -> bool:
    return Executor.objects.live().filter(pk=target.pk, channel_name=target.channel_name).exists()


async def _exchange(
    target: Executor, message: Request, frame: str, timeout: float, log: dict[str, Any]
) -> str:
    """Hand the frame to the consumer holding `target` and wait for its answer."""
    waiting.count += 1
    try:
        return await _exchange_counted(target, message, frame, timeout, log)
    finally:
        waiting.count -= 1


async def _exchange_counted(
    target: Executor, message: Request, frame: str, timeout: float, log: dict[str, Any]
) -> str:
    layer = get_channel_layer()
    # The default prefix on purpose: channels_redis reads every process-local channel through
    # one Redis list per prefix, and a second prefix starves behind the consumers' receive.
    reply_channel = await layer.new_channel()
    started = time.perf_counter()
    names = {"executor_id": target.executor_id, "type": message.type}
    if not await process_alive(target.channel_name):
        await _process_gone(log, started, names)
    await layer.send(
        target.channel_name,
        {
            "type": "conductor.request",
            "request_id": message.request_id,
            "frame": frame,
            "reply_channel": reply_channel,
            # For the log line of the answer, in whichever process holds the executor.
            "http_request_id": request_id_get(),
        },
    )
    answer: dict[str, Any] | None = None
    while answer is None:
        if waiting.abandoned:
            answer = {"type": "conductor.abandoned"}
            break
        left = timeout - (time.perf_counter() - started)
        try:
            answer = await asyncio.wait_for(
                layer.receive(reply_channel), max(min(left, LIVENESS_CHECK_SECONDS), 0)
            )
        except TimeoutError:
            if left <= LIVENESS_CHECK_SECONDS:
                log["duration_ms"] = (time.perf_counter() - started) * 1000
                error = TIMED_OUT.format(timeout=timeout, **names)
                await record(log, outcome=RequestLog.Outcome.TIMEOUT, error=error)
                raise ExecutorTimeoutError(error) from None
            if not await process_alive(target.channel_name):
                await _process_gone(log, started, names)
            if not await db_async(_still_held)(target):
                # It went away with the request on its way: the consumer that closed never
                # saw it, so no failure will come; say so now rather than at the timeout.
                answer = {"type": "conductor.failed"}
    log["duration_ms"] = (time.perf_counter() - started) * 1000
    if answer["type"] == "conductor.malformed":
        error = MALFORMED.format(problem=answer["problem"], **names)
        await record(log, outcome=RequestLog.Outcome.ERROR, error=error)
        raise MalformedAnswerError(error)
    if answer["type"] != "conductor.reply":
        error = DISCONNECTED.format(**names)
        if answer["type"] == "conductor.abandoned":
            error = ABANDONED.format(**names)
        elif answer.get("ended_by") == ENDED_BY_SHUTDOWN:
            error = SHUTTING_DOWN.format(**names)
        await record(log, outcome=RequestLog.Outcome.DISCONNECTED, error=error)
        raise ExecutorDisconnectedError(error)
    return str(answer["frame"])


async def _process_gone(log: dict[str, Any], started: float, names: dict[str, Any]) -> NoReturn:
    """Fail the exchange: the process holding the executor died without a word."""
    log["duration_ms"] = (time.perf_counter() - started) * 1000
    error = PROCESS_GONE.format(expiry=settings.PROCESS_BEAT_EXPIRY_SECONDS, **names)
    await record(log, outcome=RequestLog.Outcome.DISCONNECTED, error=error)
    raise ExecutorDisconnectedError(error)


# Requests that only read: they change no workflow (every other kind may), so only these
# are ever sent to a second executor (`ask`).
READS = frozenset(
    {
        MessageType.EXECUTOR_INFO,
        MessageType.LIST_WORKFLOWS,
        MessageType.LIST_QUEUED_WORKFLOWS,
        MessageType.GET_WORKFLOW,
        MessageType.EXIST_PENDING_WORKFLOWS,
        MessageType.LIST_STEPS,
        MessageType.GET_METRICS,
        MessageType.EXPORT_WORKFLOW,
        MessageType.LIST_SCHEDULES,
        MessageType.GET_SCHEDULE,
        MessageType.LIST_APPLICATION_VERSIONS,
        MessageType.GET_WORKFLOW_EVENTS,
        MessageType.GET_WORKFLOW_NOTIFICATIONS,
        MessageType.GET_WORKFLOW_STREAMS,
        MessageType.GET_WORKFLOW_AGGREGATES,
        MessageType.GET_STEP_AGGREGATES,
        MessageType.LIST_QUEUES,
        MessageType.GET_QUEUE,
    }
)


async def record(
    log: dict[str, Any], *, response_frame: str = "", outcome: str, error: str = ""
) -> None:
    """Write one request-log entry; bodies are clipped to REQUEST_LOG_BODY_BYTES."""
    request_body, cut_request = clip(log.get("request_body", ""))
    response_body, cut_response = clip(response_frame)
    fields = {
        **log,
        "request_body": request_body,
        "response_body": response_body,
        "truncated": cut_request or cut_response,
        "outcome": outcome,
        "error_message": error,
    }
    _count(log, outcome)
    try:
        if settings.REQUEST_LOG_INLINE:
            await db_async(request_log_add)(**fields)
        else:
            request_log_add(**fields)
    except Exception:
        logger.exception("Could not record request %s in the request log", log["request_id"])
    await events.announce_request(
        log["application"].pk, changes_workflows=log["message_type"] not in READS
    )


def _count(log: dict[str, Any], outcome: str) -> None:
    """The request in `GET /metrics`: counted, and timed when it reached an executor."""
    labels = (log["application"].name, log["message_type"], outcome)
    prometheus.RELAY_REQUESTS.labels(*labels).inc()
    if log.get("duration_ms") is not None:
        prometheus.RELAY_SECONDS.labels(*labels).observe(log["duration_ms"] / 1000)


class Health:
    """When each executor last answered and last failed to (a timeout, a disconnect), in
    this process: enough to stop sending reads first to one that is frozen.

    An executor that failed more recently than it answered, within SUSPECT_SECONDS, is
    asked last; after that it is trusted again, so one slow moment is not held forever.
    """

    SUSPECT_SECONDS = 60.0
    MAX_REMEMBERED = 10_000

    def __init__(self) -> None:
        self.answered_at: dict[str, float] = {}
        self.failed_at: dict[str, float] = {}

    def answered(self, executor: Executor) -> None:
        self._note(self.answered_at, executor)

    def failed(self, executor: Executor) -> None:
        self._note(self.failed_at, executor)

    def ordered(self, executors: list[Executor]) -> list[Executor]:
        """`executors` with the suspect ones last, each group in its given order: `executors`
        itself when none is suspect (the usual case, found from the few that failed)."""
        now = time.monotonic()
        suspects = {
            channel
            for channel, failed in self.failed_at.items()
            if now - failed <= self.SUSPECT_SECONDS and self.answered_at.get(channel, -1.0) < failed
        }
        if not suspects:
            return executors
        return sorted(executors, key=lambda executor: executor.channel_name in suspects)

    def _note(self, times: dict[str, float], executor: Executor) -> None:
        if len(times) >= self.MAX_REMEMBERED:
            times.clear()  # bounded memory, whatever connects
        # By connection: an executor that connects again starts with a clean record.
        times[executor.channel_name] = time.monotonic()


health = Health()


def _holders(executors: list[Executor]) -> frozenset[str]:
    """The processes holding `executors` (as `process_of` names them)."""
    return frozenset(process_of(executor.channel_name) for executor in executors)


async def held_alive(executors: list[Executor], processes: frozenset[str]) -> list[Executor]:
    """`executors` less those held by a process whose beat has expired: gone, though their
    rows say connected until their heartbeat goes stale (or they reconnect elsewhere).
    `processes` are those holding them (`Routes.processes`); `executors` itself when none
    is dead."""
    dead = await processes_dead(processes)
    if not dead:
        return executors
    return [e for e in executors if process_of(e.channel_name) not in dead]


async def reachable_executors(application: Application) -> tuple[list[Executor], list[Executor]]:
    """The application's live executors, and those of them a request can reach now (held
    by a process that still beats). A caller with another way to act (the system database)
    takes it when none is reachable; one without sends anyway, to fail with the reason."""
    live = await routes.live(application)
    return live, await held_alive(live, routes.processes(application, live)) if live else []


async def _without_dead_holders(
    executors: list[Executor], processes: frozenset[str]
) -> list[Executor]:
    """`held_alive(executors)`, or, if that leaves none, all of them, so that the request
    fails saying why (`PROCESS_GONE`), not that nothing is connected."""
    return await held_alive(executors, processes) or executors


def _said_if_failed(reload: asyncio.Future[list[Executor]]) -> None:
    # A reload that no request awaited (an old entry's, served meanwhile) fails in the log;
    # one that requests await fails them.
    if not reload.cancelled() and (exc := reload.exception()) is not None:
        logger.warning("Could not read the live executors again: %s", exc)


class Routes:
    """Which executors are live, per application, cached in this process.

    Looking them up costs a database round trip on a worker thread for every request;
    the registry changes only when executors come and go. Entries are dropped at once on
    every registry event (`conductor.registry` group), and when a request through them
    fails: a request that finds none waits for the one reload under way. An entry older
    than ROUTE_SECONDS, dropped by no event, is still served while it is read again apart
    (reading a fleet's thousands of rows takes about 0.1 s, which no request should wait).

    The cache serves only the event loop that `listen` runs on (a loop of
    `stepchange.background`, started with the server); anywhere else (a management
    command, a test without it) nothing would keep it honest, and every pick asks the
    database.
    """

    ROUTE_SECONDS = 5.0

    def __init__(self) -> None:
        # Per application: when read, its live executors, and the processes holding them
        # (a request asks which of those still beat, not one question per executor).
        self.entries: dict[int, tuple[float, list[Executor], frozenset[str]]] = {}
        self.listening: asyncio.AbstractEventLoop | None = None
        # The reload under way per application: every request that finds the cache empty
        # meanwhile awaits it, instead of each sending its own query (a fleet connecting
        # empties the cache at every registration).
        self.reloading: dict[int, asyncio.Future[list[Executor]]] = {}
        # How many times entries were dropped: a reload begun before a drop answers its
        # waiters but is not kept (an executor may have come or gone since it read).
        self.drops = 0

    async def candidates(
        self, application: Application, *, executor_id: str | None, latest_version: bool
    ) -> list[Executor]:
        """The executors that may take a request, the one to ask first first: the named
        one alone, else the one on the latest version alone, else every live one, those
        that failed to answer of late last (`health`)."""
        if latest_version:
            # Rare (version-pinned actions): straight from the database.
            chosen: Executor = await db_async(executor_pick)(
                application=application, executor_id=executor_id, latest_version=True
            )
            return [chosen]
        live = await self.live(application)
        if executor_id:
            live = [candidate for candidate in live if candidate.executor_id == executor_id]
            if not live:
                raise NoExecutorError(
                    NO_SUCH_EXECUTOR.format(executor_id=executor_id, app=application.name)
                )
        if not live:
            raise NoExecutorError(NO_EXECUTOR.format(app=application.name))
        held = await _without_dead_holders(live, self.processes(application, live))
        return health.ordered(held)

    async def live(self, application: Application) -> list[Executor]:
        """The application's live executors, most recently connected first (shared: do not
        change them): from the cache while it lasts, else one read of the registry."""
        if not self._listening():
            # No listener can keep a cache honest here.
            fresh: list[Executor] = await db_async(live_executors)(application)
            return fresh
        entry = self.entries.get(application.pk)
        if entry is not None:
            if time.monotonic() - entry[0] > self.ROUTE_SECONDS:
                self._reloading(application)
            return entry[1]
        # Shielded: one waiter cancelled does not cancel the reload the others await.
        return await asyncio.shield(self._reloading(application))

    def _reloading(self, application: Application) -> asyncio.Future[list[Executor]]:
        """The application's reload under way, started if there is none: in a context and
        on a database thread of its own, not those of the request that happened to start
        it, which end with that request."""
        reload = self.reloading.get(application.pk)
        if reload is None:
            reload = asyncio.get_running_loop().create_task(
                self._reload(application), context=contextvars.Context()
            )
            reload.add_done_callback(_said_if_failed)
            self.reloading[application.pk] = reload
        return reload

    async def _reload(self, application: Application) -> list[Executor]:
        drops = self.drops
        try:
            async with own_thread():
                live: list[Executor] = await db_async(live_executors)(application)
        finally:
            self.reloading.pop(application.pk, None)
        if drops == self.drops:
            self.entries[application.pk] = (time.monotonic(), live, _holders(live))
        return live

    def processes(self, application: Application, executors: list[Executor]) -> frozenset[str]:
        """The processes holding `executors`: kept with the cache's entry when `executors`
        is that entry's list, else found from their channel names."""
        entry = self.entries.get(application.pk)
        if entry is not None and entry[1] is executors:
            return entry[2]
        return _holders(executors)

    def forget(self, application: Application | None = None) -> None:
        self.drops += 1
        if application is None:
            self.entries.clear()
        else:
            self.entries.pop(application.pk, None)

    def _listening(self) -> bool:
        return self.listening is asyncio.get_running_loop()

    async def listen(self) -> None:
        """Drop the cache on every registry event, for as long as this runs."""
        layer = get_channel_layer()
        channel = await layer.new_channel()
        try:
            while True:
                # Group membership expires in Redis; joining again now and then keeps it.
                await layer.group_add(events.REGISTRY_GROUP, channel)
                self.listening = asyncio.get_running_loop()
                try:
                    async with asyncio.timeout(3600):
                        while True:
                            await layer.receive(channel)
                            self.forget()
                except TimeoutError:
                    continue
        finally:
            self.listening = None
            self.forget()


routes = Routes()


def expect(response: Response, kind: type[ResponseT]) -> ResponseT:
    """Narrow a parsed reply to the type its request promises."""
    if not isinstance(response, kind):
        raise RelayError(f"Expected {kind.__name__}, the executor sent {type(response).__name__}.")
    return response
