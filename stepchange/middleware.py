"""Middleware: audit of refused console requests, and the API's response headers."""

from collections.abc import Awaitable, Callable

from asgiref.sync import markcoroutinefunction
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.utils.deprecation import MiddlewareMixin

from stepchange.audit import audit_denied


class AuditDeniedMiddleware(MiddlewareMixin):
    """Sync and async capable (MiddlewareMixin), so async views stay on the event loop."""

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        if isinstance(exception, PermissionDenied):
            audit_denied(request, exception)


def api_headers(
    get_response: Callable[[HttpRequest], Awaitable[HttpResponse]],
) -> Callable[[HttpRequest], Awaitable[HttpResponse]]:
    """The headers SecurityMiddleware and CommonMiddleware would add, for the API's
    async-only chain."""

    async def middleware(request: HttpRequest) -> HttpResponse:
        response = await get_response(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Cache-Control", "no-store")
        if not response.streaming and "Content-Length" not in response.headers:
            # As CommonMiddleware does for the console: clients can reuse the connection.
            response.headers["Content-Length"] = str(len(response.content))
        return response

    markcoroutinefunction(middleware)
    return middleware


api_headers.sync_capable = False  # type: ignore[attr-defined]
api_headers.async_capable = True  # type: ignore[attr-defined]
