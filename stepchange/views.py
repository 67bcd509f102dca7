"""Console pages of the core: home, personal API tokens, password change, the audit log."""

import csv
import json
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.handlers.asgi import ASGIRequest
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse_lazy
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST

from stepchange.asyncdb import db_async
from stepchange.audit import AuditAction, audit_record
from stepchange.models import ApiToken, Application, AuditRecord
from stepchange.paging import Page, newest_first, query_without_cursor
from stepchange.roles import PERM_ADMINISTER, Role, role_of
from stepchange.services import api_token_create, api_token_revoke

AUDIT_PAGE_SIZE = 50


@login_required
def home(request: HttpRequest) -> HttpResponse:
    applications = Application.objects.visible_to(request.user).with_live_executor_counts()
    return render(
        request,
        "stepchange/home.html",
        {"applications": applications, "has_role": role_of(request.user) is not Role.NONE},
    )


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the token is for, e.g. 'deploy script'.")


@login_required
def tokens(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST or None)
    created = None
    if request.method == "POST" and form.is_valid():
        _, created = api_token_create(
            user=request.user, name=form.cleaned_data["name"], request=request
        )
        form = TokenForm()
    return render(
        request,
        "stepchange/tokens.html",
        {"form": form, "created": created, "tokens": request.user.api_tokens.all()},  # type: ignore[union-attr]
    )


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=token_id, user=request.user)
    api_token_revoke(token=token, actor=request.user, request=request)
    messages.success(request, f"Token “{token.name}” revoked.")
    return redirect("tokens")


class LoginView(auth_views.LoginView):
    redirect_authenticated_user = True

    def form_invalid(self, form: Any) -> HttpResponse:
        # A wrong password is an authentication failure, and says so in its status.
        response = super().form_invalid(form)
        response.status_code = 401
        return response


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "registration/password_change.html"
    success_url = reverse_lazy("home")

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        audit_record(action=AuditAction.PASSWORD_CHANGE, request=self.request)
        messages.success(self.request, "Your password was changed.")
        return response


BAD_TIME = "Enter a valid date, or date and time in ISO 8601 (2026-11-21T10:00:00+00:00)."
AUDIT_ADMINS_ONLY = "Only admins may read the audit log."
EXPORT_FORMATS = ("csv", "json")
# Rows per database trip while an export streams: memory stays flat however long the log.
EXPORT_CHUNK = 500
EXPORT_FIELDS = (
    "id",
    "created_at",
    "actor_name",
    "role",
    "application_name",
    "action",
    "target",
    "parameters",
    "result",
    "detail",
    "reason",
    "source_address",
    "request_id",
    "response",
    "value_diff",
)
JSON_FIELDS = frozenset({"parameters", "response", "value_diff"})
# A spreadsheet evaluates a cell that starts with one of these (OWASP: CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class AuditFilterForm(forms.Form):
    """The audit log's filters, shared by the console page, its exports and the API."""

    actor = forms.CharField(required=False)
    application = forms.CharField(required=False)
    action = forms.CharField(required=False)
    target = forms.CharField(required=False)
    result = forms.ChoiceField(
        required=False, choices=[("", "any result"), *AuditRecord.Result.choices]
    )
    since = forms.DateTimeField(
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "date"}),
        error_messages={"invalid": BAD_TIME},
    )
    until = forms.DateTimeField(
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "date"}),
        error_messages={"invalid": BAD_TIME},
    )
    before = forms.IntegerField(required=False, widget=forms.HiddenInput)
    export = forms.ChoiceField(
        required=False,
        choices=[("", "page"), *((name, name) for name in EXPORT_FORMATS)],
        widget=forms.HiddenInput,
    )

    LOOKUPS = {
        "actor": "actor_name__iexact",
        "application": "application_name__iexact",
        "action": "action__startswith",
        "target": "target__icontains",
        "result": "result",
        "since": "created_at__gte",
        "until": "created_at__lt",
    }

    def records(self) -> QuerySet[AuditRecord]:
        """The records these (valid) filters match; the cursor is the caller's business."""
        records = AuditRecord.objects.all()
        for field, lookup in self.LOOKUPS.items():
            if self.cleaned_data.get(field) not in (None, ""):
                records = records.filter(**{lookup: self.cleaned_data[field]})
        return records

    def used(self) -> dict[str, str]:
        """The filters given, as text: the parameters of an export's audit record."""
        return {
            field: value.isoformat() if isinstance(value, datetime) else str(value)
            for field in self.LOOKUPS
            if (value := self.cleaned_data.get(field)) not in (None, "")
        }


@login_required
def audit_log(request: HttpRequest) -> HttpResponseBase:
    if not request.user.has_perm(PERM_ADMINISTER):
        raise PermissionDenied(AUDIT_ADMINS_ONLY)
    form = AuditFilterForm(request.GET)
    page = Page[AuditRecord]([], None)
    if form.is_valid():
        if form.cleaned_data["export"]:
            return audit_export(request, form, as_format=form.cleaned_data["export"])
        page = newest_first(
            form.records(), before=form.cleaned_data["before"], size=AUDIT_PAGE_SIZE
        )
    template = "stepchange/audit.html"
    if request.htmx:  # type: ignore[attr-defined]
        template += "#audit-rows"
    return render(
        request,
        template,
        {
            "form": form,
            "records": page.items,
            "next_before": page.next_before,
            "query": query_without_cursor(request),
        },
    )


def audit_export(
    request: HttpRequest, form: AuditFilterForm, *, as_format: str
) -> StreamingHttpResponse:
    """Every record the (valid) filters match, newest first, as a CSV or JSON download.
    The export is itself audited, first, and shows the log as it stood at that moment."""
    exported = audit_record(
        action=AuditAction.AUDIT_EXPORT,
        request=request,
        parameters={**form.used(), "format": as_format},
    )
    records = form.records().filter(pk__lt=exported.pk)
    export = _CsvExport() if as_format == "csv" else _JsonExport()
    # Daphne would read a sync iterator into memory whole before sending a byte (and
    # Django warns); the test client, under WSGI, wants a sync one. Each gets its own.
    if isinstance(request, ASGIRequest):
        content: Any = _stream_async(export, records)
    else:
        content = _stream(export, records)
    response = StreamingHttpResponse(content, content_type=export.content_type)
    add_never_cache_headers(response)
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="stepchange-audit-{stamp}.{as_format}"'
    return response


def audit_item(record: AuditRecord) -> dict[str, Any]:
    """One record as the API and the exports show it."""
    return {field: getattr(record, field) for field in EXPORT_FIELDS}


class _Echo:
    """A file that hands back what is written, so csv.writer returns each line."""

    def write(self, line: str) -> str:
        return line


class _CsvExport:
    """A header row, then rows of text cells; JSON columns as JSON text."""

    content_type = "text/csv; charset=utf-8"
    tail = ""

    def __init__(self) -> None:
        self.writer = csv.writer(_Echo())
        self.head = self.writer.writerow(EXPORT_FIELDS)

    def rows(self, records: list[AuditRecord]) -> str:
        return "".join(self.writer.writerow(_csv_cells(record)) for record in records)


def _csv_cells(record: AuditRecord) -> list[str]:
    cells = []
    for field, value in audit_item(record).items():
        if value is None:
            text = ""
        elif field in JSON_FIELDS:
            text = json.dumps(value, ensure_ascii=False, cls=DjangoJSONEncoder)
        elif isinstance(value, datetime):
            text = value.isoformat()
        else:
            text = str(value)
        # A leading quote makes a spreadsheet show the text rather than run it.
        cells.append(f"'{text}" if text.startswith(FORMULA_STARTS) else text)
    return cells


class _JsonExport:
    """One JSON array, written a page of records at a time."""

    content_type = "application/json"
    head = "["
    tail = "]\n"

    def __init__(self) -> None:
        self.separator = ""

    def rows(self, records: list[AuditRecord]) -> str:
        pieces = []
        for record in records:
            pieces.append(self.separator + json.dumps(audit_item(record), cls=DjangoJSONEncoder))
            self.separator = ",\n"
        return "".join(pieces)


def _stream(export: _CsvExport | _JsonExport, records: QuerySet[AuditRecord]) -> Iterator[str]:
    yield export.head
    before = None
    while True:
        page = newest_first(records, before=before, size=EXPORT_CHUNK)
        yield export.rows(page.items)
        if page.next_before is None:
            break
        before = page.next_before
    yield export.tail


async def _stream_async(
    export: _CsvExport | _JsonExport, records: QuerySet[AuditRecord]
) -> AsyncIterator[str]:
    yield export.head
    before = None
    while True:
        # A short trip per page: no cursor or connection held while a slow client reads.
        page = await db_async(newest_first)(records, before=before, size=EXPORT_CHUNK)
        yield export.rows(page.items)
        if page.next_before is None:
            break
        before = page.next_before
    yield export.tail
