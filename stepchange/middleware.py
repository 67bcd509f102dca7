"""The one middleware of StepChange's own: the audit of refused requests (a
PermissionDenied from a view, and an unsafe request from someone not signed in), for the
console and the API alike."""

from collections.abc import Callable
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.shortcuts import resolve_url
from django.urls import reverse

from stepchange.audit import (
    REFUSAL_AUDITED,
    UNSAFE_METHODS,
    AuditAction,
    Result,
    audit_denied,
    audit_record,
    mark_refusal_audited,
)

ANONYMOUS_401 = "Authentication required: no valid session or bearer token."
ANONYMOUS_403 = "Refused before authentication (403), as by a failed CSRF check."
ANONYMOUS_REDIRECT = "Authentication required: sent to the sign-in page."
# The sign-in views audit their own attempts (auth.login, auth.login_failed, auth.logout).
AUTH_VIEWS = frozenset({"login", "logout"})


def _login_paths() -> set[str]:
    return {resolve_url(settings.LOGIN_URL), reverse("admin:login")}


def anonymous_refusal(request: HttpRequest, response: HttpResponseBase) -> str | None:
    """Why a request without a signed-in user was refused an unsafe method, or None if it
    was not (or its refusal is already audited)."""
    if request.method not in UNSAFE_METHODS or getattr(request, REFUSAL_AUDITED, False):
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


class AuditRefusalsMiddleware:
    """Audits refusals once: a PermissionDenied from a view, and an unsafe request from
    someone not signed in (redirected to sign in, refused by the CSRF check, or a 401 from
    the API).

    Synchronous only, and last in MIDDLEWARE: Django then runs the whole chain in one trip
    to the request's thread, and async views on the event loop, instead of two trips for
    each of its middleware (Django's own run each hook on the thread in async mode)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if detail := anonymous_refusal(request, response):
            audit_anonymous(request, detail)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        if isinstance(exception, PermissionDenied):
            audit_denied(request, exception)
            mark_refusal_audited(request)
