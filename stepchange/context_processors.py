import functools
from typing import Any

from django.http import HttpRequest
from django.urls import reverse

from stepchange.access import visible_applications
from stepchange.roles import PERM_ADMINISTER, role_label, role_of


def console(request: HttpRequest) -> dict[str, Any]:
    """What the console layout needs on every page: the app switcher and the user's role."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    match = getattr(request, "resolver_match", None)
    app_name = match.kwargs.get("app_name") if match else None
    return {
        # Called by the template only if the page shows the switcher (not for htmx parts).
        "nav_applications": lambda: visible_applications(user),
        "current_app_name": match.kwargs.get("app_name") if match else None,
        "user_role": role_of(user),
        # A custom role's name (one query): only the pages that show the top bar ask.
        "user_role_label": lambda: role_label(user),
        "is_admin": user.has_perm(PERM_ADMINISTER),
        # The page's application's workflow list, which each status badge links to: reversed
        # once per page (reverse takes ~70 us; a list shows up to 200 badges).
        "workflow_list_url": functools.cache(
            lambda: reverse("workflows", args=[app_name]) if app_name else ""
        ),
    }
