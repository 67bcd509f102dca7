"""Keyset pages over a primary key, newest first.

Ids grow with time and never repeat, so "the rows before id N" is the next page, and it
costs the same on page 1,000 as on page 1: no OFFSET, no COUNT.
"""

from dataclasses import dataclass
from typing import Generic, TypeVar

from django.db.models import Model, QuerySet
from django.http import HttpRequest

M = TypeVar("M", bound=Model)
CURSOR = "before"


@dataclass(frozen=True)
class Page(Generic[M]):
    items: list[M]
    next_before: int | None


def newest_first(queryset: QuerySet[M], *, before: int | None, size: int) -> Page[M]:
    if before:
        queryset = queryset.filter(pk__lt=before)
    rows = list(queryset.order_by("-pk")[: size + 1])
    more = len(rows) > size
    return Page(rows[:size], int(rows[size - 1].pk) if more else None)


def query_without_cursor(request: HttpRequest) -> str:
    """The page's query string minus the cursor, for links to the next page."""
    params = request.GET.copy()
    params.pop(CURSOR, None)
    return str(params.urlencode())
