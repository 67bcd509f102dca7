"""Reading the audit log: the filter form the console and the API share, and the export
of every matching record as CSV or JSON."""

import csv
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.handlers.asgi import ASGIRequest
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers

from stepchange.access import audit_records_for
from stepchange.asyncdb import db_async
from stepchange.audit import AuditAction, audit_record
from stepchange.models import AuditRecord
from stepchange.paging import newest_first

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
    # The API key the actor acted through, if any.
    "api_key_id",
    "api_key_name",
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

    def clean_since(self) -> datetime | None:
        return _in_utc(self.cleaned_data["since"])

    def clean_until(self) -> datetime | None:
        return _in_utc(self.cleaned_data["until"])

    LOOKUPS = {
        "actor": "actor_name__iexact",
        "application": "application_name__iexact",
        "action": "action__startswith",
        "target": "target__icontains",
        "result": "result",
        "since": "created_at__gte",
        "until": "created_at__lt",
    }

    def records(self, reader: Any) -> QuerySet[AuditRecord]:
        """The records these (valid) filters match among those `reader` may read; the
        cursor is the caller's business."""
        records = audit_records_for(reader)
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


def _in_utc(moment: datetime | None) -> datetime | None:
    """The same instant in UTC: Postgres takes offsets up to 15:59 only, Python up to 23:59."""
    return None if moment is None else moment.astimezone(UTC)


class AuditExportForm(AuditFilterForm):
    """The filters and a format: what the console's *Export* buttons post."""

    export = forms.ChoiceField(choices=[(name, name) for name in EXPORT_FORMATS])


@login_required
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
    records = form.records(request.user).filter(pk__lt=exported.pk)
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
