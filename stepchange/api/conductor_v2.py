"""The Conductor-compatible API: the part of DBOS Conductor's REST API (v2) that its public
clients use (the `dbos-mcp` package, 0.8.0, sends every path and body below), served under
`/conductor/v2/orgs/{org}/` beside `/api/v1/`.

Only shapes are translated here: every read and action calls the services `/api/v1` calls
(the sources, `workflow_act`, the bulk jobs, `schedule_act`, the versions), so permissions,
audit and request logging are the same. Requests and answers are Conductor's: camelCase
fields, ISO 8601 times, stored values as display text. Errors are problem details
(RFC 9457): `{"title", "status", "detail"}`. DBOS documents no error body for this API
and dbos-mcp reads only the status (`raise_for_status`): the shape is our choice, not
confirmed against Conductor's server.

StepChange has one tenant: the organisation in the path must be one CONDUCTOR_API_ORGS
names (any name when it names none); any other is a 404, like an unknown application.
Only a bearer token authenticates here (the same tokens as `/api/v1`): these are calls
from tools, never from a page, so there is no session and no CSRF token to check.
"""

import asyncio
import json
from datetime import UTC, datetime
from typing import Annotated, Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from ninja import Field, NinjaAPI, Query, Router, Schema, Status
from ninja.errors import AuthenticationError, HttpError
from pydantic import ConfigDict, StringConstraints
from pydantic.alias_generators import to_camel

from conductor import relay
from conductor.models import Executor
from conductor.protocol import (
    GetWorkflowAggregatesBody,
    GetWorkflowAggregatesRequest,
    GetWorkflowAggregatesResponse,
    ProtocolError,
    WorkflowAggregateOutput,
)
from conductor.registry import with_live_executor_counts
from forks.plans import ForkError
from stepchange.access import aapplication_for, application_for, visible_to
from stepchange.api import errors
from stepchange.api.base import STRICT, BearerToken, Body, Integer
from stepchange.asyncdb import db_async
from stepchange.audit import UNSAFE_METHODS, AuditAction, Result, audit_record, mark_refusal_audited
from stepchange.roles import PERM_INSPECT, PERM_OPERATE
from stepchange.throttle import Throttled
from workflows.actions import WORKFLOW_NOT_FOUND, Action, ActionError, Parameters, workflow_act
from workflows.aggregates import AggregateError, AggregateQuery, workflow_aggregates_read
from workflows.api import instant, statuses_known
from workflows.jobs import (
    MAX_WORKFLOWS,
    bulk_job_create,
    bulk_jobs_wake,
    bulk_select,
    bulk_selection_failed,
)
from workflows.models import BulkJob, BulkJobItem
from workflows.schedules import SCHEDULE_NOT_FOUND, ScheduleAction, schedule_act
from workflows.sources import (
    MAX_STEPS_PAGE,
    BadCursor,
    DatabaseSource,
    Extras,
    ListQuery,
    Schedule,
    ScheduleQuery,
    SlowQuery,
    Source,
    Step,
    StoredValue,
    UnsupportedFilter,
    Workflow,
    backwards_range,
    source_for,
)
from workflows.versions import VersionError, version_set_latest, versions_read

# What the request log and the audit call the caller's channel.
SOURCE = "conductor-api"
# Which path answered a read that can take either (the system database or an executor).
SOURCE_HEADER = "StepChange-Source"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# How long a bulk action's answer waits for its job: less than dbos-mcp's 30 s timeout.
BULK_WAIT_SECONDS = 25.0
BULK_POLL_SECONDS = 0.1

ORG_NOT_FOUND = "No organization named {name!r} here."
UNAUTHENTICATED = "Authentication required: Authorization: Bearer <a StepChange API token>."
BAD_TIME = "{name} must be an ISO 8601 time such as 2026-11-21T10:00:00Z; got {value!r}"
BAD_SCHEDULE_STATUS = "status must be ACTIVE or PAUSED; got {value!r}"
ONE_PREFIX = "workflowIdPrefix: StepChange filters by one prefix at a time; got {count}."
TOO_DEEP = "offset + limit may reach {most:,} workflows at most: narrow the filters instead."
NO_PARTITIONS = "queuePartitionKey: StepChange does not fork onto queue partitions."
ONE_START = "Set exactly one of fromLastFailure, fromLastStep, fromStep and fromStepName."
BULK_FAILED = "{failed} of {total} workflows were not {done}: {details}"
BULK_STOPPED = "The bulk job stopped: {detail}"
BULK_STILL_RUNNING = (
    "Still running after {seconds:g} s: follow bulk job {job} at "
    "/api/v1/apps/{app}/bulk-actions/{job}."
)
DONE_WORDS = {
    BulkJob.Action.CANCEL: "cancelled",
    BulkJob.Action.RESUME: "resumed",
    BulkJob.Action.DELETE: "deleted",
    BulkJob.Action.FORK_FROM_FAILURE: "forked",
}


# Authentication: StepChange's bearer tokens, then the organisation.


def organization_check(request: HttpRequest) -> None:
    """404 unless the path's organisation is one this StepChange answers for; a refused
    attempt to change something is audited, as an unknown application's is."""
    match = request.resolver_match
    org = match.kwargs.get("org", "") if match is not None else ""
    accepted = settings.CONDUCTOR_API_ORGS
    if not accepted or org in accepted:
        return
    missing = Http404(ORG_NOT_FOUND.format(name=org))
    if request.method in UNSAFE_METHODS:
        audit_record(
            action=AuditAction.ACCESS_DENIED,
            request=request,
            result=Result.DENIED,
            target=f"{request.method} {request.path}"[:255],
            detail=str(missing),
        )
        mark_refusal_audited(request)
    raise missing


class ConductorToken(BearerToken):
    """A StepChange bearer token, as `/api/v1` takes it; then the organisation the path
    names; then (built with a permission) the application, all before the body is read."""

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        user = super().authenticate(request, token)
        if user is not None:
            organization_check(request)
        return user


def acting(permission: str) -> list[Any]:
    return [ConductorToken(permission)]


# Errors, as problem details.


def _problem(request: HttpRequest, status: int, detail: Any) -> HttpResponse:
    response = api.create_response(request, errors.problem(status, detail), status=status)
    response["Content-Type"] = errors.PROBLEM_CONTENT_TYPE
    return response


def _answer(answer: errors.Answer) -> Any:
    def handle(request: HttpRequest, exc: Exception) -> HttpResponse:
        detail, status = answer(request, exc)
        return _problem(request, status, detail)

    return handle


def _with_status(request: HttpRequest, exc: Exception) -> tuple[Any, int]:
    """The domain errors that carry their status (actions, versions, relay, reads)."""
    status = int(getattr(exc, "status", 400))
    if isinstance(exc, UnsupportedFilter):
        return f"{exc.field}: {exc}", status
    return str(exc), status


def _http_error(request: HttpRequest, exc: HttpError) -> tuple[Any, int]:
    return str(exc), exc.status_code


def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> tuple[Any, int]:
    return UNAUTHENTICATED, 401


def _throttled(request: HttpRequest, exc: Any) -> HttpResponse:
    response = _problem(request, 429, str(exc))
    response["Retry-After"] = str(exc.retry_after)
    return response


class ConductorAPI(NinjaAPI):
    """No answer is cached: each says what is true now, for this caller."""

    def create_response(
        self, request: HttpRequest, data: Any, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        response = super().create_response(request, data, *args, **kwargs)
        response["Cache-Control"] = "no-store"
        return response


api = ConductorAPI(
    title="StepChange: Conductor-compatible API",
    version="2",
    description=(
        "The part of DBOS Conductor's REST API v2 that dbos-mcp uses, over StepChange. "
        "Authenticate with `Authorization: Bearer <StepChange API token>`."
    ),
    urls_namespace="conductor-api",
    openapi_url="/openapi.json",
    docs_url=None,
    auth=[ConductorToken()],
)
ANSWERS: dict[type[Exception], errors.Answer] = {
    **errors.ANSWERS,
    AuthenticationError: _unauthenticated,
    HttpError: _http_error,
    ActionError: _with_status,
    VersionError: _with_status,
    relay.RelayError: _with_status,
    SlowQuery: _with_status,
    UnsupportedFilter: _with_status,
    BadCursor: _with_status,
    ProtocolError: lambda request, exc: (str(exc), 400),
    ForkError: _with_status,
    AggregateError: _with_status,
}
for kind, answer in ANSWERS.items():
    api.add_exception_handler(kind, _answer(answer))
api.add_exception_handler(Throttled, _throttled)

router = Router(tags=["conductor"])
# A workflow id (and a schedule name) may hold slashes: the route that ends with one takes
# the rest of the path, so those come last, on a router of their own.
last_router = Router(tags=["conductor"])


# Translating out.


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _from_ms(epoch_ms: int | None) -> str | None:
    return None if epoch_ms is None else iso(datetime.fromtimestamp(epoch_ms / 1000, tz=UTC))


def display(stored: StoredValue | None) -> str | None:
    """A stored value as Conductor shows one: text (an executor's rendering passes as it is;
    a value decoded from the system database, as JSON)."""
    if stored is None:
        return None
    if isinstance(stored.value, str):
        return stored.value
    return json.dumps(stored.value, default=str)


def _present(fields: dict[str, Any]) -> dict[str, Any]:
    """Conductor leaves out the optional fields it has no value for."""
    return {name: value for name, value in fields.items() if value is not None}


def workflow_out(workflow: Workflow, *, values: bool = True) -> dict[str, Any]:
    shown = {
        "workflowId": workflow.workflow_id,
        "status": workflow.status,
        "workflowName": workflow.name,
        "workflowClass": workflow.class_name or None,
        "workflowConfig": workflow.config_name or None,
        "user": workflow.authenticated_user or None,
        "assumedRole": workflow.assumed_role or None,
        "roles": workflow.authenticated_roles or None,
        "queueName": workflow.queue_name,
        "appVersion": workflow.application_version,
        "executorId": workflow.executor_id,
        "createdAt": iso(workflow.created_at),
        "updatedAt": iso(workflow.updated_at),
        "completedAt": iso(workflow.completed_at),
        "dequeuedAt": iso(workflow.dequeued_at),
        "timeoutMs": workflow.timeout_ms,
        "deadline": iso(workflow.deadline),
        "deduplicationId": workflow.deduplication_id,
        "priority": workflow.priority,
        "queuePartitionKey": workflow.queue_partition_key,
        "forkedFrom": workflow.forked_from,
        "wasForkedFrom": workflow.was_forked_from,
        "parentWorkflowId": workflow.parent_workflow_id,
        "delayUntil": iso(workflow.delay_until),
        "attributes": workflow.attributes,
        "scheduleName": workflow.schedule_name,
        "applicationName": workflow.application_name,
    }
    if values:
        shown |= {
            "input": display(workflow.input),
            "output": display(workflow.output),
            "error": display(workflow.error),
        }
    return _present(shown)


def step_out(step: Step) -> dict[str, Any]:
    return _present(
        {
            "stepId": step.function_id,
            "stepName": step.function_name,
            "output": display(step.output),
            "error": display(step.error),
            "childWorkflowId": step.child_workflow_id,
            "startedAt": iso(step.started_at),
            "completedAt": iso(step.completed_at),
        }
    )


def schedule_out(schedule: Schedule) -> dict[str, Any]:
    return _present(
        {
            "scheduleId": schedule.schedule_id,
            "scheduleName": schedule.name,
            "workflowName": schedule.workflow_name,
            "workflowClass": schedule.class_name or None,
            "cronExpression": schedule.cron,
            "status": schedule.status,
            "context": schedule.context,
            "lastFiredAt": iso(schedule.last_fired_at),
            "automaticBackfill": schedule.automatic_backfill,
            "cronTimezone": schedule.timezone,
            "applicationName": schedule.application_name,
        }
    )


EXECUTOR_STATUS: dict[str, str] = {
    Executor.State.CONNECTED: "HEALTHY",
    Executor.State.DISCONNECTED: "DISCONNECTED",
}


def executor_out(executor: Executor) -> dict[str, Any]:
    return _present(
        {
            "executorId": executor.executor_id,
            "appId": str(executor.application_id),
            "appVersion": executor.application_version,
            "status": EXECUTOR_STATUS.get(executor.state, "DEAD"),
            "hostname": executor.hostname or None,
            "createdAt": iso(executor.connected_at),
            "updatedAt": iso(executor.disconnected_at or executor.last_seen_at),
            "language": executor.language or None,
            "dbosVersion": executor.dbos_version or None,
            "executorMetadata": executor.metadata or None,
        }
    )


def application_out(application: Any, org: str) -> dict[str, Any]:
    # Reads work with a connected executor or with the system database.
    readable = application.live_executors > 0 or bool(application.system_database_url)
    days, rows, hours = (
        application.retention_days,
        application.retention_rows,
        application.retention_timeout_hours,
    )
    return _present(
        {
            "id": str(application.pk),
            "name": application.name,
            "orgId": org,
            "status": "AVAILABLE" if readable else "UNAVAILABLE",
            "executorTimeoutSecs": application.recovery_grace_seconds,
            "gcTimeThresholdMs": days * 86_400_000 if days else None,
            "gcRowsThreshold": rows,
            "globalTimeoutMs": hours * 3_600_000 if hours else None,
            "privateMode": False,
            "dbosCloud": False,
        }
    )


# Translating in.


Text = Annotated[str, StringConstraints(min_length=1, max_length=1000)]
CAMEL = STRICT | ConfigDict(alias_generator=to_camel, populate_by_name=False)


class ConductorBody(Body):
    """A body as Conductor's clients send it: camelCase, strict, nothing unknown."""

    model_config = CAMEL


class TimeFilters(ConductorBody):
    start_time: str | None = None
    end_time: str | None = None
    completed_after: str | None = None
    completed_before: str | None = None
    dequeued_after: str | None = None
    dequeued_before: str | None = None

    def times(self) -> dict[str, Any]:
        names = TimeFilters.model_fields
        times = {name: instant(to_camel(name), getattr(self, name), bad=BAD_TIME) for name in names}
        backwards = backwards_range(times)
        if backwards:
            raise HttpError(400, backwards[1])
        return times


class SearchIn(TimeFilters):
    workflow_ids: list[Text] | None = Field(default=None, max_length=MAX_WORKFLOWS)
    workflow_name: list[Text] | None = None
    user: list[Text] | None = None
    status: list[str] | None = None
    app_version: list[Text] | None = None
    forked_from: list[Text] | None = None
    parent_workflow_id: list[Text] | None = None
    queue_name: list[Text] | None = None
    limit: Integer | None = Field(default=None, ge=1, le=MAX_LIMIT)
    offset: Integer | None = Field(default=None, ge=0)
    sort_desc: bool | None = None
    workflow_id_prefix: list[Text] | None = None
    load_input: bool | None = None
    load_output: bool | None = None
    executor_id: list[Text] | None = None
    queues_only: bool | None = None
    was_forked_from: bool | None = None
    has_parent: bool | None = None
    schedule_name: list[Text] | None = None

    def query(self) -> ListQuery:
        prefixes = self.workflow_id_prefix or []
        if len(prefixes) > 1:
            raise HttpError(400, ONE_PREFIX.format(count=len(prefixes)))
        if (self.offset or 0) + (self.limit or DEFAULT_LIMIT) > MAX_WORKFLOWS:
            raise HttpError(400, TOO_DEEP.format(most=MAX_WORKFLOWS))
        return ListQuery(
            status=statuses_known(self.status) if self.status else None,
            workflow_name=self.workflow_name or None,
            queue_name=self.queue_name or None,
            workflow_id_prefix=prefixes[0] if prefixes else None,
            executor_id=self.executor_id or None,
            application_version=self.app_version or None,
            forked_from=self.forked_from or None,
            parent_workflow_id=self.parent_workflow_id or None,
            authenticated_user=self.user or None,
            schedule_name=self.schedule_name or None,
            was_forked_from=self.was_forked_from,
            has_parent=self.has_parent,
            workflow_ids=self.workflow_ids,
            limit=self.limit or DEFAULT_LIMIT,
            # Conductor lists oldest first unless asked otherwise.
            sort_desc=bool(self.sort_desc),
            load_input=bool(self.load_input),
            load_output=bool(self.load_output),
            queued=bool(self.queues_only),
            **self.times(),
        )


NO_SEARCH = SearchIn()


class AggregatesIn(TimeFilters):
    group_by_status: bool = False
    group_by_workflow_name: bool = False
    group_by_queue_name: bool = False
    group_by_executor_id: bool = False
    group_by_app_version: bool = False
    group_by_application_name: bool = False
    select_count: bool = False
    select_min_created_at: bool = False
    select_max_queue_wait_ms: bool = False
    select_max_total_latency_ms: bool = False
    status: list[str] | None = None
    workflow_name: list[Text] | None = None
    app_version: list[Text] | None = None
    executor_id: list[Text] | None = None
    queue_name: list[Text] | None = None
    workflow_id_prefix: list[Text] | None = None
    time_bucket_size_ms: Integer | None = Field(default=None, ge=1)
    schedule_name: list[Text] | None = None

    def message(self) -> GetWorkflowAggregatesRequest:
        """The executor's request (PROTOCOL.md get_workflow_aggregates: its own names)."""
        return GetWorkflowAggregatesRequest(
            GetWorkflowAggregatesBody(
                group_by_status=self.group_by_status,
                group_by_name=self.group_by_workflow_name,
                group_by_queue_name=self.group_by_queue_name,
                group_by_executor_id=self.group_by_executor_id,
                group_by_application_version=self.group_by_app_version,
                group_by_application_name=self.group_by_application_name,
                select_count=self.select_count,
                select_min_created_at=self.select_min_created_at,
                select_max_queue_wait_ms=self.select_max_queue_wait_ms,
                select_max_total_latency_ms=self.select_max_total_latency_ms,
                time_bucket_size_ms=self.time_bucket_size_ms,
                status=statuses_known(self.status) if self.status else None,
                name=self.workflow_name,
                app_version=self.app_version,
                executor_id=self.executor_id,
                queue_name=self.queue_name,
                workflow_id_prefix=self.workflow_id_prefix,
                schedule_name=self.schedule_name,
                **self.times(),
            )
        )

    def query(self) -> AggregateQuery:
        """The same request, read from the system database (workflows/aggregates.py)."""
        flags = {
            "status": self.group_by_status,
            "name": self.group_by_workflow_name,
            "queue_name": self.group_by_queue_name,
            "executor_id": self.group_by_executor_id,
            "application_version": self.group_by_app_version,
            "application_name": self.group_by_application_name,
        }
        selects = {
            "count": self.select_count,
            "min_created_at": self.select_min_created_at,
            "max_queue_wait_ms": self.select_max_queue_wait_ms,
            "max_total_latency_ms": self.select_max_total_latency_ms,
        }
        return AggregateQuery(
            group_by=tuple(name for name, chosen in flags.items() if chosen),
            select=tuple(name for name, chosen in selects.items() if chosen),
            time_bucket_size_ms=self.time_bucket_size_ms,
            filters=ListQuery(
                status=statuses_known(self.status) if self.status else None,
                workflow_name=self.workflow_name or None,
                application_version=self.app_version or None,
                executor_id=self.executor_id or None,
                queue_name=self.queue_name or None,
                schedule_name=self.schedule_name or None,
                **self.times(),
            ),
            workflow_id_prefixes=tuple(self.workflow_id_prefix or ()),
        )


class CancelIn(ConductorBody):
    cancel_children: bool = False


class ResumeIn(ConductorBody):
    queue_name: Text | None = None


# What a body left out stands for (not None: a body of `null` is refused, as in /api/v1).
NO_CANCEL, NO_RESUME = CancelIn(), ResumeIn()


class ForkIn(ConductorBody):
    start_step: Integer = Field(ge=0)
    app_version: Text | None = None
    new_workflow_id: Text | None = None
    queue_name: Text | None = None
    queue_partition_key: str | None = None


WorkflowIds = list[Annotated[str, StringConstraints(min_length=1, max_length=255)]]


class BulkCancelIn(ConductorBody):
    workflow_ids: WorkflowIds = Field(max_length=MAX_WORKFLOWS)
    cancel_children: bool = False


class BulkResumeIn(ConductorBody):
    workflow_ids: WorkflowIds = Field(max_length=MAX_WORKFLOWS)
    queue_name: Text | None = None


class BulkDeleteIn(ConductorBody):
    workflow_ids: WorkflowIds = Field(max_length=MAX_WORKFLOWS)
    delete_children: bool = False


class ForkFromFailureIn(ConductorBody):
    workflow_ids: WorkflowIds = Field(max_length=MAX_WORKFLOWS)
    app_version: Text | None = None
    queue_name: Text | None = None
    queue_partition_key: str | None = None
    from_last_failure: bool | None = None
    from_last_step: bool | None = None
    from_step: Integer | None = Field(default=None, ge=0)
    from_step_name: Text | None = None

    def parameters(self) -> Parameters:
        if self.queue_partition_key:
            raise HttpError(400, NO_PARTITIONS)
        modes = [
            mode
            for mode, chosen in (
                ("last_failure", self.from_last_failure),
                ("last_step", self.from_last_step),
                ("step", self.from_step is not None),
                ("step_name", self.from_step_name is not None),
            )
            if chosen
        ]
        if len(modes) != 1:
            raise HttpError(400, ONE_START)
        return Parameters(
            failure_mode=modes[0],
            start_step=self.from_step,
            step_name=self.from_step_name,
            application_version=self.app_version,
            queue_name=self.queue_name,
        )


class SetLatestIn(ConductorBody):
    version_name: Annotated[str, StringConstraints(min_length=1, max_length=255)]


class QueryParameters(Schema):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=False)


class StepsQuery(QueryParameters):
    limit: int | None = Field(default=None, ge=1, le=MAX_STEPS_PAGE)
    offset: int = Field(default=0, ge=0)


class DeleteQuery(QueryParameters):
    delete_children: bool = False


class SchedulesQuery(QueryParameters):
    status: str | None = None
    workflow_name: str | None = None
    schedule_name_prefix: str | None = None

    def query(self) -> ScheduleQuery:
        status = (self.status or "").strip().upper()
        if status and status not in ("ACTIVE", "PAUSED"):
            raise HttpError(400, BAD_SCHEDULE_STATUS.format(value=self.status))
        return ScheduleQuery(
            status=[status] if status else None,
            workflow_name=[self.workflow_name] if self.workflow_name else None,
            name_prefix=[self.schedule_name_prefix] if self.schedule_name_prefix else None,
        )


# Reads.


async def _source(request: HttpRequest, app: str) -> Source:
    return await source_for(await aapplication_for(request, app, PERM_INSPECT))


def _actor(request: HttpRequest) -> str:
    return str(request.user.get_username())


@router.get("/orgs/{org}/apps")
def list_applications(request: HttpRequest, org: str) -> list[dict[str, Any]]:
    """The applications the caller may see."""
    applications = with_live_executor_counts(visible_to(request.user)).order_by("name")
    return [application_out(application, org) for application in applications]


@router.get("/orgs/{org}/apps/{app}/executors")
def list_executors(request: HttpRequest, org: str, app: str) -> list[dict[str, Any]]:
    """Connected executors, and those gone within their grace period."""
    application = application_for(request, app)
    executors = Executor.objects.filter(
        application=application,
        state__in=[Executor.State.CONNECTED, Executor.State.DISCONNECTED],
    ).order_by("-connected_at")
    return [executor_out(executor) for executor in executors]


@router.post("/orgs/{org}/apps/{app}/workflows/search", auth=acting(PERM_INSPECT))
async def search_workflows(
    request: HttpRequest, org: str, app: str, body: SearchIn = NO_SEARCH
) -> list[dict[str, Any]]:
    """Workflows matching the filters, oldest first unless `sortDesc`; `offset` skips."""
    query = body.query()
    source = await _source(request, app)
    return [
        workflow_out(workflow, values=query.load_input or query.load_output)
        for workflow in await _skipping(source, query, body.offset or 0, _actor(request))
    ]


async def _skipping(source: Source, query: ListQuery, offset: int, actor: str) -> list[Workflow]:
    """The page `offset` rows in: StepChange's lists page by keyset, so the rows before it
    are read (at most MAX_WORKFLOWS in all, `SearchIn.query` saw to that)."""
    wanted = offset + query.limit
    found: list[Workflow] = []
    cursor: str | None = None
    while len(found) < wanted:
        page_size = min(MAX_LIMIT, wanted - len(found))
        page = await source.list(
            ListQuery(**{**query.__dict__, "limit": page_size, "cursor": cursor}), actor=actor
        )
        found += page.items
        cursor = page.next_cursor
        if not cursor:
            break
    return found[offset:wanted]


async def _workflow(request: HttpRequest, app: str, workflow_id: str) -> tuple[Source, Workflow]:
    source = await _source(request, app)
    found = await source.get(workflow_id, actor=_actor(request))
    if found is None:
        raise Http404(WORKFLOW_NOT_FOUND.format(workflow_id=workflow_id, app=app))
    return source, found


async def get_workflow(request: HttpRequest, org: str, app: str, workflow_id: str) -> Any:
    """One workflow, with its input, output and error."""
    _, found = await _workflow(request, app, workflow_id)
    return workflow_out(found)


@router.get("/orgs/{org}/apps/{app}/workflows/{workflow:workflow_id}/steps")
async def list_steps(
    request: HttpRequest, org: str, app: str, workflow_id: str, paging: Query[StepsQuery]
) -> list[dict[str, Any]]:
    """The workflow's recorded steps, in order; `offset` skips, `limit` bounds."""
    source = await _source(request, app)
    actor = _actor(request)
    wanted = paging.offset + (paging.limit or MAX_STEPS_PAGE)
    steps: list[Step] = []
    cursor: str | None = None
    while len(steps) < wanted:
        limit = min(MAX_STEPS_PAGE, wanted - len(steps))
        page = await source.steps(workflow_id, cursor=cursor, limit=limit, actor=actor)
        steps += page.items
        cursor = page.next_cursor
        if not cursor:
            break
    if not steps and await source.get(workflow_id, actor=actor) is None:
        raise Http404(WORKFLOW_NOT_FOUND.format(workflow_id=workflow_id, app=app))
    return [step_out(step) for step in steps[paging.offset : wanted]]


async def _extras(request: HttpRequest, app: str, workflow_id: str, kind: str) -> Extras:
    """Only the extras asked for: neither the workflow's values nor its steps are read."""
    source = await _source(request, app)
    extras = await source.extras(workflow_id, frozenset({kind}), actor=_actor(request))
    if extras is None:
        raise Http404(WORKFLOW_NOT_FOUND.format(workflow_id=workflow_id, app=app))
    return extras


@router.get("/orgs/{org}/apps/{app}/workflows/{workflow:workflow_id}/events")
async def workflow_events(
    request: HttpRequest, org: str, app: str, workflow_id: str
) -> list[dict[str, Any]]:
    """The events the workflow set: each key's latest value."""
    extras = await _extras(request, app, workflow_id, "events")
    return [{"key": event.key, "value": display(event.value)} for event in extras.events]


@router.get("/orgs/{org}/apps/{app}/workflows/{workflow:workflow_id}/notifications")
async def workflow_notifications(
    request: HttpRequest, org: str, app: str, workflow_id: str
) -> list[dict[str, Any]]:
    """The messages sent to the workflow, oldest first, and whether it consumed each."""
    extras = await _extras(request, app, workflow_id, "notifications")
    return [
        _present(
            {
                "topic": message.topic,
                "message": display(message.message),
                "createdAt": iso(message.created_at),
                "consumed": message.consumed,
            }
        )
        for message in extras.notifications
    ]


@router.post("/orgs/{org}/apps/{app}/workflows/aggregates", auth=acting(PERM_INSPECT))
async def workflow_aggregates(
    request: HttpRequest, org: str, app: str, body: AggregatesIn
) -> HttpResponse:
    """Counts and extremes of the workflows, grouped (DBOS's `get_workflow_aggregates`):
    from the system database when the application has one, else from a live executor. The
    StepChange-Source header says which answered."""
    message = body.message()
    application = await aapplication_for(request, app, PERM_INSPECT)
    source = await source_for(application)
    if isinstance(source, DatabaseSource):
        rows = await workflow_aggregates_read(source=source, query=body.query())
    else:
        answer = await relay.ask(application, message, actor_name=_actor(request), source=SOURCE)
        rows = relay.expect(answer.response, GetWorkflowAggregatesResponse).output
    response = api.create_response(request, [_aggregate_out(row) for row in rows], status=200)
    response[SOURCE_HEADER] = "database" if isinstance(source, DatabaseSource) else "executor"
    return response


def _aggregate_out(row: WorkflowAggregateOutput) -> dict[str, Any]:
    return _present(
        {
            "group": row.group,
            "count": row.count,
            "minCreatedAt": _from_ms(row.min_created_at),
            "maxQueueWaitMs": row.max_queue_wait_ms,
            "maxTotalLatencyMs": row.max_total_latency_ms,
        }
    )


# Actions on one workflow: `workflow_act`, as /api/v1's, audited there.


async def _act(
    request: HttpRequest, app: str, workflow_id: str, action: Action, parameters: Parameters
) -> Any:
    application = await aapplication_for(request, app, PERM_OPERATE)
    return await workflow_act(
        application=application,
        action=action,
        workflow_id=workflow_id,
        parameters=parameters,
        actor=request.user,
        request=request,
        source=SOURCE,
    )


@router.post(
    "/orgs/{org}/apps/{app}/workflows/{workflow:workflow_id}/cancel",
    response={204: None},
    auth=acting(PERM_OPERATE),
)
async def cancel_workflow(
    request: HttpRequest, org: str, app: str, workflow_id: str, body: CancelIn = NO_CANCEL
) -> Status[None]:
    chosen = Parameters(cancel_children=body.cancel_children)
    await _act(request, app, workflow_id, Action.CANCEL, chosen)
    return Status(204, None)


@router.post(
    "/orgs/{org}/apps/{app}/workflows/{workflow:workflow_id}/resume",
    response={204: None},
    auth=acting(PERM_OPERATE),
)
async def resume_workflow(
    request: HttpRequest, org: str, app: str, workflow_id: str, body: ResumeIn = NO_RESUME
) -> Status[None]:
    chosen = Parameters(queue_name=body.queue_name)
    await _act(request, app, workflow_id, Action.RESUME, chosen)
    return Status(204, None)


@router.post(
    "/orgs/{org}/apps/{app}/workflows/{workflow:workflow_id}/fork", auth=acting(PERM_OPERATE)
)
async def fork_workflow(
    request: HttpRequest, org: str, app: str, workflow_id: str, body: ForkIn
) -> dict[str, Any]:
    """A new workflow from `startStep`: `{"workflowId"}` names it."""
    if body.queue_partition_key:
        raise HttpError(400, NO_PARTITIONS)
    chosen = Parameters(
        start_step=body.start_step,
        new_workflow_id=body.new_workflow_id,
        application_version=body.app_version,
        queue_name=body.queue_name,
    )
    outcome = await _act(request, app, workflow_id, Action.FORK, chosen)
    return {"workflowId": outcome.new_workflow_id}


async def delete_workflow(
    request: HttpRequest, org: str, app: str, workflow_id: str, options: Query[DeleteQuery]
) -> Status[None]:
    chosen = Parameters(delete_children=options.delete_children)
    await _act(request, app, workflow_id, Action.DELETE, chosen)
    return Status(204, None)


# Bulk actions: a bulk job (workflows/jobs.py), waited for, as Conductor answers when done.


async def _bulk(
    request: HttpRequest,
    app: str,
    action: BulkJob.Action,
    workflow_ids: list[str],
    parameters: Parameters,
) -> list[BulkJobItem] | HttpResponse:
    """Run the bulk action as a job and wait for it: its items once it has finished
    (a problem if it stopped, or if the executor refused some), or 202 if it takes too
    long (it goes on)."""
    application = await aapplication_for(request, app, PERM_OPERATE)
    description = f"{len(workflow_ids)} chosen workflows"
    try:
        selection = await bulk_select(application, workflow_ids=workflow_ids, actor=_actor(request))
    except (SlowQuery, UnsupportedFilter, relay.RelayError) as exc:
        await db_async(bulk_selection_failed)(
            application=application,
            action=action.value,
            description=description,
            error=exc,
            user=request.user,
            request=request,
        )
        raise
    job = await db_async(bulk_job_create)(
        application=application,
        action=action,
        selection=selection,
        parameters=parameters,
        description=description,
        user=request.user,
        request=request,
    )
    bulk_jobs_wake()
    job = await _finished(job)
    if job.state == BulkJob.State.FAILED:
        raise HttpError(502, BULK_STOPPED.format(detail=job.detail))
    if job.state != BulkJob.State.DONE:
        detail = BULK_STILL_RUNNING.format(seconds=BULK_WAIT_SECONDS, job=job.pk, app=app)
        return _problem(request, 202, detail)
    items = await db_async(lambda: list(job.items.order_by("pk")))()
    failed = [item for item in items if item.state == BulkJobItem.State.FAILED]
    if failed:
        details = "; ".join(f"{item.workflow_id}: {item.detail}" for item in failed[:10])
        message = BULK_FAILED.format(
            failed=len(failed), total=len(items), done=DONE_WORDS[action], details=details
        )
        raise HttpError(502, message)
    return items


async def _finished(job: BulkJob) -> BulkJob:
    """The job once it is done or stopped, or as it is after BULK_WAIT_SECONDS."""
    deadline = asyncio.get_running_loop().time() + BULK_WAIT_SECONDS
    while True:
        job = await db_async(BulkJob.objects.get)(pk=job.pk)
        finished = job.state in (BulkJob.State.DONE, BulkJob.State.FAILED)
        if finished or asyncio.get_running_loop().time() > deadline:
            return job
        await asyncio.sleep(BULK_POLL_SECONDS)


def _done(found: list[BulkJobItem] | HttpResponse) -> Any:
    return found if isinstance(found, HttpResponse) else Status(204, None)


@router.post(
    "/orgs/{org}/apps/{app}/workflows/bulk-cancel", response={204: None}, auth=acting(PERM_OPERATE)
)
async def bulk_cancel(request: HttpRequest, org: str, app: str, body: BulkCancelIn) -> Any:
    chosen = Parameters(cancel_children=body.cancel_children)
    return _done(await _bulk(request, app, BulkJob.Action.CANCEL, body.workflow_ids, chosen))


@router.post(
    "/orgs/{org}/apps/{app}/workflows/bulk-resume", response={204: None}, auth=acting(PERM_OPERATE)
)
async def bulk_resume(request: HttpRequest, org: str, app: str, body: BulkResumeIn) -> Any:
    chosen = Parameters(queue_name=body.queue_name)
    return _done(await _bulk(request, app, BulkJob.Action.RESUME, body.workflow_ids, chosen))


@router.post(
    "/orgs/{org}/apps/{app}/workflows/bulk-delete", response={204: None}, auth=acting(PERM_OPERATE)
)
async def bulk_delete(request: HttpRequest, org: str, app: str, body: BulkDeleteIn) -> Any:
    chosen = Parameters(delete_children=body.delete_children)
    return _done(await _bulk(request, app, BulkJob.Action.DELETE, body.workflow_ids, chosen))


@router.post("/orgs/{org}/apps/{app}/workflows/bulk-fork-from-failure", auth=acting(PERM_OPERATE))
async def bulk_fork_from_failure(
    request: HttpRequest, org: str, app: str, body: ForkFromFailureIn
) -> Any:
    """`{"workflowIds"}`: the new workflows, in the order of the ones forked."""
    chosen = body.parameters()
    found = await _bulk(request, app, BulkJob.Action.FORK_FROM_FAILURE, body.workflow_ids, chosen)
    if isinstance(found, HttpResponse):
        return found
    return {"workflowIds": [item.new_workflow_id for item in found if item.new_workflow_id]}


# Schedules.


@router.get("/orgs/{org}/apps/{app}/schedules")
async def list_schedules(
    request: HttpRequest, org: str, app: str, filters: Query[SchedulesQuery]
) -> list[dict[str, Any]]:
    source = await _source(request, app)
    found = await source.schedules(filters.query(), actor=_actor(request))
    return [schedule_out(schedule) for schedule in found.items]


async def _schedule_act(request: HttpRequest, app: str, name: str, action: ScheduleAction) -> Any:
    application = await aapplication_for(request, app, PERM_OPERATE)
    return await schedule_act(
        application=application,
        action=action,
        schedule_name=name,
        actor=request.user,
        request=request,
        source=SOURCE,
    )


@router.post(
    "/orgs/{org}/apps/{app}/schedules/{workflow:schedule_name}/pause",
    response={204: None},
    auth=acting(PERM_OPERATE),
)
async def pause_schedule(
    request: HttpRequest, org: str, app: str, schedule_name: str
) -> Status[None]:
    await _schedule_act(request, app, schedule_name, ScheduleAction.PAUSE)
    return Status(204, None)


@router.post(
    "/orgs/{org}/apps/{app}/schedules/{workflow:schedule_name}/resume",
    response={204: None},
    auth=acting(PERM_OPERATE),
)
async def resume_schedule(
    request: HttpRequest, org: str, app: str, schedule_name: str
) -> Status[None]:
    await _schedule_act(request, app, schedule_name, ScheduleAction.RESUME)
    return Status(204, None)


@router.post(
    "/orgs/{org}/apps/{app}/schedules/{workflow:schedule_name}/trigger", auth=acting(PERM_OPERATE)
)
async def trigger_schedule(
    request: HttpRequest, org: str, app: str, schedule_name: str
) -> dict[str, Any]:
    """Start the schedule's workflow now: `{"workflowId"}` names it."""
    outcome = await _schedule_act(request, app, schedule_name, ScheduleAction.TRIGGER)
    return {"workflowId": outcome.workflow_ids[0] if outcome.workflow_ids else None}


async def get_schedule(request: HttpRequest, org: str, app: str, schedule_name: str) -> Any:
    source = await _source(request, app)
    found = await source.schedule(schedule_name, actor=_actor(request))
    if found is None:
        raise Http404(SCHEDULE_NOT_FOUND.format(name=schedule_name, app=app))
    return schedule_out(found)


# Versions.


@router.get("/orgs/{org}/apps/{app}/versions")
async def list_versions(request: HttpRequest, org: str, app: str) -> list[dict[str, Any]]:
    """The versions DBOS registered (`application_versions`), the latest first."""
    application = await aapplication_for(request, app, PERM_INSPECT)
    # Conductor's answer carries no counts: the pinned workflows are not counted.
    found = await versions_read(application, actor=_actor(request), count_pinned=False)
    return [
        _present(
            {
                "versionId": version.version_id,
                "versionName": version.name,
                "versionTimestamp": iso(version.version_timestamp),
                "createdAt": iso(version.created_at),
            }
        )
        for version in found.versions
        if version.registered
    ]


@router.patch(
    "/orgs/{org}/apps/{app}/versions/latest", response={204: None}, auth=acting(PERM_OPERATE)
)
async def set_latest_version(
    request: HttpRequest, org: str, app: str, body: SetLatestIn
) -> Status[None]:
    application = await aapplication_for(request, app, PERM_OPERATE)
    await version_set_latest(
        application=application,
        version_name=body.version_name,
        actor=request.user,
        request=request,
        source=SOURCE,
    )
    return Status(204, None)


# A workflow may be named like a fixed route under `workflows/` (`search`, `aggregates`,
# `bulk-cancel`, ...): that route's path would answer 405 to its GET and DELETE, so it
# takes them too, for the workflow of that name.
FIXED_WORKFLOW_ROUTES = (
    "search",
    "aggregates",
    "bulk-cancel",
    "bulk-resume",
    "bulk-delete",
    "bulk-fork-from-failure",
)


def _named_workflow_routes(name: str) -> None:
    path = f"/orgs/{{org}}/apps/{{app}}/workflows/{name}"
    slug = name.replace("-", "_")

    async def get_named(request: HttpRequest, org: str, app: str) -> Any:
        return await get_workflow(request, org, app, name)

    async def delete_named(
        request: HttpRequest, org: str, app: str, options: Query[DeleteQuery]
    ) -> Status[None]:
        return await delete_workflow(request, org, app, name, options)

    router.get(path, operation_id=f"get_workflow_{slug}", summary=f"The workflow {name!r}")(
        get_named
    )
    router.delete(
        path,
        response={204: None},
        auth=acting(PERM_OPERATE),
        operation_id=f"delete_workflow_{slug}",
        summary=f"Delete the workflow {name!r}",
    )(delete_named)


for fixed in FIXED_WORKFLOW_ROUTES:
    _named_workflow_routes(fixed)

last_router.get("/orgs/{org}/apps/{app}/schedules/{workflow:schedule_name}")(get_schedule)
last_router.get("/orgs/{org}/apps/{app}/workflows/{workflow:workflow_id}")(get_workflow)
last_router.delete(
    "/orgs/{org}/apps/{app}/workflows/{workflow:workflow_id}",
    response={204: None},
    auth=acting(PERM_OPERATE),
)(delete_workflow)

api.add_router("/", router)
api.add_router("/", last_router)
