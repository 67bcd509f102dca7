"""The console's page chrome, written in Python: the top bar (brand, application switcher,
sections, account) on every page and an application's section links on its pages.

As template nodes they took about 1 ms of every page here (two dozen `{% url %}`, `{% if %}`
and lookups through the lazy user); written out like this, a fraction of that. Loaded as
builtins (settings.TEMPLATES), so templates use `{% topbar %}` and `{% app_nav section %}`
without a `{% load %}`. Every value goes through `escape`.
"""

from html import escape
from typing import Any

from django import template
from django.template.context import Context
from django.utils.safestring import SafeString, mark_safe

from stepchange.roles import PERM_ADMINISTER
from stepchange.templatetags.quick import context_url

register = template.Library()

# An application's sections: (section, view name, label); the last one for admins only.
Section = tuple[str, str, str]
SECTIONS: tuple[Section, ...] = (
    ("dashboard", "dashboard", "Overview"),
    ("workflows", "workflows", "Workflows"),
    ("queued", "queued-workflows", "Queued"),
    ("executors", "executors", "Executors"),
    ("forks", "edited-forks", "Edited forks"),
    ("jobs", "bulk-jobs", "Bulk jobs"),
    ("requests", "requests", "Request log"),
)
ADMIN_SECTIONS: tuple[Section, ...] = (("retention", "retention", "Retention"),)
CURRENT = ' aria-current="page"'


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


@register.simple_tag(takes_context=True)
def topbar(context: Context) -> SafeString:
    """The top bar; for someone signed in, with the applications they may see."""
    request = getattr(context, "request", None)

    def url(name: str, *args: Any) -> str:
        return _e(context_url(request, name, args))

    out = [
        f'<header class="topbar"><a class="brand" href="{url("home")}">Step<span>Change</span></a>'
    ]
    user = context.get("user")
    if user is not None and user.is_authenticated:
        current = context.get("current_app_name")
        applications = context.get("nav_applications") or ()
        if callable(applications):
            applications = applications()
        out.append(
            f'<details class="switcher"><summary>{_e(current or "Applications")}</summary><ul>'
        )
        for application in applications:
            name = application.name
            here = CURRENT if name == current else ""
            out.append(f'<li><a href="{url("dashboard", name)}"{here}>{_e(name)}</a></li>')
        if not applications:
            out.append('<li class="muted">No applications you may see</li>')
        out.append('</ul></details><nav class="mainnav">')
        out.append(f'<a href="{url("home")}">Overview</a><a href="{url("tokens")}">API tokens</a>')
        if context.get("is_admin"):
            out.append(
                f'<a href="{url("audit")}">Audit log</a><a href="{url("admin:index")}">Admin</a>'
            )
        role = _e(context.get("user_role"))
        token = context.get("csrf_token")
        csrf = (
            f'<input type="hidden" name="csrfmiddlewaretoken" value="{_e(token)}">'
            if token and token != "NOTPROVIDED"
            else ""
        )
        out.append(
            f'</nav><div class="account"><span class="who">{_e(user.get_username())}'
            f' <span class="role role-{role}">{role}</span></span>'
            f'<a href="{url("password_change")}">Password</a>'
            f'<form method="post" action="{url("logout")}">{csrf}'
            '<button class="linklike" type="submit">Sign out</button></form></div>'
        )
    out.append("</header>")
    return mark_safe("".join(out))  # noqa: S308 -- every value above is escaped


@register.simple_tag(takes_context=True)
def app_nav(context: Context, section: str) -> SafeString:
    """The application's name and its sections, `section` marked as the current one."""
    request = getattr(context, "request", None)
    name = context["application"].name
    user = context.get("user")
    sections = SECTIONS
    if user is not None and user.has_perm(PERM_ADMINISTER):
        sections += ADMIN_SECTIONS
    out = [f'<nav class="appnav"><h1>{_e(name)}</h1>']
    for key, view, label in sections:
        here = CURRENT if key == section else ""
        out.append(f'<a href="{_e(context_url(request, view, (name,)))}"{here}>{label}</a>')
    out.append('<span class="live" id="live-status" title="Live updates">●</span></nav>')
    return mark_safe("".join(out))  # noqa: S308 -- every value above is escaped
