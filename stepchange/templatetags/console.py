"""Template filters of the console."""

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from django import template
from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

register = template.Library()


@register.filter
def tojson(value: Any) -> str:
    """A value as compact JSON text (autoescaped by the template like any string)."""
    return json.dumps(value, separators=(", ", ": "), sort_keys=True, default=str)


# A value whose JSON fits on a line this long is shown on one line.
ONE_LINE = 72
# The standard library's C encoder serves only JSON without indentation; indented JSON
# takes its Python encoder, at 70 us for a small value (a page shows up to a hundred).
_ONE_LINE_JSON = json.JSONEncoder(ensure_ascii=False, default=str, separators=(", ", ": "))


@register.filter
def pretty(value: Any) -> str:
    """A decoded value as JSON for reading: on one line if it fits, else indented."""
    if isinstance(value, str):
        return value
    line = _ONE_LINE_JSON.encode(value)
    if len(line) <= ONE_LINE:
        return line
    return json.dumps(value, indent=2, sort_keys=False, ensure_ascii=False, default=str)


@register.filter
def seconds(value: Any) -> str:
    """A duration in seconds, shown at a sensible precision."""
    if value is None:
        return ""
    amount = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if amount < 1:
        return f"{amount * 1000:.0f} ms"
    if amount < 120:
        return f"{amount:.2f} s"
    return f"{amount / 60:.1f} min"


@register.filter
def between(end: Any, start: Any) -> str:
    """The time from `start` to `end` (datetimes), as `seconds` shows it."""
    if end is None or start is None:
        return ""
    return seconds((end - start).total_seconds())


@register.filter
def workflow_href(workflow_id: str, urls: Callable[[str], str]) -> str:
    """The URL of a workflow's page, by the page's own `workflow_url` (the console's, or the
    offline viewer's for a workflow of an export file)."""
    return urls(workflow_id)


@register.filter
def status_words(status: str | None) -> str:
    """A workflow status as words: MAX_RECOVERY_ATTEMPTS_EXCEEDED reads "max recovery
    attempts exceeded"."""
    return status.replace("_", " ").lower() if status else "unknown"


@register.simple_tag(takes_context=True)
def status_badge(context: template.Context, status: str | None) -> SafeString:
    """A workflow's status as words, the raw status in its title and data-status: a link to
    the list of the page's application's workflows in that status, unless the context says
    `plain` (the badge sits inside another link) or has no application. Python rather
    than a template, and the status escaped once: a list shows up to 200 of them."""
    if not status:
        return mark_safe('<span class="status status-unknown">unknown</span>')
    raw = escape(status)
    words = escape(status_words(status))
    application = context.get("application")
    if application is None or context.get("plain"):
        return mark_safe(  # noqa: S308
            f'<span class="status status-{raw.lower()}" title="{raw}" data-status="{raw}">'
            f"{words}</span>"
        )
    # The page's list URL, reversed once per request (stepchange.context_processors).
    listed = context.get("workflow_list_url")
    base = listed() if callable(listed) else ""
    if not base or context.get("current_app_name") != application.name:
        base = reverse("workflows", args=[application.name])
    href = escape(f"{base}?status={quote(status, safe='')}")
    return mark_safe(  # noqa: S308
        f'<a class="status status-{raw.lower()}" href="{href}" title="{raw}"'
        f' data-status="{raw}">{words}</a>'
    )
