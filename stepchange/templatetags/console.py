"""Template filters of the console."""

import json
from datetime import timedelta
from typing import Any

from django import template

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
