"""The JSON API under /api/v1/: authentication, error shapes, and the applications list.

Errors are always `{"detail": ...}` with the status DESIGN.md names. Later parts add their
routers to `api`.
"""

from datetime import datetime
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.security import HttpBearer, SessionAuth

from stepchange.audit import audit_denied
from stepchange.models import Application
from stepchange.services import api_token_authenticate


class BearerToken(HttpBearer):
    """`Authorization: Bearer sc_…`: a personal token, acting as its user."""

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        user = api_token_authenticate(raw=token, request=request)
        if user is not None:
            request.user = user
        return user


api = NinjaAPI(
    title="StepChange API",
    version="1",
    description="Inspect and steer DBOS workflows. Authenticate with a session or a bearer token.",
    urls_namespace="api",
    openapi_url="/openapi.json",
    docs_url="/docs",
    auth=[BearerToken(), SessionAuth()],
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


@api.exception_handler(NinjaValidationError)
def _invalid(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    return api.create_response(request, {"detail": exc.errors}, status=400)


class ApplicationOut(Schema):
    name: str
    notes: str
    has_system_database: bool
    system_database_schema: str
    recovery_grace_seconds: int
    created_at: datetime


@api.get("/apps", response=list[ApplicationOut], tags=["applications"])
def list_apps(request: HttpRequest) -> list[dict[str, Any]]:
    """Registered applications the caller may see."""
    return [
        {
            "name": application.name,
            "notes": application.notes,
            "has_system_database": bool(application.system_database_url),
            "system_database_schema": application.system_database_schema,
            "recovery_grace_seconds": application.recovery_grace_seconds,
            "created_at": application.created_at,
        }
        for application in Application.objects.visible_to(request.user)
    ]
