"""Audit receivers for Django's authentication signals: logins, logouts, failures."""

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest

from stepchange.audit import AuditAction, Result, audit_record


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
