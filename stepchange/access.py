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
from stepchange.models import Application, ApplicationAccess, AuditRecord
from stepchange.roles import PERM_INSPECT, Role, role_of

NO_ACCESS = "You do not have access to this application."
NOT_ALLOWED = "Your role does not allow this."
APP_NOT_FOUND = "No application named {name!r} that you may see."


def limited_to(user: Any) -> frozenset[int] | None:
    """The ids of the applications `user` is limited to, or None if not limited. Read
    once per user object (one query), as Django keeps its permissions."""
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
    if user.is_superuser:
        return Application.objects.all()
    ids = limited_to(user)
    return Application.objects.all() if ids is None else Application.objects.filter(pk__in=ids)


def can_see(user: Any, application: Application) -> bool:
    """Whether `user` may see `application` (as `visible_to` says, for one application)."""
    if role_of(user) is Role.NONE:
        return False
    if user.is_superuser:
        return True
    ids = limited_to(user)
    return ids is None or application.pk in ids


def audit_records_for(user: Any) -> QuerySet[AuditRecord]:
    """The audit records `user` may read (an admin): all, unless limited to some
    applications; then only those applications' records. Records of no application
    (sign-ins, tokens, users) are for admins who see every application."""
    if role_of(user) is Role.NONE:
        return AuditRecord.objects.none()
    ids = None if user.is_superuser else limited_to(user)
    if ids is None:
        return AuditRecord.objects.all()
    return AuditRecord.objects.filter(application_id__in=ids)


def users_within(user: Any) -> QuerySet[Any]:
    """The users whose account `user` (an admin) may manage: never a superuser unless
    `user` is one, and for an admin limited to some applications only users limited to
    (some of) those, so that no account reaches an application the admin cannot see."""
    users = get_user_model().objects.all()
    if user.is_superuser:
        return users
    users = users.exclude(is_superuser=True)
    ids = limited_to(user)
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
        raise PermissionDenied(NOT_ALLOWED)
    if application is not None and not can_see(user, application):
        raise PermissionDenied(NO_ACCESS)


def application_for(request: HttpRequest, name: str, permission: str = PERM_INSPECT) -> Application:
    """The application `name` if the caller may see it (else 404, audited when the request
    would change something) and holds `permission` on it (else 403, audited)."""
    application = Application.objects.filter(name=name).first()
    if application is not None and not can_see(request.user, application):
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
