"""Operator roles and what they allow.

Roles are Django groups (`viewer`, `operator`, `admin`, made by a data migration) carrying
the custom permissions declared on `Application`. Code asks for a permission, never for a
group name, so a superuser or a hand-made group works the same way.
"""

from enum import StrEnum
from typing import Any

PERM_INSPECT = "stepchange.inspect_workflows"
PERM_OPERATE = "stepchange.operate_workflows"
PERM_ADMINISTER = "stepchange.administer"

# What an API key may carry and a custom role may hold, with what each allows. Edited
# forks need the operate permission today (forks/views.py, forks/api.py), so "act" is one
# permission with them; reading comes with everything else (nothing acts unseen).
KEY_PERMISSIONS: dict[str, str] = {
    PERM_INSPECT: "Read: workflows, steps, queues, executors",
    PERM_OPERATE: "Act: cancel, resume, restart, fork, recovery, and edited forks",
    PERM_ADMINISTER: "Admin: applications, keys, users, alerts, the audit log",
}
# Their short names, as the API and the console's tables spell them.
SCOPE_NAMES = {PERM_INSPECT: "read", PERM_OPERATE: "act", PERM_ADMINISTER: "admin"}


def scope_names(permissions: list[str]) -> list[str]:
    return [SCOPE_NAMES[perm] for perm in KEY_PERMISSIONS if perm in permissions]


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


def roles_sync(apps: Any = None) -> None:
    """Make the three groups hold exactly their role's permissions. Run by the data
    migration and after every migrate or flush, so the groups always match this file.
    Every other group (a custom role, or one made in the admin) is left as it is."""
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


BUILT_IN_ROLES = frozenset(ROLE_PERMISSIONS)


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


def role_label(user: Any) -> str:
    """The role the console shows: the names of the user's custom roles when they hold
    any (what `role_of` says they amount to is in the badge's class), else `role_of`."""
    role = role_of(user)
    if role is Role.NONE:
        return str(role)
    custom = sorted(
        name for name in user.groups.values_list("name", flat=True) if name not in BUILT_IN_ROLES
    )
    return ", ".join(custom) if custom else str(role)
