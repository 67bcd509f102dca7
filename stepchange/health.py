"""`GET /healthz` and `GET /readyz`, for load balancers and Kubernetes (README "Health").

Both answer anyone: no session, no audit record, no throttle, and the access log keeps
them at DEBUG. Neither touches an application's DBOS system database: a fleet's readiness
must not hang on a database StepChange does not own. What failed is named; why is only
logged, as the answer goes to whoever asks.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from conductor.consumers import ThrottledWarning, executors_held
from stepchange.asyncdb import db_async

logger = logging.getLogger(__name__)

PROBE_PATHS = frozenset({"/healthz", "/readyz"})
# A failing part is logged at most once a minute: probes come every few seconds.
failures = ThrottledWarning(60)

# Set when the process begins to shut down (stepchange/server.py): from then on it is not
# ready, so the load balancer stops sending it anything new.
_draining = False


def drain_begin() -> None:
    global _draining
    _draining = True


def draining() -> bool:
    return _draining


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and serving requests."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_safe
async def readyz(request: HttpRequest) -> JsonResponse:
    """StepChange's own database answers, the channel layer carries a message round, and
    the process is not shutting down; with how many executors this process holds."""
    checks = {
        "database": await _check("database", _database_answers),
        "channel_layer": await _check("channel_layer", _channel_layer_round_trip),
    }
    failing = [part for part, result in checks.items() if result != "ok"]
    if _draining:
        failing.append("shutting_down")
    body = {
        "status": "not ready" if failing else "ready",
        "failing": failing,
        "checks": checks,
        "executors": executors_held(),
    }
    return JsonResponse(body, status=503 if failing else 200)


async def _check(part: str, probe: Callable[[], Awaitable[None]]) -> str:
    """ "ok", "timed out" or "failed"; the reason goes to the log, not to the caller."""
    timeout = float(settings.READY_TIMEOUT_SECONDS)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            await probe()
    except TimeoutError:
        failures.warn(part, "Readiness: the %s did not answer within %g s", _name(part), timeout)
        return "timed out"
    except Exception as exc:
        failures.warn(
            part,
            "Readiness: the %s failed after %.0f ms: %s: %s",
            _name(part),
            (time.perf_counter() - started) * 1000,
            type(exc).__name__,
            exc,
        )
        return "failed"
    return "ok"


def _name(part: str) -> str:
    return part.replace("_", " ")


async def _database_answers() -> None:
    await db_async(_select_one)()


def _select_one() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


async def _channel_layer_round_trip() -> None:
    """A message to a channel of this process and back: with Redis, through Redis."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "readiness.probe"})
    await layer.receive(channel)
