"""Middleware: the console's chain run on the event loop, the audit of refused console
requests and of anonymous attempts to change anything (console and API), and the API's
response headers.

Django runs each classic middleware hook of an async request on a worker thread: two
thread hops per middleware per request, about 2.5 ms of a console page here for hooks
that do no I/O at all. The console's chain (settings.MIDDLEWARE) is made of the classes
below, which run their hooks on the event loop and hop to the thread only for the work
that needs the database (saving a changed session, auditing a refusal).
"""

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from asgiref.sync import markcoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib import auth
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django.middleware.security import SecurityMiddleware
from django.shortcuts import resolve_url
from django.urls import reverse
from django.utils.deprecation import MiddlewareMixin
from django.utils.functional import SimpleLazyObject

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


class OnTheLoop(MiddlewareMixin):
    """A MiddlewareMixin whose request and response hooks run on the event loop in async
    mode; `response_needs_thread` names the responses whose hook does I/O."""

    async def __acall__(self, request: HttpRequest) -> Any:
        response = None
        if hasattr(self, "process_request"):
            response = self.process_request(request)
        response = response or await self.get_response(request)  # type: ignore[misc]
        if hasattr(self, "process_response"):
            if self.response_needs_thread(request, response):
                response = await sync_to_async(self.process_response, thread_sensitive=True)(
                    request, response
                )
            else:
                response = self.process_response(request, response)
        return response

    def response_needs_thread(self, request: HttpRequest, response: HttpResponseBase) -> bool:
        return False


class Security(OnTheLoop, SecurityMiddleware):
    pass


class Common(OnTheLoop, CommonMiddleware):
    pass


class XFrameOptions(OnTheLoop, XFrameOptionsMiddleware):
    pass


class Messages(OnTheLoop, MessageMiddleware):
    """Messages live in a signed cookie (settings.MESSAGE_STORAGE), never in the session,
    so storing them does no I/O."""


class Session(OnTheLoop, SessionMiddleware):
    def response_needs_thread(self, request: HttpRequest, response: HttpResponseBase) -> bool:
        session = getattr(request, "session", None)
        # Only a save touches the database; reading flags of an unloaded session does not.
        return session is not None and (session.modified or settings.SESSION_SAVE_EVERY_REQUEST)


class Csrf(OnTheLoop, CsrfViewMiddleware):
    """The CSRF check on the event loop: it reads a cookie and the already-received body
    (CSRF_USE_SESSIONS is off)."""

    @property
    def process_view(self) -> Any:
        check = super().process_view
        if not self.async_mode:  # type: ignore[attr-defined]
            return check

        async def on_the_loop(*args: Any) -> Any:
            return check(*args)

        return on_the_loop


def _user(request: HttpRequest) -> Any:
    if not hasattr(request, "_cached_user"):
        user = auth.get_user(request)
        request._cached_user = request._acached_user = user  # type: ignore[attr-defined]
        # The user itself from now on, not the lazy proxy: a page reads the user's
        # attributes and permissions some 150 times, each through the proxy's lookups.
        request.user = user
    return request._cached_user  # type: ignore[attr-defined]


async def _auser(request: HttpRequest) -> Any:
    # One trip to the database thread loads the session and the user (Django's own
    # `auser` makes two), and `request.user` then shares what it found.
    if not hasattr(request, "_acached_user"):
        await db_async(_user)(request)
    return request._acached_user  # type: ignore[attr-defined]


class Authentication(OnTheLoop, AuthenticationMiddleware):
    def process_request(self, request: HttpRequest) -> None:
        super().process_request(request)
        request.user = SimpleLazyObject(lambda: _user(request))  # type: ignore[assignment]
        request.auser = lambda: _auser(request)


def audit_anonymous(request: HttpRequest, detail: str) -> None:
    audit_record(
        action=AuditAction.ACCESS_DENIED,
        request=request,
        result=Result.DENIED,
        target=f"{request.method} {request.path}",
        detail=detail,
    )


class AuditDeniedMiddleware(OnTheLoop):
    """Audits refusals once: a PermissionDenied from a view, and an unsafe request from
    someone not signed in (redirected to sign in, or refused by the CSRF check). Sync and
    async capable, so async views stay on the event loop."""

    def response_needs_thread(self, request: HttpRequest, response: HttpResponseBase) -> bool:
        # Whether someone is signed in may need the database; only unsafe methods ask.
        return request.method in UNSAFE_METHODS

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
