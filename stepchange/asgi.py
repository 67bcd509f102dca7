"""ASGI entry point: HTTP to Django's own handler, WebSockets to the Channels consumers."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stepchange.settings")
# Django is set up here, before anything imports models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from conductor.routing import websocket_urlpatterns  # noqa: E402
from stepchange.background import lifespan  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(websocket_urlpatterns),
        # Servers that speak lifespan start the background work here; Daphne does not
        # (stepchange.server starts it).
        "lifespan": lifespan,
    }
)
