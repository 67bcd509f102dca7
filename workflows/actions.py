"""The native actions on one workflow: cancel, resume, restart, fork, fork from failure,
rewind and delete (PROTOCOL.md §2.2 and §5; DESIGN.md "Actions across SDK versions").

Each goes through the relay to a live executor of the application (the executor path),
or, when none is connected and the application has a system database, is written there
as the SDK's own code writes it (the database path, `forks.native`). Each attempt,
whatever became of it, leaves exactly one audit record carrying the path it took, the
executor request id and the executor's answer. What an action may do depends on the
workflow's status and on the SDK of the executors connected: `offers()` says which
actions make sense and why the others do not, and `workflow_act()` refuses what
`offers()` would not offer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from django.http import HttpRequest

from conductor import relay
from conductor.models import DATABASE_PATH, EXECUTOR_PATH, Executor
from conductor.protocol import (
    CancelRequest,
    DeleteRequest,
    ForkFromFailureBody,
    ForkFromFailureRequest,
    ForkFromFailureResponse,
    ForkWorkflowBody,
    ForkWorkflowRequest,
    ForkWorkflowResponse,
    ProtocolError,
    Request,
    Response,
    ResumeRequest,
    RewindWorkflowBody,
    RewindWorkflowRequest,
    SuccessResponse,
    encode_request,
)
from conductor.registry import NO_EXECUTOR, live_executors
from conductor.services import poison_holds_clear
from stepchange.asyncdb import db_async
from stepchange.audit import Result, audit_record
from stepchange.models import Application
from workflows.models import ACTIVE_STATUSES
from workflows.sources import Source, Workflow, source_for
from workflows.systemdb import SystemDatabaseError

if TYPE_CHECKING:
    from forks.native import Written


class Action(StrEnum):
    CANCEL = "cancel"
    RESUME = "resume"
    RESTART = "restart"
    FORK = "fork"
    FORK_FROM_FAILURE = "fork_from_failure"
    REWIND = "rewind"
    DELETE = "delete"

    @property
    def audit_action(self) -> str:
        return f"workflow.{self.value}"

    @property
    def label(self) -> str:
        return LABELS[self]


LABELS = {
    Action.CANCEL: "Cancel",
    Action.RESUME: "Resume",
    Action.RESTART: "Restart",
    Action.FORK: "Fork",
    Action.FORK_FROM_FAILURE: "Fork from failure",
    Action.REWIND: "Rewind",
    Action.DELETE: "Delete",
}

# What the confirmation says will happen, in the operator's words.
EXPLANATIONS = {
    Action.CANCEL: "The workflow becomes CANCELLED and leaves its queue. A running workflow "
    "stops at its next step; the step it is in finishes. With children, every descendant "
    "that has not finished is cancelled too.",
    Action.RESUME: "The workflow is enqueued again (on the queue you name, else DBOS's "
    "internal one) and continues from its last recorded step, on its own application "
    "version, with its recovery attempts reset.",
    Action.RESTART: "A new workflow is started from the first step with the same input: "
    "a fork that re-runs everything. This workflow is left as it is.",
    Action.FORK: "A new workflow is started from the step you choose: the recorded outputs "
    "of the steps before it are copied, that step and the ones after it run again. This "
    "workflow is left as it is.",
    Action.FORK_FROM_FAILURE: "A new workflow is started from the step that failed (or the "
    "last step, or the step you name), copying what was recorded before it.",
    Action.REWIND: "This same workflow is re-run from the step you choose: the steps from "
    "there on, its output and the events they set are erased, and it is enqueued again.",
    Action.DELETE: "The workflow's status, input, output, steps, events, notifications and "
    "streams are deleted from the system database. This cannot be undone.",
}

ACTIVE = ACTIVE_STATUSES
FINISHED = frozenset({"SUCCESS", "ERROR"})
FAILED = frozenset({"ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"})

WORKFLOW_NOT_FOUND = "No workflow {workflow_id} in {app}."
OTHER_APPLICATION = "Workflow {workflow_id} belongs to application {owner}, not {app}."
ALREADY_EXISTS = (
    "Workflow {new_workflow_id} already exists{origin}: nothing was forked again. "
    "Leave the new ID empty, or choose another, to fork once more."
)
BAD_WORKFLOW_ID = "new_workflow_id may hold letters, digits and . _ : - only, at most 255 of them."
FINISHED_ALREADY = "The workflow is {status}: there is nothing left to cancel."
NO_RESUME_ERROR = (
    "Resuming a workflow in ERROR does nothing in DBOS: fork it, fork it from its failure, "
    "or rewind it."
)
NO_RESUME_SUCCESS = "The workflow succeeded: there is nothing to resume. Fork it to run it again."
NO_RESUME_ACTIVE = "The workflow is {status}: it runs without being resumed."
NOT_FINISHED = "The workflow is {status}: cancel it first, or wait until it finishes."
NO_FAILURE = "The workflow is {status}: it has no failure to fork from."
NO_REWIND_EXECUTOR = (
    "No connected executor can rewind: that needs Python dbos 3.2 or newer, or TypeScript "
    "5.1 or newer. Fork the workflow instead."
)
NOT_DONE = "Executor {executor_id} answered that it could not {action}: {error}"
EXECUTOR_SAID_NO = "Executor {executor_id} did not {action} and gave no reason."
ONE_MODE = "Choose how to pick the step: last_failure, last_step, step or step_name."
STEP_NEEDED = "Forking from a step number needs start_step."
STEP_NAME_NEEDED = "Forking from a step name needs step_name."
SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,255}$")
NOT_ON_DATABASE = (
    "{action} is not done without a connected executor yet: fork the workflow from a step instead."
)
DATABASE_DONE = "{action} written into the system database (no executor is connected)"
LEFT_AS_THEY_WERE = "; left as they were, finished: {left}"


# The actions `database_write` writes; the others need a connected executor.
DATABASE_ACTIONS = frozenset(
    {
        Action.CANCEL,
        Action.RESUME,
        Action.RESTART,
        Action.FORK,
        Action.FORK_FROM_FAILURE,
        Action.REWIND,
        Action.DELETE,
    }
)
DATABASE_NOTICE = (
    "No executor is connected: actions are written into the system database directly "
    "(the database path), as the SDK's own code writes them, and an executor of the "
    "application takes them up when it runs."
)
NO_PATH_NOTICE = (
    "No executor is connected and no system database is registered: actions are "
    "unavailable. Connect an executor (conductor_url and a key of {app}), or register the "
    "application's system database to act through it."
)


async def acting_executors(application: Application) -> list[Executor]:
    """The executors an action on `application` may go to: those a request can reach now.
    Executors whose StepChange process died are left to reconnect elsewhere: with a system
    database the action is written there meanwhile; without one, it is sent to them and
    fails saying why."""
    live, reachable = await relay.reachable_executors(application)
    return reachable or ([] if application.system_database_url else live)


def action_path(application: Application, executors: Sequence[Executor]) -> str:
    """Which way an action on `application` goes with these executors (`acting_executors`):
    through one of them, else into its system database when it has one, else nowhere."""
    if executors:
        return EXECUTOR_PATH
    if application.system_database_url:
        return DATABASE_PATH
    return ""


@dataclass(frozen=True)
class PathNotice:
    """What a page says before an operator acts, when no executor is connected."""

    path: str
    text: str
    # The actions the path cannot do, by label.
    unavailable: list[str]


def path_notice(
    application: Application, executors: Sequence[Executor], *, not_on_database: Sequence[str]
) -> PathNotice | None:
    """The notice for `action_path`'s answer (None on the executor path); the caller names
    what its own actions cannot do on the database path."""
    path = action_path(application, executors)
    if path == EXECUTOR_PATH:
        return None
    if path == DATABASE_PATH:
        return PathNotice(path, DATABASE_NOTICE, list(not_on_database))
    return PathNotice(path, NO_PATH_NOTICE.format(app=application.name), [])


def not_on_database() -> list[str]:
    """The single-workflow actions the database path does not do, by label."""
    return [action.label for action in Action if action not in DATABASE_ACTIONS]


class ActionError(Exception):
    """An action that was not carried out; `status` is the API's code."""

    status = 400
    request_id = ""
    response: dict[str, Any] | None = None


class WorkflowNotFoundError(ActionError):
    status = 404


class WrongApplicationError(ActionError):
    status = 403


class ActionRefusedError(ActionError):
    """The action makes no sense for this workflow now (its status, or the executors)."""

    status = 409

    def __init__(self, message: str, *, existing_workflow_id: str = "") -> None:
        super().__init__(message)
        self.existing_workflow_id = existing_workflow_id


class ActionFailedError(ActionError):
    """The executor answered, and the answer was no."""

    status = 502

    def __init__(self, message: str, *, request_id: str, response: dict[str, Any]) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.response = response


@dataclass(frozen=True)
class Sdk:
    """What one executor's SDK can do, from its executor_info."""

    language: str
    version: tuple[int, ...]

    @classmethod
    def of(cls, executor: Executor) -> Sdk:
        numbers = re.findall(r"\d+", executor.dbos_version or "")[:3]
        return cls((executor.language or "").lower(), tuple(int(n) for n in numbers))

    @property
    def first_step(self) -> int:
        # Step ids start at 0 in TypeScript and at 1 in Python (PROTOCOL.md fork_workflow).
        return 0 if self.language == "typescript" else 1

    @property
    def can_rewind(self) -> bool:
        if self.language == "python":
            return self.version >= (3, 2)
        if self.language == "typescript":
            return self.version >= (5, 1)
        return False


@dataclass(frozen=True)
class Offer:
    action: Action
    allowed: bool
    why_not: str = ""

    @property
    def label(self) -> str:
        return self.action.label

    @property
    def explanation(self) -> str:
        return EXPLANATIONS[self.action]


def offers(
    workflow: Workflow, executors: Sequence[Executor], *, database: bool = False
) -> list[Offer]:
    """Every action, and whether it makes sense for `workflow` with these executors (or,
    `database`, written into the system database)."""
    status = str(workflow.status or "")
    refused = refusals(status, executors, database=database)
    return [Offer(action, not why, why) for action, why in refused.items()]


def refusals(
    status: str, executors: Sequence[Executor], *, database: bool = False
) -> dict[Action, str]:
    """Why each action is not offered ("" when it is); `database`: on the database path,
    where no executor's SDK limits what is done."""
    named = {"status": status}
    resume = ""
    if status == "ERROR":
        resume = NO_RESUME_ERROR
    elif status == "SUCCESS":
        resume = NO_RESUME_SUCCESS
    elif status in ("PENDING", "ENQUEUED"):
        resume = NO_RESUME_ACTIVE.format(**named)
    finished = "" if status not in ACTIVE else NOT_FINISHED.format(**named)
    rewind = finished
    if not (rewind or database) and not any(Sdk.of(e).can_rewind for e in executors):
        rewind = NO_REWIND_EXECUTOR
    return {
        Action.CANCEL: FINISHED_ALREADY.format(**named)
        if status in FINISHED or status == "CANCELLED"
        else "",
        Action.RESUME: resume,
        Action.RESTART: finished,
        Action.FORK: "",
        Action.FORK_FROM_FAILURE: "" if status in FAILED else NO_FAILURE.format(**named),
        Action.REWIND: rewind,
        Action.DELETE: finished,
    }


@dataclass(frozen=True, kw_only=True)
class Parameters:
    """What the operator chose; each action reads the fields it needs."""

    reason: str = ""
    cancel_children: bool = False
    delete_children: bool = False
    queue_name: str | None = None
    start_step: int | None = None
    new_workflow_id: str | None = None
    application_version: str | None = None
    # fork_from_failure: "last_failure", "last_step", "step" (start_step) or "step_name".
    failure_mode: str = "last_failure"
    step_name: str | None = None

    def shown(self) -> dict[str, Any]:
        """The parameters an audit record keeps: the ones that differ from the defaults."""
        defaults = asdict(Parameters())
        return {key: value for key, value in asdict(self).items() if value != defaults[key]}


@dataclass(frozen=True)
class Outcome:
    action: Action
    workflow_id: str
    detail: str
    request_id: str
    executor_id: str
    new_workflow_ids: list[str]
    audit_id: int
    path: str = EXECUTOR_PATH

    @property
    def new_workflow_id(self) -> str | None:
        return self.new_workflow_ids[0] if self.new_workflow_ids else None


async def workflow_act(
    *,
    application: Application,
    action: Action,
    workflow_id: str,
    parameters: Parameters,
    actor: Any,
    request: HttpRequest | None = None,
    source: str = "api",
) -> Outcome:
    """Carry out `action` on one workflow through a live executor, and audit the attempt.

    Raises WorkflowNotFoundError (404), WrongApplicationError (403), ActionRefusedError
    (409), ActionFailedError (502, the executor said no) or a relay.RelayError (503 no
    executor, 504 timeout, 502 disconnected); each is audited before it is raised.
    """
    audit = {
        "action": action.audit_action,
        "request": request,
        "actor": actor,
        "application": application,
        "target": workflow_id,
        "parameters": parameters.shown(),
        "reason": parameters.reason,
    }
    attempt = _Attempt(application, action, workflow_id, parameters, actor, source)
    try:
        outcome_detail, new_ids = await attempt.run()
    except (ActionError, relay.RelayError) as exc:
        if attempt.path:
            audit["parameters"] = {**parameters.shown(), "path": attempt.path}
        result = Result.DENIED if isinstance(exc, WrongApplicationError) else Result.FAILED
        response = getattr(exc, "response", None)
        if isinstance(response, Response):
            response = response.raw
        await db_async(audit_record)(
            **audit,
            result=result,
            detail=str(exc),
            request_id=getattr(exc, "request_id", "") or attempt.request_id,
            response=response,
        )
        raise
    audit["parameters"] = {**parameters.shown(), "path": attempt.path}
    record = await db_async(audit_record)(
        **audit,
        detail=outcome_detail,
        request_id=attempt.request_id,
        response=attempt.response,
    )
    if action in (Action.CANCEL, Action.DELETE):
        await db_async(poison_holds_clear)(
            application=application,
            workflow_ids=[workflow_id],
            action=action.value,
            actor=actor,
            request=request,
            request_id=attempt.request_id,
        )
    return Outcome(
        action=action,
        workflow_id=workflow_id,
        detail=outcome_detail,
        request_id=attempt.request_id,
        executor_id=attempt.executor_id,
        new_workflow_ids=new_ids,
        audit_id=record.pk,
        path=attempt.path,
    )


class _Attempt:
    """One action on its way: the checks, the request, and what came back."""

    def __init__(
        self,
        application: Application,
        action: Action,
        workflow_id: str,
        parameters: Parameters,
        actor: Any,
        source: str,
    ) -> None:
        self.application = application
        self.action = action
        self.workflow_id = workflow_id
        self.parameters = parameters
        self.actor_name = actor.get_username() if actor is not None else ""
        self.source = source
        self.request_id = ""
        self.executor_id = ""
        self.response: dict[str, Any] | None = None
        self.path = ""

    async def run(self) -> tuple[str, list[str]]:
        reads = await source_for(self.application)
        workflow = await reads.get(self.workflow_id, actor=self.actor_name)
        names = {"workflow_id": self.workflow_id, "app": self.application.name}
        if workflow is None:
            raise WorkflowNotFoundError(WORKFLOW_NOT_FOUND.format(**names))
        owner = workflow.application_name
        if owner and owner != self.application.name:
            raise WrongApplicationError(OTHER_APPLICATION.format(owner=owner, **names))
        executors = await acting_executors(self.application)
        path = action_path(self.application, executors)
        why_not = refusals(str(workflow.status or ""), executors, database=path == DATABASE_PATH)[
            self.action
        ]
        if why_not:
            raise ActionRefusedError(why_not)
        if path == DATABASE_PATH:
            self.path = DATABASE_PATH
            await self._check_new_id(reads)
            return await db_async(self._write)()
        if not path:
            raise relay.NoExecutorConnectedError(NO_EXECUTOR.format(app=self.application.name))
        self.path = EXECUTOR_PATH
        await self._check_new_id(reads)
        executor = self._choose(executors)
        message = self._message(Sdk.of(executor))
        self.request_id = message.request_id
        try:
            encode_request(message)
        except ProtocolError as exc:
            raise ActionError(str(exc)) from None
        answer = await relay.ask(
            self.application,
            message,
            executor=executor.executor_id,
            actor_name=self.actor_name,
            source=self.source,
            raise_on_error=False,
        )
        self.executor_id = executor.executor_id
        self.response = answer.response.raw or None
        return self._read(answer.response)

    async def _check_new_id(self, reads: Source) -> None:
        """A fork to an ID that exists is a double submission: say so, fork nothing."""
        new_id = self.parameters.new_workflow_id
        if self.action is not Action.FORK or not new_id:
            return
        if not SAFE_ID.match(new_id):
            raise ActionError(BAD_WORKFLOW_ID)
        existing = await reads.get(new_id, actor=self.actor_name)
        if existing is not None:
            origin = existing.forked_from
            raise ActionRefusedError(
                ALREADY_EXISTS.format(
                    new_workflow_id=new_id, origin=f" (forked from {origin})" if origin else ""
                ),
                existing_workflow_id=new_id,
            )

    def _write(self) -> tuple[str, list[str]]:
        """The action written into the system database, checked there against the status
        the workflow has inside the transaction (`forks.native`)."""
        try:
            written = database_write(
                self.application, self.action, self.workflow_id, self.parameters
            )
        except DatabaseWriteError as exc:
            error = ActionRefusedError(str(exc))
            error.status = exc.status
            raise error from None
        new_ids = [written.new_workflow_id] if written.new_workflow_id else []
        return database_detail(self.action, written), new_ids

    def _choose(self, executors: list[Executor]) -> Executor:
        if self.action is Action.REWIND:
            return next(e for e in executors if Sdk.of(e).can_rewind)
        return executors[0]

    def _message(self, sdk: Sdk) -> Request:
        chosen = self.parameters
        ids = {"workflow_id": self.workflow_id}
        version = chosen.application_version or None
        queue = chosen.queue_name or None
        if self.action is Action.CANCEL:
            return CancelRequest(self.workflow_id, cancel_children=chosen.cancel_children)
        if self.action is Action.DELETE:
            return DeleteRequest(self.workflow_id, delete_children=chosen.delete_children)
        if self.action is Action.RESUME:
            return ResumeRequest(self.workflow_id, queue_name=queue)
        if self.action in (Action.FORK, Action.RESTART):
            start = sdk.first_step if self.action is Action.RESTART else chosen.start_step
            return ForkWorkflowRequest(
                ForkWorkflowBody(
                    **ids,
                    start_step=sdk.first_step if start is None else start,
                    new_workflow_id=chosen.new_workflow_id or None,
                    application_version=version,
                    queue_name=queue,
                )
            )
        if self.action is Action.REWIND:
            return RewindWorkflowRequest(
                RewindWorkflowBody(
                    **ids,
                    start_step=chosen.start_step,
                    application_version=version,
                    queue_name=queue,
                )
            )
        return ForkFromFailureRequest(failure_body([self.workflow_id], chosen))

    def _read(self, response: Response) -> tuple[str, list[str]]:
        """The outcome's text and new workflow ids; ActionFailedError when it did not happen."""
        names = {"executor_id": self.executor_id, "action": self.action.label.lower()}
        new_ids: list[str] = []
        done = False
        if isinstance(response, SuccessResponse):
            done = response.success
        elif isinstance(response, ForkWorkflowResponse):
            new_ids = [response.new_workflow_id] if response.new_workflow_id else []
            done = bool(new_ids)
        elif isinstance(response, ForkFromFailureResponse):
            new_ids = list(response.forked_workflow_ids or [])
            done = bool(new_ids)
        if response.error_message or not done:
            message = (
                NOT_DONE.format(error=response.error_message, **names)
                if response.error_message
                else EXECUTOR_SAID_NO.format(**names)
            )
            raise ActionFailedError(
                message, request_id=self.request_id, response=response.raw or {}
            )
        detail = f"{self.action.label} done by executor {self.executor_id}"
        if new_ids:
            detail += f": new workflow {', '.join(new_ids)}"
        return detail + ".", new_ids


class DatabaseWriteError(Exception):
    """An action the database path did not write; `status` is the API's code."""

    status = 409


def database_write(
    application: Application,
    action: Action,
    workflow_id: str,
    chosen: Parameters,
    *,
    checked_as: Action | None = None,
) -> Written:
    """`action` on one workflow written into the system database (`forks.native`), checked
    there against the status the workflow has inside the transaction (as `checked_as`
    would be, when given): what was written (a `forks.native.Written`), or
    DatabaseWriteError saying why nothing was."""
    # forks.services imports this module: imported here, once both are loaded.
    from forks import native

    common: dict[str, Any] = {
        "application": application,
        "workflow_id": workflow_id,
        "check": lambda status: refusals(status, [], database=True)[checked_as or action],
    }
    version, queue = chosen.application_version or None, chosen.queue_name or None
    try:
        if action is Action.CANCEL:
            return native.native_cancel(**common, cancel_children=chosen.cancel_children)
        if action is Action.RESUME:
            return native.native_resume(**common, queue_name=queue)
        if action is Action.DELETE:
            return native.native_delete(**common, delete_children=chosen.delete_children)
        if action in (Action.FORK, Action.RESTART):
            return native.native_fork(
                **common,
                # Step ids start at 1 in Python and 0 in TypeScript: from 0 copies no step
                # in either, a restart.
                start_step=(chosen.start_step or 0) if action is Action.FORK else 0,
                new_workflow_id=chosen.new_workflow_id or None,
                application_version=version,
                queue_name=queue,
            )
        if action is Action.REWIND:
            return native.native_rewind(
                **common,
                start_step=chosen.start_step,
                application_version=version,
                queue_name=queue,
            )
        if action is Action.FORK_FROM_FAILURE:
            try:
                failure_body([workflow_id], chosen)  # refuses a bad choice of step
            except ActionError as exc:
                error = DatabaseWriteError(str(exc))
                error.status = 400
                raise error from None
            return native.native_fork_from_failure(
                **common,
                mode=chosen.failure_mode,
                start_step=chosen.start_step,
                step_name=chosen.step_name,
                application_version=version,
                queue_name=queue,
            )
    except native.NativeError as exc:
        error = DatabaseWriteError(str(exc))
        error.status = exc.status
        raise error from None
    raise DatabaseWriteError(NOT_ON_DATABASE.format(action=action.label))


def database_detail(action: Action, written: Written) -> str:
    """What the database path did, in the operator's words."""
    detail = DATABASE_DONE.format(action=action.label)
    if written.new_workflow_id:
        detail += f": new workflow {written.new_workflow_id}"
    elif len(written.changed) > 1:
        detail += f": {len(written.changed)} workflows"
    if written.left:
        left = ", ".join(f"{wid} ({status})" for wid, status in sorted(written.left.items()))
        detail += LEFT_AS_THEY_WERE.format(left=left)
    return detail + "."


def failure_body(workflow_ids: list[str], chosen: Parameters) -> ForkFromFailureBody:
    mode = chosen.failure_mode
    if mode not in ("last_failure", "last_step", "step", "step_name"):
        raise ActionError(ONE_MODE)
    if mode == "step" and chosen.start_step is None:
        raise ActionError(STEP_NEEDED)
    if mode == "step_name" and not chosen.step_name:
        raise ActionError(STEP_NAME_NEEDED)
    return ForkFromFailureBody(
        workflow_ids=workflow_ids,
        from_last_failure=mode == "last_failure",
        from_last_step=mode == "last_step",
        from_step=chosen.start_step if mode == "step" else None,
        from_step_name=chosen.step_name if mode == "step_name" else None,
        application_version=chosen.application_version or None,
        queue_name=chosen.queue_name or None,
    )


RECOVERED = (
    "Re-enqueued {count} PENDING workflow(s) of executor {executor_id} in the system "
    "database, for an executor of their version to take up"
)
POISON_SUSPECTS = "; poison suspects (left pending by executors that died in turn): {ids}"
STILL_CONNECTED = "Executor {executor_id} is connected: it runs its own workflows."
NOTHING_PENDING = "Executor {executor_id} has no PENDING workflow in the system database."


def database_recover(
    *,
    application: Application,
    executor_id: str,
    actor: Any,
    request: HttpRequest | None,
    reason: str = "",
) -> dict[str, Any]:
    """Recover a gone executor's PENDING workflows through the system database, as the
    SDK's own recovery re-enqueues them (`forks.native.native_recover`), counting the death
    against each (the poison rule of connected executors), audited with its path."""
    from conductor.recovery import ACTION, tally_poison
    from forks import native

    audit = {
        "action": ACTION,
        "request": request,
        "actor": actor,
        "application": application,
        "target": f"executor {executor_id}",
        "parameters": {"executor_ids": [executor_id], "path": DATABASE_PATH},
        "reason": reason,
    }
    if any(e.executor_id == executor_id for e in live_executors(application)):
        why = STILL_CONNECTED.format(executor_id=executor_id)
        audit_record(**audit, result=Result.FAILED, detail=why)
        raise ActionRefusedError(why)
    try:
        pending = native.pending_workflow_ids(application, executor_id)
    except SystemDatabaseError as exc:
        # No system database registered, or it cannot be reached: refused, and recorded.
        audit_record(**audit, result=Result.FAILED, detail=str(exc))
        raise
    if not pending:
        why = NOTHING_PENDING.format(executor_id=executor_id)
        audit_record(**audit, result=Result.FAILED, detail=why)
        raise WorkflowNotFoundError(why)
    suspects = tally_poison(application, executor_id, pending)
    attempt: dict[str, Any] = {
        "application": application,
        "executor_id": executor_id,
        "actor": actor,
    }
    try:
        attempt["version"] = ", ".join(
            sorted(
                {
                    e.application_version
                    for e in native.pending_executors(application)
                    if e.executor_id == executor_id and e.application_version
                }
            )
        )
        written = native.native_recover(
            application=application, executor_id=executor_id, workflow_ids=pending
        )
    except SystemDatabaseError as exc:
        audit_record(**audit, result=Result.FAILED, detail=str(exc))
        _recovery_attempt(**attempt, outcome="failed", workflow_ids=pending, detail=str(exc))
        raise
    except native.NativeError as exc:
        audit_record(**audit, result=Result.FAILED, detail=str(exc))
        _recovery_attempt(**attempt, outcome="failed", workflow_ids=pending, detail=str(exc))
        error = ActionRefusedError(str(exc))
        error.status = exc.status
        raise error from None
    detail = RECOVERED.format(count=len(written.changed), executor_id=executor_id)
    if suspects:
        detail += POISON_SUSPECTS.format(ids=", ".join(suspects))
    if written.left:
        left = ", ".join(f"{wid} ({status})" for wid, status in sorted(written.left.items()))
        detail += LEFT_AS_THEY_WERE.format(left=left).replace("finished", "taken up since")
    record = audit_record(**audit, detail=detail + ".")
    outcome = "sent" if written.changed else "nothing_pending"
    _recovery_attempt(**attempt, outcome=outcome, workflow_ids=written.changed, detail=detail + ".")
    return {
        "executor_id": executor_id,
        "path": DATABASE_PATH,
        "recovered": written.changed,
        "left": written.left,
        "poison_suspects": suspects,
        "detail": detail + ".",
        "audit_id": record.pk,
    }


def _recovery_attempt(
    *,
    application: Application,
    executor_id: str,
    actor: Any,
    version: str = "",
    outcome: str,
    workflow_ids: list[str],
    detail: str,
) -> None:
    """A manual recovery through the system database, listed under *Recovery* as the
    automatic ones are (`conductor.liveness._finish`): the workflows it re-enqueued, or,
    when it failed, those it meant to."""
    from conductor.models import RecoveryAttempt

    RecoveryAttempt.objects.create(
        application=application,
        dead_executor_id=executor_id[:100],
        application_version=version[:200],
        pending_workflow_ids=workflow_ids,
        manual=True,
        requested_by=actor.get_username() if actor is not None else "",
        outcome=outcome,
        detail=detail,
        path=DATABASE_PATH,
    )
