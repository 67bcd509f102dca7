"""Automatic recovery of database-managed executors (README "Database-managed applications").

An executor on an SDK whose Conductor client is not open source never connects: StepChange
sees it only in the `executor_id` of its application's PENDING workflows. When an admin
gives the application a liveness URL (`Application.liveness_url_template`), each such
executor is probed there every LIVENESS_PROBE_SECONDS: alive while it answers 2xx, gone
once it has failed for the application's grace period (`recovery_grace_seconds`, the one
connected executors get). A gone executor's PENDING workflows are re-enqueued in the
system database as the manual recovery does (`forks.native.native_recover`), claimed by
one conditional UPDATE so that of several StepChange processes exactly one recovers it,
and poison suspects are held for an operator as conductor/recovery.py holds them.
"""

import asyncio
import functools
import logging
import ssl
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

from django.conf import settings
from django.db import DatabaseError, transaction
from django.http import HttpRequest
from django.utils import timezone

from conductor.models import (
    DATABASE_PATH,
    DatabaseExecutor,
    Executor,
    PoisonWorkflow,
    RecoveryAttempt,
)
from conductor.recovery import (
    ABANDONED_CLAIM_SECONDS,
    ACTION,
    AUTOMATIC,
    POISON_THRESHOLD,
    RETRY_FAILED_AFTER_SECONDS,
    tally_poison,
)
from stepchange import prometheus
from stepchange.asyncdb import db_async, own_thread
from stepchange.audit import AuditAction, Result, audit_record
from stepchange.models import Application, liveness_url, validate_liveness_template
from workflows.systemdb import SystemDatabaseError

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 3
REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_HEADER_LINES = 100
USER_AGENT = "StepChange-liveness"
NO_ANSWER = "no answer within {seconds} s"
OTHER_HOST = "redirected to another host ({location}), not followed"
ANSWERED = "answered HTTP {code}"
NO_URL = "its id makes no usable URL ({url}): not probed, never recovered automatically"
# The executor id of every DBOS executor run without its own (DBOS__VMID in Python): one
# host's answer would speak for all of them, so none is recovered on it.
SHARED_EXECUTOR_ID = "local"
SHARED = (
    "'local' is the id of every executor run without its own (DBOS__VMID): not probed, "
    "never recovered automatically"
)
RECOVERED = (
    "Re-enqueued {count} PENDING workflow(s) of executor {executor_id} in the system "
    "database (its liveness URL failed for {grace} s: {why})"
)
HELD = (
    "; held, not re-enqueued: poison suspects {ids} (each left pending by executors that "
    "died in turn), until an operator cancels them or says they are not poison"
)
TAKEN_UP = "; left as they were, taken up since: {left}"
NOTHING_LEFT = "No PENDING workflow of executor {executor_id} was left in the system database."
LIVENESS_SET = "liveness settings"
UNPROVEN = (
    "; not recovered yet: the liveness URL has not answered 2xx for any executor of the "
    "application since it was set, so it may reach none"
)


@dataclass(frozen=True)
class Answer:
    alive: bool
    detail: str
    # False when the executor id makes no URL: such an executor is never called gone.
    probeable: bool = True


async def probe(url: str, *, seconds: float) -> Answer:
    """GET `url`: alive on a 2xx within `seconds`, all redirects included. Redirects
    are followed on the same scheme, host and port only, at most MAX_REDIRECTS of them."""
    try:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(url)
        parts.port  # noqa: B018 (a bad port raises here)
    except ValueError:
        return Answer(False, NO_URL.format(url=url), probeable=False)
    try:
        async with asyncio.timeout(seconds):
            return await _get(url, hops=MAX_REDIRECTS)
    except TimeoutError:
        return Answer(False, NO_ANSWER.format(seconds=f"{seconds:g}"))
    except (OSError, ValueError, UnicodeError) as exc:
        return Answer(False, f"{type(exc).__name__}: {exc}"[:300])


async def _get(url: str, *, hops: int) -> Answer:
    parts = urlsplit(url)
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    context = _tls() if https else None
    reader, writer = await asyncio.open_connection(parts.hostname, port, ssl=context)
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.netloc.rsplit("@", 1)[-1]
        writer.write(
            f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n".encode("ascii")
        )
        await writer.drain()
        code, headers = _status(await _head(reader))
    finally:
        writer.close()
        with suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    if 200 <= code < 300:
        return Answer(True, ANSWERED.format(code=code))
    location = headers.get("location", "")
    if code in REDIRECTS and location and hops > 0:
        following = urljoin(url, location)
        if _origin(following) != _origin(url):
            return Answer(False, OTHER_HOST.format(location=following[:200]))
        return await _get(following, hops=hops - 1)
    return Answer(False, ANSWERED.format(code=code))


@functools.cache
def _tls() -> ssl.SSLContext:
    # Loading the trusted certificates takes a while: once per process, not per probe.
    return ssl.create_default_context()


def _origin(url: str) -> tuple[str, str | None, int]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


async def _head(reader: asyncio.StreamReader) -> list[bytes]:
    lines = []
    for _ in range(MAX_HEADER_LINES):
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        lines.append(line)
    return lines


def _status(lines: list[bytes]) -> tuple[int, dict[str, str]]:
    if not lines:
        raise ValueError("the connection closed without an answer")
    version, _, rest = lines[0].decode("latin-1").partition(" ")
    if not version.startswith("HTTP/") or not rest[:3].isdigit():
        # Not echoed: the first line of another service (a banner) is not for the page.
        raise ValueError("not an HTTP answer")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(rest[:3]), headers


async def probe_forever() -> None:
    """This process's prober: one `probe_all` every LIVENESS_PROBE_SECONDS (a loop of
    `stepchange.background`)."""
    while True:
        await asyncio.sleep(settings.LIVENESS_PROBE_SECONDS)
        try:
            await probe_all()
        except Exception:
            logger.exception("The liveness probes failed; they run again shortly")


async def probe_all() -> list[RecoveryAttempt]:
    """One pass over every database-managed application with a liveness URL: probe the
    executors seen in its PENDING workflows, recover those gone past the grace period."""
    limit = asyncio.Semaphore(settings.LIVENESS_CONCURRENCY)
    attempts = []
    for application in await db_async(_probed_applications)():
        try:
            attempts += await probe_application(application, limit=limit)
        except DatabaseError:
            # One application's trouble (its rows, StepChange's database for a moment)
            # leaves the others probed; the next pass tries it again.
            logger.exception("Liveness of %s's executors not checked this pass", application.name)
    return attempts


def _probed_applications() -> list[Application]:
    return list(
        Application.objects.exclude(liveness_url_template="").exclude(system_database_url="")
    )


async def probe_application(
    application: Application, *, limit: asyncio.Semaphore | None = None
) -> list[RecoveryAttempt]:
    try:
        seen = await db_async(_seen)(application)
    except (SystemDatabaseError, DatabaseError) as exc:
        # Nothing is decided without the system database: the next pass reads it again.
        logger.warning("Liveness of %s's executors: %s", application.name, exc)
        return []
    limit = limit or asyncio.Semaphore(settings.LIVENESS_CONCURRENCY)
    timeout = settings.LIVENESS_TIMEOUT_SECONDS

    async def one(executor_id: str) -> Answer:
        if executor_id == SHARED_EXECUTOR_ID:
            return Answer(False, SHARED, probeable=False)
        async with limit:
            url = liveness_url(application.liveness_url_template, executor_id)
            return await probe(url, seconds=timeout)

    answers = await asyncio.gather(*(one(executor_id) for executor_id in seen))
    due = await db_async(_note)(application, dict(zip(seen, answers, strict=True)), seen)
    if not due:
        return []
    # Thousands of workflows may be re-enqueued: not on the thread the beat loops share.
    async with own_thread():
        return [await db_async(database_autorecover)(executor) for executor in due]


def _seen(application: Application) -> dict[str, str]:
    """The executors with PENDING workflows and no connection to StepChange under that id,
    with their version (the first seen, when they left work under several)."""
    from forks import native

    live = Executor.objects.live().filter(application=application)
    connected = set(live.values_list("executor_id", flat=True))
    seen: dict[str, str] = {}
    for found in native.pending_executors(application):
        if found.executor_id and found.executor_id not in connected:
            seen.setdefault(found.executor_id, found.application_version)
    return seen


def _note(
    application: Application,
    answers: dict[str, Answer],
    seen: dict[str, str],
) -> list[DatabaseExecutor]:
    """Write what the probes found (conditional UPDATEs, so another process's claim is never
    overwritten), then claim the executors due for recovery."""
    current = Application.objects.filter(
        pk=application.pk, liveness_url_template=application.liveness_url_template
    )
    if not current.exists():
        # The URL changed while this pass probed the old one: its answers prove nothing
        # about the new one (`liveness_forget`), and nothing is decided on them.
        return []
    now = timezone.now()
    # An executor with nothing pending is not probed: when it comes back under the same id
    # (a fixed DBOS__VMID), its grace period starts afresh, not from a failure long past.
    DatabaseExecutor.objects.filter(application=application, failing_since__isnull=False).exclude(
        executor_id__in=list(seen)
    ).exclude(state=DatabaseExecutor.State.RECOVERING).update(failing_since=None)
    failing = [
        row
        for executor_id, answer in answers.items()
        if (row := _record_answer(application, executor_id, seen[executor_id], answer, now))
    ]
    if failing and not _proven(application):
        # A wrong URL (a port, a certificate) would make every executor look gone.
        for row in failing:
            DatabaseExecutor.objects.filter(pk=row.pk).update(
                probe_detail=(row.probe_detail + UNPROVEN)[:500]
            )
        return []
    grace = now - timedelta(seconds=application.recovery_grace_seconds)
    return [
        DatabaseExecutor.objects.select_related("application").get(pk=row.pk)
        for row in failing
        if row.failing_since is not None
        and row.failing_since <= grace
        and _due(row, now)
        and _claim(row, now)
    ]


def _record_answer(
    application: Application, executor_id: str, version: str, answer: Answer, now: Any
) -> DatabaseExecutor | None:
    """Write one probe's answer; returns the executor, as it now stands, if it failed."""
    row, _ = DatabaseExecutor.objects.get_or_create(
        application=application, executor_id=executor_id, defaults={"application_version": version}
    )
    mine = DatabaseExecutor.objects.filter(pk=row.pk)
    mine.update(last_probed_at=now, probe_detail=answer.detail[:500])
    settled = mine.exclude(state=DatabaseExecutor.State.RECOVERING)
    if answer.alive:
        settled.update(state=DatabaseExecutor.State.ALIVE, failing_since=None, answered_at=now)
        return None
    if not answer.probeable:
        settled.update(state=DatabaseExecutor.State.UNPROBED, failing_since=None)
        return None
    mine.filter(failing_since__isnull=True).update(failing_since=now)
    mine.filter(state__in=(DatabaseExecutor.State.ALIVE, DatabaseExecutor.State.UNPROBED)).update(
        state=DatabaseExecutor.State.FAILING
    )
    row.refresh_from_db()
    return row


def _proven(application: Application) -> bool:
    """Whether the liveness URL has answered 2xx for some executor of the application since
    it was set (`liveness_forget`)."""
    found = DatabaseExecutor.objects.filter(application=application, answered_at__isnull=False)
    return found.exists()


def liveness_forget(application: Application) -> None:
    """A new liveness URL has answered for no executor yet: what the old one answered
    proves nothing about it."""
    DatabaseExecutor.objects.filter(application=application).update(answered_at=None)


def _due(row: DatabaseExecutor, now: Any) -> bool:
    """Gone past the grace period: recover it unless it is being recovered, or was a
    moment ago and has nothing new but the suspects held for an operator."""
    state = row.state
    if state == DatabaseExecutor.State.FAILING:
        return True
    if state == DatabaseExecutor.State.RECOVERING:
        claimed = row.recovery_claimed_at
        return claimed is not None and claimed < now - timedelta(seconds=ABANDONED_CLAIM_SECONDS)
    cooled = row.recovered_at is None or row.recovered_at < now - timedelta(
        seconds=RETRY_FAILED_AFTER_SECONDS
    )
    if state == DatabaseExecutor.State.FAILED:
        return cooled
    if not cooled:
        return False
    from forks import native

    pending = native.pending_workflow_ids(row.application, row.executor_id)
    held = set(_unresolved_suspects(row.application, pending))
    return bool(set(pending) - held)


def _claim(row: DatabaseExecutor, now: Any) -> bool:
    """Move the executor to RECOVERING unless another process got there first."""
    return (
        DatabaseExecutor.objects.filter(
            pk=row.pk, state=row.state, recovery_claimed_at=row.recovery_claimed_at
        ).update(state=DatabaseExecutor.State.RECOVERING, recovery_claimed_at=now)
        == 1
    )


def _unresolved_suspects(application: Application, workflow_ids: Iterable[str]) -> list[str]:
    return list(
        PoisonWorkflow.objects.filter(
            application=application,
            workflow_id__in=list(workflow_ids),
            executors_killed__gte=POISON_THRESHOLD,
            resolved_at__isnull=True,
        ).values_list("workflow_id", flat=True)
    )


def database_autorecover(executor: DatabaseExecutor) -> RecoveryAttempt:
    """Recover a claimed, gone executor's PENDING workflows through the system database as
    `workflows.actions.database_recover` does, except that poison suspects are held (left
    PENDING, shown to an operator) instead of re-enqueued. A system database that cannot
    be reached fails the attempt, which is retried after RETRY_FAILED_AFTER_SECONDS;
    nothing was written, since each write is one transaction."""
    from forks import native

    application = executor.application
    executor_id = executor.executor_id
    pending: list[str] = []
    try:
        pending = native.pending_workflow_ids(application, executor_id)
        if not pending:
            return _finish(executor, RecoveryAttempt.Outcome.NOTHING_PENDING, [], NOTHING_LEFT)
        suspects = tally_poison(application, executor_id, pending)
        todo = [workflow_id for workflow_id in pending if workflow_id not in suspects]
        written = native.Written([])
        if todo:
            written = native.native_recover(
                application=application, executor_id=executor_id, workflow_ids=todo
            )
    except (SystemDatabaseError, DatabaseError, native.NativeError) as exc:
        return _finish(executor, RecoveryAttempt.Outcome.FAILED, pending, str(exc))
    detail = RECOVERED.format(
        count=len(written.changed),
        executor_id=executor_id,
        grace=application.recovery_grace_seconds,
        why=executor.probe_detail,
    )
    if written.left:
        left = ", ".join(f"{wid} ({status})" for wid, status in sorted(written.left.items()))
        detail += TAKEN_UP.format(left=left)
    if suspects:
        detail += HELD.format(ids=", ".join(suspects))
        return _finish(executor, RecoveryAttempt.Outcome.HELD, pending, detail + ".", suspects)
    return _finish(executor, RecoveryAttempt.Outcome.SENT, pending, detail + ".")


def _finish(
    executor: DatabaseExecutor,
    outcome: str,
    pending: list[str],
    detail: str,
    held: list[str] | None = None,
) -> RecoveryAttempt:
    state = DatabaseExecutor.State.RECOVERED
    if outcome == RecoveryAttempt.Outcome.HELD:
        state = DatabaseExecutor.State.HELD
    elif outcome == RecoveryAttempt.Outcome.FAILED:
        state = DatabaseExecutor.State.FAILED
    with transaction.atomic():
        attempt = RecoveryAttempt.objects.create(
            application=executor.application,
            dead_executor_id=executor.executor_id[:100],
            application_version=executor.application_version,
            pending_workflow_ids=pending,
            requested_by=AUTOMATIC,
            outcome=outcome,
            detail=detail,
            path=DATABASE_PATH,
        )
        # Recovered: whatever it leaves pending from now on gets a grace period of its own.
        # Held or failed: still gone with work left, taken up again once that is settled.
        failing = {"failing_since": None} if state == DatabaseExecutor.State.RECOVERED else {}
        DatabaseExecutor.objects.filter(
            pk=executor.pk, state=DatabaseExecutor.State.RECOVERING
        ).update(state=state, recovered_at=timezone.now(), **failing)
        audit_record(
            action=ACTION,
            actor_name=AUTOMATIC,
            application=executor.application,
            target=f"executor {executor.executor_id}",
            parameters={
                "executor_ids": [executor.executor_id],
                "path": DATABASE_PATH,
                "application_version": executor.application_version,
                "pending_workflow_ids": pending,
                "held_workflow_ids": held or [],
                "manual": False,
            },
            result=Result.FAILED if outcome == RecoveryAttempt.Outcome.FAILED else Result.OK,
            detail=f"{outcome}: {detail}",
        )
    prometheus.RECOVERIES.labels(executor.application.name, outcome).inc()
    logger.info("Recovery of executor %s (database): %s %s", executor.executor_id, outcome, detail)
    return attempt


def liveness_update(
    *, application: Application, liveness_url_template: str, request: HttpRequest | None = None
) -> Application:
    """Set (or, with "", unset) the liveness URL; raises ValidationError on a bad one.
    Audited with the value before and after, as the admin's change form is."""
    if liveness_url_template:
        validate_liveness_template(liveness_url_template)
    before = application.liveness_url_template
    application.liveness_url_template = liveness_url_template
    with transaction.atomic():
        application.save(update_fields=["liveness_url_template", "updated_at"])
        if liveness_url_template != before:
            liveness_forget(application)
        audit_record(
            action=AuditAction.APPLICATION_UPDATE,
            request=request,
            application=application,
            target=application.name,
            parameters={
                "before": {"liveness_url_template": before},
                "after": {"liveness_url_template": liveness_url_template},
            },
            detail=LIVENESS_SET,
        )
    return application
