"""The one way anything is written to the audit log.

Every feature that acts, or refuses to act, calls `audit_record`. It takes the actor,
address and user agent from the request when there is one, so callers pass only what
they know about the action itself.
"""

import ipaddress
from enum import StrEnum
from typing import Any

from django.http import HttpRequest

from stepchange import prometheus
from stepchange.logs import request_id_get
from stepchange.models import ApiKey, Application, AuditRecord, KeyHolder
from stepchange.roles import role_of

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Set on a request whose refusal is on record already, so no middleware adds another.
REFUSAL_AUDITED = "_stepchange_refusal_audited"


def mark_refusal_audited(request: HttpRequest) -> None:
    """Say that this request's refusal is already on record, so no middleware adds one."""
    setattr(request, REFUSAL_AUDITED, True)


class AuditAction(StrEnum):
    LOGIN = "auth.login"
    LOGIN_FAILED = "auth.login_failed"
    LOGIN_LOCKOUT = "auth.lockout"
    LOGOUT = "auth.logout"
    SSO_REFUSED = "auth.sso_refused"
    SSO_USER_CREATE = "user.sso_create"
    SSO_ACCESS_UPDATE = "user.sso_access"
    PASSWORD_CHANGE = "auth.password_change"
    API_TOKEN_CREATE = "api_token.create"
    API_TOKEN_REVOKE = "api_token.revoke"
    API_TOKEN_REJECTED = "api_token.rejected"
    API_TOKEN_LOCKOUT = "api_token.lockout"
    API_KEY_CREATE = "api_key.create"
    API_KEY_REVOKE = "api_key.revoke"
    API_KEY_USE = "api_key.use"
    API_KEY_REJECTED = "api_key.rejected"
    ROLE_CREATE = "role.create"
    ROLE_UPDATE = "role.update"
    ROLE_DELETE = "role.delete"
    EXECUTOR_KEY_CREATE = "executor_key.create"
    EXECUTOR_KEY_REVOKE = "executor_key.revoke"
    EXECUTOR_KEY_LOCKOUT = "executor_key.lockout"
    APPLICATION_CREATE = "application.create"
    APPLICATION_UPDATE = "application.update"
    APPLICATION_DELETE = "application.delete"
    SAVED_VIEW_CREATE = "saved_view.create"
    SAVED_VIEW_UPDATE = "saved_view.update"
    SAVED_VIEW_DELETE = "saved_view.delete"
    ACCESS_DENIED = "access.denied"
    AUDIT_EXPORT = "audit.export"


Result = AuditRecord.Result


def _client_address(request: HttpRequest) -> str | None:
    # Daphne's --proxy-headers already puts the forwarded client address here. What a
    # client or a proxy sends is not always an address, and Postgres's inet column refuses
    # anything else: an audit record must never fail for it.
    address = request.META.get("REMOTE_ADDR") or None
    if not isinstance(address, str):
        return None
    try:
        return str(ipaddress.ip_address(address.strip()))
    except ValueError:
        return None


def audit_record(
    *,
    action: str,
    request: HttpRequest | None = None,
    actor: Any = None,
    actor_name: str = "",
    application: Application | None = None,
    application_name: str = "",
    target: str = "",
    parameters: dict[str, Any] | None = None,
    result: str = Result.OK,
    detail: str = "",
    reason: str = "",
    request_id: str = "",
    response: Any = None,
    value_diff: Any = None,
    source_address: str | None = None,
    api_key: ApiKey | None = None,
) -> AuditRecord:
    if actor is None and request is not None:
        actor = getattr(request, "user", None)
    if actor is not None and not actor.is_authenticated:
        actor = None
    if api_key is None and isinstance(actor, KeyHolder):
        # Acting through a key: the record names the key beside its owner.
        api_key = actor.api_key
    record = AuditRecord.objects.create(
        actor=actor,
        actor_name=actor_name or (actor.get_username() if actor else ""),
        role=role_of(actor) if actor else "",
        application=application,
        application_name=application_name or (application.name if application else ""),
        action=action,
        target=target[:255],
        parameters=parameters or {},
        result=result,
        detail=detail,
        reason=reason,
        source_address=source_address or (_client_address(request) if request else None),
        user_agent=(request.headers.get("User-Agent", "")[:512] if request else ""),
        request_id=request_id,
        http_request_id=request_id_get(),
        response=response,
        value_diff=value_diff,
        api_key=api_key,
        api_key_name=api_key.name if api_key is not None else None,
    )
    prometheus.AUDIT_EVENTS.labels(action, result).inc()
    return record


def audit_denied(
    request: HttpRequest, exc: Exception, *, application: Application | None = None
) -> AuditRecord | None:
    """Record a refused attempt once: who tried what, and why it was refused."""
    if getattr(exc, "audited", False):
        return None
    record = audit_record(
        action=AuditAction.ACCESS_DENIED,
        request=request,
        application=application,
        result=Result.DENIED,
        target=f"{request.method} {request.path}",
        detail=str(exc),
    )
    # Marked, so the handlers further up do not record the same refusal again.
    exc.audited = True  # type: ignore[attr-defined]
    return record
