"""Signal receivers: audit for logins, logouts and failures; roles kept after migrate."""

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import post_migrate
from django.dispatch import receiver
from django.http import HttpRequest

from stepchange.audit import AuditAction, Result, audit_record
from stepchange.roles import roles_sync


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


@receiver(post_migrate)
def _sync_roles(sender: Any, app_config: Any, **kwargs: Any) -> None:
    # Once, after the stepchange app; also restores the groups after a test flush.
    if app_config.label == "stepchange":
        roles_sync()
