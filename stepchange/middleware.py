"""StepChange's own middleware, for the console and the API alike: the refusal of text no
column can hold, and the audit of refused requests (a PermissionDenied from a view, and an
unsafe request from someone not signed in)."""

from collections.abc import Callable
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import BadRequest, PermissionDenied
from django.http import Http404, HttpRequest, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import resolve_url
from django.urls import reverse

from stepchange.api.errors import API_PREFIX, CONDUCTOR_PREFIX, PROBLEM_CONTENT_TYPE, problem
from stepchange.audit import (
    REFUSAL_AUDITED,
    UNSAFE_METHODS,
    AuditAction,
    Result,
    audit_denied,
    audit_record,
    mark_refusal_audited,
)
from stepchange.http import HAS_NUL, NUL, contains_nul

ANONYMOUS_401 = "Authentication required: no valid session or bearer token."
ANONYMOUS_403 = "Refused before authentication (403), as by a failed CSRF check."
ANONYMOUS_REDIRECT = "Authentication required: sent to the sign-in page."
# The sign-in views audit their own attempts (auth.login, auth.login_failed, auth.logout).
AUTH_VIEWS = frozenset({"login", "logout"})


NUL_IN_PATH = "Not found: no id holds a NUL character."
FORM_CONTENT_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def nul_refusal(request: HttpRequest) -> tuple[int, str] | None:
    """(404 or 400, why) when the request carries a NUL where a query would meet it: in the
    path (ids), the query string (filters), a console form, the bearer token or the session
    cookie. JSON bodies are the API's schemas' to check (stepchange/api/base.py)."""
    if NUL in request.path:
        return 404, NUL_IN_PATH
    fields = [("query parameter", request.GET)]
    api = request.path.startswith((API_PREFIX, CONDUCTOR_PREFIX))
    if request.content_type in FORM_CONTENT_TYPES and not api:
        fields.append(("form field", request.POST))
    for kind, data in fields:
        for key, values in data.lists():
            if contains_nul(key) or contains_nul(values):
                return 400, HAS_NUL.format(field=f"The {kind} {key!r}")
    if contains_nul(request.headers.get("Authorization", "")):
        return 400, HAS_NUL.format(field="The Authorization header")
    if contains_nul(request.COOKIES.get(settings.SESSION_COOKIE_NAME, "")):
        return 400, HAS_NUL.format(field="The session cookie")
    return None


class RefuseNulMiddleware:
    """Refuses a NUL before any query: Postgres cannot store or compare one and would answer
    500, SQLite would quietly take it. The API answers `{"detail": ...}`, the
    Conductor-compatible API its problem details, the console its error page. Early in
    the chain, before the session or a token is looked up; synchronous like the rest of
    the chain (see AuditRefusalsMiddleware)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        return self.refuse(request) or self.get_response(request)

    def refuse(self, request: HttpRequest) -> HttpResponseBase | None:
        refusal = nul_refusal(request)
        if refusal is None:
            return None
        status, detail = refusal
        if request.path.startswith(API_PREFIX):
            return JsonResponse({"detail": detail}, status=status)
        if request.path.startswith(CONDUCTOR_PREFIX):
            response = JsonResponse(
                problem(status, detail), status=status, content_type=PROBLEM_CONTENT_TYPE
            )
            response["Cache-Control"] = "no-store"
            return response
        if status == 404:
            raise Http404(detail)
        raise BadRequest(detail)


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
