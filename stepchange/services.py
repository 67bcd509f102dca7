"""Write paths for applications, executor keys, API tokens and saved views. Each one is
audited.

Secrets are generated here, returned once to the caller, and stored only as SHA-256
hashes: they are long random strings, so a fast hash is enough, and it lets a token be
found by its hash.
"""

import hashlib
import hmac
import re
import secrets
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from stepchange import throttle
from stepchange.audit import AuditAction, Result, audit_denied, audit_record
from stepchange.models import URL_SAFE_KEY, ApiToken, Application, ExecutorKey, SavedView
from stepchange.roles import PERM_OPERATE

REDACTED = "***"
PASSWORD_PARAMETER = re.compile(r"([?&]password=)[^&]*", re.IGNORECASE)
SHARING_NEEDS_OPERATOR = "Only operators may share a view with the team."
KEY_TOO_SHORT = "An executor key must be at least 16 characters long."
MIN_KEY_LENGTH = 16
# Touch last_used_at at most this often: executors reconnect every second when refused.
LAST_USED_RESOLUTION_SECONDS = 60


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _validate_key(key: str) -> None:
    URL_SAFE_KEY(key)
    if len(key) < MIN_KEY_LENGTH:
        raise ValidationError(KEY_TOO_SHORT)


def application_register(
    *,
    name: str,
    system_database_url: str | None = None,
    schema: str | None = None,
    recovery_grace_seconds: int | None = None,
    fork_approval_required: bool | None = None,
    actor: Any = None,
    request: HttpRequest | None = None,
) -> tuple[Application, bool]:
    """Create or update an application; returns it and whether it was created."""
    changes: dict[str, Any] = {
        field: value
        for field, value in (
            ("system_database_url", system_database_url),
            ("system_database_schema", schema),
            ("recovery_grace_seconds", recovery_grace_seconds),
            ("fork_approval_required", fork_approval_required),
        )
        if value is not None
    }
    with transaction.atomic():
        application = Application.objects.filter(name=name).first()
        created = application is None
        if application is None:
            application = Application(name=name)
        for field, value in changes.items():
            setattr(application, field, value)
        application.full_clean()
        application.save()
        audit_record(
            action=AuditAction.APPLICATION_CREATE if created else AuditAction.APPLICATION_UPDATE,
            actor=actor,
            request=request,
            application=application,
            target=application.name,
            parameters=_redacted(changes),
        )
    return application, created


def _redacted(changes: dict[str, Any]) -> dict[str, Any]:
    """Never write a database password into the audit log."""
    url = changes.get("system_database_url")
    if not url:
        return changes
    return {**changes, "system_database_url": redact_url(url)}


def redact_url(url: str) -> str:
    """A database URL with its password (in the user part, or a `password=` parameter)
    replaced by ***: what the admin and the audit log show."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        if ":" in credentials:
            user = credentials.split(":", 1)[0]
            url = f"{scheme}://{user}:{REDACTED}@{host}"
    return PASSWORD_PARAMETER.sub(rf"\1{REDACTED}", url)


def executor_key_create(
    *,
    application: Application,
    name: str = "",
    key: str | None = None,
    actor: Any = None,
    request: HttpRequest | None = None,
) -> tuple[ExecutorKey, str]:
    """Make a key for `application` (random unless given); returns it and the secret."""
    if key is None:
        key = secrets.token_urlsafe(32)
    _validate_key(key)
    with transaction.atomic():
        executor_key = ExecutorKey.objects.create(
            application=application,
            name=name,
            prefix=key[:4],
            key_hash=hash_secret(key),
            created_by=actor if actor is not None and actor.is_authenticated else None,
        )
        audit_record(
            action=AuditAction.EXECUTOR_KEY_CREATE,
            actor=actor,
            request=request,
            application=application,
            target=f"key {executor_key.pk} ({executor_key.prefix}…)",
            parameters={"name": name, "generated": key is None},
        )
    return executor_key, key


def executor_key_group(key_pk: int) -> str:
    """The channel-layer group of the executor sockets that connected with one key."""
    return f"executor-key.{key_pk}"


def executor_key_revoke(
    *, executor_key: ExecutorKey, actor: Any = None, request: HttpRequest | None = None
) -> None:
    """Revoke the key, and close every executor socket that connected with it, in every
    process (through the channel layer), once the revocation is committed."""
    with transaction.atomic():
        if executor_key.revoked_at is None:
            executor_key.revoked_at = timezone.now()
            executor_key.save(update_fields=["revoked_at"])
        transaction.on_commit(lambda: _executors_of_key_close(executor_key.pk))
        audit_record(
            action=AuditAction.EXECUTOR_KEY_REVOKE,
            actor=actor,
            request=request,
            application=executor_key.application,
            target=f"key {executor_key.pk} ({executor_key.prefix}…)",
        )


def _executors_of_key_close(key_pk: int) -> None:
    async_to_sync(get_channel_layer().group_send)(
        executor_key_group(key_pk), {"type": "executor.key_revoked"}
    )


def executor_key_active(key_pk: int) -> bool:
    return ExecutorKey.objects.filter(pk=key_pk, revoked_at__isnull=True).exists()


def executor_key_check(
    *, app_name: str, key: str, address: str | None = None
) -> ExecutorKey | None:
    """The active key of `app_name` that matches `key`, compared in constant time. Raises
    Throttled while `address`, or `app_name` for a wrong key, is locked out; a wrong key
    counts against both (stepchange/throttle.py)."""
    throttle.EXECUTOR_KEYS.check_address(address)
    match = _executor_key_matching(app_name=app_name, key=key)
    if match is None:
        throttle.EXECUTOR_KEYS.check_name(app_name)
        throttle.EXECUTOR_KEYS.fail(address=address, name=app_name, application_name=app_name)
        return None
    now = timezone.now()
    last = match.last_used_at
    if last is None or (now - last).total_seconds() > LAST_USED_RESOLUTION_SECONDS:
        ExecutorKey.objects.filter(pk=match.pk).update(last_used_at=now)
        match.last_used_at = now
    return match


def _executor_key_matching(*, app_name: str, key: str) -> ExecutorKey | None:
    presented = hash_secret(key)
    match = None
    candidates = ExecutorKey.objects.filter(
        application__name=app_name, revoked_at__isnull=True
    ).select_related("application")
    for candidate in candidates:
        # Compare against every candidate so timing says nothing about which one matched.
        if hmac.compare_digest(candidate.key_hash, presented):
            match = candidate
    return match


def api_token_create(
    *, user: Any, name: str, actor: Any = None, request: HttpRequest | None = None
) -> tuple[ApiToken, str]:
    raw = settings.STEPCHANGE_API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user, name=name, prefix=raw[:10], token_hash=hash_secret(raw)
        )
        audit_record(
            action=AuditAction.API_TOKEN_CREATE,
            actor=actor or user,
            request=request,
            target=f"token {token.pk} ({token.prefix}…) of {user.get_username()}",
            parameters={"name": name},
        )
    return token, raw


def api_token_revoke(*, token: ApiToken, actor: Any, request: HttpRequest | None = None) -> None:
    with transaction.atomic():
        if token.revoked_at is None:
            token.revoked_at = timezone.now()
            token.save(update_fields=["revoked_at"])
        audit_record(
            action=AuditAction.API_TOKEN_REVOKE,
            actor=actor,
            request=request,
            target=f"token {token.pk} ({token.prefix}…) of {token.user.get_username()}",
        )


def api_token_authenticate(*, raw: str, request: HttpRequest | None = None) -> Any:
    """The active user behind a bearer token, or None (and an audit record) if none.
    Raises Throttled while the caller's address, or the token's prefix for a wrong token,
    is locked out; a wrong token counts against both (stepchange/throttle.py)."""
    address = throttle.request_address(request) if request is not None else None
    throttle.API_TOKENS.check_address(address)
    token = (
        ApiToken.objects.select_related("user")
        .filter(token_hash=hash_secret(raw), revoked_at__isnull=True)
        .first()
    )
    user = None if token is None else token.user
    if token is None or user is None or not user.is_active:
        prefix = raw[:10] if raw.startswith(settings.STEPCHANGE_API_TOKEN_PREFIX) else ""
        throttle.API_TOKENS.check_name(prefix)
        audit_record(
            action=AuditAction.API_TOKEN_REJECTED,
            request=request,
            result=Result.DENIED,
            target=f"token {raw[:10]}…" if raw.startswith("sc_") else "token",
            detail="unknown or revoked token" if token is None else "the user is inactive",
        )
        throttle.API_TOKENS.fail(address=address, name=prefix, request=request)
        return None
    now = timezone.now()
    last = token.last_used_at
    if last is None or (now - last).total_seconds() > LAST_USED_RESOLUTION_SECONDS:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return user


def saved_view_save(
    *, application: Application, name: str, query: str, shared: bool, request: HttpRequest
) -> SavedView:
    """Save the caller's view `name` (made, or replaced). A view shared with the team is
    shown to everyone who sees the application: only operators may share one."""
    user: Any = request.user
    if shared and not user.has_perm(PERM_OPERATE):
        refused = PermissionDenied(SHARING_NEEDS_OPERATOR)
        audit_denied(request, refused, application=application)
        raise refused
    with transaction.atomic():
        before = SavedView.objects.filter(application=application, owner=user, name=name).first()
        view, created = SavedView.objects.update_or_create(
            application=application,
            owner=user,
            name=name,
            defaults={"query": query, "shared": shared},
        )
        audit_record(
            action=AuditAction.SAVED_VIEW_CREATE if created else AuditAction.SAVED_VIEW_UPDATE,
            request=request,
            application=application,
            target=f"view {view.pk} ({name})",
            parameters={"name": name, "query": query, "shared": shared},
            value_diff=None if before is None else _view_diff(before, view),
        )
    return view


def _view_diff(before: SavedView, after: SavedView) -> dict[str, Any]:
    return {
        field: {"before": getattr(before, field), "after": getattr(after, field)}
        for field in ("query", "shared")
        if getattr(before, field) != getattr(after, field)
    }


def saved_view_delete(*, view: SavedView, request: HttpRequest) -> None:
    with transaction.atomic():
        audit_record(
            action=AuditAction.SAVED_VIEW_DELETE,
            request=request,
            application=view.application,
            target=f"view {view.pk} ({view.name})",
            parameters={"name": view.name, "query": view.query, "shared": view.shared},
        )
        view.delete()
