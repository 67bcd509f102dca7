"""ASGI entry point: HTTP to Django, WebSockets to the Channels consumers.

The JSON API gets its own Django handler with a short, async-native middleware list.
Django runs every classic middleware hook on a worker thread in async mode; the console's
stack costs over a dozen thread hops per request, which the API, with its own bearer and
session authentication, does not need.

Both handlers lend each request a worker thread from a pool (`RequestThreads`) instead of
starting and joining a new one per request, as Django's handler does.
"""

import gc
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import django
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core.handlers.asgi import ASGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stepchange.settings")
# Django must be set up before anything imports models.
django.setup(set_prefix=False)

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.signals import request_started  # noqa: E402
from django.db import close_old_connections, reset_queries  # noqa: E402
from django.test.utils import override_settings  # noqa: E402

from conductor.routing import websocket_urlpatterns  # noqa: E402
from stepchange.background import lifespan  # noqa: E402

IDLE_THREADS = 16


class RequestThreads:
    """Single-thread executors lent to requests for their synchronous work (database
    queries, templates): a request has one thread to itself while it runs, as under
    Django's own handler, but the thread outlives it. Starting and joining a thread cost
    0.4 ms of every request here. Used only from the event loop's thread.

    A thread goes back to the pool only after a request that ended normally, when nothing
    of the request can still be running on it; after a request that failed or whose
    client went away (a query may still be running), it is let go."""

    def __init__(self, idle: int = IDLE_THREADS) -> None:
        self.size = idle
        self.idle: list[ThreadPoolExecutor] = []

    def take(self) -> ThreadPoolExecutor:
        if self.idle:
            return self.idle.pop()
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")

    def give_back(self, executor: ThreadPoolExecutor, *, finished: bool) -> None:
        if finished and len(self.idle) < self.size:
            self.idle.append(executor)
        else:
            executor.shutdown(wait=False)


class Handler(ASGIHandler):
    threads = RequestThreads()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        answered = False

        async def sending(message: Mapping[str, Any]) -> None:
            nonlocal answered
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                answered = True

        executor = self.threads.take()
        finished = False
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, sending)
            finished = answered
        finally:
            self.threads.give_back(executor, finished=finished)


class APIHandler(Handler):
    def load_middleware(self, is_async: bool = False) -> None:
        # Django builds the chain from settings.MIDDLEWARE; give it the API's list.
        with override_settings(MIDDLEWARE=settings.API_MIDDLEWARE):
            super().load_middleware(is_async)


django_asgi_app = Handler()
api_asgi_app = APIHandler()


async def reset_queries_if_logged(**kwargs: Any) -> None:
    """Django's `reset_queries` at the start of a request, on the request's thread, only
    where queries are logged (DEBUG): otherwise there is nothing to reset."""
    if settings.DEBUG:
        await sync_to_async(reset_queries)()


def quiet_request_start() -> None:
    """Django's receivers of `request_started` each cost a trip to the request's thread,
    for nothing here. A request's thread holds no open connection when the request
    starts: the last request on it closed them (pooled ones handed back) when it finished,
    as this one will. And outside DEBUG, no query log needs resetting."""
    request_started.disconnect(close_old_connections)
    request_started.disconnect(reset_queries)
    request_started.connect(reset_queries_if_logged)


quiet_request_start()


async def http(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["path"].startswith("/api/"):
        await api_asgi_app(scope, receive, send)
    else:
        await django_asgi_app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": http,
        "websocket": URLRouter(websocket_urlpatterns),
        # Servers that speak lifespan start the background work here; Daphne does not
        # (stepchange.server starts it).
        "lifespan": lifespan,
    }
)

# What is loaded by now lives as long as the process; the collector's full passes need not
# walk it again and again.
gc.freeze()
