"""The DBOS Conductor wire protocol, as StepChange speaks it (PROTOCOL.md §2).

One `MessageType` per exchange, a frozen dataclass for every request the conductor sends and
one for every reply an executor (DBOS Python 3.2.0, TypeScript 5.x) sends back. Field names
are the wire keys. Requests are built strictly, because a malformed frame makes a Python
executor drop its connection and can crash a TypeScript one (§1.7). Replies are parsed
leniently, because newer SDKs add fields and TypeScript omits nulls (§2.3).

Pure Python: no Django, no I/O.
"""

import json
import re
import reprlib
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, datetime
from enum import StrEnum
from types import NoneType, UnionType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, get_args, get_origin, get_type_hints

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


class ProtocolError(ValueError):
    """A frame StepChange must not send, or cannot read at all."""


class MessageType(StrEnum):
    EXECUTOR_INFO = "executor_info"
    RECOVERY = "recovery"
    CANCEL = "cancel"
    DELETE = "delete"
    RESUME = "resume"
    RESTART = "restart"
    LIST_WORKFLOWS = "list_workflows"
    LIST_QUEUED_WORKFLOWS = "list_queued_workflows"
    GET_WORKFLOW = "get_workflow"
    EXIST_PENDING_WORKFLOWS = "exist_pending_workflows"
    LIST_STEPS = "list_steps"
    FORK_WORKFLOW = "fork_workflow"
    FORK_FROM_FAILURE = "fork_from_failure"
    REWIND_WORKFLOW = "rewind_workflow"
    RETENTION = "retention"
    GET_METRICS = "get_metrics"
    ALERT = "alert"
    EXPORT_WORKFLOW = "export_workflow"
    IMPORT_WORKFLOW = "import_workflow"
    LIST_SCHEDULES = "list_schedules"
    GET_SCHEDULE = "get_schedule"
    PAUSE_SCHEDULE = "pause_schedule"
    RESUME_SCHEDULE = "resume_schedule"
    BACKFILL_SCHEDULE = "backfill_schedule"
    TRIGGER_SCHEDULE = "trigger_schedule"
    LIST_APPLICATION_VERSIONS = "list_application_versions"
    SET_LATEST_APPLICATION_VERSION = "set_latest_application_version"
    GET_WORKFLOW_EVENTS = "get_workflow_events"
    GET_WORKFLOW_NOTIFICATIONS = "get_workflow_notifications"
    GET_WORKFLOW_STREAMS = "get_workflow_streams"
    GET_WORKFLOW_AGGREGATES = "get_workflow_aggregates"
    GET_STEP_AGGREGATES = "get_step_aggregates"
    LIST_QUEUES = "list_queues"
    GET_QUEUE = "get_queue"


NOT_A_REQUEST = "not a conductor request"
NO_EXECUTOR_IDS = "executor_ids must name at least one executor"
NO_WORKFLOW_IDS = "body.workflow_ids must name at least one workflow"
ONE_FORK_MODE = (
    "body needs exactly one of from_last_failure, from_last_step, from_step, from_step_name"
)
QUEUES_ONLY_IMPLIED = "body.queues_only is implied by list_queued_workflows; leave it unset"
AGGREGATES_NEED_A_GROUP = "body needs a group_by_* flag or time_bucket_size_ms"
NOT_UTF8 = "executor frame is not UTF-8"
NOT_JSON = "executor frame is not JSON"
NOT_AN_OBJECT = "executor frame is not a JSON object"
NO_TYPE = "executor frame has no string 'type'"
NO_REQUEST_ID = "executor frame has no string 'request_id'"
LONG_REQUEST_ID = "executor frame's request_id is longer than 200 characters"
# StepChange's request ids are UUIDs; an executor only echoes them.
MAX_REQUEST_ID_CHARS = 200
# What one frame may hold, counted before it is parsed: every JSON value past the first in
# an array or object follows a comma, and every container opens with { or [. Parsing costs
# about 64 bytes a value (a 60 MiB frame of {} took 1.4 GB), so this bounds a frame's cost
# near 150 MB; an answer to the pages StepChange asks for holds far fewer.
MAX_FRAME_ITEMS = 2_000_000
TOO_MANY_ITEMS = f"executor frame holds more than {MAX_FRAME_ITEMS} JSON values"

# A string or a list of strings; a list means IN (§2.5).
Filter = str | list[str]

# TypeScript executors read integers as JS numbers, exact only up to 2**53 - 1.
_MAX_JS_INT = 2**53 - 1
_ALWAYS = "always"
_FLAG = "flag"
_WIRE = "wire"


def new_request_id() -> str:
    return str(uuid.uuid4())


def _always(default: Any = None) -> Any:
    """A key Python executors read with `body[key]`: sent even when null (§2.2)."""
    return field(default=default, metadata={_ALWAYS: True})


def _flag() -> Any:
    """A switch that is on when present: sent as true, left out when false."""
    return field(default=False, metadata={_FLAG: True})


def _wire(key: str, default: Any = None) -> Any:
    """A reply attribute whose wire key is not its name."""
    return field(default=default, metadata={_WIRE: key})


# ---------------------------------------------------------------------------------------------
# Requests: conductor -> executor


@dataclass(frozen=True)
class _Shape:
    """A JSON object we send; its field names are the wire keys."""

    def _check(self) -> None:
        """Rules that span fields, checked after each field's type. Raise ProtocolError."""


@dataclass(frozen=True)
class Request(_Shape):
    type: ClassVar[MessageType]
    request_id: str = field(default_factory=new_request_id, kw_only=True)


@dataclass(frozen=True)
class ExecutorInfoRequest(Request):
    type = MessageType.EXECUTOR_INFO


@dataclass(frozen=True)
class RecoveryRequest(Request):
    type = MessageType.RECOVERY
    executor_ids: list[str]

    def _check(self) -> None:
        if not self.executor_ids:
            raise ProtocolError(NO_EXECUTOR_IDS)


@dataclass(frozen=True)
class CancelRequest(Request):
    type = MessageType.CANCEL
    workflow_id: str
    cancel_children: bool = False
    workflow_ids: list[str] | None = None


@dataclass(frozen=True)
class DeleteRequest(Request):
    type = MessageType.DELETE
    workflow_id: str
    delete_children: bool = False
    workflow_ids: list[str] | None = None


@dataclass(frozen=True)
class ResumeRequest(Request):
    type = MessageType.RESUME
    workflow_id: str
    workflow_ids: list[str] | None = None
    queue_name: str | None = None


@dataclass(frozen=True)
class RestartRequest(Request):
    type = MessageType.RESTART
    workflow_id: str


@dataclass(frozen=True, kw_only=True)
class ListWorkflowsBody(_Shape):
    workflow_uuids: list[str] | None = None
    workflow_id_prefix: Filter | None = None
    workflow_name: Filter | None = None
    status: Filter | None = None
    authenticated_user: Filter | None = None
    application_version: Filter | None = None
    executor_id: Filter | None = None
    queue_name: Filter | None = None
    forked_from: Filter | None = None
    parent_workflow_id: Filter | None = None
    schedule_name: Filter | None = None
    application_name: Filter | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    completed_after: datetime | None = None
    completed_before: datetime | None = None
    dequeued_after: datetime | None = None
    dequeued_before: datetime | None = None
    was_forked_from: bool | None = None
    has_parent: bool | None = None
    attributes: dict[str, Any] | None = None
    queues_only: bool | None = None
    limit: int | None = None
    offset: int | None = None
    # Python and TypeScript disagree on the defaults of these three, so they always go out.
    sort_desc: bool = False
    load_input: bool = False
    load_output: bool = False


@dataclass(frozen=True)
class ListWorkflowsRequest(Request):
    type = MessageType.LIST_WORKFLOWS
    body: ListWorkflowsBody = field(default_factory=ListWorkflowsBody)


@dataclass(frozen=True)
class ListQueuedWorkflowsRequest(Request):
    type = MessageType.LIST_QUEUED_WORKFLOWS
    body: ListWorkflowsBody = field(default_factory=ListWorkflowsBody)

    def _check(self) -> None:
        if self.body.queues_only is not None:
            raise ProtocolError(QUEUES_ONLY_IMPLIED)


@dataclass(frozen=True)
class GetWorkflowRequest(Request):
    type = MessageType.GET_WORKFLOW
    workflow_id: str
    load_input: bool = True
    load_output: bool = True


@dataclass(frozen=True)
class ExistPendingWorkflowsRequest(Request):
    type = MessageType.EXIST_PENDING_WORKFLOWS
    executor_id: str
    application_version: str


@dataclass(frozen=True)
class ListStepsRequest(Request):
    type = MessageType.LIST_STEPS
    workflow_id: str
    load_output: bool = True
    limit: int | None = None
    offset: int | None = None


@dataclass(frozen=True, kw_only=True)
class ForkWorkflowBody(_Shape):
    workflow_id: str
    start_step: int
    application_version: str | None = _always()
    new_workflow_id: str | None = _always()
    queue_name: str | None = None
    queue_partition_key: str | None = None


@dataclass(frozen=True)
class ForkWorkflowRequest(Request):
    type = MessageType.FORK_WORKFLOW
    body: ForkWorkflowBody


@dataclass(frozen=True, kw_only=True)
class ForkFromFailureBody(_Shape):
    workflow_ids: list[str]
    from_last_failure: bool = _flag()
    from_last_step: bool = _flag()
    from_step: int | None = None
    from_step_name: str | None = None
    application_version: str | None = None
    queue_name: str | None = None
    queue_partition_key: str | None = None

    def _check(self) -> None:
        if not self.workflow_ids:
            raise ProtocolError(NO_WORKFLOW_IDS)
        modes = [self.from_last_failure, self.from_last_step]
        modes += [self.from_step is not None, self.from_step_name is not None]
        if sum(modes) != 1:
            raise ProtocolError(ONE_FORK_MODE)


@dataclass(frozen=True)
class ForkFromFailureRequest(Request):
    type = MessageType.FORK_FROM_FAILURE
    body: ForkFromFailureBody


@dataclass(frozen=True, kw_only=True)
class RewindWorkflowBody(_Shape):
    workflow_id: str
    # Unset means step 1 in Python and step 0 in TypeScript: the whole workflow either way.
    start_step: int | None = None
    application_version: str | None = None
    queue_name: str | None = None
    queue_partition_key: str | None = None


@dataclass(frozen=True)
class RewindWorkflowRequest(Request):
    type = MessageType.REWIND_WORKFLOW
    body: RewindWorkflowBody


@dataclass(frozen=True, kw_only=True)
class RetentionBody(_Shape):
    gc_cutoff_epoch_ms: int | None = _always()
    gc_rows_threshold: int | None = _always()
    timeout_cutoff_epoch_ms: int | None = _always()
    gc_batch_size: int | None = None


@dataclass(frozen=True)
class RetentionRequest(Request):
    type = MessageType.RETENTION
    body: RetentionBody


@dataclass(frozen=True)
class GetMetricsRequest(Request):
    type = MessageType.GET_METRICS
    start_time: datetime
    end_time: datetime
    metric_class: str = "workflow_step_count"
    application_name: list[str] | None = None


@dataclass(frozen=True)
class AlertRequest(Request):
    type = MessageType.ALERT
    name: str
    message: str
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ExportWorkflowRequest(Request):
    type = MessageType.EXPORT_WORKFLOW
    workflow_id: str
    export_children: bool = False


@dataclass(frozen=True)
class ImportWorkflowRequest(Request):
    type = MessageType.IMPORT_WORKFLOW
    serialized_workflow: str


@dataclass(frozen=True, kw_only=True)
class ListSchedulesBody(_Shape):
    status: Filter | None = None
    workflow_name: Filter | None = None
    schedule_name_prefix: Filter | None = None
    application_name: Filter | None = None
    load_context: bool = True


@dataclass(frozen=True)
class ListSchedulesRequest(Request):
    type = MessageType.LIST_SCHEDULES
    body: ListSchedulesBody = field(default_factory=ListSchedulesBody)


@dataclass(frozen=True)
class GetScheduleRequest(Request):
    type = MessageType.GET_SCHEDULE
    schedule_name: str
    load_context: bool = True


@dataclass(frozen=True)
class PauseScheduleRequest(Request):
    type = MessageType.PAUSE_SCHEDULE
    schedule_name: str


@dataclass(frozen=True)
class ResumeScheduleRequest(Request):
    type = MessageType.RESUME_SCHEDULE
    schedule_name: str


@dataclass(frozen=True)
class BackfillScheduleRequest(Request):
    type = MessageType.BACKFILL_SCHEDULE
    schedule_name: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class TriggerScheduleRequest(Request):
    type = MessageType.TRIGGER_SCHEDULE
    schedule_name: str


@dataclass(frozen=True)
class ListApplicationVersionsRequest(Request):
    type = MessageType.LIST_APPLICATION_VERSIONS


@dataclass(frozen=True)
class SetLatestApplicationVersionRequest(Request):
    type = MessageType.SET_LATEST_APPLICATION_VERSION
    version_name: str


@dataclass(frozen=True)
class GetWorkflowEventsRequest(Request):
    type = MessageType.GET_WORKFLOW_EVENTS
    workflow_id: str


@dataclass(frozen=True)
class GetWorkflowNotificationsRequest(Request):
    type = MessageType.GET_WORKFLOW_NOTIFICATIONS
    workflow_id: str


@dataclass(frozen=True)
class GetWorkflowStreamsRequest(Request):
    type = MessageType.GET_WORKFLOW_STREAMS
    workflow_id: str


@dataclass(frozen=True, kw_only=True)
class GetWorkflowAggregatesBody(_Shape):
    group_by_status: bool = _flag()
    group_by_name: bool = _flag()
    group_by_queue_name: bool = _flag()
    group_by_executor_id: bool = _flag()
    group_by_application_version: bool = _flag()
    group_by_application_name: bool = _flag()
    select_count: bool = _flag()
    select_min_created_at: bool = _flag()
    select_max_queue_wait_ms: bool = _flag()
    select_max_total_latency_ms: bool = _flag()
    time_bucket_size_ms: int | None = None
    status: list[str] | None = None
    name: list[str] | None = None
    app_version: list[str] | None = None
    executor_id: list[str] | None = None
    queue_name: list[str] | None = None
    workflow_id_prefix: list[str] | None = None
    workflow_ids: list[str] | None = None
    forked_from: list[str] | None = None
    parent_workflow_id: list[str] | None = None
    user: list[str] | None = None
    schedule_name: list[str] | None = None
    application_name: list[str] | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    completed_after: datetime | None = None
    completed_before: datetime | None = None
    dequeued_after: datetime | None = None
    dequeued_before: datetime | None = None
    was_forked_from: bool | None = None
    has_parent: bool | None = None
    attributes: dict[str, Any] | None = None

    def _check(self) -> None:
        groups = [self.group_by_status, self.group_by_name, self.group_by_queue_name]
        groups += [self.group_by_executor_id, self.group_by_application_version]
        groups += [self.group_by_application_name, self.time_bucket_size_ms is not None]
        if not any(groups):
            raise ProtocolError(AGGREGATES_NEED_A_GROUP)


@dataclass(frozen=True)
class GetWorkflowAggregatesRequest(Request):
    type = MessageType.GET_WORKFLOW_AGGREGATES
    body: GetWorkflowAggregatesBody


@dataclass(frozen=True, kw_only=True)
class GetStepAggregatesBody(_Shape):
    group_by_function_name: bool = _flag()
    group_by_status: bool = _flag()
    select_count: bool = _flag()
    select_max_duration_ms: bool = _flag()
    time_bucket_size_ms: int | None = None
    status: list[str] | None = None
    function_name: list[str] | None = None
    workflow_id_prefix: list[str] | None = None
    completed_after: datetime | None = None
    completed_before: datetime | None = None
    application_name: list[str] | None = None


@dataclass(frozen=True)
class GetStepAggregatesRequest(Request):
    type = MessageType.GET_STEP_AGGREGATES
    body: GetStepAggregatesBody


@dataclass(frozen=True, kw_only=True)
class ListQueuesBody(_Shape):
    application_name: Filter | None = None


@dataclass(frozen=True)
class ListQueuesRequest(Request):
    type = MessageType.LIST_QUEUES
    body: ListQueuesBody = field(default_factory=ListQueuesBody)


@dataclass(frozen=True)
class GetQueueRequest(Request):
    type = MessageType.GET_QUEUE
    name: str


REQUEST_TYPES: dict[MessageType, type[Request]] = {
    cls.type: cls
    for cls in (
        ExecutorInfoRequest,
        RecoveryRequest,
        CancelRequest,
        DeleteRequest,
        ResumeRequest,
        RestartRequest,
        ListWorkflowsRequest,
        ListQueuedWorkflowsRequest,
        GetWorkflowRequest,
        ExistPendingWorkflowsRequest,
        ListStepsRequest,
        ForkWorkflowRequest,
        ForkFromFailureRequest,
        RewindWorkflowRequest,
        RetentionRequest,
        GetMetricsRequest,
        AlertRequest,
        ExportWorkflowRequest,
        ImportWorkflowRequest,
        ListSchedulesRequest,
        GetScheduleRequest,
        PauseScheduleRequest,
        ResumeScheduleRequest,
        BackfillScheduleRequest,
        TriggerScheduleRequest,
        ListApplicationVersionsRequest,
        SetLatestApplicationVersionRequest,
        GetWorkflowEventsRequest,
        GetWorkflowNotificationsRequest,
        GetWorkflowStreamsRequest,
        GetWorkflowAggregatesRequest,
        GetStepAggregatesRequest,
        ListQueuesRequest,
        GetQueueRequest,
    )
}


def encode_request(request: Request) -> str:
    """Check `request` against PROTOCOL.md §2 and return it as one compact JSON text frame."""
    if type(request) not in REQUEST_TYPES.values():
        raise ProtocolError(f"{NOT_A_REQUEST}: {_REPR.repr(request)}")
    try:
        body = _encode_shape(request, prefix="")
    except ProtocolError as error:
        raise ProtocolError(f"{request.type}: {error}") from None
    frame = {"type": request.type.value, "request_id": body.pop("request_id"), **body}
    return json.dumps(frame, separators=(",", ":"), allow_nan=False)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


def _is_dataclass_type(hint: Any) -> bool:
    return isinstance(hint, type) and is_dataclass(hint)


def _encode_shape(shape: _Shape, prefix: str) -> dict[str, object]:
    hints = _hints(type(shape))
    wire: dict[str, object] = {}
    for f in fields(shape):
        value = _encode(getattr(shape, f.name), hints[f.name], prefix + f.name)
        if value is None and not f.metadata.get(_ALWAYS):
            continue
        if value is False and f.metadata.get(_FLAG):
            continue
        wire[f.name] = value
    shape._check()
    return wire


def _encode(value: object, hint: Any, path: str) -> object:
    origin = get_origin(hint)
    if _is_dataclass_type(hint):
        if not isinstance(value, hint):
            raise ProtocolError(_must(path, hint, value))
        return _encode_shape(value, prefix=f"{path}.")
    if origin is UnionType:
        return _encode_union(value, hint, path)
    if origin is list:
        if not isinstance(value, list):
            raise ProtocolError(_must(path, hint, value))
        (item_hint,) = get_args(hint)
        return [_encode(item, item_hint, f"{path}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        return _encode_object(value, hint, path)
    accepts, _ = _SCALARS[hint]
    if not accepts(value):
        raise ProtocolError(_must(path, hint, value))
    return _isoformat(value) if isinstance(value, datetime) else value


def _encode_union(value: object, hint: Any, path: str) -> object:
    options = get_args(hint)
    if value is None and NoneType in options:
        return None
    choices = [option for option in options if option is not NoneType]
    if len(choices) == 1:
        # Optional[X]: let X say precisely what is wrong (e.g. a naive datetime).
        return _encode(value, choices[0], path)
    errors: dict[object, ProtocolError] = {}
    for choice in choices:
        try:
            return _encode(value, choice, path)
        except ProtocolError as error:
            errors[get_origin(choice)] = error
    if isinstance(value, list) and list in errors:
        # Name the bad item rather than list every shape the key accepts.
        raise errors[list]
    raise ProtocolError(_must(path, hint, value))


def _encode_object(value: object, hint: Any, path: str) -> object:
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise ProtocolError(_must(path, hint, value))
    if get_args(hint)[1] is str:
        if not all(isinstance(item, str) for item in value.values()):
            raise ProtocolError(_must(path, hint, value))
        return value
    # A round trip refuses NaN and anything JSON would silently change (tuples, int keys).
    try:
        same = json.loads(json.dumps(value, allow_nan=False)) == value
    except (TypeError, ValueError):
        same = False
    if not same:
        raise ProtocolError(_must(path, hint, value))
    return value


def _is_aware(value: object) -> bool:
    return isinstance(value, datetime) and value.utcoffset() is not None


def _isoformat(value: datetime) -> str:
    # `+00:00`, never `Z`: Python 3.10 executors reject `Z` (§2.5).
    precision = "milliseconds" if value.microsecond else "seconds"
    return value.astimezone(UTC).isoformat(timespec=precision)


_SCALARS: dict[Any, tuple[Callable[[object], bool], str]] = {
    str: (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    bool: (lambda v: isinstance(v, bool), "a bool"),
    int: (lambda v: type(v) is int and 0 <= v <= _MAX_JS_INT, "a non-negative int below 2**53"),
    datetime: (_is_aware, "an aware datetime (a naive one is read in the executor's zone)"),
}


def _describe(hint: Any) -> str:
    origin, args = get_origin(hint), get_args(hint)
    if origin is UnionType:
        return " or ".join("null" if arg is NoneType else _describe(arg) for arg in args)
    if origin is list:
        # Every list the protocol carries is a list of IDs or names.
        return "a list of non-empty strings"
    if origin is dict:
        return "an object of strings" if args[1] is str else "a JSON object"
    if _is_dataclass_type(hint):
        return f"a {hint.__name__}"
    return _SCALARS[hint][1]


_REPR = reprlib.Repr()
_REPR.maxother = 80


def _must(path: str, hint: Any, value: object) -> str:
    return f"{path} must be {_describe(hint)}, got {_REPR.repr(value)}"


# ---------------------------------------------------------------------------------------------
# Replies: executor -> conductor


@dataclass(frozen=True, kw_only=True)
class WorkflowsOutput:
    """One workflow of list_workflows / get_workflow (§2.3). Payloads are display text."""

    workflow_uuid: str | None = _wire("WorkflowUUID")
    status: str | None = _wire("Status")
    workflow_name: str | None = _wire("WorkflowName")
    workflow_class_name: str | None = _wire("WorkflowClassName")
    workflow_config_name: str | None = _wire("WorkflowConfigName")
    authenticated_user: str | None = _wire("AuthenticatedUser")
    assumed_role: str | None = _wire("AssumedRole")
    authenticated_roles: str | None = _wire("AuthenticatedRoles")
    input: str | None = _wire("Input")
    output: str | None = _wire("Output")
    error: str | None = _wire("Error")
    created_at: int | None = _wire("CreatedAt")
    updated_at: int | None = _wire("UpdatedAt")
    queue_name: str | None = _wire("QueueName")
    application_version: str | None = _wire("ApplicationVersion")
    executor_id: str | None = _wire("ExecutorID")
    workflow_timeout_ms: int | None = _wire("WorkflowTimeoutMS")
    workflow_deadline_epoch_ms: int | None = _wire("WorkflowDeadlineEpochMS")
    deduplication_id: str | None = _wire("DeduplicationID")
    priority: int | None = _wire("Priority")
    queue_partition_key: str | None = _wire("QueuePartitionKey")
    forked_from: str | None = _wire("ForkedFrom")
    was_forked_from: bool = _wire("WasForkedFrom", default=False)
    parent_workflow_id: str | None = _wire("ParentWorkflowID")
    dequeued_at: int | None = _wire("DequeuedAt")
    delay_until_epoch_ms: int | None = _wire("DelayUntilEpochMS")
    completed_at: int | None = _wire("CompletedAt")
    attributes: str | None = _wire("Attributes")
    schedule_name: str | None = _wire("ScheduleName")
    application_name: str | None = _wire("ApplicationName")


@dataclass(frozen=True, kw_only=True)
class WorkflowSteps:
    """One step of list_steps (§2.4). IDs start at 1 in Python and at 0 in TypeScript."""

    function_id: int | None = None
    function_name: str | None = None
    output: str | None = None
    error: str | None = None
    child_workflow_id: str | None = None
    started_at_epoch_ms: int | None = None
    completed_at_epoch_ms: int | None = None


@dataclass(frozen=True, kw_only=True)
class MetricData:
    metric_type: str | None = None
    metric_name: str | None = None
    value: int | None = None


@dataclass(frozen=True, kw_only=True)
class ScheduleOutput:
    schedule_id: str | None = None
    schedule_name: str | None = None
    workflow_name: str | None = None
    workflow_class_name: str | None = None
    schedule: str | None = None
    status: str | None = None
    context: str | None = None
    last_fired_at: str | None = None
    automatic_backfill: bool = False
    cron_timezone: str | None = None
    queue_name: str | None = None
    application_name: str | None = None


@dataclass(frozen=True, kw_only=True)
class ApplicationVersionOutput:
    version_id: str | None = None
    version_name: str | None = None
    version_timestamp: int | None = None
    created_at: int | None = None


@dataclass(frozen=True, kw_only=True)
class EventOutput:
    key: str | None = None
    value: str | None = None


@dataclass(frozen=True, kw_only=True)
class NotificationOutput:
    topic: str | None = None
    message: str | None = None
    created_at_epoch_ms: int | None = None
    consumed: bool = False


@dataclass(frozen=True, kw_only=True)
class StreamOutput:
    key: str | None = None
    values: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class WorkflowAggregateOutput:
    group: dict[str, str | None] = field(default_factory=dict)
    count: int | None = None
    min_created_at: int | None = None
    max_queue_wait_ms: int | None = None
    max_total_latency_ms: int | None = None


@dataclass(frozen=True, kw_only=True)
class StepAggregateOutput:
    group: dict[str, str | None] = field(default_factory=dict)
    count: int | None = None
    max_duration_ms: int | None = None


@dataclass(frozen=True, kw_only=True)
class QueueOutput:
    name: str | None = None
    concurrency: int | None = None
    worker_concurrency: int | None = None
    rate_limit_max: int | None = None
    rate_limit_period_sec: float | None = None
    priority_enabled: bool = False
    partition_queue: bool = False
    polling_interval_sec: float | None = None
    application_name: str | None = None
    partition_concurrency: int | None = None
    partition_worker_concurrency: int | None = None
    partition_rate_limit_max: int | None = None
    partition_rate_limit_period_sec: float | None = None


@dataclass(frozen=True, kw_only=True)
class Response:
    """Any executor reply. `type` is a MessageType unless the executor sent one we don't know."""

    type: str
    request_id: str
    error_message: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, kw_only=True)
class UnknownResponse(Response):
    pass


@dataclass(frozen=True, kw_only=True)
class ExecutorInfoResponse(Response):
    executor_id: str | None = None
    application_version: str | None = None
    hostname: str | None = None
    language: str | None = None
    dbos_version: str | None = None
    executor_metadata: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class SuccessResponse(Response):
    """The reply to every request that only reports whether it worked."""

    success: bool = False


@dataclass(frozen=True, kw_only=True)
class ListWorkflowsResponse(Response):
    output: list[WorkflowsOutput] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class GetWorkflowResponse(Response):
    output: WorkflowsOutput | None = None


@dataclass(frozen=True, kw_only=True)
class ExistPendingWorkflowsResponse(Response):
    exist: bool = False


@dataclass(frozen=True, kw_only=True)
class ListStepsResponse(Response):
    output: list[WorkflowSteps] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class ForkWorkflowResponse(Response):
    new_workflow_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class ForkFromFailureResponse(Response):
    forked_workflow_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class GetMetricsResponse(Response):
    metrics: list[MetricData] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class ExportWorkflowResponse(Response):
    serialized_workflow: str | None = None


@dataclass(frozen=True, kw_only=True)
class ListSchedulesResponse(Response):
    output: list[ScheduleOutput] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class GetScheduleResponse(Response):
    output: ScheduleOutput | None = None


@dataclass(frozen=True, kw_only=True)
class BackfillScheduleResponse(Response):
    workflow_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class TriggerScheduleResponse(Response):
    workflow_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class ListApplicationVersionsResponse(Response):
    output: list[ApplicationVersionOutput] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class GetWorkflowEventsResponse(Response):
    events: list[EventOutput] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class GetWorkflowNotificationsResponse(Response):
    notifications: list[NotificationOutput] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class GetWorkflowStreamsResponse(Response):
    streams: list[StreamOutput] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class GetWorkflowAggregatesResponse(Response):
    output: list[WorkflowAggregateOutput] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class GetStepAggregatesResponse(Response):
    output: list[StepAggregateOutput] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class ListQueuesResponse(Response):
    output: list[QueueOutput] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class GetQueueResponse(Response):
    output: QueueOutput | None = None


RESPONSE_TYPES: dict[MessageType, type[Response]] = {
    MessageType.EXECUTOR_INFO: ExecutorInfoResponse,
    MessageType.RECOVERY: SuccessResponse,
    MessageType.CANCEL: SuccessResponse,
    MessageType.DELETE: SuccessResponse,
    MessageType.RESUME: SuccessResponse,
    MessageType.RESTART: SuccessResponse,
    MessageType.LIST_WORKFLOWS: ListWorkflowsResponse,
    MessageType.LIST_QUEUED_WORKFLOWS: ListWorkflowsResponse,
    MessageType.GET_WORKFLOW: GetWorkflowResponse,
    MessageType.EXIST_PENDING_WORKFLOWS: ExistPendingWorkflowsResponse,
    MessageType.LIST_STEPS: ListStepsResponse,
    MessageType.FORK_WORKFLOW: ForkWorkflowResponse,
    MessageType.FORK_FROM_FAILURE: ForkFromFailureResponse,
    MessageType.REWIND_WORKFLOW: SuccessResponse,
    MessageType.RETENTION: SuccessResponse,
    MessageType.GET_METRICS: GetMetricsResponse,
    MessageType.ALERT: SuccessResponse,
    MessageType.EXPORT_WORKFLOW: ExportWorkflowResponse,
    MessageType.IMPORT_WORKFLOW: SuccessResponse,
    MessageType.LIST_SCHEDULES: ListSchedulesResponse,
    MessageType.GET_SCHEDULE: GetScheduleResponse,
    MessageType.PAUSE_SCHEDULE: SuccessResponse,
    MessageType.RESUME_SCHEDULE: SuccessResponse,
    MessageType.BACKFILL_SCHEDULE: BackfillScheduleResponse,
    MessageType.TRIGGER_SCHEDULE: TriggerScheduleResponse,
    MessageType.LIST_APPLICATION_VERSIONS: ListApplicationVersionsResponse,
    MessageType.SET_LATEST_APPLICATION_VERSION: SuccessResponse,
    MessageType.GET_WORKFLOW_EVENTS: GetWorkflowEventsResponse,
    MessageType.GET_WORKFLOW_NOTIFICATIONS: GetWorkflowNotificationsResponse,
    MessageType.GET_WORKFLOW_STREAMS: GetWorkflowStreamsResponse,
    MessageType.GET_WORKFLOW_AGGREGATES: GetWorkflowAggregatesResponse,
    MessageType.GET_STEP_AGGREGATES: GetStepAggregatesResponse,
    MessageType.LIST_QUEUES: ListQueuesResponse,
    MessageType.GET_QUEUE: GetQueueResponse,
}


def parse_envelope(text: str | bytes) -> tuple[dict[str, Any], str, str]:
    """Read just the envelope of an executor frame: (the object, its type, its request_id).
    Raises ProtocolError when there is none; the fields are left to `parse_response`."""
    data = _load_object(text)
    kind, request_id = data.get("type"), data.get("request_id")
    if not isinstance(kind, str) or not kind:
        raise ProtocolError(NO_TYPE)
    if not isinstance(request_id, str) or not request_id:
        raise ProtocolError(NO_REQUEST_ID)
    if len(request_id) > MAX_REQUEST_ID_CHARS:
        raise ProtocolError(LONG_REQUEST_ID)
    return data, kind, request_id


def parse_response(text: str | bytes) -> Response:
    """Read one executor frame. Only a frame with no usable envelope raises ProtocolError."""
    data, kind, request_id = parse_envelope(text)
    try:
        message_type = MessageType(kind)
    except ValueError:
        return _build(UnknownResponse, data, type=kind, request_id=request_id, raw=data)
    cls = RESPONSE_TYPES[message_type]
    return _build(cls, data, type=message_type, request_id=request_id, raw=data)


def claimed_request_id(text: str) -> str | None:
    """The request_id a frame that could not be read says it answers, found without parsing
    it (the first one written), so that the request waiting on it fails at once."""
    found = _REQUEST_ID.search(text)
    return found.group(1) if found else None


_REQUEST_ID = re.compile(r'"request_id"\s*:\s*"([^"\\]{1,200})"')
# Counting runs in slices, so a frame far over the limit is refused after its first slice.
_COUNT_SLICE = 1 << 20


def _too_many_items(text: str) -> bool:
    if len(text) <= MAX_FRAME_ITEMS:
        return False  # each counted character is one character of the frame
    count = 0
    for start in range(0, len(text), _COUNT_SLICE):
        part = text[start : start + _COUNT_SLICE]
        count += part.count(",") + part.count("{") + part.count("[")
        if count > MAX_FRAME_ITEMS:
            return True
    return False


def _load_object(text: str | bytes) -> dict[str, Any]:
    if isinstance(text, bytes | bytearray):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(NOT_UTF8) from None
    if _too_many_items(text):
        raise ProtocolError(TOO_MANY_ITEMS)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError(NOT_JSON) from None
    if not isinstance(data, dict):
        raise ProtocolError(NOT_AN_OBJECT)
    return data


_D = TypeVar("_D", bound="DataclassInstance")


def _build(cls: type[_D], data: dict[str, Any], **known: Any) -> _D:
    """Make `cls` from a JSON object. Missing, null and unreadable fields keep their default."""
    hints = _hints(cls)
    values = dict(known)
    for f in fields(cls):
        if f.name in known:
            continue
        value = _read(data.get(f.metadata.get(_WIRE, f.name)), hints[f.name])
        if value is not None:
            values[f.name] = value
    return cls(**values)


def _read(value: Any, hint: Any) -> Any:
    """`value` as `hint`, or None when it cannot be made to fit."""
    if value is None:
        return None
    if _is_dataclass_type(hint):
        return _build(hint, value) if isinstance(value, dict) else None
    origin, args = get_origin(hint), get_args(hint)
    if origin is UnionType:
        # Replies only use Optional[X].
        (inner,) = (arg for arg in args if arg is not NoneType)
        return _read(value, inner)
    if origin is list:
        items = (_read(item, args[0]) for item in value) if isinstance(value, list) else ()
        return [item for item in items if item is not None]
    if origin is dict:
        if not isinstance(value, dict):
            return None
        return value if args[1] is Any else {k: _read(v, args[1]) for k, v in value.items()}
    return _READERS[hint](value)


def _read_str(value: object) -> str:
    # Display text: a number or object that arrives where text belongs is shown as JSON.
    return value if isinstance(value, str) else json.dumps(value)


def _read_int(value: object) -> int | None:
    # Epoch milliseconds and counts arrive as decimal strings (§2.3) or as numbers.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        with suppress(ValueError):
            return int(value)
    return None


def _read_float(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        with suppress(ValueError):
            return float(value)
    return None


def _read_bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


_READERS: dict[Any, Callable[[object], Any]] = {
    str: _read_str,
    int: _read_int,
    float: _read_float,
    bool: _read_bool,
}


# ---------------------------------------------------------------------------------------------
# Checking replies: what an executor sent, against what the protocol allows

# Epoch milliseconds StepChange can show: from 1970 to the last millisecond of year 9999.
MAX_EPOCH_MS = 253_402_300_799_999
# Any other integer: a count, a duration, a priority.
MAX_INT = 2**63 - 1
# An ID or a name (workflow, executor, queue, version): the display text fields are bounded
# only by the frame.
MAX_NAME_CHARS = 1000
# Items in one list of an answer: StepChange asks for pages far smaller than this.
MAX_ANSWER_ITEMS = 100_000
# executor_info: what the registry stores (conductor.models.Executor).
MAX_EXECUTOR_ID_CHARS = 100
MAX_EXECUTOR_METADATA_BYTES = 64 * 1024
# An executor id appears in URLs and pages: visible characters, none that a path, a query
# or markup would read.
_EXECUTOR_ID = re.compile(r"[^\s/\\<>\"'`&?#%]+")
_TEXT_FIELDS = frozenset(
    {"input", "output", "error", "value", "values", "message", "context", "attributes"}
    | {"error_message", "serialized_workflow"}
)
_INFO_LIMITS = {"application_version": 200, "hostname": 255, "language": 50, "dbos_version": 50}

BAD_FIELD = "{path} must be {what}, got {got}"
OTHER_WORKFLOW = "answered about workflow {got}, not the {asked} asked for"
BAD_EXECUTOR_ID = (
    "executor_id must be 1 to {limit} visible characters without / \\ < > quotes & ? # %, got {got}"
)


def response_problem(response: Response, asked: Request | None = None) -> str | None:
    """What makes `response` unusable, or None: every field it carries must fit the
    protocol (types, bounded lengths, epoch milliseconds StepChange can show, list sizes),
    and an answer about one workflow must be about the one `asked` for.

    `parse_response` reads leniently; this is the strict second look the relay takes
    before anything an executor said is shown or stored."""
    if isinstance(response, UnknownResponse):
        return None
    problem = _shape_problem(type(response), response.raw, "")
    if problem is None and isinstance(response, ExecutorInfoResponse):
        problem = _info_problem(response)
    if problem is None and asked is not None:
        problem = _subject_problem(response, asked)
    return problem


def shown(text: object, limit: int = 120) -> str:
    """Executor-sent text fit for one log line: escaped (no newline can forge a line) and
    cut to `limit` characters."""
    value = text if isinstance(text, str) else repr(text)
    cut = value[:limit]
    escaped = json.dumps(cut, ensure_ascii=True)[1:-1]
    return escaped + (f"... ({len(value)} chars)" if len(value) > limit else "")


def _got(value: object) -> str:
    return shown(_REPR.repr(value), 60)


def _shape_problem(cls: type, data: object, prefix: str) -> str | None:
    if not isinstance(data, dict):
        return BAD_FIELD.format(
            path=prefix.rstrip(".") or "frame", what="an object", got=_got(data)
        )
    hints = _hints(cls)
    for f in fields(cls):
        if f.name in ("type", "request_id", "raw"):
            continue
        key = f.metadata.get(_WIRE, f.name)
        problem = _value_problem(data.get(key), hints[f.name], prefix + key, f.name)
        if problem:
            return problem
    return None


def _value_problem(value: object, hint: Any, path: str, name: str) -> str | None:
    if value is None:
        return None
    origin, args = get_origin(hint), get_args(hint)
    if origin is UnionType:
        (inner,) = (arg for arg in args if arg is not NoneType)
        return _value_problem(value, inner, path, name)
    if _is_dataclass_type(hint):
        return _shape_problem(hint, value, f"{path}.")
    if origin is list:
        if not isinstance(value, list):
            return BAD_FIELD.format(path=path, what="a list", got=_got(value))
        if len(value) > MAX_ANSWER_ITEMS:
            return f"{path} holds {len(value)} items, more than {MAX_ANSWER_ITEMS}"
        for i, item in enumerate(value):
            problem = _value_problem(item, args[0], f"{path}[{i}]", name)
            if problem:
                return problem
        return None
    if origin is dict:
        if not isinstance(value, dict):
            return BAD_FIELD.format(path=path, what="an object", got=_got(value))
        return None
    if hint is str:
        if name not in _TEXT_FIELDS and len(_read_str(value)) > MAX_NAME_CHARS:
            return f"{path} is longer than {MAX_NAME_CHARS} characters"
        return None
    if hint is bool:
        return (
            None
            if isinstance(value, bool)
            else BAD_FIELD.format(path=path, what="a bool", got=_got(value))
        )
    if hint is float:
        number = _read_float(value)
        if number is None or number != number or abs(number) == float("inf"):
            return BAD_FIELD.format(path=path, what="a finite number", got=_got(value))
        return None
    number = _read_int(value)
    if _is_time(name):
        if number is None or not 0 <= number <= MAX_EPOCH_MS:
            return BAD_FIELD.format(
                path=path, what="epoch milliseconds before year 10000", got=_got(value)
            )
    elif number is None or abs(number) > MAX_INT:
        return BAD_FIELD.format(path=path, what="an integer", got=_got(value))
    return None


def _is_time(name: str) -> bool:
    return name.endswith(("_at", "epoch_ms", "timestamp"))


def _info_problem(info: ExecutorInfoResponse) -> str | None:
    if info.error_message:
        return None
    executor_id = info.executor_id or ""
    if len(executor_id) > MAX_EXECUTOR_ID_CHARS or not _EXECUTOR_ID.fullmatch(executor_id):
        return BAD_EXECUTOR_ID.format(limit=MAX_EXECUTOR_ID_CHARS, got=_got(executor_id))
    for name, limit in _INFO_LIMITS.items():
        if len(getattr(info, name) or "") > limit:
            return f"{name} is longer than {limit} characters"
    metadata = info.raw.get("executor_metadata")
    if metadata is not None:
        size = len(json.dumps(metadata))
        if size > MAX_EXECUTOR_METADATA_BYTES:
            return f"executor_metadata takes {size} bytes, more than {MAX_EXECUTOR_METADATA_BYTES}"
    return None


def _subject_problem(response: Response, asked: Request) -> str | None:
    if isinstance(response, GetWorkflowResponse) and isinstance(asked, GetWorkflowRequest):
        row = response.output
        if row is not None and row.workflow_uuid != asked.workflow_id:
            return OTHER_WORKFLOW.format(got=_got(row.workflow_uuid), asked=_got(asked.workflow_id))
    if isinstance(response, ListWorkflowsResponse) and isinstance(
        asked, ListWorkflowsRequest | ListQueuedWorkflowsRequest
    ):
        wanted = asked.body.workflow_uuids
        if wanted is not None:
            for row in response.output:
                if row.workflow_uuid not in wanted:
                    return OTHER_WORKFLOW.format(got=_got(row.workflow_uuid), asked=_got(wanted))
    return None
