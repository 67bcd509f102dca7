from django import template

from metrics import charts

register = template.Library()


@register.filter
def duration(ms: float | None) -> str:
    """A duration in milliseconds, for people (1.5 s, 3 min)."""
    return charts.duration(ms)


@register.filter
def bucket_size(seconds: int) -> str:
    return {60: "a minute", 3600: "an hour", 21600: "six hours", 86400: "a day"}.get(
        seconds, f"{seconds} s"
    )
