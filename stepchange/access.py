"""The access rule: which applications a user may see, and the one check every view and
endpoint of an application makes (`application_for`, and `aapplication_for` from async
code). Roles and their permissions are in `stepchange.roles`."""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest

from stepchange.asyncdb import db_async
from stepchange.audit import (
    UNSAFE_METHODS,
    AuditAction,
    Result,
    audit_denied,
    audit_record,
    mark_refusal_audited,
)
from stepchange.models import Application, ApplicationAccess, AuditRecord, KeyHolder
from stepchange.roles import PERM_INSPECT, Role, role_of

NO_ACCESS = "You do not have access to this application."
NOT_ALLOWED = "Your role does not allow this."
KEY_NOT_ALLOWED = "This API key does not carry this permission."
KEY_NOT_FOR_APP = "This API key does not reach the application {name!r}."
APP_NOT_FOUND = "No application named {name!r} that you may see."


def limited_to(user: Any) -> frozenset[int] | None:
    """The ids of the applications `user` is limited to, or None if not limited: by their
    application access and, through an API key, by the key's applications too."""
    ids = _access_limited_to(user)
    if not isinstance(user, KeyHolder):
        return ids
    key_ids = user.api_key.application_ids()
    if key_ids is None:
        return ids
    return key_ids if ids is None else ids & key_ids


def reach(user: Any) -> frozenset[int] | None:
    """The ids of the applications `user` (holding a role) may reach, or None for all: a
    superuser reaches all unless the key they act through is limited."""
    if user.is_superuser and not isinstance(user, KeyHolder):
        return None
    if user.is_superuser:
        key_ids: frozenset[int] | None = user.api_key.application_ids()
        return key_ids
    return limited_to(user)


def _access_limited_to(user: Any) -> frozenset[int] | None:
    """The applications `user`'s application access limits them to, or None. Read once
    per user object (one query), as Django keeps its permissions."""
    cached: frozenset[int] | None
    try:
        cached = user._stepchange_limited_to
    except AttributeError:
        rows = list(
            ApplicationAccess.objects.filter(user=user.pk).values_list("limited", "applications")
        )
        limited = bool(rows) and rows[0][0]
        cached = frozenset(pk for _, pk in rows if pk is not None) if limited else None
        user._stepchange_limited_to = cached
    return cached


def visible_to(user: Any) -> QuerySet[Application]:
    """The applications `user` may see: none for strangers, all unless limited."""
    if role_of(user) is Role.NONE:
        return Application.objects.none()
    ids = reach(user)
    return Application.objects.all() if ids is None else Application.objects.filter(pk__in=ids)


def can_see(user: Any, application: Application) -> bool:
    """Whether `user` may see `application` (as `visible_to` says, for one application)."""
    if role_of(user) is Role.NONE:
        return False
    ids = reach(user)
    return ids is None or application.pk in ids


def audit_records_for(user: Any) -> QuerySet[AuditRecord]:
    """The audit records `user` may read (an admin): all, unless limited to some
    applications; then only those applications' records. Records of no application
    (sign-ins, tokens, users) are for admins who see every application."""
    if role_of(user) is Role.NONE:
        return AuditRecord.objects.none()
    ids = reach(user)
    if ids is None:
        return AuditRecord.objects.all()
    return AuditRecord.objects.filter(application_id__in=ids)


def users_within(user: Any) -> QuerySet[Any]:
    """The users whose account `user` (an admin) may manage: never a superuser unless
    `user` is one, and for an admin limited to some applications only users limited to
    (some of) those, so that no account reaches an application the admin cannot see."""
    users = get_user_model().objects.all()
    ids = reach(user)
    if user.is_superuser and ids is None:
        return users
    users = users.exclude(is_superuser=True)
    if ids is None:
        return users
    outside = Application.objects.exclude(pk__in=ids)
    return users.filter(application_access__limited=True).exclude(
        application_access__applications__in=outside
    )


def visible_applications(user: Any) -> list[Application]:
    """The applications `user` may see (see `can_see`), by name, with only their names
    loaded: the console's application switcher."""
    every = Application.objects.only("name").order_by("name")
    return [application for application in every if can_see(user, application)]


def require(user: Any, permission: str, application: Application | None = None) -> None:
    """Raise PermissionDenied unless `user` holds `permission` (on `application`)."""
    if not user.has_perm(permission):
        key_narrowed = isinstance(user, KeyHolder) and user.owner_has_perm(permission)
        raise PermissionDenied(KEY_NOT_ALLOWED if key_narrowed else NOT_ALLOWED)
    if application is not None and not can_see(user, application):
        raise PermissionDenied(NO_ACCESS)


def _outside_the_key(user: Any, application: Application) -> bool:
    """Whether only the API key `user` acts through keeps them from `application`: the
    owner sees it (so saying it exists tells them nothing new), the key does not reach it."""
    if not isinstance(user, KeyHolder) or role_of(user) is Role.NONE:
        return False
    key_ids = user.api_key.application_ids()
    if key_ids is None or application.pk in key_ids:
        return False
    owner_ids = None if user.is_superuser else _access_limited_to(user)
    return owner_ids is None or application.pk in owner_ids


def application_for(request: HttpRequest, name: str, permission: str = PERM_INSPECT) -> Application:
    """The application `name` if the caller may see it (else 404, audited when the request
    would change something) and holds `permission` on it (else 403, audited)."""
    application = Application.objects.filter(name=name).first()
    if application is not None and not can_see(request.user, application):
        if _outside_the_key(request.user, application):
            refused = PermissionDenied(KEY_NOT_FOR_APP.format(name=name))
            audit_denied(request, refused, application=application)
            raise refused
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
        # Visibility was checked above; what is left is the role.
        require(request.user, permission)
    except PermissionDenied as exc:
        # Audited here, in sync code: async views cannot write from the error handler.
        audit_denied(request, exc, application=application)
        raise
    return application


async def aapplication_for(
    request: HttpRequest, name: str, permission: str = PERM_INSPECT
) -> Application:
    """`application_for`, from async code. It also loads `request.user` on the database
    thread, so the view may read it afterwards without touching the database."""
    found: Application = await db_async(application_for)(request, name, permission)
    return found
