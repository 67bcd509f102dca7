"""Template filters of the console."""

import json
from typing import Any

from django import template

register = template.Library()


@register.filter
def tojson(value: Any) -> str:
    """A value as compact JSON text (autoescaped by the template like any string)."""
    return json.dumps(value, separators=(", ", ": "), sort_keys=True, default=str)
