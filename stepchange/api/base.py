"""The API's class and its two ways to authenticate: a bearer token, or the console's
session (with its CSRF token for unsafe methods). An operation that acts on an application
also names the permission it needs (`acting_with`): it is checked with the caller, before
django-ninja reads the body, so a refusal never depends on what was sent."""

from typing import Annotated, Any

from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.security import HttpBearer, SessionAuth
from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator

from stepchange.access import application_for, require
from stepchange.audit import audit_denied, mark_refusal_audited
from stepchange.http import HAS_NUL, contains_nul
from stepchange.services import bearer_authenticate

# What every error answer looks like, and which statuses each kind of operation may give.
ERROR_SCHEMA = {
    "type": "object",
    "properties": {"detail": {"title": "Detail"}},
    "required": ["detail"],
}
ERROR_MEANINGS = {
    400: "Invalid input: the detail names what is wrong.",
    401: "No session and no valid bearer token (or the API key is revoked or expired).",
    429: "Too many failed bearer tokens from this address (or with this token's prefix): "
    "wait the Retry-After header's seconds.",
    403: "Your role does not allow this (audited).",
    404: "No such application that you may see, or no such object in it.",
    409: "Not possible in the object's current state.",
    502: "The executor failed the request or disconnected while asked.",
    503: "No executor of the application is connected (or its system database is unreachable).",
    504: "The executor, or the system database, did not answer in time.",
}


# Operations on no application that only some roles may use.
ADMIN_PATHS = ("/api/v1/audit", "/api/v1/api-keys")


def error_statuses(path: str, method: str) -> list[int]:
    """The error statuses an operation may answer with, from where it sits."""
    statuses = [400, 401, 429]
    if "{app}" in path or path.startswith(ADMIN_PATHS):
        statuses.append(403)
    if "{key_id}" in path:
        statuses.append(404)
    if "{app}" in path:
        statuses += [404, 502, 503, 504]
        if method != "get":
            statuses.append(409)
    return sorted(statuses)


# Strict: a body is the documented object or it is refused. Lax parsing took `true`, `"x"`
# or `[null, null]` for "no body" (and ran the action), `false` for step 0 and "3" for 3.
STRICT = ConfigDict(strict=True, extra="forbid")


def _integral(value: Any) -> Any:
    """JSON's integers as JSON Schema counts them: 3 and 3.0, never true or "3"."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# A whole number in a body: `Integer` where a body field would be `int`. In a union, put
# the constraints before it, `Annotated[int, Field(ge=0), WHOLE] | None`, or the OpenAPI
# document loses them.
WHOLE = BeforeValidator(_integral)
Integer = Annotated[int, WHOLE]


class Body(BaseModel):
    """What every request body of the API is built on: exactly the documented JSON object
    (strict types, no unknown fields), whose text holds no NUL anywhere (no column can store
    one, Postgres would answer 500)."""

    model_config = STRICT

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        if contains_nul(data):
            raise ValueError(HAS_NUL.format(field="The body"))
        return data


ACTING_NEEDS_APP = "acting_with() guards operations whose path names an {app}."


class _ChecksTheApplication:
    """Authenticates as its base class does, then, when built with a permission, checks
    that the caller holds it on the application the path names (`application_for`: a 404
    or a 403, audited), or, built with `on_app=False`, that they hold it at all (a 403,
    audited). django-ninja runs authentication before it parses the body."""

    def __init__(self, permission: str | None = None, *, on_app: bool = True) -> None:
        super().__init__()
        self.permission = permission
        self.on_app = on_app

    def __call__(self, request: HttpRequest) -> Any:
        user = super().__call__(request)  # type: ignore[misc]
        if user and self.permission is not None:
            match = request.resolver_match
            if not self.on_app:
                _holding(request, self.permission)
            elif match is None or "app" not in match.kwargs:
                raise ImproperlyConfigured(ACTING_NEEDS_APP)
            else:
                application_for(request, match.kwargs["app"], self.permission)
        return user


def _holding(request: HttpRequest, permission: str) -> None:
    try:
        require(request.user, permission)
    except PermissionDenied as exc:
        audit_denied(request, exc)
        raise


class BearerToken(_ChecksTheApplication, HttpBearer):
    """`Authorization: Bearer sc_…`: a personal token, acting as its user; or `Bearer
    sck_…`: a scoped API key, acting as its owner narrowed to the key's scope."""

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        user = bearer_authenticate(raw=token.strip(), request=request)
        if user is None:
            # bearer_authenticate has recorded the rejected token; the 401 needs no more.
            mark_refusal_audited(request)
            return None
        request.user = user
        return user


class SessionCookie(_ChecksTheApplication, SessionAuth):
    """The console's session, as Django's middleware loaded it; unsafe methods need the
    CSRF token, as in the console."""

    def _get_key(self, request: HttpRequest) -> str | None:
        # No session cookie, nothing to forge: without this the CSRF check would answer a
        # caller who sent no credentials at all with 403 instead of 401.
        if not request.COOKIES.get(self.param_name):
            return None
        key: str | None = super()._get_key(request)
        return key


def acting_with(permission: str) -> list[Any]:
    """The `auth` of an operation that changes something in the path's `{app}`: either
    credential, and `permission` on the application, all before the body is read."""
    return [BearerToken(permission), SessionCookie(permission)]


def requiring(permission: str) -> list[Any]:
    """The `auth` of an operation on no application that needs `permission` (an admin's
    keys): either credential, and the permission, all before the body is read."""
    return [BearerToken(permission, on_app=False), SessionCookie(permission, on_app=False)]


class StepChangeAPI(NinjaAPI):
    """The API, whose OpenAPI document declares every operation's error answers: DESIGN.md
    promises them all, and clients (and schemathesis) should find them documented. No
    answer of it is cached: each says what is true now, for this caller."""

    def create_response(
        self, request: HttpRequest, data: Any, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        response = super().create_response(request, data, *args, **kwargs)
        response["Cache-Control"] = "no-store"
        return response

    def get_openapi_schema(self, **options: Any) -> Any:
        schema = super().get_openapi_schema(**options)
        for path, operations in schema["paths"].items():
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                declared = {str(status) for status in responses}
                for status in error_statuses(path, method):
                    if str(status) not in declared:
                        responses[status] = {
                            "description": ERROR_MEANINGS[status],
                            "content": {"application/json": {"schema": ERROR_SCHEMA}},
                        }
        return schema


def new_api() -> StepChangeAPI:
    return StepChangeAPI(
        title="StepChange API",
        version="1",
        description=(
            "Inspect and steer DBOS workflows. Authenticate with a session or a bearer token. "
            "No text anywhere in a request (path, query, body) may hold a NUL character "
            "(U+0000): no column can store one, and the request is refused (400; 404 in a path)."
        ),
        urls_namespace="api",
        openapi_url="/openapi.json",
        docs_url="/docs",
        auth=[BearerToken(), SessionCookie()],
    )
