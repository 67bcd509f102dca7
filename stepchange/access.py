"""Operator roles and what they allow.

Roles are Django groups (`viewer`, `operator`, `admin`, made by a data migration) carrying
the custom permissions declared on `Application`. Code asks for a permission, never for a
group name, so a superuser or a hand-made group works the same way.
"""

from collections.abc import Callable
from enum import StrEnum
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction
from django.contrib.auth.decorators import login_required as django_login_required
from django.contrib.auth.decorators import user_passes_test
from django.core.exceptions import PermissionDenied
from django.db import router

from stepchange.models import Application, ApplicationAccess
from stepchange.prepared import prepared

PERM_INSPECT = "stepchange.inspect_workflows"
PERM_OPERATE = "stepchange.operate_workflows"
PERM_ADMINISTER = "stepchange.administer"

ROLE_PERMISSIONS: dict[str, list[str]] = {
    "viewer": ["inspect_workflows"],
    "operator": ["inspect_workflows", "operate_workflows"],
    "admin": [
        "inspect_workflows",
        "operate_workflows",
        "administer",
        "add_application",
        "change_application",
        "delete_application",
        "view_application",
        "add_executorkey",
        "change_executorkey",
        "view_executorkey",
        "add_applicationaccess",
        "change_applicationaccess",
        "delete_applicationaccess",
        "view_applicationaccess",
        "view_auditrecord",
        "view_apitoken",
        "change_apitoken",
        "auth.add_user",
        "auth.change_user",
        "auth.view_user",
        "auth.view_group",
    ],
}

V = TypeVar("V", bound=Callable[..., Any])


async def _signed_in(user: Any) -> bool:
    return bool(user.is_authenticated)


def login_required(view: V) -> V:
    """Django's `login_required`, minus the thread hop it takes to ask an async view's
    user `is_authenticated` (a plain attribute once the user is loaded)."""
    if iscoroutinefunction(view):
        return user_passes_test(_signed_in)(view)  # type: ignore[arg-type]
    return django_login_required(view)


NO_ACCESS = "You do not have access to this application."
NOT_ALLOWED = "Your role does not allow this."


def roles_sync(apps: Any = None) -> None:
    """Make the three groups hold exactly their role's permissions. Run by the data
    migration and after every migrate or flush, so the groups always match this file."""
    from django.apps import apps as global_apps
    from django.contrib.auth.management import create_permissions

    apps = apps or global_apps
    for app_config in apps.get_app_configs():
        if apps is not global_apps:
            # Historical apps: permissions are normally made after all migrations.
            app_config.models_module = True
            create_permissions(app_config, apps=apps, verbosity=0)
            app_config.models_module = None
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    for role, codenames in ROLE_PERMISSIONS.items():
        group, _ = group_model.objects.get_or_create(name=role)
        wanted = []
        for dotted in codenames:
            app_label, codename = dotted.split(".") if "." in dotted else ("stepchange", dotted)
            wanted.append(
                permission_model.objects.get(content_type__app_label=app_label, codename=codename)
            )
        group.permissions.set(wanted)


class Role(StrEnum):
    NONE = "none"
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"


def role_of(user: Any) -> Role:
    if user is None or not user.is_authenticated or not user.is_active:
        return Role.NONE
    if user.has_perm(PERM_ADMINISTER):
        return Role.ADMIN
    if user.has_perm(PERM_OPERATE):
        return Role.OPERATOR
    if user.has_perm(PERM_INSPECT):
        return Role.VIEWER
    return Role.NONE


def limited_to(user: Any) -> frozenset[int] | None:
    """The ids of the applications `user` is limited to, or None if not limited. Read
    once per user object (one query), as Django keeps its permissions."""
    cached: frozenset[int] | None
    try:
        cached = user._stepchange_limited_to
    except AttributeError:
        rows = prepared(("access", router.db_for_read(ApplicationAccess)), _access, int).fetch(
            user.pk
        )
        limited = bool(rows) and rows[0][0]
        cached = frozenset(pk for _, pk in rows if pk is not None) if limited else None
        user._stepchange_limited_to = cached
    return cached


def _access(user_pk: int) -> Any:
    rows = ApplicationAccess.objects.using(router.db_for_read(ApplicationAccess))
    return rows.filter(user=user_pk).values_list("limited", "applications")


def can_see(user: Any, application: Application) -> bool:
    """Whether `user` may see `application` (as `Application.objects.visible_to` says)."""
    if role_of(user) is Role.NONE:
        return False
    if user.is_superuser:
        return True
    ids = limited_to(user)
    return ids is None or application.pk in ids


def visible_applications(user: Any) -> list[Application]:
    """The applications `user` may see (see `can_see`), by name, with only their names
    loaded: the console's application switcher."""
    alias = router.db_for_read(Application)

    def by_name() -> Any:
        return Application.objects.using(alias).only("name").order_by("name")

    every = prepared(("application names", alias), by_name).fetch()
    return [application for application in every if can_see(user, application)]


def application_named(name: str) -> Application | None:
    """The application called `name`, whoever may see it (see `can_see`)."""
    alias = router.db_for_read(Application)

    def by_name(name: str) -> Any:
        return Application.objects.using(alias).filter(name=name)[:1]

    found: Application | None = prepared(("application", alias), by_name, str).first(name)
    return found


def require(user: Any, permission: str, application: Application | None = None) -> None:
    """Raise PermissionDenied unless `user` holds `permission` (on `application`)."""
    if not user.has_perm(permission):
        raise PermissionDenied(NOT_ALLOWED)
    if application is not None and not can_see(user, application):
        raise PermissionDenied(NO_ACCESS)
