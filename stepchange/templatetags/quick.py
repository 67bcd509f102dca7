"""Faster stand-ins for two of Django's builtin template tags, loaded after Django's own
(TEMPLATES' `builtins`), so that every template uses them. Each gives what Django's gives.

- `{% url %}` remembers the URLs it has built. `reverse` walks the URL patterns on each
  call (15-45 us here) and a console page builds the same dozen or two links on every
  request: its navigation, its application's sections.
- `|date` formats a datetime with `strftime` when the format has only the year, month,
  day, hour, minute, second and microsecond in it (3 us against Django's 30); any other
  format or value goes to Django's filter.
"""

import functools
from collections.abc import Hashable
from datetime import datetime
from typing import Any

from django import template
from django.core.signals import setting_changed
from django.template import defaultfilters, defaulttags
from django.template.base import Parser, Token
from django.template.context import Context
from django.urls import NoReverseMatch, get_script_prefix, get_urlconf, reverse
from django.utils.html import conditional_escape

register = template.Library()
REMEMBERED_URLS = 4096


@functools.lru_cache(maxsize=REMEMBERED_URLS)
def remembered_reverse(
    view_name: str,
    args: tuple[Hashable, ...],
    kwargs: tuple[tuple[str, Hashable], ...],
    current_app: str | None,
    script_prefix: str,
    urlconf: str | None,
) -> str:
    # The prefix and the request's URLconf are part of the key; reverse reads them itself.
    return reverse(view_name, args=args, kwargs=dict(kwargs), current_app=current_app)


def _forget_urls(*, setting: str, **kwargs: Any) -> None:
    if setting in {"ROOT_URLCONF", "FORCE_SCRIPT_NAME"}:
        remembered_reverse.cache_clear()


setting_changed.connect(_forget_urls)


def context_url(
    request: Any, view_name: str, args: tuple[Any, ...] = (), kwargs: tuple[Any, ...] = ()
) -> str:
    """The URL `{% url %}` gives in a template rendered for `request`, remembered."""
    current_app = getattr(request, "current_app", None)
    if current_app is None and not hasattr(request, "current_app"):
        current_app = getattr(getattr(request, "resolver_match", None), "namespace", None)
    try:
        return remembered_reverse(
            view_name, args, kwargs, current_app, get_script_prefix(), get_urlconf()
        )
    except TypeError:  # a value that cannot be a key (a list, say)
        return reverse(view_name, args=args, kwargs=dict(kwargs), current_app=current_app)


class RememberingURLNode(defaulttags.URLNode):
    def render(self, context: Context) -> str:
        args = tuple(arg.resolve(context) for arg in self.args)
        kwargs = tuple((key, value.resolve(context)) for key, value in self.kwargs.items())
        view_name = self.view_name.resolve(context)
        try:
            url = context_url(getattr(context, "request", None), view_name, args, kwargs)
        except NoReverseMatch:
            if self.asvar is None:
                raise
            url = ""
        if self.asvar:
            context[self.asvar] = url
            return ""
        return str(conditional_escape(url)) if context.autoescape else url


@register.tag
def url(parser: Parser, token: Token) -> RememberingURLNode:
    node = defaulttags.url(parser, token)
    return RememberingURLNode(node.view_name, node.args, node.kwargs, node.asvar)


# Django's format characters that strftime writes the same way, for years from 1000 on.
STRFTIME = {"Y": "%Y", "m": "%m", "d": "%d", "H": "%H", "i": "%M", "s": "%S", "u": "%f"}
LITERALS = frozenset(" -:.,/")


@functools.lru_cache(maxsize=64)
def _strftime_pattern(format_string: str) -> str | None:
    if not all(c in STRFTIME or c in LITERALS for c in format_string):
        return None
    return "".join(STRFTIME.get(c, c) for c in format_string)


@register.filter(expects_localtime=True, is_safe=False)
def date(value: Any, arg: str | None = None) -> str:
    if type(value) is datetime and arg and value.year >= 1000:
        pattern = _strftime_pattern(arg)
        if pattern is not None:
            return value.strftime(pattern)
    return str(defaultfilters.date(value, arg))
