"""The request the console's views take (Django's, with django-htmx's details), and what
no request may carry into a query."""

from typing import Any

from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails

NUL = "\x00"
HAS_NUL = "{field} contains a NUL character (\\u0000), which no text column can hold."


def contains_nul(value: Any) -> bool:
    """Whether a string, or any key or string inside a JSON value, holds a NUL: Postgres
    text refuses one with an error, SQLite keeps it, so both refuse it before a query."""
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(contains_nul(key) or contains_nul(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(contains_nul(item) for item in value)
    return False


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails
