"""The console's long tables, rendered in Python.

Fifty workflow rows took 7 ms as template nodes here (a `{% url %}`, an `{% include %}`
and a dozen filters per row), a hundred step rows more. These tags write the same markup
in a fraction of that. Short tables stay in the templates.

Every value goes through `escape` (the standard library's, which Django's wraps).
"""

from collections.abc import Callable, Iterable
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote

from django import template
from django.urls import reverse
from django.utils import timezone
from django.utils.http import RFC3986_SUBDELIMS
from django.utils.safestring import SafeString, mark_safe

from stepchange.templatetags.console import between, pretty

register = template.Library()
_MARKER = "workflow-id-goes-here"


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _when(moment: datetime | None, pattern: str) -> str:
    # As the `date` filter shows it: in the current time zone (the console's is UTC).
    return "" if moment is None else timezone.localtime(moment).strftime(pattern)


def _short(text: str | None, length: int) -> str:
    # As the `truncatechars` filter cuts it.
    text = text or ""
    return text if len(text) <= length else text[: length - 1] + "…"


def detail_urls(app_name: str) -> Callable[[str], str]:
    """The workflow page's URL for any id: `reverse` once, then quoted as it quotes."""
    before, _, after = reverse("workflow-detail", args=[app_name, _MARKER]).partition(_MARKER)
    return lambda workflow_id: before + quote(workflow_id, safe=RFC3986_SUBDELIMS + "~:@") + after


def _badge(status: str | None) -> str:
    # As workflows/_status.html shows it.
    name = str(status).lower()
    return f'<span class="status status-{_e(name)}">{_e(name.replace("_", "") or "?")}</span>'


def value_block(
    label: str,
    value: Any,
    fmt: str | None,
    notes: Iterable[str] | None,
    *,
    opened: bool = False,
    raw: str = "",
) -> str:
    """A decoded value, collapsible, its format named, with the decoder's notes; given
    `raw` (which of the workflow's values it is), the stored text on demand: fetched from
    the workflow's page (`?raw=...`) when its box is opened, until it came."""
    if value is None:
        return '<span class="muted">—</span>'
    notes = [_e(note) for note in notes or ()]
    marks = "".join(f' <span class="note" title="{note}">note</span>' for note in notes)
    listed = "".join(f"<li>{note}</li>" for note in notes)
    stored = (
        # Fetched on the first opening, and again on the next while it failed.
        f'  <details class="raw" hx-get="?raw={_e(raw)}"'
        " hx-trigger=\"toggle[this.open &amp;&amp; !this.querySelector('.raw-head')]\""
        ' hx-target="find pre" hx-swap="innerHTML" data-swap-errors>'
        '<summary class="small">Raw, as stored</summary><pre class="raw">Loading…</pre>'
        "</details>\n"
        if raw
        else ""
    )
    return (
        f'<details class="value"{" open" if opened else ""}>\n'
        f'  <summary>{_e(label)} <span class="format">{_e(fmt)}</span>{marks}</summary>\n'
        f'  <pre class="json">{_e(pretty(value))}</pre>\n'
        f"  {f'<ul class={chr(34)}notes{chr(34)}>{listed}</ul>' if notes else ''}\n"
        f"{stored}"
        "</details>"
    )


@register.simple_tag
def status_badge(status: str | None) -> SafeString:
    """A workflow's status as a badge (as workflows/_status.html shows it)."""
    return mark_safe(_badge(status))  # noqa: S308 (escaped by _badge)


@register.simple_tag
def value(
    label: str, shown: Any, fmt: str | None, notes: Iterable[str] | None, raw: str = ""
) -> SafeString:
    """A workflow's input, output or error, open (see `value_block`)."""
    block = value_block(label, shown, fmt, notes, opened=True, raw=raw)
    return mark_safe(block)  # noqa: S308 (escaped)


@register.simple_tag
def workflow_rows(items: list[dict[str, Any]], app_name: str, may_act: bool) -> SafeString:
    """The rows of the workflow list (workflows/list.html)."""
    url = detail_urls(app_name)
    zone = timezone.get_current_timezone()
    rows = []
    for wf in items:
        workflow_id = _e(wf["workflow_id"])
        pick = (
            f'<td class="pick"><input type="checkbox" name="ids" value="{workflow_id}"'
            f' form="bulk" aria-label="Select {workflow_id}"></td>'
            if may_act
            else ""
        )
        lineage = ""
        if wf.get("forked_from"):
            forked = _e(_short(wf["forked_from"], 18))
            lineage += f'<div class="small muted">fork of <code>{forked}</code></div>'
        if wf.get("parent_workflow_id"):
            parent = _e(_short(wf["parent_workflow_id"], 18))
            lineage += f'<div class="small muted">child of <code>{parent}</code></div>'
        created = wf.get("created_at")
        local = None if created is None else created.astimezone(zone)
        iso = "" if local is None else local.isoformat()
        rows.append(
            f"<tr>{pick}"
            f'<td class="id"><a href="{_e(url(wf["workflow_id"]))}"><code>{workflow_id}</code></a>'
            f"{lineage}</td>"
            f"<td>{_badge(wf.get('status'))}</td>"
            f"<td>{_e(wf.get('name'))}</td>"
            f"<td>{_e(wf.get('queue_name'))}</td>"
            f'<td><code class="small">{_e(_short(wf.get("executor_id"), 13))}</code></td>'
            f'<td><code class="small">{_e(wf.get("application_version"))}</code></td>'
            f'<td class="nowrap" title="{iso}">{_when(local, "%Y-%m-%d %H:%M:%S")}</td>'
            f'<td class="num">{_e(between(wf.get("completed_at"), created))}</td>'
            "</tr>"
        )
    return mark_safe("\n".join(rows))  # noqa: S308 (every value above is escaped)


@register.simple_tag
def step_rows(steps: list[dict[str, Any]], app_name: str) -> SafeString:
    """The rows of a workflow's step timeline (workflows/detail.html)."""
    url = detail_urls(app_name)
    rows = []
    for step in steps:
        failed = step.get("error") is not None
        if failed:
            value = value_block(
                "Error", step["error"], step.get("error_format"), step.get("error_notes")
            )
        else:
            value = value_block(
                "Output", step.get("output"), step.get("output_format"), step.get("output_notes")
            )
        child = step.get("child_workflow_id")
        link = (
            f'<a href="{_e(url(child))}"><code>{_e(_short(child, 24))}</code></a>' if child else ""
        )
        started = _when(step.get("started_at"), "%H:%M:%S.%f")[:12]
        took = between(step.get("completed_at"), step.get("started_at"))
        rows.append(
            f'<tr class="{"failed" if failed else ""}">'
            f'<td class="num">{_e(step.get("function_id"))}</td>'
            f"<td><code>{_e(step.get('function_name'))}</code>"
            f'<div class="small muted">{started}</div></td>'
            f'<td class="num">{_e(took)}</td><td>{value}</td><td>{link}</td></tr>'
        )
    return mark_safe("\n".join(rows))  # noqa: S308 (every value above is escaped)
