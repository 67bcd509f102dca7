"""WebSocket consumers: executors speaking the Conductor protocol, and console live updates.

ExecutorConsumer holds one executor's socket. It speaks first (`executor_info`,
PROTOCOL.md §1.2), forwards relayed requests as text frames, and hands each reply to
the channel of whoever asked. It never blocks on an executor: a request is sent and
remembered, and its reply is matched by `request_id` whenever it comes.
"""

import asyncio
import logging
import time
from typing import Any

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncJsonWebsocketConsumer, AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from conductor import events
from conductor.models import Executor, ExecutorConnection, RequestLog
from conductor.protocol import (
    ExecutorInfoRequest,
    ExecutorInfoResponse,
    ProtocolError,
    claimed_request_id,
    encode_request,
    parse_envelope,
    parse_response,
    response_problem,
    shown,
)
from conductor.registry import (
    ENDED_BY_SHUTDOWN,
    executor_disconnected,
    executor_register,
    executors_seen,
)
from conductor.relay import record
from stepchange.access import visible_to
from stepchange.asyncdb import db_async
from stepchange.logs import request_id_set
from stepchange.models import Application
from stepchange.redaction import redact_websocket_path
from stepchange.services import executor_key_active, executor_key_check, executor_key_group
from stepchange.throttle import Throttled, scope_address
from workflows import jobs

logger = logging.getLogger(__name__)

# Refused executors retry every second: say so in the log at most once a minute each.
REFUSAL_LOG_INTERVAL_SECONDS = 60
_refusals_logged: dict[tuple[str, str], float] = {}
MAX_REFUSALS_REMEMBERED = 10_000

# Close codes an executor sees (README, "Executors"): its executor id connected again on
# another socket; its executor_info was unusable or never came.
CLOSE_REPLACED = 4000
CLOSE_BAD_INFO = 4001
# The key it connected with was revoked.
CLOSE_KEY_REVOKED = 4003
# This StepChange process is shutting down: a normal closure. RFC 6455's "going away"
# (1001) or "service restart" (1012) would say it better, but Daphne's WebSocket library
# (autobahn) lets a server send only 1000 or 3000-4999, and drops the reason. Nothing is
# lost: dbos 3.2.0 and @dbos-inc/dbos-sdk 5.0.2 reconnect one second after any close,
# whatever its code, through the load balancer to another process (README "Shutdown").
CLOSE_SHUTDOWN = 1000
# Refused by the failure throttle (stepchange/throttle.py), before the handshake: Daphne
# answers the upgrade with 403, and the code is seen only in-process (tests).
CLOSE_THROTTLED = 4029


class ThrottledWarning:
    """A warning logged at most once per `interval` seconds per kind, with how many were
    left out since: whatever knocks on the door, the log grows by a line a kind at most."""

    def __init__(self, interval: float, max_kinds: int = 1000) -> None:
        self.interval = interval
        self.max_kinds = max_kinds
        self.kinds: dict[str, tuple[float, int]] = {}

    def warn(self, kind: str, message: str, *args: object) -> bool:
        now = time.monotonic()
        last, suppressed = self.kinds.get(kind, (-self.interval, 0))
        if now - last < self.interval:
            self.kinds[kind] = (last, suppressed + 1)
            return False
        if len(self.kinds) >= self.max_kinds:
            self.kinds.clear()
        self.kinds[kind] = (now, 0)
        if suppressed:
            message += " (%d more like it in the last %d s not logged)"
            args = (*args, suppressed, self.interval)
        logger.warning(message, *args)
        return True


# Upgrades to no route: a scanner or a misconfigured executor, retrying every second.
UNROUTED_LOG_INTERVAL_SECONDS = 10
unrouted_warnings = ThrottledWarning(UNROUTED_LOG_INTERVAL_SECONDS)


async def refuse_unrouted(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Any WebSocket path that is not an exact route: the upgrade is refused (Daphne answers
    403), and the path is logged without what could be a key."""
    message = await receive()
    if message["type"] == "websocket.connect":
        path = redact_websocket_path(str(scope.get("path", "")))
        kind = "executor" if "websocket" in path.lower() else "other"
        unrouted_warnings.warn(kind, "Refused a WebSocket upgrade to no route: %s", shown(path))
        await send({"type": "websocket.close", "code": 1008})


# This process's executor consumers, for the heartbeat.
_held: set[str] = set()
# Every executor socket of this process from its accept until its disconnect is done: a
# shutdown closes them and waits for them (stepchange/server.py).
_open: set["ExecutorConsumer"] = set()
# Every open executor socket of this process and the key it connected with (by pk): the
# heartbeat joins their key groups again now and then (Redis forgets group members).
_keyed: dict[str, int] = {}
KEY_GROUPS_REJOIN_SECONDS = 3600


class ExecutorConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    application: Application | None = None
    executor: Executor | None = None
    connection: ExecutorConnection | None = None
    ended_by = "closed"

    # Frames that carry replies and relayed requests: the hot path.
    HOT = frozenset({"websocket.receive", "conductor.request"})

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels closes stale database connections on a worker thread before every
        # message. Replies and relayed requests never touch the database here (whatever
        # does goes through db_async, which hands the connection back itself), so they
        # skip those two thread hops: the relay's throughput (bench/RESULTS.md).
        if message["type"] in self.HOT:
            await getattr(self, get_handler_name(message))(message)
        else:
            await super().dispatch(message)

    async def connect(self) -> None:
        # request_id -> (the reply channel of whoever asked, the id of their HTTP request)
        self.pending: dict[str, tuple[str, str]] = {}
        kwargs = self.scope["url_route"]["kwargs"]
        try:
            key = await db_async(executor_key_check)(
                app_name=kwargs["app_name"], key=kwargs["key"], address=scope_address(self.scope)
            )
        except Throttled as exc:
            self._log_refusal(kwargs["app_name"], why=str(exc))
            await self.close(code=CLOSE_THROTTLED)
            return
        if key is None:
            self._log_refusal(kwargs["app_name"])
            # Closing before accepting makes Daphne answer the upgrade with 403.
            await self.close()
            return
        self.application = key.application
        # Remembered so that revoking the key closes this socket (CLOSE_KEY_REVOKED).
        self.key_pk = key.pk
        await self.channel_layer.group_add(executor_key_group(key.pk), self.channel_name)
        _keyed[self.channel_name] = key.pk
        if not await db_async(executor_key_active)(key.pk):
            # Revoked between the check and joining the group: its close message is gone.
            await self._leave_key_group()
            await self.close()
            return
        await self.accept()
        _open.add(self)
        self.info_request = ExecutorInfoRequest()
        self.info_frame = encode_request(self.info_request)
        self.info_sent = (timezone.now(), time.perf_counter())
        await self.send(text_data=self.info_frame)
        self.info_deadline = asyncio.create_task(self._close_unless_identified())
        # Bulk jobs left behind by a stopped process need an executor: look for them now.
        jobs.bulk_jobs_wake()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            logger.warning("Dropped a binary frame from %s: the protocol is text", self._who())
            return
        try:
            # Only the envelope: whoever asked reads the rest, once.
            _, kind, request_id = parse_envelope(text_data)
        except ProtocolError as exc:
            logger.warning("Dropped a malformed frame from %s: %s", self._who(), exc)
            await self._fail_claimed(text_data, str(exc))
            return
        if request_id == self.info_request.request_id:
            await self._register(parse_response(text_data), text_data)
            return
        asked = self.pending.pop(request_id, None)
        if asked is None:
            logger.warning(
                "Dropped a %s reply from %s to unknown request %s",
                shown(kind, 40),
                self._who(),
                shown(request_id, 60),
            )
            return
        reply_channel, http_request_id = asked
        if logger.isEnabledFor(logging.DEBUG):
            with request_id_set(http_request_id):
                logger.debug(
                    "Executor %s answered %s %s (%d bytes)",
                    self._who(),
                    shown(kind, 40),
                    request_id,
                    len(text_data),
                )
        await self.channel_layer.send(
            reply_channel, {"type": "conductor.reply", "frame": text_data}
        )

    async def _fail_claimed(self, frame: str, problem: str) -> None:
        """A frame that could not be read but names a request this executor was asked: that
        request fails now (502) instead of at its timeout."""
        request_id = claimed_request_id(frame)
        asked = self.pending.pop(request_id, None) if request_id else None
        if asked is not None:
            await self.channel_layer.send(
                asked[0], {"type": "conductor.malformed", "problem": problem}
            )

    async def _close_unless_identified(self) -> None:
        await asyncio.sleep(settings.EXECUTOR_INFO_TIMEOUT_SECONDS)
        if self.executor is None:
            logger.warning(
                "Closing %s: no executor_info answer within %s s",
                self._who(),
                settings.EXECUTOR_INFO_TIMEOUT_SECONDS,
            )
            await self.close(code=CLOSE_BAD_INFO, reason="no executor_info answer")

    async def _leave_key_group(self) -> None:
        key_pk = _keyed.pop(self.channel_name, None)
        if key_pk is not None:
            await self.channel_layer.group_discard(executor_key_group(key_pk), self.channel_name)

    async def executor_key_revoked(self, message: dict[str, Any]) -> None:
        """The key this socket connected with was revoked: close at once."""
        logger.info("Closing %s: its key was revoked", self._who())
        await self.close(code=CLOSE_KEY_REVOKED, reason="executor key revoked")

    async def go_away(self) -> None:
        """This process is shutting down: the executor is told to reconnect elsewhere, and
        whatever it was asked fails at once, saying why."""
        self.ended_by = ENDED_BY_SHUTDOWN
        await self.close(code=CLOSE_SHUTDOWN)

    async def disconnect(self, code: int) -> None:
        try:
            await self._disconnect(code)
        finally:
            _open.discard(self)

    async def _disconnect(self, code: int) -> None:
        _held.discard(self.channel_name)
        await self._leave_key_group()
        deadline = getattr(self, "info_deadline", None)
        if deadline is not None and deadline is not asyncio.current_task():
            deadline.cancel()
        for request_id, (reply_channel, _) in self.pending.items():
            await self.channel_layer.send(
                reply_channel,
                {"type": "conductor.failed", "request_id": request_id, "ended_by": self.ended_by},
            )
        self.pending.clear()
        if self.executor is None or self.connection is None or self.application is None:
            return
        gone = await db_async(executor_disconnected)(
            executor=self.executor,
            connection=self.connection,
            channel_name=self.channel_name,
            close_code=code,
            ended_by=self.ended_by,
        )
        if gone:
            await events.registry_changed()
            logger.info("Executor %s disconnected (code %s)", self._who(), code)
            await events.announce(
                self.application.pk, "executor.disconnected", executor_id=self.executor.executor_id
            )

    async def conductor_request(self, message: dict[str, Any]) -> None:
        """A relayed request: send it on, and remember who waits for the answer."""
        self.pending[message["request_id"]] = (
            message["reply_channel"],
            message.get("http_request_id", ""),
        )
        try:
            await self.send(text_data=message["frame"])
        except Exception:
            self.pending.pop(message["request_id"], None)
            await self.channel_layer.send(
                message["reply_channel"],
                {"type": "conductor.failed", "request_id": message["request_id"]},
            )

    async def conductor_replaced(self, message: dict[str, Any]) -> None:
        """The same executor connected again on another socket: this one is stale."""
        await self.close(code=CLOSE_REPLACED)

    async def _register(self, response: Any, frame: str) -> None:
        problem = response_problem(response)
        await self._log_handshake(response, frame, problem)
        if problem:
            logger.warning(
                "Refusing %s: its executor_info is out of bounds: %s", self._who(), problem
            )
            await self.close(code=CLOSE_BAD_INFO, reason=problem[:120])
            return
        if not isinstance(response, ExecutorInfoResponse) or not response.executor_id:
            logger.warning(
                "Closing %s: its executor_info reply was unusable (%s)",
                self._who(),
                response.error_message or "no executor_id",
            )
            await self.close(code=CLOSE_BAD_INFO)
            return
        assert self.application is not None
        client = self.scope.get("client") or ["", 0]
        self.executor, self.connection, previous = await db_async(executor_register)(
            application=self.application,
            info=response,
            channel_name=self.channel_name,
            remote_address=str(client[0]),
        )
        _held.add(self.channel_name)
        await events.registry_changed()
        if previous and previous != self.channel_name:
            await self.channel_layer.send(previous, {"type": "conductor.replaced"})
        logger.info(
            "Executor %s connected: %s %s, app version %s, host %s",
            self._who(),
            response.language,
            response.dbos_version,
            response.application_version,
            response.hostname,
        )
        await events.announce(
            self.application.pk, "executor.connected", executor_id=response.executor_id
        )

    async def _log_handshake(self, response: Any, frame: str, problem: str | None) -> None:
        assert self.application is not None
        sent_at, started = self.info_sent
        await record(
            {
                "application": self.application,
                "request_id": self.info_request.request_id,
                "message_type": str(self.info_request.type),
                "executor_id": "" if problem else str(getattr(response, "executor_id", "") or ""),
                "source": "handshake",
                "sent_at": sent_at,
                "duration_ms": (time.perf_counter() - started) * 1000,
                "request_bytes": len(self.info_frame),
                "request_body": self.info_frame,
                "response_bytes": len(frame.encode()),
            },
            response_frame=frame,
            outcome=RequestLog.Outcome.ERROR
            if response.error_message or problem
            else RequestLog.Outcome.OK,
            error=response.error_message or problem or "",
        )

    def _who(self) -> str:
        app = self.application.name if self.application else "?"
        executor = self.executor.executor_id if self.executor else "(unidentified)"
        return f"{app}/{executor}"

    def _log_refusal(self, app_name: str, why: str = "unknown app or revoked key") -> None:
        client = str((self.scope.get("client") or ["?"])[0])
        now = time.monotonic()
        if now - _refusals_logged.get((app_name, client), 0.0) > REFUSAL_LOG_INTERVAL_SECONDS:
            if len(_refusals_logged) > MAX_REFUSALS_REMEMBERED:
                _refusals_logged.clear()  # bounded memory, whatever knocks on the door
            _refusals_logged[(app_name, client)] = now
            # Never the key itself: only which application and from where.
            logger.warning("Refused an executor of %r from %s: %s", app_name, client, why)


async def heartbeat_forever() -> None:
    """Mark this process's executors as seen, every EXECUTOR_HEARTBEAT_SECONDS (a loop of
    `stepchange.background`)."""
    rejoined = time.monotonic()
    while True:
        await asyncio.sleep(settings.EXECUTOR_HEARTBEAT_SECONDS)
        if time.monotonic() - rejoined > KEY_GROUPS_REJOIN_SECONDS:
            rejoined = time.monotonic()
            await _key_groups_rejoin()
        if _held:
            try:
                await db_async(executors_seen)(channel_names=list(_held))
            except Exception:
                logger.exception("The executor heartbeat failed; it runs again shortly")


async def _key_groups_rejoin() -> None:
    layer = get_channel_layer()
    for channel_name, key_pk in list(_keyed.items()):
        try:
            await layer.group_add(executor_key_group(key_pk), channel_name)
        except Exception:
            logger.exception("Could not join the group of key %s again", key_pk)


class ConsoleConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """Pushes registry and request-log events to signed-in users, per visible application."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close()
            return
        self.groups_joined = [events.group_for(pk) for pk in await db_async(_visible_ids)(user)]
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """The console only listens; anything it sends is ignored."""

    async def console_event(self, message: dict[str, Any]) -> None:
        await self.send_json(message["event"])


def executors_held() -> int:
    """How many identified executors this process holds now."""
    return len(_held)


def executor_sockets_open() -> list["ExecutorConsumer"]:
    """This process's executor sockets, identified or not, not yet fully disconnected."""
    return list(_open)


def requests_waiting() -> int:
    """Relayed requests this process's executors have been sent and not yet answered."""
    return sum(len(consumer.pending) for consumer in _open)


def _visible_ids(user: Any) -> list[int]:
    return list(visible_to(user).values_list("pk", flat=True))
