"""Middleware: audit of refused console requests, of anonymous attempts to change
anything (console and API), and the API's response headers."""

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from asgiref.sync import markcoroutinefunction
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import resolve_url
from django.urls import reverse
from django.utils.deprecation import MiddlewareMixin

from stepchange.asyncdb import db_async
from stepchange.audit import AuditAction, Result, audit_denied, audit_record

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ANONYMOUS_401 = "Authentication required: no valid session or bearer token."
ANONYMOUS_403 = "Refused before authentication (403), as by a failed CSRF check."
ANONYMOUS_REDIRECT = "Authentication required: sent to the sign-in page."
# The sign-in views audit their own attempts (auth.login, auth.login_failed, auth.logout).
AUTH_VIEWS = frozenset({"login", "logout"})
_AUDITED = "_stepchange_refusal_audited"


def mark_refusal_audited(request: HttpRequest) -> None:
    """Say that this request's refusal is already on record, so no middleware adds one."""
    setattr(request, _AUDITED, True)


def _login_paths() -> set[str]:
    return {resolve_url(settings.LOGIN_URL), reverse("admin:login")}


def anonymous_refusal(request: HttpRequest, response: HttpResponseBase) -> str | None:
    """Why a request without a signed-in user was refused an unsafe method, or None if it
    was not (or its refusal is already audited)."""
    if request.method not in UNSAFE_METHODS or getattr(request, _AUDITED, False):
        return None
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return None
    status = response.status_code
    match = request.resolver_match
    if match is not None and match.view_name in AUTH_VIEWS and status != 403:
        # Only a 403 from the CSRF check, which runs before the view, escapes their audit.
        return None
    if status == 401:
        return ANONYMOUS_401
    if status == 403:
        return ANONYMOUS_403
    if 300 <= status < 400 and urlsplit(response.get("Location", "")).path in _login_paths():
        return ANONYMOUS_REDIRECT
    return None


def audit_anonymous(request: HttpRequest, detail: str) -> None:
    audit_record(
        action=AuditAction.ACCESS_DENIED,
        request=request,
        result=Result.DENIED,
        target=f"{request.method} {request.path}",
        detail=detail,
    )


class AuditDeniedMiddleware(MiddlewareMixin):
    """Audits refusals once: a PermissionDenied from a view, and an unsafe request from
    someone not signed in (redirected to sign in, or refused by the CSRF check). Sync and
    async capable (MiddlewareMixin), so async views stay on the event loop."""

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        if isinstance(exception, PermissionDenied):
            audit_denied(request, exception)
            mark_refusal_audited(request)

    def process_response(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        # The test client also sends API requests through this chain rather than the API's.
        if detail := anonymous_refusal(request, response):
            audit_anonymous(request, detail)
        return response


def api_headers(
    get_response: Callable[[HttpRequest], Awaitable[HttpResponse]],
) -> Callable[[HttpRequest], Awaitable[HttpResponse]]:
    """The headers SecurityMiddleware and CommonMiddleware would add, for the API's
    async-only chain; and the audit of unsafe requests it refused for want of a user."""

    async def middleware(request: HttpRequest) -> HttpResponse:
        response = await get_response(request)
        if detail := anonymous_refusal(request, response):
            await db_async(audit_anonymous)(request, detail)
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
