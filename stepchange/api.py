"""The JSON API under /api/v1/: authentication, error shapes, the applications list and
the audit log.

Errors are always `{"detail": ...}` with the status DESIGN.md names. Later parts add their
routers to `api`.
"""

import functools
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from importlib import import_module
from typing import Any, overload

from asgiref.sync import markcoroutinefunction
from django.conf import settings
from django.contrib.auth import aget_user, get_user
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from ninja import NinjaAPI, Query, Schema
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.security import APIKeyCookie, HttpBearer

from conductor.protocol import ProtocolError
from conductor.relay import RelayError
from stepchange.access import (
    PERM_ADMINISTER,
    PERM_INSPECT,
    application_named,
    can_see,
    login_required,
    require,
)
from stepchange.asyncdb import db_async
from stepchange.audit import AuditAction, Result, audit_denied, audit_record
from stepchange.middleware import UNSAFE_METHODS, mark_refusal_audited
from stepchange.models import Application
from stepchange.paging import newest_first
from stepchange.services import api_token_authenticate
from stepchange.views import EXPORT_FORMATS, AuditFilterForm, audit_export, audit_item


@dataclass(frozen=True)
class Unchecked:
    """Credentials that an endpoint checks in its own trip to the database thread (`settle`,
    called by `caller`) instead of a trip of their own: a bearer token and the session
    cookie beside it, or the session cookie alone (token None: no bearer token sent)."""

    token: str | None
    session_key: str


class BearerToken(HttpBearer):
    """`Authorization: Bearer sc_…`: a personal token, acting as its user. Deferred, it is
    checked later, by `settle` (see `DEFERRED_AUTH`)."""

    def __init__(self, *, deferred: bool = False) -> None:
        super().__init__()
        self.deferred = deferred

    async def __call__(self, request: HttpRequest) -> Any:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        if self.deferred:
            return Unchecked(token.strip(), request.COOKIES.get(settings.SESSION_COOKIE_NAME, ""))
        user = await db_async(api_token_authenticate)(raw=token.strip(), request=request)
        if user is None:
            # api_token_authenticate has recorded the rejected token; the 401 needs no more.
            mark_refusal_audited(request)
        else:
            request.user = user
        return user

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        raise NotImplementedError("BearerToken is asynchronous")


class SessionCookie(APIKeyCookie):
    """The console's session, read here rather than by middleware: the API is served
    without the console's middleware stack (see stepchange/asgi.py). Unsafe methods need
    the CSRF token, as in the console."""

    param_name = settings.SESSION_COOKIE_NAME

    def __init__(self, *, deferred: bool = False) -> None:
        super().__init__()
        self.deferred = deferred

    async def __call__(self, request: HttpRequest) -> Any:
        # No session cookie, nothing to forge: without this the CSRF check would answer a
        # caller who sent no credentials at all with 403 instead of 401.
        if not request.COOKIES.get(self.param_name):
            return None
        key = self._get_key(request)
        if not key:
            return None
        if self.deferred:
            if request.method in UNSAFE_METHODS:
                raise ValueError("deferred session authentication is for reads only")
            return Unchecked(None, key)
        request.session = import_module(settings.SESSION_ENGINE).SessionStore(key)
        user = await aget_user(request)
        if not user.is_authenticated:
            return None
        request.user = user
        return user

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        raise NotImplementedError("SessionCookie is asynchronous")


# For read endpoints whose first act is `caller` (through `resolve` or its own trip): the
# credentials are checked in that trip, not in one of their own (0.2-0.3 ms a request).
DEFERRED_AUTH = [BearerToken(deferred=True), SessionCookie(deferred=True)]


def settle(request: HttpRequest) -> None:
    """On the database thread: check the credentials a deferred authentication left
    unchecked, as the two classes above check them undeferred (a rejected token is audited
    and the session, if any, is tried next); not good, AuthenticationError (401)."""
    unchecked = getattr(request, "auth", None)
    if not isinstance(unchecked, Unchecked):
        return
    # Checked once, whatever comes of it (settle_before_answering asks again otherwise).
    request.auth = None  # type: ignore[attr-defined]
    user = None
    if unchecked.token is not None:
        user = api_token_authenticate(raw=unchecked.token, request=request)
    if user is None and unchecked.session_key:
        request.session = import_module(settings.SESSION_ENGINE).SessionStore(unchecked.session_key)
        user = get_user(request)
        if not user.is_authenticated:
            user = None
    if user is None:
        if unchecked.token is not None:
            # api_token_authenticate has recorded the rejected token; the 401 needs no more.
            mark_refusal_audited(request)
        raise AuthenticationError()
    request.user = user
    request.auth = user  # type: ignore[attr-defined]


def settle_before_answering(
    get_response: Callable[[HttpRequest], Awaitable[HttpResponse]],
) -> Callable[[HttpRequest], Awaitable[HttpResponse]]:
    """API middleware: an answer given before a deferred endpoint checked the caller's
    credentials (its input refused by validation, say) waits for them to be checked; if
    they are not good, the answer is the 401 any endpoint gives them, the rejected token
    audited, rather than what the input would have got."""

    async def middleware(request: HttpRequest) -> HttpResponse:
        response = await get_response(request)
        if isinstance(getattr(request, "auth", None), Unchecked):
            try:
                await db_async(settle)(request)
            except AuthenticationError:
                return _unauthenticated(request, AuthenticationError())
        return response

    markcoroutinefunction(middleware)
    return middleware


settle_before_answering.sync_capable = False  # type: ignore[attr-defined]
settle_before_answering.async_capable = True  # type: ignore[attr-defined]


# What every error answer looks like, and which statuses each kind of operation may give.
ERROR_SCHEMA = {
    "type": "object",
    "properties": {"detail": {"title": "Detail"}},
    "required": ["detail"],
}
ERROR_MEANINGS = {
    400: "Invalid input: the detail names what is wrong.",
    401: "No session and no valid bearer token.",
    403: "Your role does not allow this (audited).",
    404: "No such application that you may see, or no such object in it.",
    409: "Not possible in the object's current state.",
    502: "The executor failed the request or disconnected while asked.",
    503: "No executor of the application is connected (or its system database is unreachable).",
    504: "The executor, or the system database, did not answer in time.",
}


def error_statuses(path: str, method: str) -> list[int]:
    """The error statuses an operation may answer with, from where it sits."""
    statuses = [400, 401]
    if "{app}" in path or path.startswith("/api/v1/audit"):
        statuses.append(403)
    if "{app}" in path:
        statuses += [404, 502, 503, 504]
        if method != "get":
            statuses.append(409)
    return sorted(statuses)


class StepChangeAPI(NinjaAPI):
    """The API, whose OpenAPI document declares every operation's error answers: DESIGN.md
    promises them all, and clients (and schemathesis) should find them documented."""

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


api = StepChangeAPI(
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


@api.exception_handler(ProtocolError)
def _unsendable(request: HttpRequest, exc: ProtocolError) -> HttpResponse:
    # What the caller asked for cannot be put into a valid executor request: their input.
    return api.create_response(request, {"detail": str(exc)}, status=400)


@api.exception_handler(NinjaValidationError)
def _invalid(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    return api.create_response(request, {"detail": exc.errors}, status=400)


APP_NOT_FOUND = "No application named {name!r} that you may see."


def application_for(request: HttpRequest, name: str, permission: str = PERM_INSPECT) -> Application:
    """The application `name` if the caller may see it (else 404, audited when the request
    would change something) and holds `permission` on it (else 403, audited)."""
    application = application_named(name)
    if application is not None and not can_see(request.user, application):
        application = None
    if application is None:
        missing = Http404(APP_NOT_FOUND.format(name=name))
        if request.method in UNSAFE_METHODS:
            # Trying to act on an application one may not see is a refused attempt, audited
            # as a 403 is; the 404 only hides whether it exists. A read that misses is not.
            audit_record(
                action=AuditAction.ACCESS_DENIED,
                request=request,
                # Cut to the column: the path may name anything, a real name is no longer.
                application_name=name[: Application._meta.get_field("name").max_length],
                result=Result.DENIED,
                target=f"{request.method} {request.path}",
                detail=str(missing),
            )
            mark_refusal_audited(request)
        raise missing
    try:
        # Visibility was checked by the query above; what is left is the role.
        require(request.user, permission)
    except PermissionDenied as exc:
        # Audited here, in sync code: async views cannot write from the error handler.
        audit_denied(request, exc, application=application)
        raise
    return application


def caller(request: HttpRequest, name: str, permission: str) -> tuple[Application, str]:
    """`resolve`, on the database thread already (deferred credentials checked first)."""
    settle(request)
    return application_for(request, name, permission), request.user.get_username()


async def resolve(
    request: HttpRequest, name: str, permission: str = PERM_INSPECT
) -> tuple[Application, str]:
    """For async endpoints: the application (checked as `application_for` does) and the
    caller's name, in one trip to the database thread. That trip also hands the thread's
    connection back to the pool, so a request waiting on an executor holds none."""
    found: tuple[Application, str] = await db_async(caller)(request, name, permission)
    return found


OnThread = Callable[..., HttpResponse | None]


def _signed_in_application(
    request: HttpRequest,
    name: str,
    permission: str,
    then: OnThread | None = None,
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
) -> tuple[Application | None, HttpResponse | None]:
    if not request.user.is_authenticated:
        return None, None
    application = application_for(request, name, permission)
    page = None if then is None else then(request, application, *args, **(kwargs or {}))
    return application, page


View = Callable[..., Coroutine[Any, Any, HttpResponse]]


@overload
def app_view(view: View) -> View: ...


@overload
def app_view(*, on_thread: OnThread) -> Callable[[View], View]: ...


def app_view(view: View | None = None, *, on_thread: OnThread | None = None) -> Any:
    """For the console's async read views of one application: the signed-in user and the
    application (checked as `application_for` does, for PERM_INSPECT) in one trip to the
    database thread, rather than one for `login_required` and one for the application.
    The view gets the application in place of the URL's `app_name`; someone not signed
    in is sent to sign in, as by `login_required`.

    `on_thread(request, application, ...)`, if given, runs in that same trip: it makes
    the whole page when it can do so there (the system database is read there), or
    returns None for the view to make it (an executor must be asked, which is awaited)."""
    if view is None:
        return functools.partial(app_view, on_thread=on_thread)
    guarded = login_required(view)

    @functools.wraps(view)
    async def wrapper(
        request: HttpRequest, *args: Any, app_name: str, **kwargs: Any
    ) -> HttpResponse:
        application, page = await db_async(_signed_in_application)(
            request, app_name, PERM_INSPECT, on_thread, args, kwargs
        )
        if application is None:
            # The user is known by now: login_required redirects with no further trip.
            return await guarded(request, *args, app_name=app_name, **kwargs)
        if page is not None:
            return page
        return await view(request, application, *args, **kwargs)

    return wrapper


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


MAX_AUDIT_LIMIT = 500
BAD_LIMIT = "limit must be between 1 and {most}; got {value}"
BAD_FORMAT = "format must be csv or json; got {value!r}"
# The console form's field names, as the API's parameters call them.
AUDIT_PARAMETERS = {"application": "app", "before": "cursor"}


class AuditFilters(Schema):
    actor: str = ""
    app: str = ""
    action: str = ""
    target: str = ""
    result: str = ""
    since: str = ""
    until: str = ""

    def form(self, **more: str) -> AuditFilterForm:
        """The console's filter form, bound to these parameters; a bad one is a 400."""
        data = self.model_dump(include=set(AuditFilters.model_fields))
        data["application"] = data.pop("app")
        form = AuditFilterForm({**data, **more})
        if not form.is_valid():
            field, errors = next(iter(form.errors.items()))
            message = " ".join(map(str, errors))
            raise HttpError(400, f"{AUDIT_PARAMETERS.get(field, field)}: {message}")
        return form


class AuditPageQuery(AuditFilters):
    limit: int = 50
    cursor: str = ""


class AuditExportQuery(AuditFilters):
    format: str = "json"


class AuditRecordOut(Schema):
    id: int
    created_at: datetime
    actor_name: str
    role: str
    application_name: str
    action: str
    target: str
    parameters: Any
    result: str
    detail: str
    reason: str
    source_address: str | None
    request_id: str
    response: Any
    value_diff: Any


class AuditPage(Schema):
    items: list[AuditRecordOut]
    next_cursor: str | None


@api.get("/audit", response=AuditPage, tags=["audit"])
def list_audit(request: HttpRequest, query: Query[AuditPageQuery]) -> dict[str, Any]:
    """Audit records, newest first. Admins only. `action` matches a prefix (`workflow.`),
    `target` a part; `since` and `until` are ISO 8601 times."""
    require(request.user, PERM_ADMINISTER)
    if not 1 <= query.limit <= MAX_AUDIT_LIMIT:
        raise HttpError(400, BAD_LIMIT.format(most=MAX_AUDIT_LIMIT, value=query.limit))
    form = query.form(before=query.cursor)
    page = newest_first(form.records(), before=form.cleaned_data["before"], size=query.limit)
    return {
        "items": [audit_item(record) for record in page.items],
        "next_cursor": str(page.next_before) if page.next_before else None,
    }


@api.get("/audit/export", tags=["audit"])
def export_audit(request: HttpRequest, query: Query[AuditExportQuery]) -> StreamingHttpResponse:
    """Every matching record, newest first, as one CSV or JSON download (audited)."""
    require(request.user, PERM_ADMINISTER)
    if query.format not in EXPORT_FORMATS:
        raise HttpError(400, BAD_FORMAT.format(value=query.format))
    return audit_export(request, query.form(), as_format=query.format)
