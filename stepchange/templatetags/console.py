"""Template filters of the console."""

import json
from typing import Any

from django import template

register = template.Library()


@register.filter
def tojson(value: Any) -> str:
    """A value as compact JSON text (autoescaped by the template like any string)."""
    return json.dumps(value, separators=(", ", ": "), sort_keys=True, default=str)


@register.filter
def pretty(value: Any) -> str:
    """A decoded value as indented JSON, for reading."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, sort_keys=False, ensure_ascii=False, default=str)


@register.filter
def seconds(value: Any) -> str:
    """A duration in seconds, shown at a sensible precision."""
    if value is None:
        return ""
    amount = float(value)
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
