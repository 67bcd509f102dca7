"""The offline viewer: an export file read as a third `Source`, and the files users opened.

`ExportSource` answers the workflow page's reads from an `ExportFile` (`forks.exports`)
alone, with no application or executor: each workflow of the file with its steps, events,
their history and streams, every stored value decoded by the same safe decoders as the
system database's (`workflows.serialization`; a pickle is never unpickled). Its family is
the relatives the file holds. What only a live application has (lists, queues, the
overview, schedules) it refuses with `OfflineRead`, saying so.

An opened file is kept (`OpenedExport`) so that the page's parts can read it again: for
its owner (and admins) only, for KEEP_DAYS at most, the newest KEEP_PER_USER of each user.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from forks import exports
from forks.models import OpenedExport
from stepchange.audit import Result, audit_record
from stepchange.roles import PERM_ADMINISTER
from workflows.sources import (
    BAD_CURSOR,
    EXTRA_KINDS,
    MAX_OUTLINE_STEPS,
    MAX_STEPS_PAGE,
    BadCursor,
    Detail,
    Family,
    Kin,
    Listing,
    ListQuery,
    Outline,
    Overview,
    QueueConfigs,
    QueueDepths,
    Schedule,
    ScheduleQuery,
    Schedules,
    Step,
    Workflow,
    _extras_of,
    _outline_step,
    _step,
    _workflow,
)

OFFLINE = "export file"
OFFLINE_READ = (
    "An export file holds workflows, their steps and values only: it has no {what} to show "
    "offline. Open the application in the console for them."
)
# How long and how many opened files are kept.
KEEP_DAYS = 7
KEEP_PER_USER = 20
VIEW_ACTION = "export.view"
NO_FILE = "Choose an export file to open."


class OfflineRead(Exception):
    """A read that makes no sense without a live application (a 404 where it is asked)."""

    status = 404

    def __init__(self, what: str) -> None:
        super().__init__(OFFLINE_READ.format(what=what))


def _text(value: Any) -> str | None:
    """A column shown as text: None stays None, anything else (an export is data from
    outside) becomes its text."""
    return None if value is None else str(value)


def _status_row(status: dict[str, Any]) -> dict[str, Any]:
    """An exported status row in the names `DatabaseSource` reads its rows by."""
    return {
        "workflow_uuid": status["workflow_uuid"],
        "status": status.get("status"),
        "name": status.get("name"),
        "class_name": _text(status.get("class_name")),
        "queue_name": _text(status.get("queue_name")),
        "application_version": _text(status.get("application_version")),
        "executor_id": _text(status.get("executor_id")),
        "created_at_ms": status.get("created_at"),
        "updated_at_ms": status.get("updated_at"),
        "completed_at_ms": status.get("completed_at"),
        "forked_from": _text(status.get("forked_from")),
        "parent_workflow_id": _text(status.get("parent_workflow_id")),
        "application_name": _text(status.get("application_name")),
        "serialization": status.get("serialization"),
        "recovery_attempts": status.get("recovery_attempts"),
        "started_at_epoch_ms": status.get("started_at_epoch_ms"),
        "input_text": status.get("inputs"),
        "output_text": status.get("output"),
        "error_text": status.get("error"),
    }


def _step_row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "function_id": row["function_id"],
        "function_name": _text(row.get("function_name")),
        "child_workflow_id": _text(row.get("child_workflow_id")),
        "started_at_epoch_ms": row.get("started_at_epoch_ms"),
        "completed_at_epoch_ms": row.get("completed_at_epoch_ms"),
        "output": row.get("output"),
        "error": row.get("error"),
        "serialization": row.get("serialization"),
    }


class ExportSource:
    """The workflows of one export file, read as the workflow page reads a source."""

    name = OFFLINE

    def __init__(self, export: exports.ExportFile) -> None:
        self.export = export
        self.notice = ""
        self._elements = {element.workflow_id: element for element in export.workflows}

    def _workflow(self, workflow_id: str, *, payloads: bool = True) -> Workflow | None:
        element = self._elements.get(workflow_id)
        if element is None:
            return None
        row = _status_row(element.status)
        return _workflow(row, load_input=payloads, load_output=payloads)

    def _steps(self, workflow_id: str) -> list[dict[str, Any]]:
        element = self._elements.get(workflow_id)
        if element is None:
            return []
        return sorted((_step_row(row) for row in element.steps), key=lambda r: r["function_id"])

    async def get(self, workflow_id: str, *, actor: str = "") -> Workflow | None:
        return self._workflow(workflow_id)

    async def stored(self, workflow_id: str, *, actor: str = "") -> Workflow | None:
        """The workflow with its values; each value's `raw` is the text as exported."""
        return self._workflow(workflow_id)

    async def outline(self, workflow_id: str, *, actor: str = "") -> Outline:
        return self._outline(self._workflow(workflow_id, payloads=False))

    def _outline(self, workflow: Workflow | None) -> Outline:
        if workflow is None:
            return Outline(None)
        rows = self._steps(workflow.workflow_id)
        steps = [
            _outline_step(
                row["function_id"],
                row["function_name"],
                row["child_workflow_id"],
                row["started_at_epoch_ms"],
                row["completed_at_epoch_ms"],
                row["error"],
                row["serialization"],
            )
            for row in rows[:MAX_OUTLINE_STEPS]
        ]
        return Outline(workflow, steps, len(rows) > MAX_OUTLINE_STEPS)

    async def detail(self, workflow_id: str, *, actor: str = "") -> Detail:
        workflow = self._workflow(workflow_id)
        if workflow is None:
            return Detail(None)
        return Detail(workflow, self._outline(workflow), self._extras(workflow_id))

    async def extras(
        self, workflow_id: str, kinds: frozenset[str] = EXTRA_KINDS, *, actor: str = ""
    ) -> Any:
        """All of the workflow's extras whatever the kinds asked: they are in memory."""
        if self._workflow(workflow_id) is None:
            return None
        return self._extras(workflow_id)

    def _extras(self, workflow_id: str) -> Any:
        """Events, their history and streams, as `_extras_of` groups and decodes a system
        database's rows (an export holds no messages: DBOS exports no notifications)."""
        element = self._elements[workflow_id]
        rows: list[tuple[Any, ...]] = [
            ("events", e["key"], e.get("value"), e.get("serialization"), None, 0)
            for e in element.events
        ]
        rows += [
            ("history", h["key"], h.get("value"), h.get("serialization"), h["function_id"], 0)
            for h in element.history
        ]
        rows += [
            ("streams", s["key"], s.get("value"), s.get("serialization"), s["offset"], 0)
            for s in element.streams
        ]
        return _extras_of(rows)

    async def step(self, workflow_id: str, function_id: int, *, actor: str = "") -> Step | None:
        found = [row for row in self._steps(workflow_id) if row["function_id"] == function_id]
        return _step(found[0]) if found else None

    async def steps(
        self,
        workflow_id: str,
        *,
        cursor: str | None = None,
        limit: int = MAX_STEPS_PAGE,
        actor: str = "",
    ) -> Listing[Step]:
        if cursor and not cursor.lstrip("-").isdigit():
            raise BadCursor(BAD_CURSOR)
        rows = self._steps(workflow_id)
        if cursor:
            rows = [row for row in rows if row["function_id"] > int(cursor)]
        page = rows[:limit]
        more = len(rows) > limit
        next_cursor = str(page[-1]["function_id"]) if more else None
        return Listing([_step(row) for row in page], next_cursor, self.name)

    async def family(self, workflow_id: str, *, actor: str = "") -> Family:
        """The workflow and the relatives this file holds, every one of them shown; a
        parent or fork source it names but does not hold is a card with no status."""
        workflow = self._workflow(workflow_id, payloads=False)
        if workflow is None:
            return Family(None)
        others = [
            w
            for other in self._elements
            if other != workflow_id and (w := self._workflow(other, payloads=False)) is not None
        ]

        def kin(found: list[Workflow], *, newest_first: bool = False) -> Kin:
            found.sort(key=_created, reverse=newest_first)
            return Kin(found, len(found))

        parent, source = workflow.parent_workflow_id, workflow.forked_from
        return Family(
            workflow,
            parent=self._card(parent),
            fork_source=self._card(source),
            siblings=kin([w for w in others if parent and w.parent_workflow_id == parent]),
            children=kin([w for w in others if w.parent_workflow_id == workflow_id]),
            forks=kin([w for w in others if w.forked_from == workflow_id], newest_first=True),
        )

    def _card(self, workflow_id: str | None) -> Workflow | None:
        if workflow_id is None:
            return None
        return self._workflow(workflow_id, payloads=False) or Workflow(workflow_id)

    async def list(self, query: ListQuery, *, actor: str = "") -> Listing[Workflow]:
        raise OfflineRead("workflow list")

    async def queues(self, *, actor: str = "") -> QueueConfigs:
        raise OfflineRead("queues")

    async def queue_depths(self, *, actor: str = "") -> QueueDepths:
        raise OfflineRead("queues")

    async def overview(self, *, now: datetime, actor: str = "") -> Overview:
        raise OfflineRead("overview")

    async def schedules(self, query: ScheduleQuery, *, actor: str = "") -> Schedules:
        raise OfflineRead("schedules")

    async def schedule(self, name: str, *, actor: str = "") -> Schedule | None:
        raise OfflineRead("schedules")


def _created(workflow: Workflow) -> tuple[float, str]:
    moment = workflow.created_at
    return (moment.timestamp() if moment else 0.0, workflow.workflow_id)


# The files users opened.


@dataclass(frozen=True)
class Opened:
    """A kept file and what it reads as."""

    record: OpenedExport
    export: exports.ExportFile


def may_open(user: User | AnonymousUser, record: OpenedExport) -> bool:
    """Only its owner opens a kept file, and admins."""
    return record.owner_id == user.pk or user.has_perm(PERM_ADMINISTER)


def kept_since(now: datetime) -> datetime:
    return now - timedelta(days=KEEP_DAYS)


def opened_export_create(
    *, user: User, name: str, raw: bytes, request: HttpRequest | None = None
) -> Opened:
    """Read an uploaded file and keep it for its owner; audited either way. Raises
    BadExportFile (nothing kept) when it does not read as an export."""
    try:
        export = exports.read(raw)
    except exports.BadExportFile as exc:
        audit_record(
            action=VIEW_ACTION,
            request=request,
            actor=user,
            target=name[:255],
            parameters={"name": name[:255], "size": len(raw)},
            result=Result.FAILED,
            detail=str(exc),
        )
        raise
    data = raw if raw[:2] == b"\x1f\x8b" else gzip.compress(raw, mtime=0)
    with transaction.atomic():
        record = OpenedExport.objects.create(
            owner=user, name=name[:255], sha256=export.sha256, size=len(raw), data=data
        )
        opened_exports_prune(user=user)
        _audit_view(record, export, user=user, request=request)
    return Opened(record, export)


def opened_export_read(record: OpenedExport) -> exports.ExportFile:
    """A kept file, read again (its signature checked against today's keys)."""
    return exports.read(bytes(record.data))


def opened_export_view(
    *, record: OpenedExport, user: User, request: HttpRequest | None = None
) -> Opened:
    """A kept file opened again from the list of recent files: audited."""
    export = opened_export_read(record)
    _audit_view(record, export, user=user, request=request)
    return Opened(record, export)


def _audit_view(
    record: OpenedExport,
    export: exports.ExportFile,
    *,
    user: User,
    request: HttpRequest | None,
) -> None:
    audit_record(
        action=VIEW_ACTION,
        request=request,
        actor=user,
        application_name=export.application[:255],
        target=export.root_id[:255],
        parameters={
            "sha256": export.sha256,
            "name": record.name,
            "size": record.size,
            "signature": export.signature,
            "opened_export": record.pk,
        },
    )


def opened_exports_prune(*, user: User | None = None, now: datetime | None = None) -> int:
    """Forget files older than KEEP_DAYS (everyone's), and `user`'s beyond their newest
    KEEP_PER_USER; how many were forgotten."""
    now = now or timezone.now()
    removed, _ = OpenedExport.objects.filter(uploaded_at__lt=kept_since(now)).delete()
    if user is not None:
        keep = OpenedExport.objects.filter(owner=user).values_list("pk", flat=True)[:KEEP_PER_USER]
        extra, _ = OpenedExport.objects.filter(owner=user).exclude(pk__in=list(keep)).delete()
        removed += extra
    return removed
