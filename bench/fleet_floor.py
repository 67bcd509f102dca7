"""The floor for bench/fleet.py: a Daphne process whose only application is a Channels
consumer that accepts every WebSocket and does nothing else.

    daphne --websocket_timeout -1 -b 127.0.0.1 -p PORT bench.fleet_floor:application

What such a process costs with N idle sockets (memory, CPU at rest) is what Daphne and
Channels cost; whatever StepChange holding N executors costs beyond it is StepChange's.
bench/fleet.py starts it beside StepChange and connects the same number of sockets to it.
"""

from typing import Any

import django
from django.conf import settings

if not settings.configured:
    # The least Channels needs: an in-memory channel layer, as the embedded default has.
    settings.configure(
        CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}},
        INSTALLED_APPS=["channels"],
    )
    django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import ProtocolTypeRouter


class IdleConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    """Accepts, and ignores whatever comes (pings are answered by Daphne itself)."""

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        return None


async def _no_http(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


application = ProtocolTypeRouter({"http": _no_http, "websocket": IdleConsumer.as_asgi()})
