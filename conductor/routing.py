"""WebSocket routes. The executor route takes no origin check (executors send no Origin
header); the console route requires a session and an allowed origin."""

from channels.auth import AuthMiddlewareStack
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path, re_path

from conductor.consumers import ConsoleConsumer, ExecutorConsumer, refuse_unrouted

websocket_urlpatterns = [
    path("websocket/<str:app_name>/<str:key>", ExecutorConsumer.as_asgi()),
    path(
        "ws/console/",
        AllowedHostsOriginValidator(AuthMiddlewareStack(ConsoleConsumer.as_asgi())),
    ),
    # Last: every other path (a trailing slash, a prefix, another case, an encoded slash)
    # is refused rather than failing with a traceback that shows the path.
    re_path(r"", refuse_unrouted),  # type: ignore[arg-type]
]
