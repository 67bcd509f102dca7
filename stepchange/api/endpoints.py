"""The API's own endpoints: the applications the caller may see, and the audit log."""

from datetime import datetime
from typing import Any

from django.http import HttpRequest, StreamingHttpResponse
from ninja import Query, Router, Schema
from ninja.errors import HttpError

from conductor.registry import with_live_executor_counts
from stepchange.access import require, visible_to
from stepchange.api.base import BearerToken
from stepchange.auditlog import EXPORT_FORMATS, AuditFilterForm, audit_export, audit_item
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


@router.get("/audit", response=AuditPage, tags=["audit"])
def list_audit(request: HttpRequest, query: Query[AuditPageQuery]) -> dict[str, Any]:
    """Audit records, newest first. Admins only. `action` matches a prefix (`workflow.`),
    `target` a part; `since` and `until` are ISO 8601 times."""
    require(request.user, PERM_ADMINISTER)
    if not 1 <= query.limit <= MAX_AUDIT_LIMIT:
        raise HttpError(400, BAD_LIMIT.format(most=MAX_AUDIT_LIMIT, value=query.limit))
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
    if query.format not in EXPORT_FORMATS:
        raise HttpError(400, BAD_FORMAT.format(value=query.format))
    return audit_export(request, query.form(), as_format=query.format)
