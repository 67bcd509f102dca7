"""Write paths for applications, executor keys, API tokens, scoped API keys, custom roles
and saved views. Each one is audited.

Secrets are generated here, returned once to the caller, and stored only as SHA-256
hashes: they are long random strings, so a fast hash is enough, and it lets a token be
found by its hash.
"""

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from stepchange import throttle
from stepchange.access import reach, users_within
from stepchange.audit import AuditAction, Result, audit_denied, audit_record
from stepchange.models import (
    URL_SAFE_KEY,
    ApiKey,
    ApiToken,
    Application,
    ExecutorKey,
    KeyHolder,
    SavedView,
)
from stepchange.roles import (
    BUILT_IN_ROLES,
    KEY_PERMISSIONS,
    PERM_ADMINISTER,
    PERM_INSPECT,
    PERM_OPERATE,
)

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


KEY_UNKNOWN_PERMISSION = "Not a permission a key or role may carry: {names}."
KEY_BEYOND_CALLER = "You cannot give a key a permission you do not hold: {names}."
KEY_OWNER_OUT_OF_REACH = "You cannot make a key for this user."
KEY_APPS_OUT_OF_REACH = "You cannot give a key applications you may not see: {names}."
KEY_ALL_APPS_NEEDS_ALL = "Only someone who sees every application may make a key for all."
KEY_NO_APPLICATIONS = "Choose the applications the key reaches, or all of them."
KEY_EXPIRY_PAST = "The expiry must be in the future."
KEY_NAME_BLANK = "Give the key a name."


def scope_permissions(chosen: Iterable[str]) -> list[str]:
    """The permissions a key or custom role carries, in `KEY_PERMISSIONS`'s order: those
    chosen, and reading always. Raises ValidationError naming any unknown one."""
    chosen = set(chosen)
    unknown = sorted(chosen - set(KEY_PERMISSIONS))
    if unknown:
        raise ValidationError(KEY_UNKNOWN_PERMISSION.format(names=", ".join(unknown)))
    chosen.add(PERM_INSPECT)
    return [perm for perm in KEY_PERMISSIONS if perm in chosen]


def api_key_create(
    *,
    name: str,
    owner: Any,
    permissions: Iterable[str],
    applications: Iterable[Application] | None,
    expires_at: datetime | None,
    request: HttpRequest,
) -> tuple[ApiKey, str]:
    """Make a key for `owner` (None for `applications`: all of them); returns it and the
    secret, shown once. Nothing the caller does not hold or see can go into it."""
    actor: Any = request.user
    carried = _key_checked(
        actor=actor,
        name=name,
        owner=owner,
        permissions=permissions,
        applications=applications,
        expires_at=expires_at,
    )
    chosen = None if applications is None else sorted(set(applications), key=lambda a: a.name)
    raw = settings.STEPCHANGE_API_KEY_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        key = ApiKey.objects.create(
            name=name.strip(),
            owner=owner,
            prefix=raw[:12],
            key_hash=hash_secret(raw),
            all_applications=chosen is None,
            permissions=carried,
            expires_at=expires_at,
            created_by=actor if actor.is_authenticated else None,
        )
        if chosen:
            key.applications.set(chosen)
        audit_record(
            action=AuditAction.API_KEY_CREATE,
            request=request,
            target=_key_target(key),
            parameters={
                "name": key.name,
                "owner": owner.get_username(),
                "permissions": carried,
                "applications": "all" if chosen is None else [a.name for a in chosen],
                "expires_at": expires_at.isoformat() if expires_at else None,
            },
        )
    return key, raw


def _key_checked(
    *,
    actor: Any,
    name: str,
    owner: Any,
    permissions: Iterable[str],
    applications: Iterable[Application] | None,
    expires_at: datetime | None,
) -> list[str]:
    """The key's permissions, once everything about the key is checked (ValidationError)."""
    if not name.strip():
        raise ValidationError(KEY_NAME_BLANK)
    carried = scope_permissions(permissions)
    beyond = [perm for perm in carried if not actor.has_perm(perm)]
    if beyond:
        raise ValidationError(KEY_BEYOND_CALLER.format(names=", ".join(beyond)))
    if owner.pk != actor.pk and not users_within(actor).filter(pk=owner.pk).exists():
        raise ValidationError(KEY_OWNER_OUT_OF_REACH)
    ids = reach(actor)
    if applications is None:
        if ids is not None:
            raise ValidationError(KEY_ALL_APPS_NEEDS_ALL)
    else:
        chosen = list(applications)
        if not chosen:
            raise ValidationError(KEY_NO_APPLICATIONS)
        outside = sorted(a.name for a in chosen if ids is not None and a.pk not in ids)
        if outside:
            raise ValidationError(KEY_APPS_OUT_OF_REACH.format(names=", ".join(outside)))
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError(KEY_EXPIRY_PAST)
    return carried


def _key_target(key: ApiKey) -> str:
    return f"key {key.pk} ({key.prefix}…) of {key.owner.get_username()}"


def api_keys_within(user: Any) -> QuerySet[ApiKey]:
    """The keys `user` (an admin) may see and revoke: their own, and those of the users
    whose accounts they manage (`users_within`)."""
    keys = ApiKey.objects.select_related("owner").prefetch_related("applications")
    return keys.filter(Q(owner=user.pk) | Q(owner__in=users_within(user)))


def api_key_revoke(*, key: ApiKey, request: HttpRequest) -> None:
    with transaction.atomic():
        if key.revoked_at is None:
            key.revoked_at = timezone.now()
            key.save(update_fields=["revoked_at"])
        audit_record(action=AuditAction.API_KEY_REVOKE, request=request, target=_key_target(key))


def bearer_authenticate(*, raw: str, request: HttpRequest | None = None) -> Any:
    """The user behind a bearer credential: a scoped API key (`sck_…`) or a personal
    token; None (audited) when it is neither."""
    if raw.startswith(settings.STEPCHANGE_API_KEY_PREFIX):
        return api_key_authenticate(raw=raw, request=request)
    return api_token_authenticate(raw=raw, request=request)


def api_key_authenticate(*, raw: str, request: HttpRequest | None = None) -> KeyHolder | None:
    """The owner of an active key, narrowed to its scope (a KeyHolder), and the use
    audited; None, audited, for an unknown, revoked or expired key or an inactive owner.
    Throttled as tokens are (stepchange/throttle.py)."""
    address = throttle.request_address(request) if request is not None else None
    throttle.API_TOKENS.check_address(address)
    key = ApiKey.objects.select_related("owner").filter(key_hash=hash_secret(raw)).first()
    refusal = _key_refusal(key)
    if key is None or refusal:
        prefix = raw[:12]
        throttle.API_TOKENS.check_name(prefix)
        audit_record(
            action=AuditAction.API_KEY_REJECTED,
            request=request,
            # A known key's refusal names its owner and the key, as its uses do.
            actor=key.owner if key is not None else None,
            api_key=key,
            result=Result.DENIED,
            target=_key_target(key) if key is not None else f"key {prefix}…",
            detail=refusal or "unknown key",
        )
        throttle.API_TOKENS.fail(address=address, name=prefix, request=request)
        return None
    holder = KeyHolder.objects.get(pk=key.owner_id)
    holder.api_key = key
    now = timezone.now()
    last = key.last_used_at
    if last is None or (now - last).total_seconds() > LAST_USED_RESOLUTION_SECONDS:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    if request is not None:
        audit_record(
            action=AuditAction.API_KEY_USE,
            request=request,
            actor=holder,
            target=f"{request.method} {request.path}"[:255],
        )
    return holder


def _key_refusal(key: ApiKey | None) -> str:
    """Why `key` may not be used now, or "" if it may."""
    if key is None:
        return "unknown key"
    if key.revoked_at is not None:
        return "the key is revoked"
    if key.is_expired:
        return "the key has expired"
    if not key.owner.is_active:
        return "the key's owner is inactive"
    return ""


ROLE_BUILT_IN = "The built-in roles viewer, operator and admin cannot be changed here."
ROLE_NAME_TAKEN = "A role or group named {name!r} exists already."
ROLE_NAME_BLANK = "Give the role a name."
ROLE_ADMIN_NEEDS_SUPERUSER = "Only a superuser makes or changes a role that holds admin."


def custom_roles() -> QuerySet[Group]:
    """Every group but the three built-in roles, with its permissions."""
    return (
        Group.objects.exclude(name__in=BUILT_IN_ROLES)
        .prefetch_related("permissions__content_type")
        .order_by("name")
    )


def role_permissions(role: Group) -> list[str]:
    """The `KEY_PERMISSIONS` `role` holds."""
    held = {f"{perm.content_type.app_label}.{perm.codename}" for perm in role.permissions.all()}
    return [perm for perm in KEY_PERMISSIONS if perm in held]


def role_save(
    *, role: Group | None, name: str, permissions: Iterable[str], request: HttpRequest
) -> Group:
    """Make a custom role (`role` None) or change one: its name and which of
    `KEY_PERMISSIONS` it holds; any other permission a group holds is left alone."""
    name = name.strip()
    if not name:
        raise ValidationError(ROLE_NAME_BLANK)
    if name in BUILT_IN_ROLES or (role is not None and role.name in BUILT_IN_ROLES):
        raise ValidationError(ROLE_BUILT_IN)
    wanted = scope_permissions(permissions)
    before = [] if role is None else role_permissions(role)
    if PERM_ADMINISTER in {*wanted, *before}:
        _superuser_only(request, role)
    others = Group.objects.filter(name=name)
    taken = (others.exclude(pk=role.pk) if role is not None else others).exists()
    if taken:
        raise ValidationError(ROLE_NAME_TAKEN.format(name=name))
    created = role is None
    with transaction.atomic():
        old_name = "" if role is None else role.name
        role = role or Group()
        role.name = name
        role.save()
        role.permissions.remove(*_permission_rows(set(KEY_PERMISSIONS) - set(wanted)))
        role.permissions.add(*_permission_rows(wanted))
        audit_record(
            action=AuditAction.ROLE_CREATE if created else AuditAction.ROLE_UPDATE,
            request=request,
            target=f"role {role.pk} ({name})",
            parameters={"name": name, "permissions": wanted},
            value_diff=None
            if created
            else {
                "name": {"before": old_name, "after": name},
                "permissions": {"before": before, "after": wanted},
            },
        )
    return role


def role_delete(*, role: Group, request: HttpRequest) -> None:
    if role.name in BUILT_IN_ROLES:
        raise ValidationError(ROLE_BUILT_IN)
    held = role_permissions(role)
    if PERM_ADMINISTER in held:
        _superuser_only(request, role)
    with transaction.atomic():
        audit_record(
            action=AuditAction.ROLE_DELETE,
            request=request,
            target=f"role {role.pk} ({role.name})",
            parameters={
                "name": role.name,
                "permissions": held,
                "members": sorted(role.user_set.values_list("username", flat=True)),
            },
        )
        role.delete()


def _superuser_only(request: HttpRequest, role: Group | None) -> None:
    """Only a superuser grants the admin role's powers (as in the admin's user pages)."""
    user: Any = request.user
    if not user.is_superuser:
        refused = PermissionDenied(ROLE_ADMIN_NEEDS_SUPERUSER)
        audit_denied(request, refused)
        raise refused


def _permission_rows(dotted: Iterable[str]) -> list[Permission]:
    wanted = Q(pk__in=[])
    for name in dotted:
        app_label, codename = name.split(".")
        wanted |= Q(content_type__app_label=app_label, codename=codename)
    return list(Permission.objects.filter(wanted))


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
