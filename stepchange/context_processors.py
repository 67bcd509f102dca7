from typing import Any

from django.http import HttpRequest

from stepchange.access import visible_applications
from stepchange.roles import PERM_ADMINISTER, role_of


def console(request: HttpRequest) -> dict[str, Any]:
    """What the console layout needs on every page: the app switcher and the user's role."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    match = getattr(request, "resolver_match", None)
    return {
        # Called by the template only if the page shows the switcher (not for htmx parts).
        "nav_applications": lambda: visible_applications(user),
        "current_app_name": match.kwargs.get("app_name") if match else None,
        "user_role": role_of(user),
        "is_admin": user.has_perm(PERM_ADMINISTER),
    }
