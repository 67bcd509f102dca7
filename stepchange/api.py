"""The JSON API under /api/v1/: authentication, error shapes, and the applications list.

Errors are always `{"detail": ...}` with the status DESIGN.md names. Later parts add their
routers to `api`.
"""

from datetime import datetime
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import aget_user
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.security import APIKeyCookie, HttpBearer

from conductor.relay import RelayError
from stepchange.access import PERM_INSPECT, require
from stepchange.asyncdb import db_async
from stepchange.audit import audit_denied
from stepchange.models import Application
from stepchange.services import api_token_authenticate


class BearerToken(HttpBearer):
    """`Authorization: Bearer sc_…`: a personal token, acting as its user."""

    async def __call__(self, request: HttpRequest) -> Any:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        user = await db_async(api_token_authenticate)(raw=token.strip(), request=request)
        if user is not None:
            request.user = user
        return user

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        raise NotImplementedError("BearerToken is asynchronous")


class SessionCookie(APIKeyCookie):
    """The console's session, read here rather than by middleware: the API is served
    without the console's middleware stack (see stepchange/asgi.py). Unsafe methods need
    the CSRF token, as in the console."""

    param_name = settings.SESSION_COOKIE_NAME

    async def __call__(self, request: HttpRequest) -> Any:
        key = self._get_key(request)
        if not key:
            return None
        request.session = import_module(settings.SESSION_ENGINE).SessionStore(key)
        user = await aget_user(request)
        if not user.is_authenticated:
            return None
        request.user = user
        return user

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        raise NotImplementedError("SessionCookie is asynchronous")


api = NinjaAPI(
    title="StepChange API",
    version="1",
    description="Inspect and steer DBOS workflows. Authenticate with a session or a bearer token.",
    urls_namespace="api",
    openapi_url="/openapi.json",
    docs_url="/docs",
    auth=[BearerToken(), SessionCookie()],
)


@api.exception_handler(PermissionDenied)
def _permission_denied(request: HttpRequest, exc: PermissionDenied) -> HttpResponse:
    audit_denied(request, exc)
    return api.create_response(request, {"detail": str(exc) or "Forbidden"}, status=403)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return api.create_response(
        request, {"detail": "Authentication required: a session or a bearer token."}, status=401
    )


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return api.create_response(request, {"detail": str(exc) or "Not found."}, status=404)


@api.exception_handler(RelayError)
def _relay_failed(request: HttpRequest, exc: RelayError) -> HttpResponse:
    return api.create_response(request, {"detail": str(exc)}, status=exc.status)


@api.exception_handler(NinjaValidationError)
def _invalid(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    return api.create_response(request, {"detail": exc.errors}, status=400)


APP_NOT_FOUND = "No application named {name!r} that you may see."


def application_for(request: HttpRequest, name: str, permission: str = PERM_INSPECT) -> Application:
    """The application `name` if the caller may see it (else 404) and holds `permission`
    on it (else 403, audited)."""
    application = Application.objects.visible_to(request.user).filter(name=name).first()
    if application is None:
        raise Http404(APP_NOT_FOUND.format(name=name))
    try:
        # Visibility was checked by the query above; what is left is the role.
        require(request.user, permission)
    except PermissionDenied as exc:
        # Audited here, in sync code: async views cannot write from the error handler.
        audit_denied(request, exc, application=application)
        raise
    return application


def _caller(request: HttpRequest, name: str, permission: str) -> tuple[Application, str]:
    return application_for(request, name, permission), request.user.get_username()


async def resolve(
    request: HttpRequest, name: str, permission: str = PERM_INSPECT
) -> tuple[Application, str]:
    """For async endpoints: the application (checked as `application_for` does) and the
    caller's name, in one trip to the database thread. That trip also hands the thread's
    connection back to the pool, so a request waiting on an executor holds none."""
    found: tuple[Application, str] = await db_async(_caller)(request, name, permission)
    return found


class ApplicationOut(Schema):
    name: str
    notes: str
    has_system_database: bool
    system_database_schema: str
    recovery_grace_seconds: int
    connected_executors: int
    created_at: datetime


@api.get("/apps", response=list[ApplicationOut], tags=["applications"])
def list_apps(request: HttpRequest) -> list[dict[str, Any]]:
    """Registered applications the caller may see, with connected executor counts."""
    return [
        {
            "name": application.name,
            "notes": application.notes,
            "has_system_database": bool(application.system_database_url),
            "system_database_schema": application.system_database_schema,
            "recovery_grace_seconds": application.recovery_grace_seconds,
            "connected_executors": application.live_executors,  # type: ignore[attr-defined]
            "created_at": application.created_at,
        }
        for application in Application.objects.visible_to(request.user).with_live_executor_counts()
    ]
