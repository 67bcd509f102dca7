"""The API's own endpoints: the applications the caller may see, the audit log, and
scoped API keys."""

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from django.core.exceptions import ValidationError
from django.http import HttpRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from ninja import Field, Query, Router, Schema, Status
from ninja.errors import HttpError
from pydantic import BeforeValidator

from conductor.registry import with_live_executor_counts
from stepchange.access import require, users_within, visible_to
from stepchange.api.base import BearerToken, Body, requiring
from stepchange.auditlog import AuditFilterForm, audit_export, audit_item
from stepchange.models import ApiKey
from stepchange.paging import newest_first
from stepchange.roles import PERM_ADMINISTER, SCOPE_NAMES
from stepchange.services import api_key_create, api_key_revoke, api_keys_within

router = Router()


class ApplicationOut(Schema):
    name: str
    notes: str
    has_system_database: bool
    system_database_schema: str
    recovery_grace_seconds: int
    connected_executors: int
    created_at: datetime


@router.get("/apps", response=list[ApplicationOut], tags=["applications"])
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
        for application in with_live_executor_counts(visible_to(request.user))
    ]


MAX_AUDIT_LIMIT = 500
TIME_HELP = "ISO 8601, such as 2026-11-21T10:00:00+00:00, or a date."
# The console form's field names, as the API's parameters call them.
AUDIT_PARAMETERS = {"application": "app", "before": "cursor"}


def _iso_only(value: Any) -> Any:
    # Pydantic would also read a bare number as seconds since 1970: not a time we document.
    if isinstance(value, str) and not ISO_START.match(value):
        raise ValueError(TIME_HELP)
    return value


ISO_START = re.compile(r"^\d{4}-")
Instant = Annotated[datetime, BeforeValidator(_iso_only)]


class AuditFilters(Schema):
    actor: str = ""
    app: str = ""
    action: str = ""
    target: str = ""
    result: Literal["", "ok", "denied", "failed"] = ""
    # Parsed here, so the document can say what a time is; the form takes them as text.
    since: Instant | None = Field(default=None, description=TIME_HELP)
    until: Instant | None = Field(default=None, description=TIME_HELP)

    def form(self, **more: str) -> AuditFilterForm:
        """The console's filter form, bound to these parameters; a bad one is a 400."""
        data = self.model_dump(include=set(AuditFilters.model_fields))
        data["application"] = data.pop("app")
        for name in ("since", "until"):
            data[name] = data[name].isoformat() if data[name] else ""
        form = AuditFilterForm({**data, **more})
        if not form.is_valid():
            field, errors = next(iter(form.errors.items()))
            message = " ".join(map(str, errors))
            raise HttpError(400, f"{AUDIT_PARAMETERS.get(field, field)}: {message}")
        return form


class AuditPageQuery(AuditFilters):
    limit: int = Field(default=50, ge=1, le=MAX_AUDIT_LIMIT)
    cursor: str = Field(default="", pattern=r"^[0-9]*$", description="A `next_cursor`.")


class AuditExportQuery(AuditFilters):
    format: Literal["csv", "json"] = "json"


class AuditRecordOut(Schema):
    id: int
    created_at: datetime
    actor_name: str
    role: str
    api_key_id: int | None = Field(description="The API key the actor acted through, if any.")
    api_key_name: str | None
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


@router.get("/audit", response=AuditPage, tags=["audit"])
def list_audit(request: HttpRequest, query: Query[AuditPageQuery]) -> dict[str, Any]:
    """Audit records, newest first. Admins only. `action` matches a prefix (`workflow.`),
    `target` a part; `since` and `until` are ISO 8601 times."""
    require(request.user, PERM_ADMINISTER)
    form = query.form(before=query.cursor)
    page = newest_first(
        form.records(request.user), before=form.cleaned_data["before"], size=query.limit
    )
    return {
        "items": [audit_item(record) for record in page.items],
        "next_cursor": str(page.next_before) if page.next_before else None,
    }


# A bearer token only: the export writes an audit record, and a GET that a session cookie
# could authorise would let any page a signed-in admin visits start one.
@router.get("/audit/export", tags=["audit"], auth=[BearerToken()])
def export_audit(request: HttpRequest, query: Query[AuditExportQuery]) -> StreamingHttpResponse:
    """Every matching record, newest first, as one CSV or JSON download (audited). Takes a
    bearer token, not the console's session: the console exports with a POST."""
    require(request.user, PERM_ADMINISTER)
    return audit_export(request, query.form(), as_format=query.format)


ScopeName = Literal["read", "act", "admin"]
SCOPE_PERMISSIONS = {name: perm for perm, name in SCOPE_NAMES.items()}
OWNER_UNKNOWN = "No user named {name!r} that you manage."
APPLICATIONS_UNKNOWN = "No applications named {names} that you may see."


class ApiKeyOut(Schema):
    id: int
    name: str
    prefix: str
    owner: str
    permissions: list[str] = Field(description="What it carries: read, act, admin.")
    applications: list[str] | None = Field(description="The applications it reaches; null: all.")
    expires_at: datetime | None
    created_at: datetime
    created_by: str | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    active: bool


class NewApiKeyOut(ApiKeyOut):
    key: str = Field(description="The key itself: shown this once, stored hashed.")


class ApiKeyIn(Body):
    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"\S")]
    owner: str | None = Field(default=None, description="A username; you, if left out.")
    permissions: list[ScopeName] = Field(
        default_factory=list, description="Beyond reading, which every key carries."
    )
    applications: Annotated[list[str], Field(min_length=1)] | None = Field(
        description="Application names; null for all (only if you see all)."
    )
    # Lax for this field alone: JSON has no time type, the ISO 8601 text is parsed.
    expires_at: Instant | None = Field(
        strict=False, description=f"When it stops working; null: never. {TIME_HELP}"
    )


def _key_out(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.pk,
        "name": key.name,
        "prefix": key.prefix,
        "owner": key.owner.get_username(),
        "permissions": key.scope,
        "applications": None
        if key.all_applications
        else sorted(app.name for app in key.applications.all()),
        "expires_at": key.expires_at,
        "created_at": key.created_at,
        "created_by": key.created_by.get_username() if key.created_by else None,
        "last_used_at": key.last_used_at,
        "revoked_at": key.revoked_at,
        "active": key.is_active,
    }


@router.get(
    "/api-keys", response=list[ApiKeyOut], tags=["api keys"], auth=requiring(PERM_ADMINISTER)
)
def list_api_keys(request: HttpRequest) -> list[dict[str, Any]]:
    """Scoped API keys of the caller and of the users they manage, newest first. Admins."""
    return [_key_out(key) for key in api_keys_within(request.user).select_related("created_by")]


@router.post(
    "/api-keys",
    response={201: NewApiKeyOut},
    tags=["api keys"],
    auth=requiring(PERM_ADMINISTER),
)
def create_api_key(request: HttpRequest, body: ApiKeyIn) -> Status[dict[str, Any]]:
    """Make a scoped API key (audited). It acts as its owner, narrowed to the permissions
    and applications given here; the answer holds the key, shown this once."""
    user: Any = request.user
    owner = user if body.owner is None else _owner(user, body.owner)
    applications = None
    if body.applications is not None:
        applications = list(visible_to(user).filter(name__in=body.applications))
        missing = sorted(set(body.applications) - {app.name for app in applications})
        if missing:
            raise HttpError(400, APPLICATIONS_UNKNOWN.format(names=", ".join(map(repr, missing))))
    try:
        key, raw = api_key_create(
            name=body.name,
            owner=owner,
            permissions=[SCOPE_PERMISSIONS[name] for name in body.permissions],
            applications=applications,
            expires_at=body.expires_at,
            request=request,
        )
    except ValidationError as exc:
        raise HttpError(400, " ".join(exc.messages)) from exc
    return Status(201, {**_key_out(key), "key": raw})


def _owner(user: Any, username: str) -> Any:
    if username == user.get_username():
        return user
    owner = users_within(user).filter(username=username).first()
    if owner is None:
        raise HttpError(400, OWNER_UNKNOWN.format(name=username))
    return owner


@router.post(
    "/api-keys/{key_id}/revoke",
    response=ApiKeyOut,
    tags=["api keys"],
    auth=requiring(PERM_ADMINISTER),
)
def revoke_api_key(request: HttpRequest, key_id: int) -> dict[str, Any]:
    """Revoke a key (audited): it is refused from the next request on."""
    key = get_object_or_404(api_keys_within(request.user), pk=key_id)
    api_key_revoke(key=key, request=request)
    return _key_out(key)
