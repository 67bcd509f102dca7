"""The API's own endpoints: the applications the caller may see, and the audit log."""

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from django.http import HttpRequest, StreamingHttpResponse
from ninja import Field, Query, Router, Schema
from ninja.errors import HttpError
from pydantic import BeforeValidator

from conductor.registry import with_live_executor_counts
from stepchange.access import require, visible_to
from stepchange.api.base import BearerToken
from stepchange.auditlog import AuditFilterForm, audit_export, audit_item
from stepchange.paging import newest_first
from stepchange.roles import PERM_ADMINISTER

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
