"""Bulk actions: one action over many workflows, run in the background in bounded batches.

A job's selection is fixed when the job is made, one item per workflow, so the job always
reports exactly what was done to which workflow. Items whose status makes the action
pointless are skipped with the reason, never sent. Each batch is one request of at most
BATCH_SIZE workflow ids, and each workflow it carried gets its own audit record with the
batch's request id and the executor's answer.

Jobs run in whichever StepChange process holds their lease, and the job names that process
(`held_by`). A process that stops leaves its lease to run out, or, when its beat in the
shared cache is gone (`conductor.processes`: it died), at once; the next process that looks
takes the job over. A process renews its lease only while the job still names it, so one
that was taken for dead and comes back stops at its next batch instead of racing the new
holder. On a takeover, items that
were sent but whose answer was never recorded are sent again when the action is harmless
to repeat (cancel, resume, delete), and otherwise (fork from failure) looked up in the
system database or the executor, so nothing is forked twice.
"""

import asyncio
import contextlib
import functools
import logging
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Count, Q
from django.http import HttpRequest
from django.utils import timezone

from conductor import relay
from conductor.models import DATABASE_PATH
from conductor.processes import own_process, process_gone
from conductor.protocol import (
    CancelRequest,
    DeleteRequest,
    ForkFromFailureRequest,
    ForkFromFailureResponse,
    Request,
    Response,
    ResumeRequest,
    SuccessResponse,
)
from conductor.registry import live_versions
from conductor.services import poison_holds_clear
from stepchange.asyncdb import db_async
from stepchange.audit import Result, audit_record
from stepchange.models import Application
from workflows.actions import (
    Action,
    ActionError,
    ActionRefusedError,
    DatabaseWriteError,
    Parameters,
    acting_executors,
    action_path,
    database_detail,
    database_write,
    failure_body,
    refusals,
)
from workflows.models import BulkJob, BulkJobItem
from workflows.sources import ListQuery, source_for
from workflows.versions import seen_versions

logger = logging.getLogger(__name__)

BATCH_SIZE = 50
MAX_WORKFLOWS = 10_000
SELECT_PAGE = 1000
LEASE_SECONDS = 60
# How often each process looks for jobs left behind by a process that stopped.
IDLE_POLL_SECONDS = 5.0
RETRIES = 3
# Between tries of a batch the executor could not answer: long enough, together, for an
# executor whose StepChange process died to reconnect to another (it does within 5 s).
RETRY_PAUSE_SECONDS = 3.0
ITEM_OUTCOME = ["state", "request_id", "executor_id", "new_workflow_id", "detail"]

ACTIONS = {
    BulkJob.Action.CANCEL: Action.CANCEL,
    BulkJob.Action.RESUME: Action.RESUME,
    BulkJob.Action.DELETE: Action.DELETE,
    BulkJob.Action.FORK_FROM_FAILURE: Action.FORK_FROM_FAILURE,
    # A fork of any status is allowed; the batch goes as fork_from_failure with a version.
    BulkJob.Action.FORK_TO_VERSION: Action.FORK,
}
# The bulk actions a job writes into the system database when no executor is connected
# (`_write_batch`): all of them, a fork onto a version to one the database has seen.
DATABASE_BULK_ACTIONS = frozenset(
    {
        BulkJob.Action.CANCEL,
        BulkJob.Action.RESUME,
        BulkJob.Action.DELETE,
        BulkJob.Action.FORK_FROM_FAILURE,
        BulkJob.Action.FORK_TO_VERSION,
    }
)
# Sending these twice does no harm (PROTOCOL.md §2.2: guarded updates and deletes).
REPEATABLE = {BulkJob.Action.CANCEL, BulkJob.Action.RESUME, BulkJob.Action.DELETE}

CREATE_ACTION = "bulk.create"
RETRY_ACTION = "bulk.retry"
TOO_MANY = "The selection holds more than {limit:,} workflows: narrow the filter."
EMPTY = "Nothing to act on: no workflow matches."
UNKNOWN_ACTION = (
    "Bulk actions are cancel, resume, delete, fork_from_failure and fork_to_version; "
    "got {action!r}."
)
VERSION_NEEDED = "A fork onto a version needs application_version: the version to fork onto."
VERSION_NOT_RUNNING = (
    "No connected executor runs version {version!r}: forks pinned to it would be stranded "
    "too. Versions running now: {running}."
)
VERSION_NEVER_SEEN = (
    "Version {version!r} was never seen in the system database of {app} (no row of "
    "application_versions, no recent workflow on it): forks pinned to it could wait for an "
    "executor that never comes. Versions seen: {seen}."
)
NOT_FOUND = "No such workflow in {app}."
NO_EXECUTOR_PAUSE = "Stopped: {error} Retry the job once an executor is connected."
GAVE_UP = "Stopped after {tries} tries: {error} Retry the job to send the rest."
SENT_UNKNOWN = "Sent in request {request_id}, but the answer never came: {error} Check it."
FOUND_AFTER_RESTART = "Forked (found after StepChange restarted): {new_ids}."


@dataclass(frozen=True)
class Selection:
    """What a bulk action would touch: each workflow with its current status."""

    workflows: list[dict[str, Any]]
    missing: list[str]
    capped: bool

    def preview(self, action: str) -> dict[str, Any]:
        by_status: dict[str, int] = {}
        for workflow in self.workflows:
            by_status[workflow["status"]] = by_status.get(workflow["status"], 0) + 1
        refused = _refusals_for(action)
        skipped = sum(count for status, count in by_status.items() if refused(status))
        return {
            "count": len(self.workflows),
            "capped": self.capped,
            "by_status": by_status,
            "skipped": skipped + len(self.missing),
            "missing": self.missing,
            "sample": [workflow["workflow_id"] for workflow in self.workflows[:10]],
        }


def _refusals_for(action: str) -> Any:
    native = ACTIONS[BulkJob.Action(action)]
    return lambda status: refusals(status, [])[native]


def bulk_action(value: str) -> BulkJob.Action:
    try:
        return BulkJob.Action(value)
    except ValueError:
        raise ActionError(UNKNOWN_ACTION.format(action=value)) from None


async def bulk_select(
    application: Application,
    *,
    query: ListQuery | None = None,
    workflow_ids: list[str] | None = None,
    actor: str = "",
) -> Selection:
    """The workflows a filter (or a list of ids, within the filter) names, page by page
    through the same source as the list, up to MAX_WORKFLOWS."""
    wanted = list(dict.fromkeys(workflow_ids)) if workflow_ids else None
    base = replace(
        query or ListQuery(),
        limit=SELECT_PAGE,
        cursor=None,
        load_input=False,
        load_output=False,
        workflow_ids=wanted,
    )
    source = await source_for(application)
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = await source.list(replace(base, cursor=cursor), actor=actor)
        found += [
            {"workflow_id": item.workflow_id, "status": item.status or ""} for item in page.items
        ]
        if len(found) > MAX_WORKFLOWS:
            return Selection(found[:MAX_WORKFLOWS], [], capped=True)
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    seen = {workflow["workflow_id"] for workflow in found}
    missing = [workflow_id for workflow_id in wanted or [] if workflow_id not in seen]
    return Selection(found, missing, capped=False)


def bulk_job_create(
    *,
    application: Application,
    action: BulkJob.Action,
    selection: Selection,
    parameters: Parameters,
    description: str,
    user: Any,
    request: HttpRequest | None = None,
) -> BulkJob:
    """Record the job and every item of it, audited; `bulk_jobs_wake` gets it run."""
    if selection.capped:
        raise ActionError(TOO_MANY.format(limit=MAX_WORKFLOWS))
    if not selection.workflows and not selection.missing:
        raise ActionError(EMPTY)
    if action == BulkJob.Action.FORK_TO_VERSION:
        _check_fork_target(application, parameters.application_version)
    refused = _refusals_for(action)
    with transaction.atomic():
        job = BulkJob.objects.create(
            application=application,
            action=action,
            parameters=parameters.shown(),
            selection=description,
            reason=parameters.reason,
            created_by=user if user is not None and user.is_authenticated else None,
            created_by_name=user.get_username() if user is not None else "",
        )
        items = [
            BulkJobItem(
                job=job,
                workflow_id=workflow["workflow_id"],
                status=workflow["status"],
                state=BulkJobItem.State.SKIPPED
                if refused(workflow["status"])
                else BulkJobItem.State.PENDING,
                detail=refused(workflow["status"]),
            )
            for workflow in selection.workflows
        ]
        items += [
            BulkJobItem(
                job=job,
                workflow_id=workflow_id,
                state=BulkJobItem.State.SKIPPED,
                detail=NOT_FOUND.format(app=application.name),
            )
            for workflow_id in selection.missing
        ]
        BulkJobItem.objects.bulk_create(items, batch_size=500)
        audit_record(
            action=CREATE_ACTION,
            request=request,
            actor=user,
            application=application,
            target=f"bulk job {job.pk}",
            parameters={
                "job": job.pk,
                "action": action.value,
                "selection": description,
                "workflows": len(items),
                "skipped": sum(item.state == BulkJobItem.State.SKIPPED for item in items),
                **parameters.shown(),
            },
            reason=parameters.reason,
        )
    return job


def _check_fork_target(application: Application, version: str | None) -> None:
    """A fork onto a version goes to a version some connected executor runs, or, with none
    connected and a system database (the forks are written there), one it has seen."""
    if not version:
        raise ActionError(VERSION_NEEDED)
    running = live_versions(application)
    if version not in running and application.system_database_url and not running:
        seen = seen_versions(application)
        if version not in seen:
            raise ActionRefusedError(
                VERSION_NEVER_SEEN.format(
                    version=version, app=application.name, seen=", ".join(seen) or "none"
                )
            )
    elif version not in running:
        raise ActionRefusedError(
            VERSION_NOT_RUNNING.format(
                version=version, running=", ".join(running) or "none, no executor is connected"
            )
        )


NOT_STOPPED = "Bulk job {job_id} is {state}: only a stopped job is retried."


def bulk_job_retry(*, job: BulkJob, user: Any, request: HttpRequest | None = None) -> BulkJob:
    """Queue a stopped job again: it sends what it has not sent yet. ActionRefusedError
    (audited) for a job that is not stopped."""
    record = functools.partial(
        audit_record,
        action=RETRY_ACTION,
        request=request,
        actor=user,
        application=job.application,
        target=f"bulk job {job.pk}",
        parameters={"job": job.pk},
    )
    if job.state != BulkJob.State.FAILED:
        refused = NOT_STOPPED.format(job_id=job.pk, state=job.state)
        record(result=Result.FAILED, detail=refused)
        raise ActionRefusedError(refused)
    with transaction.atomic():
        BulkJob.objects.filter(pk=job.pk, state=BulkJob.State.FAILED).update(
            state=BulkJob.State.QUEUED, lease_until=None, finished_at=None, detail=""
        )
        record()
    job.refresh_from_db()
    return job


def bulk_selection_failed(
    *,
    application: Application,
    action: str,
    description: str,
    error: Exception,
    user: Any,
    request: HttpRequest | None = None,
) -> None:
    """A bulk action whose workflows could not be selected is a failed attempt: audited."""
    audit_record(
        action=CREATE_ACTION,
        request=request,
        actor=user,
        application=application,
        target="bulk job",
        parameters={"action": action, "selection": description},
        result=Result.FAILED,
        detail=f"Could not select the workflows: {error}",
    )


def progress(job: BulkJob) -> dict[str, int]:
    """How many items are in each state, plus the total."""
    counts = dict.fromkeys(BulkJobItem.State.values, 0)
    for row in job.items.values("state").annotate(n=Count("pk")):
        counts[row["state"]] = row["n"]
    counts["total"] = sum(counts.values())
    counts["finished"] = counts["total"] - counts["pending"] - counts["sent"]
    return counts


# Running jobs.


class Runner:
    """This process's job runner (a loop of `stepchange.background`): woken when a job is
    made here, and polling now and then for jobs whose lease ran out elsewhere."""

    def __init__(self) -> None:
        self.wake = asyncio.Event()

    async def forever(self) -> None:
        # An event waits on one event loop only: a fresh one for the loop this runs on.
        self.wake = asyncio.Event()
        while True:
            try:
                while await run_next():
                    pass
            except Exception:
                logger.exception("The bulk job runner failed; it tries again shortly")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), IDLE_POLL_SECONDS)
            self.wake.clear()


runner = Runner()


def bulk_jobs_wake() -> None:
    """Have this process's runner look for a job now, not at its next poll (call from async
    code). Where no runner runs (a management command), the job waits for a server's."""
    runner.wake.set()


async def run_next() -> bool:
    """Claim one runnable job and run it to its end; False when there was none."""
    job = await db_async(_claim)(await own_process())
    if job is None:
        return False
    await run(job)
    return True


def _claim(process: str) -> BulkJob | None:
    now = timezone.now()
    runnable = Q(state=BulkJob.State.QUEUED) | Q(state=BulkJob.State.RUNNING, lease_until__lt=now)
    candidates = list(BulkJob.objects.filter(runnable).order_by("created_at")[:5])
    # Jobs still leased by a process whose beat is gone.
    held = BulkJob.objects.filter(state=BulkJob.State.RUNNING, lease_until__gte=now)
    for job in held.exclude(held_by__in=["", process]).order_by("created_at")[:20]:
        if process_gone(job.held_by):
            logger.info("Taking over bulk job %s from stopped process %s", job.pk, job.held_by)
            candidates.append(job)
    for job in candidates:
        claimed = BulkJob.objects.filter(
            pk=job.pk, state=job.state, lease_until=job.lease_until, held_by=job.held_by
        ).update(
            state=BulkJob.State.RUNNING,
            lease_until=now + timedelta(seconds=LEASE_SECONDS),
            held_by=process,
            started_at=job.started_at or now,
        )
        if claimed:
            return BulkJob.objects.select_related("application").get(pk=job.pk)
    return None


async def run(job: BulkJob) -> None:
    """Send the job's pending items batch by batch, recording each answer."""
    await _settle_unanswered(job)
    tries = 0
    while True:
        batch = await db_async(_next_batch)(job)
        if batch is None:
            logger.warning("Bulk job %s was taken over by another process; leaving it", job.pk)
            return
        if not batch:
            await db_async(_finish)(job, BulkJob.State.DONE, "")
            return
        try:
            await _send(job, batch)
            tries = 0
        except relay.NoExecutorConnectedError as exc:
            await db_async(_requeue)(batch)
            await db_async(_finish)(job, BulkJob.State.FAILED, NO_EXECUTOR_PAUSE.format(error=exc))
            return
        except relay.RelayError as exc:
            if job.action not in REPEATABLE:
                await db_async(_unknown)(job, batch, exc)
                continue
            tries += 1
            await db_async(_requeue)(batch)
            if tries >= RETRIES:
                detail = GAVE_UP.format(tries=tries, error=exc)
                await db_async(_finish)(job, BulkJob.State.FAILED, detail)
                return
            await asyncio.sleep(RETRY_PAUSE_SECONDS * tries)


def _next_batch(job: BulkJob) -> list[BulkJobItem] | None:
    """The next pending items, marked SENT before they go (and the lease renewed); None
    when the job no longer names this process (another took it over)."""
    with transaction.atomic():
        # Renewing first locks the job's row: a process taking it over waits for this.
        renewed = BulkJob.objects.filter(
            pk=job.pk, held_by=job.held_by, state=BulkJob.State.RUNNING
        ).update(lease_until=timezone.now() + timedelta(seconds=LEASE_SECONDS))
        if not renewed:
            return None
        batch = list(job.items.filter(state=BulkJobItem.State.PENDING).order_by("pk")[:BATCH_SIZE])
        BulkJobItem.objects.filter(pk__in=[item.pk for item in batch]).update(
            state=BulkJobItem.State.SENT
        )
    return batch


def _requeue(batch: list[BulkJobItem]) -> None:
    BulkJobItem.objects.filter(pk__in=[item.pk for item in batch]).update(
        state=BulkJobItem.State.PENDING
    )


def _finish(job: BulkJob, state: str, detail: str) -> None:
    BulkJob.objects.filter(pk=job.pk, held_by=job.held_by).update(
        state=state, detail=detail, finished_at=timezone.now(), lease_until=None
    )


def _unknown(job: BulkJob, batch: list[BulkJobItem], exc: Exception) -> None:
    request_id = getattr(exc, "request_id", "") or "?"
    BulkJobItem.objects.filter(pk__in=[item.pk for item in batch]).update(
        state=BulkJobItem.State.UNKNOWN,
        detail=SENT_UNKNOWN.format(request_id=request_id, error=exc),
    )


async def _send(job: BulkJob, batch: list[BulkJobItem]) -> None:
    """One request for the batch; each item's outcome recorded and audited. With no
    executor connected and a system database, each item is written there instead."""
    if await _database_path(job.application):
        await db_async(_write_batch)(job, batch)
        return
    ids = [item.workflow_id for item in batch]
    parameters = Parameters(**{k: v for k, v in job.parameters.items() if k != "reason"})
    message = _batch_message(job.action, ids, parameters)
    try:
        answer = await relay.ask(
            job.application,
            message,
            actor_name=job.created_by_name,
            source="bulk",
            raise_on_error=False,
        )
    except relay.RelayError as exc:
        exc.request_id = message.request_id  # type: ignore[attr-defined]
        raise
    await db_async(_record)(job, batch, message.request_id, answer)


def bulk_not_on_database() -> list[str]:
    """The bulk actions the database path does not do, by label."""
    return [
        str(label) for value, label in BulkJob.Action.choices if value not in DATABASE_BULK_ACTIONS
    ]


async def _database_path(application: Application) -> bool:
    """With a system database, and no executor a request can reach (none connected, or
    only those whose StepChange process died, on their way to another)."""
    executors = await acting_executors(application)
    return action_path(application, executors) == DATABASE_PATH


def _write_batch(job: BulkJob, batch: list[BulkJobItem]) -> None:
    """Each workflow of the batch written into the system database as the single action's
    database path writes it, one transaction each: a workflow that changed since the job
    was made fails alone, with the reason, and nothing of it is written."""
    action = ACTIONS[BulkJob.Action(job.action)]
    chosen = Parameters(**{k: v for k, v in job.parameters.items() if k != "reason"})
    # Onto a version: the fork from failure the relayed batch sends, for any status.
    written_as = action
    if job.action == BulkJob.Action.FORK_TO_VERSION:
        written_as = Action.FORK_FROM_FAILURE
    done: list[str] = []
    for item in batch:
        try:
            written = database_write(
                job.application, written_as, item.workflow_id, chosen, checked_as=action
            )
        except DatabaseWriteError as exc:
            item.state, item.detail, item.new_workflow_id = BulkJobItem.State.FAILED, str(exc), ""
        else:
            item.state, item.detail = BulkJobItem.State.OK, database_detail(action, written)
            item.new_workflow_id = written.new_workflow_id or ""
            done.append(item.workflow_id)
        item.save(update_fields=["state", "new_workflow_id", "detail", "updated_at"])
        audit_record(
            action=action.audit_action,
            actor=job.created_by,
            actor_name=job.created_by_name,
            application=job.application,
            target=item.workflow_id,
            parameters={"bulk_job": job.pk, **job.parameters, "path": DATABASE_PATH},
            reason=job.reason,
            result=Result.OK if item.state == BulkJobItem.State.OK else Result.FAILED,
            detail=item.detail,
        )
    if done and job.action in (BulkJob.Action.CANCEL, BulkJob.Action.DELETE):
        poison_holds_clear(
            application=job.application,
            workflow_ids=done,
            action=str(job.action),
            actor=job.created_by,
            actor_name=job.created_by_name,
            request_id="",
        )


def _batch_message(action: str, ids: list[str], chosen: Parameters) -> Request:
    if action == BulkJob.Action.CANCEL:
        return CancelRequest(ids[0], workflow_ids=ids, cancel_children=chosen.cancel_children)
    if action == BulkJob.Action.RESUME:
        return ResumeRequest(ids[0], workflow_ids=ids, queue_name=chosen.queue_name or None)
    if action == BulkJob.Action.DELETE:
        return DeleteRequest(ids[0], workflow_ids=ids, delete_children=chosen.delete_children)
    return ForkFromFailureRequest(failure_body(ids, chosen))


def _record(job: BulkJob, batch: list[BulkJobItem], request_id: str, answer: relay.Answer) -> None:
    response: Response = answer.response
    ok = not response.error_message
    new_ids: list[str] = []
    if isinstance(response, SuccessResponse):
        ok = ok and response.success
    elif isinstance(response, ForkFromFailureResponse):
        new_ids = list(response.forked_workflow_ids or [])
        ok = ok and bool(new_ids)
    error = response.error_message or ("" if ok else "The executor did not do it.")
    # fork_from_failure answers with the new ids in the order of the ids it was given.
    forks = new_ids if len(new_ids) == len(batch) else [""] * len(batch)
    with transaction.atomic():
        for item, new_id in zip(batch, forks, strict=True):
            item.state = BulkJobItem.State.OK if ok else BulkJobItem.State.FAILED
            item.request_id = request_id
            item.executor_id = answer.executor.executor_id
            item.new_workflow_id = new_id
            item.detail = error or (f"Forked into {new_id}." if new_id else "Done.")
            if ok and new_ids and not new_id:
                item.detail = f"Forked with the batch: {', '.join(new_ids)}."
            item.save(
                update_fields=[
                    "state",
                    "request_id",
                    "executor_id",
                    "new_workflow_id",
                    "detail",
                    "updated_at",
                ]
            )
            audit_record(
                action=ACTIONS[BulkJob.Action(job.action)].audit_action,
                actor=job.created_by,
                actor_name=job.created_by_name,
                application=job.application,
                target=item.workflow_id,
                parameters={"bulk_job": job.pk, **job.parameters},
                reason=job.reason,
                result=Result.OK if ok else Result.FAILED,
                detail=item.detail,
                request_id=request_id,
                response=response.raw or None,
            )
        if ok and job.action in (BulkJob.Action.CANCEL, BulkJob.Action.DELETE):
            poison_holds_clear(
                application=job.application,
                workflow_ids=[item.workflow_id for item in batch],
                action=str(job.action),
                actor=job.created_by,
                actor_name=job.created_by_name,
                request_id=request_id,
            )


async def _settle_unanswered(job: BulkJob) -> None:
    """Items a stopped process sent without recording the answer: repeat the harmless
    ones; look for the forks of the others, and send again only those never forked."""
    sent = await db_async(lambda: list(job.items.filter(state=BulkJobItem.State.SENT)))()
    if not sent:
        return
    if job.action in REPEATABLE:
        await db_async(_requeue)(sent)
        return
    source = await source_for(job.application)
    for item in sent:
        forks = await source.list(
            ListQuery(forked_from=[item.workflow_id], start_time=job.started_at, limit=10)
        )
        found = [fork.workflow_id for fork in forks.items]
        if found:
            item.state = BulkJobItem.State.OK
            item.new_workflow_id = found[0]
            item.detail = FOUND_AFTER_RESTART.format(new_ids=", ".join(found))
        else:
            item.state = BulkJobItem.State.PENDING
        await db_async(item.save)(update_fields=["state", "new_workflow_id", "detail"])
