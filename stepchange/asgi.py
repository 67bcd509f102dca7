"""ASGI entry point: HTTP to Django, WebSockets to the Channels consumers.

The JSON API gets its own Django handler with a short, async-native middleware list.
Django runs every classic middleware hook on a worker thread in async mode; the console's
stack costs over a dozen thread hops per request, which the API, with its own bearer and
session authentication, does not need.
"""

import os
from typing import Any

from django.core.asgi import get_asgi_application
from django.core.handlers.asgi import ASGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stepchange.settings")
# Django must be set up before anything imports models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.signals import request_started  # noqa: E402
from django.db import close_old_connections  # noqa: E402
from django.test.utils import override_settings  # noqa: E402

from conductor.routing import websocket_urlpatterns  # noqa: E402

# Django's ASGI handler gives every request a thread of its own for database work, which
# holds no connection when the request starts: closing old connections there would only
# cost a trip to that thread. They are still closed (pooled ones handed back) when the
# request finishes, on that thread.
request_started.disconnect(close_old_connections)


class APIHandler(ASGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        # Django builds the chain from settings.MIDDLEWARE; give it the API's list.
        with override_settings(MIDDLEWARE=settings.API_MIDDLEWARE):
            super().load_middleware(is_async)


api_asgi_app = APIHandler()


async def http(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["path"].startswith("/api/"):
        await api_asgi_app(scope, receive, send)
    else:
        await django_asgi_app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": http,
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
