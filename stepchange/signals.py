"""Signal receivers: audit for logins, logouts and failures; roles kept after migrate."""

from typing import Any

from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.core.cache import cache
from django.db.models.signals import post_migrate
from django.dispatch import receiver
from django.http import HttpRequest

from stepchange.audit import AuditAction, Result, audit_record
from stepchange.roles import roles_sync
from stepchange.throttle import cache_key


@receiver(user_logged_in)
def _audit_login(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    audit_record(action=AuditAction.LOGIN, request=request, actor=user)


@receiver(user_logged_out)
def _audit_logout(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    if user is not None:
        audit_record(action=AuditAction.LOGOUT, request=request, actor=user)


@receiver(user_login_failed)
def _audit_login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    # Django has already masked the password in `credentials`; keep only the username.
    username = str(credentials.get("username", ""))[:150]
    audit_record(
        action=AuditAction.LOGIN_FAILED,
        request=request,
        actor_name=username,
        result=Result.DENIED,
        target=username,
    )


@receiver(user_locked_out)
def _audit_lockout(
    sender: Any, request: HttpRequest, username: str | None, ip_address: str | None, **kwargs: Any
) -> None:
    # Axes signals every refused attempt of a lockout: audit its first. A lockout is of the
    # username or of the address, so an attempt whose username or address is already
    # locked (and audited) belongs to that lockout, not a new one.
    window = settings.THROTTLE_COOLOFF_SECONDS
    marks = [cache_key("login", "name", username or "", "audited")]
    marks.append(cache_key("login", "address", ip_address or "", "audited"))
    new = [cache.add(mark, True, timeout=window) for mark in marks]
    if not all(new):
        return
    name = (username or "")[:150]
    audit_record(
        action=AuditAction.LOGIN_LOCKOUT,
        request=request,
        actor_name=name,
        result=Result.DENIED,
        target=name,
        detail=f"{settings.THROTTLE_FAILURE_LIMIT} failed sign-ins: locked out for {window} s",
    )


@receiver(post_migrate)
def _sync_roles(sender: Any, app_config: Any, **kwargs: Any) -> None:
    # Once, after the stepchange app; also restores the groups after a test flush.
    if app_config.label == "stepchange":
        roles_sync()
