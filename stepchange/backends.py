"""Authentication backend: Django's ModelBackend, reading a user and their permissions
through prepared queries (`stepchange.prepared`), the permissions in one query.

ModelBackend reads a user's own permissions and their groups' in two queries, on the
first permission check of every request; every console page and API call makes one.
"""

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Permission
from django.db import router
from django.db.models import Q

from stepchange.prepared import prepared


def user_by_pk(pk: Any) -> Any:
    """The user with primary key `pk`, or None."""
    model = get_user_model()
    alias = router.db_for_read(model)

    def by_pk(pk: int) -> Any:
        return model._default_manager.using(alias).filter(pk=pk)[:1]

    return prepared(("user", alias), by_pk, int).first(int(pk))


def _permissions(user_obj: Any) -> set[str]:
    alias = router.db_for_read(Permission)

    def held(user_pk: int | None = None) -> Any:
        rows = Permission.objects.using(alias).all()
        if user_pk is not None:
            rows = rows.filter(Q(user=user_pk) | Q(group__user=user_pk))
        return rows.values_list("content_type__app_label", "codename").order_by()

    if user_obj.is_superuser:
        rows = prepared(("permissions of a superuser", alias), held).fetch()
    else:
        rows = prepared(("permissions", alias), held, int).fetch(user_obj.pk)
    return {f"{app_label}.{codename}" for app_label, codename in rows}


class PermissionBackend(ModelBackend):
    def get_user(self, user_id: Any) -> Any:
        try:
            user = user_by_pk(user_id)
        except (TypeError, ValueError):
            return None
        return user if user is not None and self.user_can_authenticate(user) else None

    def get_all_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        if not hasattr(user_obj, "_perm_cache"):
            user_obj._perm_cache = _permissions(user_obj)
        perms: set[str] = user_obj._perm_cache
        return perms
