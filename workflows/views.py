"""Console pages for workflows: the list (and the queued list) and one workflow's page.

Both read through `workflows.sources`: the system database when it is reachable, else a
live executor, and the page says which. Filters live in the URL, so a view is a link.
"""

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import OperationalError
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.safestring import SafeString
from django.utils.timesince import timesince
from django.views.decorators.http import require_POST

from conductor import relay
from conductor.models import DATABASE_PATH, Executor
from conductor.registry import live_versions
from metrics.charts import Chart
from metrics.reads import WINDOWS, outcome_buckets
from metrics.views import outcome_chart
from stepchange.access import aapplication_for, application_for
from stepchange.asyncdb import arender, db_async
from stepchange.converters import workflow_urls
from stepchange.http import HtmxHttpRequest
from stepchange.models import Application, AuditRecord, SavedView
from stepchange.roles import PERM_OPERATE
from stepchange.services import saved_view_delete, saved_view_save
from workflows.actions import (
    ACTIVE,
    EXPLANATIONS,
    Action,
    ActionError,
    ActionRefusedError,
    Parameters,
    Sdk,
    acting_executors,
    action_path,
    not_on_database,
    offers,
    path_notice,
    workflow_act,
)
from workflows.jobs import (
    ACTIONS,
    MAX_WORKFLOWS,
    Selection,
    bulk_job_create,
    bulk_job_retry,
    bulk_jobs_wake,
    bulk_not_on_database,
    bulk_select,
    bulk_selection_failed,
    progress,
)
from workflows.models import COMPLETED, CREATED, DEQUEUED, STATUSES, BulkJob, ListPreference
from workflows.names import names_matching, names_offered, names_seen_note
from workflows.sources import (
    BAD_CURSOR,
    CHILD_COUNT_CAP,
    EXECUTOR,
    FAILED,
    RELAYED_HEADLINE_SAMPLE,
    STORED_VALUES,
    BadCursor,
    DatabaseSource,
    Detail,
    ListQuery,
    Outline,
    QueueDepths,
    SlowQuery,
    Source,
    Step,
    StoredValue,
    UnsupportedFilter,
    Workflow,
    backwards_range,
    parse_attributes,
    source_for,
    split_names,
)
from workflows.timeline import Row, failing_step, fold_of, headline, rows, slowest, timeline
from workflows.versions import Version, VersionError, version_set_latest, versions_read

PAGE_SIZES = [(25, "25"), (50, "50"), (100, "100"), (200, "200")]
DEFAULT_LIMIT = 50
# A number in a part's parameters: ASCII digits, few enough for a database integer (and
# a float's exact range); `str.isdigit` would take '²', which `int` refuses.
NUMBER = re.compile(r"[0-9]{1,15}")
SIGNED_NUMBER = re.compile(r"-?[0-9]{1,15}")
# Rows of the step table that opening a fold shows at once; the rest stay folded.
STEPS_PER_PAGE = 100
# A parent's children shown when it is opened in the list; the rest are a link away.
CHILDREN_SHOWN = 50
# How deep families open in the list (deeper ones are a link to their own list).
DEEPEST = 4
# A failed row shows this much of its error's first line.
ERROR_LINE_CHARS = 160
# The list's optional columns (the name and status always show), and those shown until
# an operator chooses.
COLUMNS = (
    ("id", "ID"),
    ("queue", "Queue"),
    ("executor", "Executor"),
    ("version", "Version"),
    ("created", "Created"),
    ("duration", "Took"),
)
DEFAULT_COLUMNS = ["id", "queue", "version", "created", "duration"]
# The "Created" column shows the time the list is ordered by (`ListQuery.order`).
ORDER_LABELS = {CREATED: "Created", COMPLETED: "Completed", DEQUEUED: "Dequeued"}
ORDER_TIMES = {CREATED: "created_at", COMPLETED: "completed_at", DEQUEUED: "dequeued_at"}
# The filters shown as chips when set, by parameter (status has its own toggles).
CHIPS = {
    "workflow_name": "Name",
    "queue_name": "Queue",
    "workflow_id_prefix": "ID starts with",
    "executor_id": "Executor",
    "application_version": "Version",
    "forked_from": "Forked from",
    "parent_workflow_id": "Parent",
    "start_time": "Created after",
    "end_time": "Created before",
    "authenticated_user": "User",
    "schedule_name": "Schedule",
    "completed_after": "Completed after",
    "completed_before": "Completed before",
    "dequeued_after": "Dequeued after",
    "dequeued_before": "Dequeued before",
}
# The list's times besides its creation range, each a ListQuery field of the same name.
TIME_FIELDS = (
    "start_time",
    "end_time",
    "completed_after",
    "completed_before",
    "dequeued_after",
    "dequeued_before",
)
# The yes-or-no filters: their chips' labels, and what each answer is shown as.
WAS_FORKED_CHOICES = [("", "either"), ("true", "forked"), ("false", "never forked")]
HAS_PARENT_CHOICES = [("", "either"), ("true", "yes (children)"), ("false", "no (top-level)")]
CHOICE_CHIPS = {
    "was_forked_from": ("Was forked", dict(WAS_FORKED_CHOICES)),
    "has_parent": ("Has a parent", dict(HAS_PARENT_CHOICES)),
}
BAD_PARENT = "Say whose children to list: ?parent=<workflow id>."


@dataclass(frozen=True)
class Search:
    """How the search box's text was read: as the names seen that start with it (`names`),
    or, when no name does, as the start of a workflow id (`names` empty)."""

    text: str
    names: list[str]


def search_read(application: Application, text: str) -> Search | None:
    """The search box's meaning: names first, because a name filter is what an operator
    types words for, and ids (uuids, mostly hex) rarely start like a name. The page says
    which it chose and links to the other reading."""
    text = text.strip()
    if not text:
        return None
    return Search(text, names_matching(application, text))


class AttributeInputs(forms.Widget):
    """One text box per attribute filter set, and an empty one for another: each is an
    `attribute` parameter of the list's URL (key=value)."""

    def value_from_datadict(self, data: Any, files: Any, name: str) -> list[str]:
        return [text for text in data.getlist(name) if text.strip()]

    def value_omitted_from_data(self, data: Any, files: Any, name: str) -> bool:
        return name not in data

    def render(
        self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None
    ) -> SafeString:
        shown = value if isinstance(value, list) else []
        return format_html_join(
            "",
            '<input type="text" name="{}" value="{}" placeholder="key=value"'
            ' aria-label="Attribute filter {}" class="attribute-filter">',
            ((name, text, n + 1) for n, text in enumerate([*shown, ""])),
        )


class AttributesField(forms.Field):
    widget = AttributeInputs

    def to_python(self, value: Any) -> dict[str, Any] | None:
        try:
            return parse_attributes(value or [])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def prepare_value(self, value: Any) -> Any:
        return value


def _yes_no(value: str) -> bool | None:
    return {"true": True, "false": False}.get(value)


class WorkflowFilterForm(forms.Form):
    q = forms.CharField(required=False, max_length=200, label="Search")
    status = forms.MultipleChoiceField(
        required=False,
        choices=[(s, s.replace("_", " ").lower()) for s in STATUSES],
        widget=forms.CheckboxSelectMultiple,
    )
    workflow_name = forms.CharField(required=False, label="Name")
    queue_name = forms.CharField(required=False, label="Queue")
    workflow_id_prefix = forms.CharField(required=False, label="ID starts with")
    executor_id = forms.CharField(required=False, label="Executor")
    application_version = forms.CharField(required=False, label="App version")
    forked_from = forms.CharField(required=False, label="Forked from")
    parent_workflow_id = forms.CharField(required=False, label="Parent")
    start_time = forms.DateTimeField(
        required=False,
        label="Created after",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    end_time = forms.DateTimeField(
        required=False,
        label="Created before",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    authenticated_user = forms.CharField(required=False, label="Authenticated user")
    schedule_name = forms.CharField(required=False, label="Schedule")
    completed_after = forms.DateTimeField(
        required=False,
        label="Completed after",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    completed_before = forms.DateTimeField(
        required=False,
        label="Completed before",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    dequeued_after = forms.DateTimeField(
        required=False,
        label="Dequeued after",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    dequeued_before = forms.DateTimeField(
        required=False,
        label="Dequeued before",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    was_forked_from = forms.TypedChoiceField(
        required=False,
        label="Was forked",
        choices=WAS_FORKED_CHOICES,
        coerce=_yes_no,
        empty_value=None,
    )
    has_parent = forms.TypedChoiceField(
        required=False,
        label="Has a parent",
        choices=HAS_PARENT_CHOICES,
        coerce=_yes_no,
        empty_value=None,
    )
    attribute = AttributesField(
        required=False,
        label="Attributes",
        help_text='key=value, one a box; each must hold. tier=3 is the number, tier="3" text.',
    )
    all_levels = forms.BooleanField(required=False, label="List child workflows as rows too")
    limit = forms.TypedChoiceField(choices=PAGE_SIZES, coerce=int, required=False)
    cursor = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, data: QueryDict) -> None:
        # The shown page size is the applied one: with no limit asked, the default is the
        # form's value (it was blank, so the select showed its first size, 25, over 50 rows).
        if not data.get("limit"):
            data = data.copy()
            data["limit"] = str(DEFAULT_LIMIT)
        super().__init__(data)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        backwards = backwards_range(data)
        if backwards:
            self.add_error(*backwards)
        return data

    def query(self, *, queued: bool, search: Search | None = None) -> ListQuery:
        data = self.cleaned_data
        names = split_names(data.get("workflow_name", ""))
        prefix = data.get("workflow_id_prefix") or None
        if search is not None and search.names:
            both = [n for n in names if n in search.names] if names else search.names
            if not both:
                raise UnsupportedFilter(NO_NAME_BOTH.format(text=search.text), "q")
            names = both
        elif search is not None:
            prefix = _both(prefix, search.text)
        parent = split_names(data.get("parent_workflow_id", ""))
        has_parent = data.get("has_parent")
        # The console's times are UTC, as it shows them.
        times = {
            name: moment.astimezone(UTC)
            for name in TIME_FIELDS
            if (moment := data.get(name)) is not None
        }
        return ListQuery(
            status=data.get("status") or None,
            workflow_name=names,
            queue_name=split_names(data.get("queue_name", "")),
            workflow_id_prefix=prefix,
            executor_id=split_names(data.get("executor_id", "")),
            application_version=split_names(data.get("application_version", "")),
            forked_from=split_names(data.get("forked_from", "")),
            parent_workflow_id=parent,
            limit=data.get("limit") or DEFAULT_LIMIT,
            cursor=data.get("cursor") or None,
            queued=queued,
            authenticated_user=split_names(data.get("authenticated_user", "")),
            schedule_name=split_names(data.get("schedule_name", "")),
            was_forked_from=data.get("was_forked_from"),
            has_parent=has_parent,
            attributes=data.get("attribute"),
            **times,
            # Children nest under their parents, unless asked for, or looked for by a
            # parent or an id (a child's id must find it), or by whether they have one.
            top_level=has_parent is False
            or (has_parent is None and not (queued or data.get("all_levels") or parent or prefix)),
            child_counts=True,
            failed_errors=True,
        )


NO_NAME_BOTH = "None of the names under Name starts with “{text}”: clear one or the other."
NO_ID_BOTH = "No workflow id starts with both “{text}” and “{prefix}”: clear one or the other."


def _both(prefix: str | None, other: str) -> str:
    """One id prefix meaning both (the longer); two that differ contradict each other."""
    if prefix is None or other.startswith(prefix):
        return other
    if prefix.startswith(other):
        return prefix
    raise UnsupportedFilter(NO_ID_BOTH.format(text=other, prefix=prefix), "q")


@dataclass(frozen=True)
class ListRow:
    """A workflow as a row of the list."""

    url: str
    workflow: Workflow
    # When it was created, or completed or dequeued in a list in that order, and how long ago.
    when: datetime | None
    when_ago: str
    error_line: str
    depth: int = 0


@login_required
async def workflow_list(
    request: HtmxHttpRequest, app_name: str, queued: bool = False
) -> HttpResponse:
    """The list (or the queued list): read from the system database, or through the
    executors when there is none to read (the page says which). With `?parent=<id>`, the
    rows of that workflow's children, for its row's expander."""
    application = await aapplication_for(request, app_name)
    source = await source_for(application)
    form, context = _list_form(request, application, queued)
    if "parent" in request.GET:
        return await _family_answer(request, application, source)
    valid = form.is_valid()
    search = await db_async(search_read)(application, form.cleaned_data.get("q", ""))
    if "count" in request.GET:
        return await _count_answer(source, form, search, queued)
    if valid:
        context["source"] = source.name
        context["search"] = search
        if search is not None:
            wanted = urlencode({"workflow_id_prefix": search.text})
            context["id_search_url"] = _without(request, "q", add=wanted)
        try:
            query = form.query(queued=queued, search=search)
            context["chips"] = _chips(request, query)
            context["order"] = query.order
            context["order_label"] = ORDER_LABELS[query.order]
            if queued and not request.htmx:
                # The page's queue table; the rows' own refresh does not show it.
                context |= await _queued_page(source, query)
            else:
                context["listing"] = await source.list(query)
        except BadCursor as exc:
            form.add_error("cursor", str(exc))
        except UnsupportedFilter as exc:
            # The form's field is named for one attribute, the query's for all of them.
            form.add_error("attribute" if exc.field == "attributes" else exc.field, str(exc))
        except (relay.RelayError, SlowQuery) as exc:
            context["unavailable"] = str(exc)
    if "listing" in context:
        by = context.get("order", CREATED)
        context["rows"] = _rows(application, context["listing"].items, by=by)
    status = 200 if form.is_valid() else 400
    # Said by the bulk bar (to operators), before acting: which way its jobs will go.
    context["path_notice"] = path_notice(
        application,
        await acting_executors(application),
        not_on_database=bulk_not_on_database(),
    )
    return await db_async(_render_list)(request, application, context, status)


def _list_template(request: HtmxHttpRequest) -> str:
    template = "workflows/list.html"
    return template + "#workflow-rows" if request.htmx else template


async def _count_answer(
    source: Source, form: WorkflowFilterForm, search: Search | None, queued: bool
) -> HttpResponse:
    """How many workflows the list's filters keep, for the line above its rows (asked
    after the rows, each time they come); counts come from the system database only."""
    if not isinstance(source, DatabaseSource) or not form.is_valid():
        return HttpResponse("")  # the form says what is wrong, if anything
    try:
        found = await source.count(form.query(queued=queued, search=search))
    except (OperationalError, SlowQuery):
        found = None
    except UnsupportedFilter:
        return HttpResponse("")  # the list says why
    if found is None:
        text = "not counted: it would take too long"
    else:
        count, more = found
        text = f"over {count:,} in all" if more else f"{count:,} in all"
    return HttpResponse(format_html("· {} ", text))


async def _family_answer(
    request: HtmxHttpRequest, application: Application, source: Source
) -> HttpResponse:
    """The rows of one workflow's children (the first CHILDREN_SHOWN, newest first), to
    open under its row; each may open its own."""
    parent = request.GET.get("parent", "").strip()
    depth = request.GET.get("depth", "1")
    if not parent or len(parent) > 255 or not NUMBER.fullmatch(depth):
        return HttpResponse(BAD_PARENT, status=400)
    query = ListQuery(
        parent_workflow_id=[parent], limit=CHILDREN_SHOWN, child_counts=True, failed_errors=True
    )
    context: dict[str, Any] = {
        "application": application,
        "parent": parent,
        "depth": min(int(depth), DEEPEST),
        "deepest": DEEPEST,
        "child_cap": CHILD_COUNT_CAP,
        # The rows line up with the list's: a box to tick where the list has them.
        "may_act": await db_async(request.user.has_perm)(PERM_OPERATE),
    }
    try:
        listing = await source.list(query)
    except (relay.RelayError, SlowQuery) as exc:
        context["unavailable"] = str(exc)
    else:
        context["listing"] = listing
        context["rows"] = _rows(application, listing.items, depth=context["depth"])
    return await arender(request, "workflows/list.html#family-rows", context)


async def _asked_at_once(*asking: Awaitable[Any]) -> list[Any]:
    """What each of `asking` answered, asked at once: its answer, or the RelayError or
    SlowQuery it failed with (any other error is raised)."""
    answers = await asyncio.gather(*asking, return_exceptions=True)
    for answer in answers:
        if isinstance(answer, BaseException) and not isinstance(
            answer, relay.RelayError | SlowQuery
        ):
            raise answer
    return answers


async def _queued_page(source: Source, query: ListQuery) -> dict[str, Any]:
    """The queued page's rows, the queues' configuration and each queue's depth, asked at
    once: the rows show even if the rest cannot be had (which the page says)."""
    listing, configs, depths = await _asked_at_once(
        source.list(query), source.queues(), source.queue_depths()
    )
    if isinstance(listing, BaseException):
        raise listing
    found: dict[str, Any] = {"listing": listing}
    failed = next((a for a in (configs, depths) if isinstance(a, BaseException)), None)
    if failed is not None:
        found["unavailable"] = f"The queues could not be read: {failed}"
    else:
        found["queue_table"] = _queue_table(configs, depths)
    return found


def _queue_table(configs: list[dict[str, Any]], depths: QueueDepths) -> dict[str, Any]:
    """The queued page's table: each queue configured or holding workflows, its
    configuration (None if it has none in the `queues` table) and what it holds."""
    configured = {config["name"]: config for config in configs}
    names = sorted(set(configured) | set(depths.depths))
    return {
        "rows": [
            {"name": name, "config": configured.get(name), "counts": depths.depths.get(name, {})}
            for name in names
        ],
        "sampled": depths.sampled,
    }


def _rows(
    application: Application, workflows: list[Workflow], *, depth: int = 0, by: str = CREATED
) -> list[ListRow]:
    """Each workflow as a row, its page's URL reversed once for the whole list; its time is
    the one the list is ordered by."""
    url = workflow_urls(application.name)
    now = timezone.now()
    rows = []
    for workflow in workflows:
        when = getattr(workflow, ORDER_TIMES[by])
        rows.append(
            ListRow(
                url(workflow.workflow_id),
                workflow,
                when,
                _ago(when, now),
                _error_line(workflow.error),
                depth,
            )
        )
    return rows


def _ago(moment: datetime | None, now: datetime) -> str:
    """How long ago, at the coarsest unit ("3 minutes ago"); the exact time is the title."""
    if moment is None:
        return ""
    if now - moment < timedelta(minutes=1):
        return "just now"
    return f"{timesince(moment, now, depth=1)} ago"


def _error_line(error: StoredValue | None) -> str:
    """The first line of a failed workflow's error, as its name and message."""
    return headline(error, limit=ERROR_LINE_CHARS)


def _chips(request: HttpRequest, query: ListQuery) -> list[tuple[str, str, str]]:
    """The filters set, each (label, value, the list's URL without it)."""
    chips = [
        (label, value, _without(request, name))
        for name, label in CHIPS.items()
        if (value := request.GET.get(name))
    ]
    for name, (label, shown) in CHOICE_CHIPS.items():
        if value := request.GET.get(name):
            chips.append((label, shown.get(value, value), _without(request, name)))
    # One chip per attribute, each removing only itself.
    for text in request.GET.getlist("attribute"):
        if text.strip():
            chips.append(("Attribute", text, _without(request, "attribute", value=text)))
    # A parent filter set says itself which levels are listed.
    if query.has_parent is None and query.top_level:
        chips.append(("Top-level only", "", _without(request, "all_levels", add="all_levels=on")))
    elif query.has_parent is None and request.GET.get("all_levels"):
        chips.append(("Children listed as rows", "", _without(request, "all_levels")))
    return chips


def _without(request: HttpRequest, name: str, *, add: str = "", value: str | None = None) -> str:
    """The list's URL without `name` (only its `value`, when given; nor a cursor: the first
    page of the new filter)."""
    params = request.GET.copy()
    for gone in (name, "cursor"):
        params.pop(gone, None)
    if value is not None:
        params.setlist(name, [v for v in request.GET.getlist(name) if v != value])
    query = "&".join(part for part in (params.urlencode(), add) if part)
    return f"{request.path}?{query}" if query else request.path


def _list_form(
    request: HttpRequest, application: Application, queued: bool
) -> tuple[WorkflowFilterForm, dict[str, Any]]:
    form = WorkflowFilterForm(request.GET)
    params = request.GET.copy()
    params.pop("cursor", None)
    context = {
        "application": application,
        "form": form,
        "queued": queued,
        "query": params.urlencode(),
        "bulk_actions": BulkJob.Action.choices,
        "deepest": DEEPEST,
        "child_cap": CHILD_COUNT_CAP,
        "column_choices": COLUMNS,
    }
    return form, context


def _render_list(
    request: HtmxHttpRequest, application: Application, context: dict[str, Any], status: int
) -> HttpResponse:
    """The list, with what StepChange keeps for it (the saved views the caller may use,
    their columns, the names to offer), read and rendered in the same trip."""
    context["saved_views"], may_act = _saved_views(request, application)
    context["may_act"] = not context["queued"] and may_act
    context["columns"] = _columns_of(request.user)
    if not request.htmx:
        # The search box's offers sit outside the rows a refresh or a keystroke swaps.
        context["names"] = names_offered(application)
    listing = context.get("listing")
    if listing is not None and listing.source == EXECUTOR:
        # No system database to learn names from: the names this page shows are noted.
        known = set(context["names"] if "names" in context else names_offered(application))
        names_seen_note(application, {w.name for w in listing.items} - known)
    return render(request, _list_template(request), context, status=status)


def _columns_of(user: Any) -> list[str]:
    """The optional columns `user` chose, or the default ones."""
    chosen = ListPreference.objects.filter(user=user).values_list("columns", flat=True).first()
    return list(chosen) if chosen is not None else DEFAULT_COLUMNS


class ColumnsForm(forms.Form):
    columns = forms.MultipleChoiceField(choices=COLUMNS, required=False)
    # The list's query string, to go back to the same list without JavaScript.
    query = forms.CharField(required=False, max_length=4000)


@login_required
@require_POST
def list_columns(request: HtmxHttpRequest, app_name: str) -> HttpResponse:
    """Remember which optional columns the caller's list shows (any role: it is their own
    view). htmx already changed the table; a form without it goes back to the list."""
    application = application_for(request, app_name)
    form = ColumnsForm(request.POST)
    if not form.is_valid():
        return HttpResponse(form.errors.as_text(), status=400)
    chosen = form.cleaned_data["columns"]
    ListPreference.objects.update_or_create(user=request.user, defaults={"columns": chosen})
    if request.htmx:
        return HttpResponse(status=204)
    back = reverse("workflows", args=[application.name])
    query = form.cleaned_data["query"]
    return redirect(f"{back}?{query}" if query else back)


@login_required
async def workflow_detail(
    request: HtmxHttpRequest, app_name: str, workflow_id: str
) -> HttpResponse:
    """A workflow's page; or, for htmx, one of its parts: the live header, the step views
    filtered by name, a fold of the step table opened, a child's timeline lanes, a step's
    side panel; or one value as stored, for a "Raw, as stored" box."""
    application = await aapplication_for(request, app_name)
    source = await source_for(application)
    context = {
        "application": application,
        "source": source.name,
        "notice": source.notice,
        "workflow_url": workflow_urls(application.name),
    }
    return await workflow_answer(request, source, workflow_id, context, page=_render_live)


# A whole workflow page from its context: the live console's, or the offline viewer's.
PageRenderer = Callable[[HtmxHttpRequest, dict[str, Any]], Awaitable[HttpResponse]]


async def workflow_answer(
    request: HtmxHttpRequest,
    source: Source,
    workflow_id: str,
    context: dict[str, Any],
    *,
    page: PageRenderer,
    not_found: str = "workflows/not_found.html",
) -> HttpResponse:
    """A workflow's page, a part of it or a value as stored, read from `source`. `context`
    holds `workflow_url` (the URL of any workflow's page: links stay where they began) and
    what `page` renders the whole page with (`not_found` when there is no such workflow);
    parts render the same template's partials."""
    try:
        if "raw" in request.GET:
            if "step" in request.GET:
                return await _step_raw(source, workflow_id, request.GET)
            return await _raw(source, workflow_id, request.GET["raw"])
        if request.htmx and "steps_cursor" in request.GET:
            return await _more_rows(request, source, workflow_id, context)
        part = request.GET.get("part", "") if request.htmx else ""
        if part in PARTS:
            return await PARTS[part](request, source, workflow_id, context)
        return await _page(request, source, workflow_id, context, page, not_found)
    except BadRequest as exc:
        return _part_failed(str(exc), 400)
    except _Unavailable as exc:
        return _part_failed(str(exc), exc.status)


class BadRequest(ValueError):
    """A part of a workflow's page asked for with parameters that make no sense."""


BAD_STEP = "step must be a step's number (its function id), not {value!r}."
NO_STEP = "Workflow {workflow_id} has no step {function_id}."
BAD_LANE = "A child's lanes need child, from and to (epoch ms) and under (an element id)."
VIEWS = ("timeline", "steps")
# Child lanes nest at most this deep (a child's child's ... child).
MAX_DEPTH = 8


def _function_id(query: QueryDict) -> int:
    value = query.get("step", "")
    if not SIGNED_NUMBER.fullmatch(value):
        raise BadRequest(BAD_STEP.format(value=value))
    return int(value)


async def _page(
    request: HtmxHttpRequest,
    source: Source,
    workflow_id: str,
    context: dict[str, Any],
    page: PageRenderer,
    not_found: str,
) -> HttpResponse:
    """The whole page: the workflow, the outline of its steps and its extras in one read;
    and, asked with ?step=, that step's panel open (no JS needed)."""
    chosen = _function_id(request.GET) if "step" in request.GET else None
    try:
        detail, step = await asyncio.gather(
            source.detail(workflow_id),
            _no_step() if chosen is None else source.step(workflow_id, chosen),
        )
    except (relay.RelayError, SlowQuery) as exc:
        context["unavailable"] = str(exc)
        return await arender(request, "workflows/detail.html", context, status=exc.status)
    if detail.workflow is None:
        context["workflow_id"] = workflow_id
        return await arender(request, not_found, context, status=404)
    context = _detail_context(request, context, detail)
    if step is not None:
        context["panel_step"] = step
    return await page(request, context)


async def _render_live(request: HtmxHttpRequest, context: dict[str, Any]) -> HttpResponse:
    application = context["application"]
    # Said above the actions (to operators), before acting: which way they will go.
    executors = await acting_executors(application)
    notice = path_notice(application, executors, not_on_database=not_on_database())
    return await db_async(_render_detail)(
        request, application, executors, context | {"path_notice": notice}
    )


async def _head(
    request: HtmxHttpRequest, source: Source, workflow_id: str, context: dict[str, Any]
) -> HttpResponse:
    """The live header of an active workflow's page, asked for every 2 s: its status row
    and its steps' outline only (no payloads, extras or timeline); once its status moved on
    from the page's (`was`), the page reloads, its steps, output and actions with it."""
    outline = await _outline(source, workflow_id)
    workflow = outline.workflow
    assert workflow is not None
    if request.GET.get("was") != workflow.status:
        return HttpResponse(headers={"HX-Refresh": "true"})
    context |= {
        "workflow": workflow,
        "outline": outline,
        "step_count": len(outline.steps),
        "step_total": f"{len(outline.steps):,}",
        "duration": workflow.duration,
        "active": workflow.status in ACTIVE,
    }
    return await arender(request, "workflows/detail.html#wf-head", context)


async def _no_step() -> Step | None:
    return None


def _detail_context(
    request: HttpRequest, context: dict[str, Any], detail: Detail
) -> dict[str, Any]:
    workflow = detail.workflow
    assert workflow is not None
    context |= {f.name: getattr(detail.extras, f.name) for f in fields(detail.extras)}
    context["workflow"] = workflow
    outline = detail.outline or Outline(workflow)
    context |= _step_views(request, context["workflow_url"], outline)
    # The workflow itself is shown; what could not be fetched says so.
    context["partial"] = detail.partial
    context["duration"] = workflow.duration
    context["active"] = workflow.status in ACTIVE
    if workflow.status in FAILED:
        failing = failing_step(outline.steps)
        context["failure"] = {"headline": headline(workflow.error), "step": failing}
    return context


async def _family(
    request: HtmxHttpRequest, source: Source, workflow_id: str, context: dict[str, Any]
) -> HttpResponse:
    """The workflow's family graph, which its page asks for once it has loaded (a read of
    its own, so that a workflow with many relatives never slows the page)."""
    context["workflow_id"] = workflow_id
    try:
        family = await source.family(workflow_id)
    except (relay.RelayError, SlowQuery) as exc:
        context["unavailable"] = str(exc)
        return await arender(request, "workflows/_family.html", context, status=exc.status)
    if family.workflow is None:
        context["unavailable"] = WORKFLOW_GONE.format(workflow_id=workflow_id)
        return await arender(request, "workflows/_family.html", context, status=404)
    context |= {"family": family, "now": timezone.now()}
    return await arender(request, "workflows/_family.html", context)


def _step_views(
    request: HttpRequest, workflow_url: Callable[[str], str], outline: Outline
) -> dict[str, Any]:
    """The timeline and the step table of `outline`, its steps filtered by name (?q=)."""
    workflow = outline.workflow
    assert workflow is not None
    query = request.GET.get("q", "").strip()
    steps = outline.steps
    if query:
        lowered = query.lower()
        steps = [s for s in steps if lowered in (s.function_name or "").lower()]
    drawn = timeline(workflow, steps, now=timezone.now())
    view = request.GET.get("view")
    return {
        "outline": outline,
        "step_count": len(outline.steps),
        "step_total": f"{len(outline.steps):,}",
        "first_step_id": outline.steps[0].function_id if outline.steps else None,
        "last_step": outline.steps[-1] if outline.steps else None,
        "failed_step": failing_step(outline.steps),
        "step_names": sorted({s.function_name for s in outline.steps if s.function_name}),
        "q": query,
        "shown_count": len(steps),
        "view": view if view in VIEWS else VIEWS[0],
        "timeline": drawn,
        "depth": 0,
        "lane_prefix": "lane",
        "rows": rows(steps, child_url=workflow_url, top=drawn.slowest),
    }


async def _filtered_views(
    request: HtmxHttpRequest, source: Source, workflow_id: str, context: dict[str, Any]
) -> HttpResponse:
    """The timeline and the step table again, for the filter by name (the outline is read
    again: without outputs it is cheap)."""
    outline = await _outline(source, workflow_id)
    context |= _step_views(request, context["workflow_url"], outline)
    return await arender(request, "workflows/detail.html#step-views-body", context)


async def _outline(source: Source, workflow_id: str) -> Outline:
    try:
        outline = await source.outline(workflow_id)
    except (relay.RelayError, SlowQuery) as exc:
        raise _Unavailable(str(exc), exc.status) from None
    if outline.workflow is None:
        raise _Unavailable(WORKFLOW_GONE.format(workflow_id=workflow_id), 404)
    return outline


class _Unavailable(Exception):
    """A part could not be read: said in its place, with the status of why."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


async def _child_lanes(
    request: HtmxHttpRequest, source: Source, workflow_id: str, context: dict[str, Any]
) -> HttpResponse:
    """A child workflow's lanes, on its parent's time axis, to be shown under the lane of
    the step that started it."""
    query = request.GET
    child, under = query.get("child", ""), query.get("under", "")
    bounds = (query.get("from", ""), query.get("to", ""), query.get("depth", "1"))
    if (
        not child
        or not under.replace("-", "").isalnum()
        or not all(NUMBER.fullmatch(b) for b in bounds)
    ):
        raise BadRequest(BAD_LANE)
    start, end, depth = (int(b) for b in bounds)
    try:
        outline = await _outline(source, child)
    except _Unavailable as exc:
        return _part_failed(str(exc), exc.status)
    assert outline.workflow is not None
    drawn = timeline(outline.workflow, outline.steps, now=timezone.now(), axis=(start, end))
    context |= {
        "timeline": drawn,
        "depth": min(depth, MAX_DEPTH),
        "lane_prefix": under,
        "child_workflow": outline.workflow,
        "child_url": context["workflow_url"](child),
    }
    return await arender(request, "workflows/detail.html#lanes", context)


async def _step_panel(
    request: HtmxHttpRequest, source: Source, workflow_id: str, context: dict[str, Any]
) -> HttpResponse:
    """One step's side panel: its output or error, its timing and its child."""
    function_id = _function_id(request.GET)
    try:
        step = await source.step(workflow_id, function_id)
    except (relay.RelayError, SlowQuery) as exc:
        return _part_failed(str(exc), exc.status)
    if step is None:
        message = NO_STEP.format(workflow_id=workflow_id, function_id=function_id)
        return _part_failed(message, 404)
    view = request.GET.get("view", "")
    context |= {"panel_step": step, "view": view if view in VIEWS else VIEWS[0]}
    return await arender(request, "workflows/detail.html#step-panel", context)


def _part_failed(message: str, status: int) -> HttpResponse:
    """A part's place, saying why it could not be shown (the page swaps errors in)."""
    return HttpResponse(
        format_html('<div class="alert danger" role="alert">{}</div>', message), status=status
    )


async def _more_rows(
    request: HtmxHttpRequest, source: Source, workflow_id: str, context: dict[str, Any]
) -> HttpResponse:
    """Rows of the step table after the step `steps_cursor` names, up to the step `until`
    names (a fold opened) or the last: at most STEPS_PER_PAGE, then a fold for the rest."""
    cursor, until = request.GET["steps_cursor"], request.GET.get("until", "")
    if not SIGNED_NUMBER.fullmatch(cursor) or (until and not SIGNED_NUMBER.fullmatch(until)):
        return _more_steps_failed(request, BadCursor(BAD_CURSOR), status=400)
    try:
        outline = await _outline(source, workflow_id)
    except _Unavailable as exc:
        return _more_steps_failed(request, exc, status=exc.status)
    after, last = int(cursor), int(until) if until else None
    query = request.GET.get("q", "").strip().lower()
    matching = [s for s in outline.steps if query in (s.function_name or "").lower()]
    steps = [
        s
        for s in matching
        if (s.function_id or 0) > after and (last is None or (s.function_id or 0) <= last)
    ]
    shown = rows(
        steps[:STEPS_PER_PAGE],
        child_url=context["workflow_url"],
        top=slowest(matching),
        fold=False,
    )
    if len(steps) > STEPS_PER_PAGE:
        rest = steps[STEPS_PER_PAGE:]
        shown.append(Row(fold=fold_of(rest, steps[STEPS_PER_PAGE - 1])))
    context |= {"rows": shown, "workflow_id": workflow_id, "q": request.GET.get("q", "")}
    return await arender(request, "workflows/detail.html#step-rows", context)


PARTS: dict[
    str,
    Callable[[HtmxHttpRequest, Source, str, dict[str, Any]], Awaitable[HttpResponse]],
] = {
    "steps": _filtered_views,
    "lane": _child_lanes,
    "panel": _step_panel,
    "family": _family,
    "head": _head,
}


RAW_UNKNOWN = "No value named {key!r}: ask for input, output or error."
RAW_UNKNOWN_STEP = "A step has no value named {key!r}: ask for output or error."
WORKFLOW_GONE = "Workflow {workflow_id} is no longer there."
RAW_SHOWN_CHARS = 1_000_000


async def _raw(source: Source, workflow_id: str, key: str) -> HttpResponse:
    """A workflow value as stored (see `_raw_answer`)."""
    if key not in STORED_VALUES:
        return _raw_answer(RAW_UNKNOWN.format(key=key), status=400)
    try:
        found = await source.stored(workflow_id)
    except (relay.RelayError, SlowQuery) as exc:
        return _raw_answer(str(exc), status=exc.status)
    if found is None:
        return _raw_answer(WORKFLOW_GONE.format(workflow_id=workflow_id), status=404)
    value: StoredValue | None = getattr(found, key)
    if value is None:
        return _raw_answer(None)
    # From the system database, the text as stored; through an executor, the text it shows.
    text = value.raw if value.raw is not None else value.value
    serialization = found.serialization if value.raw is not None else value.format
    return _raw_answer(text, serialization=serialization)


async def _step_raw(source: Source, workflow_id: str, query: QueryDict) -> HttpResponse:
    """A step's output or error as stored (or, through an executor, as it shows it)."""
    key = query.get("raw", "")
    if key not in ("output", "error"):
        return _raw_answer(RAW_UNKNOWN_STEP.format(key=key), status=400)
    function_id = _function_id(query)
    try:
        step = await source.step(workflow_id, function_id)
    except (relay.RelayError, SlowQuery) as exc:
        return _raw_answer(str(exc), status=exc.status)
    if step is None:
        message = NO_STEP.format(workflow_id=workflow_id, function_id=function_id)
        return _raw_answer(message, status=404)
    value: StoredValue | None = getattr(step, key)
    if value is None:
        return _raw_answer(None)
    if value.raw is None:
        return _raw_answer(value.value, serialization=value.format)
    return _raw_answer(value.raw, serialization=step.serialization)


def _raw_answer(
    text: str | None, *, serialization: str | None = None, status: int = 200
) -> HttpResponse:
    """A workflow value as stored, for its "Raw, as stored" box (or why it is not there):
    the serialization named and the length, the text cut at RAW_SHOWN_CHARS."""
    if status != 200:
        return HttpResponse(format_html('<span class="error">{}</span>', text), status=status)
    if text is None:
        return HttpResponse('<span class="muted raw-head">No stored value.</span>')
    cut = len(text) > RAW_SHOWN_CHARS
    head = format_html(
        '<span class="small muted raw-head">{} · {} characters{}</span>\n',
        serialization or "no serialization named",
        f"{len(text):,}",
        f", the first {RAW_SHOWN_CHARS:,} shown" if cut else "",
    )
    return HttpResponse(head + format_html("{}", text[:RAW_SHOWN_CHARS]))


def _more_steps_failed(request: HttpRequest, exc: Exception, *, status: int) -> HttpResponse:
    """The "more steps" row again, saying why the next rows did not come; its button tries
    once more (the page opts in to swapping this error: data-swap-errors)."""
    return HttpResponse(
        format_html(
            '<tr class="more"><td colspan="6"><div class="alert danger" role="alert">{}</div>'
            '<button type="button" class="small" hx-get="{}" hx-target="closest tr" '
            'hx-swap="outerHTML" data-swap-errors>Try again</button></td></tr>',
            str(exc),
            request.get_full_path(),
        ),
        status=status,
    )


AUDIT_HISTORY_SIZE = 20


def _audit_history(application_name: str, workflow_id: str) -> QuerySet[AuditRecord]:
    """What was done to a workflow, newest first (the model's order)."""
    records = AuditRecord.objects.filter(application_name=application_name, target=workflow_id)
    return records[:AUDIT_HISTORY_SIZE]


def _render_detail(
    request: HttpRequest,
    application: Application,
    executors: list[Executor],
    context: dict[str, Any],
) -> HttpResponse:
    """The workflow's page, with what the caller may do to it (through `executors`, those
    an action would reach: `acting_executors`) and what was done to it, rendered in the
    same trip."""
    workflow: Workflow = context["workflow"]
    controls: dict[str, Any] = {
        "may_act": request.user.has_perm(PERM_OPERATE),
        "audit_history": list(_audit_history(application.name, workflow.workflow_id)),
    }
    if controls["may_act"]:
        # The executors an action would reach decide what is offered and how forms are
        # filled (the path notice says the same); a viewer's page needs neither.
        controls |= {
            "offers": offers(
                workflow,
                executors,
                database=action_path(application, executors) == DATABASE_PATH,
            ),
            "action_form": ActionForm(),
            "fork_id": str(uuid.uuid4()),
            "first_step": Sdk.of(executors[0]).first_step if executors else 1,
            "live_versions": sorted({e.application_version for e in executors} - {""}),
        }
    return render(request, "workflows/detail.html", context | controls)


def _saved_views(request: HttpRequest, application: Any) -> tuple[list[SavedView], bool]:
    """The saved views the caller may use, and whether they may act on workflows."""
    views = list(
        SavedView.objects.filter(application=application)
        .filter(Q(owner=request.user) | Q(shared=True))
        .select_related("owner")
    )
    return views, request.user.has_perm(PERM_OPERATE)


class SavedViewForm(forms.Form):
    name = forms.CharField(max_length=100)
    query = forms.CharField(max_length=2000, required=False)
    shared = forms.BooleanField(required=False)


@login_required
@require_POST
def save_view(request: HttpRequest, app_name: str) -> HttpResponse:
    application = application_for(request, app_name)
    form = SavedViewForm(request.POST)
    if not form.is_valid():
        messages.error(request, "A saved view needs a name.")
        return redirect("workflows", app_name=app_name)
    saved_view_save(
        application=application,
        name=form.cleaned_data["name"],
        query=form.cleaned_data["query"],
        shared=form.cleaned_data["shared"],
        request=request,
    )
    messages.success(request, f"Saved the view “{form.cleaned_data['name']}”.")
    return redirect(f"{reverse('workflows', args=[app_name])}?{form.cleaned_data['query']}")


@login_required
@require_POST
def delete_view(request: HttpRequest, app_name: str, view_id: int) -> HttpResponse:
    application = application_for(request, app_name)
    view = get_object_or_404(SavedView, pk=view_id, application=application, owner=request.user)
    saved_view_delete(view=view, request=request)
    messages.success(request, f"Deleted the view “{view.name}”.")
    return redirect("workflows", app_name=app_name)


# The overview's charts: the Metrics page's windows, each with its heading.
DASHBOARD_CHARTS = (("1h", "Workflows, last hour"), ("24h", "Workflows, last day"))


@login_required
async def dashboard(request: HtmxHttpRequest, app_name: str) -> HttpResponse:
    application = await aapplication_for(request, app_name)
    source = await source_for(application)
    now = timezone.now()
    # StepChange's own rows are read while the source counts (an executor's answers are
    # awaited, not worked for): the page waits for the slower of the two, not their sum.
    own, counted = await asyncio.gather(
        db_async(_own_figures)(application, now),
        source.overview(now=now),
        return_exceptions=True,
    )
    if isinstance(own, BaseException):
        raise own
    context: dict[str, Any] = {
        "application": application,
        "source": source.name,
        "notice": source.notice,
        "headline_sample": RELAYED_HEADLINE_SAMPLE,
        **own,
    }
    if isinstance(counted, SlowQuery):
        # The executors, requests and notices above still show.
        context["unavailable"] = str(counted)
    elif isinstance(counted, BaseException):
        raise counted
    else:
        overview = counted
        context["unavailable"] = overview.unavailable
        context["failures"] = overview.failures
        if overview.queues is not None:
            context["queues"] = overview.queues.depths
            context["queues_sampled"] = overview.queues.sampled
        context["headline"] = overview.headline
    template = "workflows/dashboard.html"
    if request.htmx:
        template += "#dashboard"
    return await arender(request, template, context)


RECENT_CONNECTIONS = 8
# The overview counts the connected executors and shows the newest few: the Executors page
# pages through them all.
NEWEST_EXECUTORS = 5


def _own_figures(application: Application, now: datetime) -> dict[str, Any]:
    """What the overview reads from StepChange's own database: the registry's summary and
    the charts, in one trip to the database thread."""
    return {**_registry_summary(application), "charts": _dashboard_charts(application, now)}


def _registry_summary(application: Any) -> dict[str, Any]:
    from conductor.models import (
        Executor,
        ExecutorConnection,
        PoisonWorkflow,
        RecoveryAttempt,
        RequestLog,
    )
    from conductor.recovery import POISON_THRESHOLD

    connections = ExecutorConnection.objects.filter(executor__application=application)
    live = Executor.objects.live().filter(application=application)
    return {
        "executors_count": live.count(),
        "executors": list(live.order_by("-connected_at")[:NEWEST_EXECUTORS]),
        "connections": list(connections.select_related("executor")[:RECENT_CONNECTIONS]),
        "requests": list(RequestLog.objects.filter(application=application).order_by("-pk")[:8]),
        "attempts": list(RecoveryAttempt.objects.filter(application=application)[:5]),
        "poison": list(
            PoisonWorkflow.objects.filter(
                application=application,
                resolved_at__isnull=True,
                executors_killed__gte=POISON_THRESHOLD,
            )
        ),
    }


def _dashboard_charts(application: Application, now: datetime) -> list[Chart]:
    """Workflows finished by outcome, from the metric roll-ups: a refresh reads a few
    rows of StepChange's own database, never the system database's workflows."""
    windows = [WINDOWS[key] for key, _ in DASHBOARD_CHARTS]
    buckets = outcome_buckets(application, windows, now)
    return [
        outcome_chart(window, buckets[window.key], title)
        for window, (_, title) in zip(windows, DASHBOARD_CHARTS, strict=True)
    ]


class ActionForm(forms.Form):
    """Every field an action may take; each action's panel shows the ones it uses."""

    reason = forms.CharField(required=False, max_length=2000, widget=forms.Textarea)
    cancel_children = forms.BooleanField(required=False)
    delete_children = forms.BooleanField(required=False)
    queue_name = forms.CharField(required=False, max_length=255)
    start_step = forms.IntegerField(required=False, min_value=0)
    new_workflow_id = forms.CharField(required=False, max_length=255)
    application_version = forms.CharField(required=False, max_length=255)
    failure_mode = forms.ChoiceField(
        required=False,
        choices=[
            ("last_failure", "the last failed step"),
            ("last_step", "the last step"),
            ("step", "the step chosen"),
            ("step_name", "the last step of a name"),
        ],
    )
    step_name = forms.CharField(required=False, max_length=255)

    def parameters(self) -> Parameters:
        data = self.cleaned_data
        return Parameters(
            reason=data["reason"],
            cancel_children=data["cancel_children"],
            delete_children=data["delete_children"],
            queue_name=data["queue_name"] or None,
            start_step=data["start_step"],
            new_workflow_id=data["new_workflow_id"] or None,
            application_version=data["application_version"] or None,
            failure_mode=data["failure_mode"] or "last_failure",
            step_name=data["step_name"] or None,
        )


@login_required
@require_POST
async def workflow_action(
    request: HttpRequest, app_name: str, workflow_id: str, action: str
) -> HttpResponse:
    application = await aapplication_for(request, app_name, PERM_OPERATE)
    back = reverse("workflow-detail", args=[app_name, workflow_id])
    try:
        chosen = Action(action)
    except ValueError:
        raise Http404(f"No action {action!r}.") from None
    form = ActionForm(request.POST)
    if not form.is_valid():
        problems = "; ".join(
            f"{field}: {' '.join(str(error) for error in errors)}"
            for field, errors in form.errors.items()
        )
        messages.error(request, f"{chosen.label}: {problems}")
        return redirect(back)
    try:
        outcome = await workflow_act(
            application=application,
            action=chosen,
            workflow_id=workflow_id,
            parameters=form.parameters(),
            actor=request.user,
            request=request,
            source="console",
        )
    except ActionRefusedError as exc:
        messages.warning(request, _linked(str(exc), app_name, exc.existing_workflow_id))
        return redirect(back)
    except (ActionError, relay.RelayError) as exc:
        messages.error(request, f"{chosen.label} failed: {exc}")
        return redirect(back)
    messages.success(request, _linked(outcome.detail, app_name, outcome.new_workflow_id or ""))
    if outcome.new_workflow_id:
        return redirect("workflow-detail", app_name, outcome.new_workflow_id)
    if chosen is Action.DELETE:
        return redirect("workflows", app_name=app_name)
    return redirect(back)


def _linked(text: str, app_name: str, workflow_id: str) -> str:
    """The message, with the workflow it names made a link."""
    if not workflow_id:
        return text
    link = format_html(
        '<a href="{}"><code>{}</code></a>',
        reverse("workflow-detail", args=[app_name, workflow_id]),
        workflow_id,
    )
    return format_html("{} {}", text, link)


# Bulk actions in the console: choose on the list, confirm with a preview, follow the job.

BULK_ITEMS_PER_PAGE = 200


class BulkForm(ActionForm):
    action = forms.ChoiceField(choices=BulkJob.Action.choices)
    scope = forms.ChoiceField(choices=[("selected", "selected"), ("filter", "filter")])
    ids = forms.CharField(required=False, widget=forms.MultipleHiddenInput)
    filter = forms.CharField(required=False, max_length=4000, widget=forms.HiddenInput)


@login_required
async def bulk_new(request: HttpRequest, app_name: str) -> HttpResponse:
    """GET: the preview and confirmation of a bulk action. POST: start it."""
    application = await aapplication_for(request, app_name, PERM_OPERATE)
    data = request.POST if request.method == "POST" else request.GET
    form = BulkForm({**data.dict(), "ids": data.getlist("ids")})
    back = f"{reverse('workflows', args=[app_name])}?{data.get('filter', '')}"
    if not form.is_valid():
        messages.error(request, f"Bulk action: {form.errors.as_text()}")
        return redirect(back)
    ids = data.getlist("ids") if form.cleaned_data["scope"] == "selected" else None
    if ids is not None and not ids:
        messages.warning(request, "Select some workflows first, or act on the whole filter.")
        return redirect(back)
    filters = WorkflowFilterForm(QueryDict(form.cleaned_data["filter"]))
    if not filters.is_valid():
        messages.error(request, "The filter is not valid any more: apply it again.")
        return redirect(back)
    search = await db_async(search_read)(application, filters.cleaned_data.get("q", ""))
    try:
        query = filters.query(queued=False, search=search) if ids is None else None
        selection = await bulk_select(
            application, query=query, workflow_ids=ids, actor=request.user.get_username()
        )
    except (relay.RelayError, SlowQuery, BadCursor, UnsupportedFilter) as exc:
        if request.method == "POST":
            await db_async(bulk_selection_failed)(
                application=application,
                action=form.cleaned_data["action"],
                description=form.cleaned_data["filter"] or f"{len(ids or [])} chosen workflows",
                error=exc,
                user=request.user,
                request=request,
            )
        messages.error(request, f"Could not select the workflows: {exc}")
        return redirect(back)
    action = BulkJob.Action(form.cleaned_data["action"])
    if request.method == "POST":
        return await _bulk_start(request, application, action, selection, form, ids, back)
    context = {
        "application": application,
        "form": form,
        "action": action,
        "ids": ids or [],
        "preview": selection.preview(action),
        "limit_text": f"{MAX_WORKFLOWS:,}",
        "explanation": EXPLANATIONS[ACTIONS[action]],
        "filter_text": form.cleaned_data["filter"],
        "top_level": query is not None and query.top_level,
        # A fork onto a version offers the versions a connected executor runs.
        "running_versions": await db_async(live_versions)(application),
        "chosen_version": data.get("application_version", ""),
    }
    return await arender(request, "workflows/bulk_new.html", context)


async def _bulk_start(
    request: HttpRequest,
    application: Any,
    action: BulkJob.Action,
    selection: Selection,
    form: BulkForm,
    ids: list[str] | None,
    back: str,
) -> HttpResponse:
    description = (
        f"{len(ids)} chosen workflows"
        if ids is not None
        else _describe(form.cleaned_data["filter"])
    )
    try:
        job = await db_async(bulk_job_create)(
            application=application,
            action=action,
            selection=selection,
            parameters=form.parameters(),
            description=description,
            user=request.user,
            request=request,
        )
    except ActionError as exc:
        messages.error(request, str(exc))
        return redirect(back)
    bulk_jobs_wake()
    return redirect("bulk-job", application.name, job.pk)


def _describe(query: str) -> str:
    shown = [f"{key}={value}" for key, value in QueryDict(query).items() if value]
    return "filter " + (", ".join(shown) or "(everything)")


@login_required
async def bulk_jobs_page(request: HttpRequest, app_name: str) -> HttpResponse:
    application = await aapplication_for(request, app_name)
    jobs = await db_async(_recent_jobs)(application)
    return await arender(
        request, "workflows/bulk_jobs.html", {"application": application, "jobs": jobs}
    )


def _recent_jobs(application: Any) -> list[tuple[BulkJob, dict[str, int]]]:
    return [(job, progress(job)) for job in BulkJob.objects.filter(application=application)[:50]]


@login_required
async def bulk_job_page(request: HtmxHttpRequest, app_name: str, job_id: int) -> HttpResponse:
    application = await aapplication_for(request, app_name)
    context = await db_async(_job_context)(request, application, job_id)
    template = "workflows/bulk_job.html"
    if request.htmx:
        if context["job"].finished:
            # Finished: the per-workflow results changed, so show the whole page again.
            return HttpResponse(headers={"HX-Refresh": "true"})
        template += "#job-progress"
    return await arender(request, template, context)


def _job_context(request: HttpRequest, application: Any, job_id: int) -> dict[str, Any]:
    job = get_object_or_404(BulkJob, application=application, pk=job_id)
    items = job.items.order_by("pk")
    after = request.GET.get("after", "")
    if NUMBER.fullmatch(after):
        items = items.filter(pk__gt=int(after))
    page = list(items[: BULK_ITEMS_PER_PAGE + 1])
    counts = progress(job)
    return {
        "application": application,
        "job": job,
        "counts": counts,
        "percent": round(100 * counts["finished"] / counts["total"]) if counts["total"] else 100,
        "items": page[:BULK_ITEMS_PER_PAGE],
        "next_after": page[BULK_ITEMS_PER_PAGE - 1].pk if len(page) > BULK_ITEMS_PER_PAGE else None,
        "may_act": request.user.has_perm(PERM_OPERATE),
    }


@login_required
@require_POST
async def bulk_job_retry_view(request: HttpRequest, app_name: str, job_id: int) -> HttpResponse:
    application = await aapplication_for(request, app_name, PERM_OPERATE)
    job = await db_async(get_object_or_404)(BulkJob, application=application, pk=job_id)
    try:
        await db_async(bulk_job_retry)(job=job, user=request.user, request=request)
    except ActionError as exc:
        messages.warning(request, str(exc))
    else:
        bulk_jobs_wake()
        messages.success(request, f"Bulk job {job.pk} is queued again.")
    return redirect("bulk-job", app_name, job.pk)


GO_BLANK = "Type a workflow ID, or the start of one."
GO_TOO_LONG = "A workflow ID to go to is at most {limit:,} characters."
GO_NOTHING = "No workflow of {app} has an ID starting with “{prefix}”."
# Longer than any ID a person types or pastes; it only bounds the prefix query.
GO_MAX_ID = 1000


class GoToWorkflowForm(forms.Form):
    # Stripped: an ID pasted from a log or a chat often carries a space or a line break.
    id = forms.CharField(
        label="Workflow ID",
        max_length=GO_MAX_ID,
        error_messages={"required": GO_BLANK, "max_length": GO_TOO_LONG.format(limit=GO_MAX_ID)},
    )
    # (A NUL in it never gets here: stepchange.middleware refuses it with a 400.)
    back = forms.CharField(required=False, widget=forms.HiddenInput)


@login_required
async def go_to_workflow(request: HttpRequest, app_name: str) -> HttpResponse:
    """The "go to workflow" box of every application page: to the workflow with that ID,
    else to the only one whose ID starts with it, else to the list of those that do; when
    none does, back to the page the box was on, saying so."""
    application = await aapplication_for(request, app_name)
    form = GoToWorkflowForm(request.GET)
    context: dict[str, Any] = {"application": application, "go_form": form}
    if not form.is_valid():
        return await arender(request, "workflows/go.html", context, status=400)
    wanted = form.cleaned_data["id"]
    try:
        found = await _go_target(await source_for(application), application.name, wanted)
    except (relay.RelayError, SlowQuery) as exc:
        context["unavailable"] = str(exc)
        return await arender(request, "workflows/go.html", context, status=exc.status)
    if found is not None:
        return redirect(found)
    messages.warning(request, GO_NOTHING.format(app=application.name, prefix=wanted))
    return redirect(_go_back(request, form.cleaned_data["back"], application))


async def _go_target(source: Source, app_name: str, wanted: str) -> str | None:
    """Where the box sends someone who typed `wanted`, or None if no ID starts with it."""
    # The exact ID first: it may also be the start of others' IDs.
    if await source.get(wanted) is not None:
        return workflow_urls(app_name)(wanted)
    # Two are enough to tell one match from several.
    listing = await source.list(ListQuery(workflow_id_prefix=wanted, limit=2))
    if len(listing.items) == 1:
        return workflow_urls(app_name)(listing.items[0].workflow_id)
    if listing.items:
        query = QueryDict(mutable=True)
        query["workflow_id_prefix"] = wanted
        return f"{reverse('workflows', args=[app_name])}?{query.urlencode()}"
    return None


def _go_back(request: HttpRequest, back: str, application: Application) -> str:
    """The page the box was on, if it is one of ours; else the application's list."""
    if back and url_has_allowed_host_and_scheme(
        back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return back
    return reverse("workflows", args=[application.name])


# Application versions: what runs where, what waits on what, and the latest.


class SetLatestVersionForm(forms.Form):
    version_name = forms.CharField(max_length=255)
    reason = forms.CharField(required=False, max_length=2000)


@login_required
async def versions_page(request: HttpRequest, app_name: str) -> HttpResponse:
    application = await aapplication_for(request, app_name)
    context: dict[str, Any] = {
        "application": application,
        "can_operate": request.user.has_perm(PERM_OPERATE),
    }
    try:
        found = await versions_read(application, actor=request.user.get_username())
    except (relay.RelayError, SlowQuery) as exc:
        context["error"] = str(exc)
    else:
        context |= {
            "found": found,
            "stranded": [
                (version, _stranded_links(application, version)) for version in found.stranded
            ],
        }
    return await arender(request, "workflows/versions.html", context)


def _stranded_links(application: Application, version: Version) -> dict[str, str]:
    """The list of a stranded version's waiting workflows, and a bulk fork of them (none
    for unpinned workflows: the list has no filter for "no version")."""
    if not version.name:
        return {}
    waiting = [("status", "PENDING"), ("status", "ENQUEUED"), ("all_levels", "on")]
    filters = urlencode([("application_version", version.name), *waiting])
    fork = urlencode({"action": "fork_to_version", "scope": "filter", "filter": filters})
    return {
        "list": f"{reverse('workflows', args=[application.name])}?{filters}",
        "fork": f"{reverse('bulk-new', args=[application.name])}?{fork}",
    }


@login_required
@require_POST
async def version_set_latest_view(request: HttpRequest, app_name: str) -> HttpResponse:
    application = await aapplication_for(request, app_name, PERM_OPERATE)
    form = SetLatestVersionForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Set the latest version: {form.errors.as_text()}")
        return redirect("versions", app_name)
    try:
        done = await version_set_latest(
            application=application,
            version_name=form.cleaned_data["version_name"],
            reason=form.cleaned_data["reason"],
            actor=request.user,
            request=request,
            source="console",
        )
    except (VersionError, relay.RelayError, SlowQuery) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, done["detail"])
    return redirect("versions", app_name)
