"""WebSocket routes. The executor route takes no origin check (executors send no Origin
header); the console route requires a session and an allowed origin."""

from channels.auth import AuthMiddlewareStack
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path

from conductor.consumers import ConsoleConsumer, ExecutorConsumer

websocket_urlpatterns = [
    path("websocket/<str:app_name>/<str:key>", ExecutorConsumer.as_asgi()),
    path(
        "ws/console/",
        AllowedHostsOriginValidator(AuthMiddlewareStack(ConsoleConsumer.as_asgi())),
    ),
]
