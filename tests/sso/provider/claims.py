"""The provider's claims: the standard ones from the user, and StepChange's two from the
user's groups (`role:operator` → "operator" in `stepchange_roles`)."""

from typing import Any

from django.utils.translation import gettext_lazy as _
from oidc_provider.lib.claims import ScopeClaims


def userinfo(claims: dict[str, Any], user: Any) -> dict[str, Any]:
    claims["preferred_username"] = user.username
    claims["email"] = user.email
    claims["name"] = user.get_full_name() or user.username
    return claims


def _prefixed(user: Any, prefix: str) -> list[str]:
    names = user.groups.filter(name__startswith=prefix).values_list("name", flat=True)
    return sorted(name.removeprefix(prefix) for name in names)


class StepChangeClaims(ScopeClaims):  # type: ignore[misc]
    info_stepchange = (_("StepChange"), _("Your roles and applications in StepChange."))

    def scope_stepchange(self) -> dict[str, Any]:
        return {
            "stepchange_roles": _prefixed(self.user, "role:"),
            "stepchange_apps": _prefixed(self.user, "app:"),
        }
