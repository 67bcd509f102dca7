import json
import math
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from conductor.protocol import (
    AGGREGATES_NEED_A_GROUP,
    NO_EXECUTOR_IDS,
    NO_REQUEST_ID,
    NO_TYPE,
    NO_WORKFLOW_IDS,
    NOT_A_REQUEST,
    NOT_AN_OBJECT,
    NOT_JSON,
    NOT_UTF8,
    ONE_FORK_MODE,
    QUEUES_ONLY_IMPLIED,
    REQUEST_TYPES,
    RESPONSE_TYPES,
    AlertRequest,
    BackfillScheduleRequest,
    BackfillScheduleResponse,
    CancelRequest,
    DeleteRequest,
    ExecutorInfoRequest,
    ExecutorInfoResponse,
    ExistPendingWorkflowsRequest,
    ExistPendingWorkflowsResponse,
    ExportWorkflowRequest,
    ExportWorkflowResponse,
    ForkFromFailureBody,
    ForkFromFailureRequest,
    ForkFromFailureResponse,
    ForkWorkflowBody,
    ForkWorkflowRequest,
    ForkWorkflowResponse,
    GetMetricsRequest,
    GetMetricsResponse,
    GetQueueRequest,
    GetQueueResponse,
    GetScheduleRequest,
    GetScheduleResponse,
    GetStepAggregatesBody,
    GetStepAggregatesRequest,
    GetStepAggregatesResponse,
    GetWorkflowAggregatesBody,
    GetWorkflowAggregatesRequest,
    GetWorkflowAggregatesResponse,
    GetWorkflowEventsRequest,
    GetWorkflowEventsResponse,
    GetWorkflowNotificationsRequest,
    GetWorkflowNotificationsResponse,
    GetWorkflowRequest,
    GetWorkflowResponse,
    GetWorkflowStreamsRequest,
    GetWorkflowStreamsResponse,
    ImportWorkflowRequest,
    ListApplicationVersionsRequest,
    ListApplicationVersionsResponse,
    ListQueuedWorkflowsRequest,
    ListQueuesBody,
    ListQueuesRequest,
    ListQueuesResponse,
    ListSchedulesBody,
    ListSchedulesRequest,
    ListSchedulesResponse,
    ListStepsRequest,
    ListStepsResponse,
    ListWorkflowsBody,
    ListWorkflowsRequest,
    ListWorkflowsResponse,
    MessageType,
    PauseScheduleRequest,
    ProtocolError,
    RecoveryRequest,
    Request,
    RestartRequest,
    ResumeRequest,
    ResumeScheduleRequest,
    RetentionBody,
    RetentionRequest,
    RewindWorkflowBody,
    RewindWorkflowRequest,
    SetLatestApplicationVersionRequest,
    SuccessResponse,
    TriggerScheduleRequest,
    TriggerScheduleResponse,
    UnknownResponse,
    WorkflowsOutput,
    WorkflowSteps,
    encode_request,
    parse_response,
)

NEW_YEAR = datetime(2026, 1, 1, tzinfo=UTC)
NEW_YEAR_WIRE = "2026-01-01T00:00:00+00:00"
NEW_YEAR_MS = 1767225600000


def wire(request: Request) -> dict[str, Any]:
    """The request as the executor receives it, minus the random request_id."""
    frame: dict[str, Any] = json.loads(encode_request(request))
    assert frame.pop("request_id") == request.request_id
    return frame


def rejects(request: Any, message: str) -> None:
    with pytest.raises(ProtocolError, match=re.escape(message)):
        encode_request(request)


def reply(**fields: object) -> str:
    return json.dumps({"request_id": "r-1", **fields})


# --- message types --------------------------------------------------------------------------------


def test_message_types_are_spelt_as_dbos_spells_them():
    assert MessageType("cancel") is MessageType.CANCEL
    assert f"{MessageType.SET_LATEST_APPLICATION_VERSION}" == "set_latest_application_version"
    assert all(member.value == member.name.lower() for member in MessageType)
    assert len(MessageType) == 34


def test_every_message_type_has_a_request_class_and_a_response_class():
    assert set(REQUEST_TYPES) == set(MessageType)
    assert set(RESPONSE_TYPES) == set(MessageType)
    assert all(cls.type == message_type for message_type, cls in REQUEST_TYPES.items())


# --- building requests ----------------------------------------------------------------------------


def test_it_sends_executor_info_as_a_bare_compact_envelope():
    request = ExecutorInfoRequest(request_id="53680a65")

    assert encode_request(request) == '{"type":"executor_info","request_id":"53680a65"}'


def test_it_gives_every_request_a_fresh_uuid():
    first, second = ExecutorInfoRequest(), ExecutorInfoRequest()

    assert first.request_id != second.request_id
    assert re.fullmatch(r"[0-9a-f-]{36}", first.request_id)


EVERY_REQUEST: list[tuple[Request, dict[str, Any]]] = [
    (ExecutorInfoRequest(), {"type": "executor_info"}),
    (RecoveryRequest(["dead-1"]), {"type": "recovery", "executor_ids": ["dead-1"]}),
    (
        CancelRequest("wf-1"),
        {"type": "cancel", "workflow_id": "wf-1", "cancel_children": False},
    ),
    (
        DeleteRequest("wf-1"),
        {"type": "delete", "workflow_id": "wf-1", "delete_children": False},
    ),
    (ResumeRequest("wf-1"), {"type": "resume", "workflow_id": "wf-1"}),
    (RestartRequest("wf-1"), {"type": "restart", "workflow_id": "wf-1"}),
    (
        ListWorkflowsRequest(),
        {
            "type": "list_workflows",
            "body": {"sort_desc": False, "load_input": False, "load_output": False},
        },
    ),
    (
        ListQueuedWorkflowsRequest(),
        {
            "type": "list_queued_workflows",
            "body": {"sort_desc": False, "load_input": False, "load_output": False},
        },
    ),
    (
        GetWorkflowRequest("wf-1"),
        {"type": "get_workflow", "workflow_id": "wf-1", "load_input": True, "load_output": True},
    ),
    (
        ExistPendingWorkflowsRequest("exec-1", "v1"),
        {"type": "exist_pending_workflows", "executor_id": "exec-1", "application_version": "v1"},
    ),
    (
        ListStepsRequest("wf-1"),
        {"type": "list_steps", "workflow_id": "wf-1", "load_output": True},
    ),
    (
        ForkWorkflowRequest(ForkWorkflowBody(workflow_id="wf-1", start_step=3)),
        {
            "type": "fork_workflow",
            "body": {
                "workflow_id": "wf-1",
                "start_step": 3,
                "application_version": None,
                "new_workflow_id": None,
            },
        },
    ),
    (
        ForkFromFailureRequest(ForkFromFailureBody(workflow_ids=["wf-1"], from_last_failure=True)),
        {
            "type": "fork_from_failure",
            "body": {"workflow_ids": ["wf-1"], "from_last_failure": True},
        },
    ),
    (
        RewindWorkflowRequest(RewindWorkflowBody(workflow_id="wf-1")),
        {"type": "rewind_workflow", "body": {"workflow_id": "wf-1"}},
    ),
    (
        RetentionRequest(RetentionBody(gc_cutoff_epoch_ms=NEW_YEAR_MS)),
        {
            "type": "retention",
            "body": {
                "gc_cutoff_epoch_ms": NEW_YEAR_MS,
                "gc_rows_threshold": None,
                "timeout_cutoff_epoch_ms": None,
            },
        },
    ),
    (
        GetMetricsRequest(NEW_YEAR, NEW_YEAR + timedelta(days=1)),
        {
            "type": "get_metrics",
            "start_time": NEW_YEAR_WIRE,
            "end_time": "2026-01-02T00:00:00+00:00",
            "metric_class": "workflow_step_count",
        },
    ),
    (
        AlertRequest("disk", "almost full", {"host": "vm"}),
        {"type": "alert", "name": "disk", "message": "almost full", "metadata": {"host": "vm"}},
    ),
    (
        ExportWorkflowRequest("wf-1"),
        {"type": "export_workflow", "workflow_id": "wf-1", "export_children": False},
    ),
    (
        ImportWorkflowRequest("H4sIAAAA"),
        {"type": "import_workflow", "serialized_workflow": "H4sIAAAA"},
    ),
    (
        ListSchedulesRequest(),
        {"type": "list_schedules", "body": {"load_context": True}},
    ),
    (
        GetScheduleRequest("nightly"),
        {"type": "get_schedule", "schedule_name": "nightly", "load_context": True},
    ),
    (PauseScheduleRequest("nightly"), {"type": "pause_schedule", "schedule_name": "nightly"}),
    (ResumeScheduleRequest("nightly"), {"type": "resume_schedule", "schedule_name": "nightly"}),
    (
        BackfillScheduleRequest("nightly", NEW_YEAR, NEW_YEAR + timedelta(hours=6)),
        {
            "type": "backfill_schedule",
            "schedule_name": "nightly",
            "start": NEW_YEAR_WIRE,
            "end": "2026-01-01T06:00:00+00:00",
        },
    ),
    (TriggerScheduleRequest("nightly"), {"type": "trigger_schedule", "schedule_name": "nightly"}),
    (ListApplicationVersionsRequest(), {"type": "list_application_versions"}),
    (
        SetLatestApplicationVersionRequest("v2"),
        {"type": "set_latest_application_version", "version_name": "v2"},
    ),
    (GetWorkflowEventsRequest("wf-1"), {"type": "get_workflow_events", "workflow_id": "wf-1"}),
    (
        GetWorkflowNotificationsRequest("wf-1"),
        {"type": "get_workflow_notifications", "workflow_id": "wf-1"},
    ),
    (GetWorkflowStreamsRequest("wf-1"), {"type": "get_workflow_streams", "workflow_id": "wf-1"}),
    (
        GetWorkflowAggregatesRequest(GetWorkflowAggregatesBody(group_by_status=True)),
        {"type": "get_workflow_aggregates", "body": {"group_by_status": True}},
    ),
    (
        GetStepAggregatesRequest(GetStepAggregatesBody(group_by_function_name=True)),
        {"type": "get_step_aggregates", "body": {"group_by_function_name": True}},
    ),
    (ListQueuesRequest(), {"type": "list_queues", "body": {}}),
    (GetQueueRequest("work_queue"), {"type": "get_queue", "name": "work_queue"}),
]


@pytest.mark.parametrize(
    ("request_", "expected"), EVERY_REQUEST, ids=[e["type"] for _, e in EVERY_REQUEST]
)
def test_it_sends_each_request_with_exactly_the_keys_protocol_md_lists(request_, expected):
    assert wire(request_) == expected


def test_the_request_table_covers_every_message_type():
    assert {type(request) for request, _ in EVERY_REQUEST} == set(REQUEST_TYPES.values())


def test_it_sends_cancel_children_and_the_id_list_when_given():
    request = CancelRequest("wf-1", cancel_children=True, workflow_ids=["wf-1", "wf-2"])

    assert wire(request) == {
        "type": "cancel",
        "workflow_id": "wf-1",
        "cancel_children": True,
        "workflow_ids": ["wf-1", "wf-2"],
    }


def test_it_sends_a_resume_queue_only_when_one_is_chosen():
    request = ResumeRequest("wf-1", queue_name="work_queue")

    assert wire(request)["queue_name"] == "work_queue"


def test_it_sends_only_the_list_filters_that_are_set():
    body = ListWorkflowsBody(
        workflow_name="greet",
        status=["ERROR", "CANCELLED"],
        has_parent=False,
        attributes={"tenant": "acme"},
        limit=50,
        offset=0,
        sort_desc=True,
        load_input=True,
    )

    assert wire(ListWorkflowsRequest(body))["body"] == {
        "workflow_name": "greet",
        "status": ["ERROR", "CANCELLED"],
        "has_parent": False,
        "attributes": {"tenant": "acme"},
        "limit": 50,
        "offset": 0,
        "sort_desc": True,
        "load_input": True,
        "load_output": False,
    }


def test_it_sends_times_in_utc_with_an_explicit_offset_never_z():
    paris = timezone(timedelta(hours=1))
    body = ListWorkflowsBody(
        start_time=datetime(2026, 1, 1, 1, 0, tzinfo=paris),
        completed_before=datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC),
    )

    sent = wire(ListWorkflowsRequest(body))["body"]

    assert sent["start_time"] == NEW_YEAR_WIRE
    assert sent["completed_before"] == "2026-03-04T05:06:07.890+00:00"
    assert "Z" not in encode_request(ListWorkflowsRequest(body))


def test_it_rejects_a_naive_time_filter():
    naive = datetime(2026, 1, 1)  # noqa: DTZ001

    rejects(
        ListWorkflowsRequest(ListWorkflowsBody(end_time=naive)),
        "body.end_time must be an aware datetime",
    )
    rejects(GetMetricsRequest(naive, NEW_YEAR), "start_time must be an aware datetime")


def test_it_rejects_a_date_where_a_time_belongs():
    rejects(
        BackfillScheduleRequest("nightly", NEW_YEAR.date(), NEW_YEAR),  # type: ignore[arg-type]
        "backfill_schedule: start must be an aware datetime",
    )


def test_it_rejects_a_bool_passed_as_an_int():
    rejects(
        ListWorkflowsRequest(ListWorkflowsBody(limit=True)),
        "list_workflows: body.limit must be a non-negative int",
    )
    rejects(
        ForkWorkflowRequest(ForkWorkflowBody(workflow_id="wf-1", start_step=False)),
        "body.start_step must be a non-negative int",
    )


def test_it_rejects_ints_a_typescript_executor_cannot_hold_or_that_are_negative():
    rejects(ListStepsRequest("wf-1", offset=-1), "offset must be a non-negative int")
    rejects(
        RetentionRequest(RetentionBody(gc_rows_threshold=2**53)),
        "body.gc_rows_threshold must be a non-negative int below 2**53",
    )


def test_it_rejects_a_float_or_string_passed_as_an_int():
    rejects(ListStepsRequest("wf-1", limit=10.0), "limit must be")  # type: ignore[arg-type]
    rejects(ListStepsRequest("wf-1", limit="10"), "limit must be")  # type: ignore[arg-type]


def test_it_rejects_a_string_passed_as_a_bool():
    rejects(GetWorkflowRequest("wf-1", load_input="yes"), "load_input must be a bool")  # type: ignore[arg-type]


def test_it_rejects_cancel_without_a_workflow_id():
    rejects(CancelRequest(None), "cancel: workflow_id must be a non-empty string, got None")  # type: ignore[arg-type]
    rejects(CancelRequest("", workflow_ids=["wf-1"]), "workflow_id must be a non-empty string")


def test_it_rejects_every_required_string_left_empty():
    rejects(DeleteRequest(""), "delete: workflow_id")
    rejects(ExistPendingWorkflowsRequest("exec-1", ""), "application_version")
    rejects(GetQueueRequest(""), "get_queue: name")
    rejects(ImportWorkflowRequest(""), "serialized_workflow")
    rejects(AlertRequest("", "message"), "alert: name")


def test_it_rejects_an_empty_request_id():
    rejects(ExecutorInfoRequest(request_id=""), "executor_info: request_id must be a non-empty")


def test_it_rejects_recovery_without_executor_ids():
    rejects(RecoveryRequest([]), NO_EXECUTOR_IDS)


def test_it_names_the_item_of_a_list_that_is_not_a_string():
    rejects(RecoveryRequest(["dead-1", 7]), "executor_ids[1] must be a non-empty string, got 7")  # type: ignore[list-item]
    rejects(
        ListWorkflowsRequest(ListWorkflowsBody(status=["ERROR", None])),  # type: ignore[list-item]
        "body.status[1] must be a non-empty string, got None",
    )


def test_it_rejects_a_filter_that_is_neither_a_string_nor_a_list():
    rejects(
        ListWorkflowsRequest(ListWorkflowsBody(workflow_name=("greet",))),  # type: ignore[arg-type]
        "body.workflow_name must be a non-empty string or a list of non-empty strings or null",
    )


def test_it_rejects_a_tuple_where_a_list_belongs():
    rejects(CancelRequest("wf-1", workflow_ids=("wf-1",)), "workflow_ids must be")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "attributes",
    [{"score": math.nan}, {"tags": {"a", "b"}}, {"pair": (1, 2)}, {1: "one"}, ["tenant"]],
    ids=["nan", "set", "tuple", "int-key", "list"],
)
def test_it_rejects_attributes_that_are_not_plain_json(attributes):
    request = ListWorkflowsRequest(ListWorkflowsBody(attributes=attributes))

    rejects(request, "body.attributes must be a JSON object")


def test_it_rejects_alert_metadata_that_is_not_all_strings():
    rejects(AlertRequest("disk", "full", {"free": 3}), "metadata must be an object of strings")  # type: ignore[dict-item]


def test_it_leaves_queues_only_to_the_queued_listing():
    body = ListWorkflowsBody(queues_only=True)

    assert wire(ListWorkflowsRequest(body))["body"]["queues_only"] is True
    rejects(ListQueuedWorkflowsRequest(body), QUEUES_ONLY_IMPLIED)


def test_it_sends_step_paging_only_when_asked():
    request = ListStepsRequest("wf-1", load_output=False, limit=20, offset=40)

    assert wire(request) == {
        "type": "list_steps",
        "workflow_id": "wf-1",
        "load_output": False,
        "limit": 20,
        "offset": 40,
    }


def test_a_fork_always_carries_its_four_keys_and_queue_keys_only_when_set():
    body = ForkWorkflowBody(
        workflow_id="wf-1",
        start_step=0,
        application_version="v2",
        new_workflow_id="wf-1-fork",
        queue_name="work_queue",
    )

    assert wire(ForkWorkflowRequest(body))["body"] == {
        "workflow_id": "wf-1",
        "start_step": 0,
        "application_version": "v2",
        "new_workflow_id": "wf-1-fork",
        "queue_name": "work_queue",
    }


def test_it_rejects_a_fork_without_a_source_or_a_start_step():
    rejects(
        ForkWorkflowRequest(ForkWorkflowBody(workflow_id="", start_step=1)),
        "fork_workflow: body.workflow_id must be a non-empty string",
    )
    rejects(
        ForkWorkflowRequest(ForkWorkflowBody(workflow_id="wf-1", start_step=None)),  # type: ignore[arg-type]
        "body.start_step must be a non-negative int",
    )


def test_it_rejects_a_fork_whose_body_is_a_dict():
    rejects(
        ForkWorkflowRequest({"workflow_id": "wf-1", "start_step": 1}),  # type: ignore[arg-type]
        "fork_workflow: body must be a ForkWorkflowBody",
    )


@pytest.mark.parametrize(
    ("mode", "sent"),
    [
        ({"from_last_failure": True}, {"from_last_failure": True}),
        ({"from_last_step": True}, {"from_last_step": True}),
        ({"from_step": 0}, {"from_step": 0}),
        ({"from_step_name": "shout"}, {"from_step_name": "shout"}),
    ],
)
def test_fork_from_failure_sends_only_the_chosen_mode(mode, sent):
    body = ForkFromFailureBody(workflow_ids=["wf-1"], queue_name="work_queue", **mode)

    assert wire(ForkFromFailureRequest(body))["body"] == {
        "workflow_ids": ["wf-1"],
        "queue_name": "work_queue",
        **sent,
    }


def test_it_rejects_fork_from_failure_without_a_mode():
    rejects(ForkFromFailureRequest(ForkFromFailureBody(workflow_ids=["wf-1"])), ONE_FORK_MODE)


def test_it_rejects_fork_from_failure_with_two_modes():
    body = ForkFromFailureBody(workflow_ids=["wf-1"], from_last_step=True, from_step=2)

    rejects(ForkFromFailureRequest(body), ONE_FORK_MODE)


def test_it_rejects_fork_from_failure_without_workflows():
    body = ForkFromFailureBody(workflow_ids=[], from_last_failure=True)

    rejects(ForkFromFailureRequest(body), NO_WORKFLOW_IDS)


def test_it_sends_a_rewind_start_step_when_one_is_chosen():
    body = RewindWorkflowBody(workflow_id="wf-1", start_step=2, queue_partition_key="eu")

    assert wire(RewindWorkflowRequest(body))["body"] == {
        "workflow_id": "wf-1",
        "start_step": 2,
        "queue_partition_key": "eu",
    }


def test_retention_sends_its_three_keys_even_when_all_are_null():
    body = wire(RetentionRequest(RetentionBody(gc_batch_size=500)))["body"]

    assert body == {
        "gc_cutoff_epoch_ms": None,
        "gc_rows_threshold": None,
        "timeout_cutoff_epoch_ms": None,
        "gc_batch_size": 500,
    }


def test_it_sends_metrics_for_named_applications():
    request = GetMetricsRequest(NEW_YEAR, NEW_YEAR, application_name=["research-app"])

    assert wire(request)["application_name"] == ["research-app"]


def test_it_sends_schedule_filters_and_context_choice():
    body = ListSchedulesBody(schedule_name_prefix="night", status=["PAUSED"], load_context=False)

    assert wire(ListSchedulesRequest(body))["body"] == {
        "schedule_name_prefix": "night",
        "status": ["PAUSED"],
        "load_context": False,
    }


def test_it_sends_only_the_aggregate_flags_that_are_on():
    body = GetWorkflowAggregatesBody(
        group_by_name=True,
        select_count=True,
        select_max_total_latency_ms=False,
        time_bucket_size_ms=60_000,
        app_version=["v1"],
        start_time=NEW_YEAR,
    )

    assert wire(GetWorkflowAggregatesRequest(body))["body"] == {
        "group_by_name": True,
        "select_count": True,
        "time_bucket_size_ms": 60_000,
        "app_version": ["v1"],
        "start_time": NEW_YEAR_WIRE,
    }


def test_it_rejects_workflow_aggregates_without_a_grouping():
    rejects(
        GetWorkflowAggregatesRequest(GetWorkflowAggregatesBody(select_count=True)),
        AGGREGATES_NEED_A_GROUP,
    )


def test_a_time_bucket_alone_is_a_grouping():
    body = GetWorkflowAggregatesBody(time_bucket_size_ms=3_600_000)

    assert wire(GetWorkflowAggregatesRequest(body))["body"] == {"time_bucket_size_ms": 3_600_000}


def test_it_sends_step_aggregate_filters():
    body = GetStepAggregatesBody(
        group_by_status=True, function_name=["fetch"], completed_after=NEW_YEAR
    )

    assert wire(GetStepAggregatesRequest(body))["body"] == {
        "group_by_status": True,
        "function_name": ["fetch"],
        "completed_after": NEW_YEAR_WIRE,
    }


def test_it_lists_the_queues_of_one_application():
    body = ListQueuesBody(application_name="research-app")

    assert wire(ListQueuesRequest(body))["body"] == {"application_name": "research-app"}


def test_it_refuses_to_encode_something_that_is_not_a_request():
    rejects({"type": "cancel", "workflow_id": "wf-1"}, NOT_A_REQUEST)
    rejects(ListWorkflowsBody(), NOT_A_REQUEST)


def test_requests_are_frozen():
    request = CancelRequest("wf-1")

    with pytest.raises(AttributeError):
        request.workflow_id = "wf-2"  # type: ignore[misc]


# --- parsing replies: §7 traffic ------------------------------------------------------------------

PYTHON_EXECUTOR_INFO = (
    '{"type": "executor_info", "request_id": "53680a65", "executor_id": "ce9a6987", '
    '"application_version": "v1", "hostname": "vm", "language": "python", '
    '"dbos_version": "3.2.0", "executor_metadata": {"role": "research"}, "error_message": null}'
)
TS_EXECUTOR_INFO = (
    '{"type":"executor_info","request_id":"71419878","executor_id":"1e228ea1",'
    '"application_version":"tsv1","hostname":"vm","language":"typescript",'
    '"dbos_version":"5.0.2","executor_metadata":{"role":"ts-research"}}'
)
PYTHON_WORKFLOW = (
    '{"WorkflowUUID": "wf-alice", "Status": "SUCCESS", "WorkflowName": "greet", '
    '"WorkflowClassName": null, "WorkflowConfigName": null, "AuthenticatedUser": null, '
    '"AssumedRole": null, "AuthenticatedRoles": null, '
    "\"Input\": \"{'args': ('alice',), 'kwargs': {'times': 2}}\", "
    '"Output": "HELLO ALICE!!!!!HELLO ALICE!!!!!", "Error": null, '
    '"CreatedAt": "1795300787000", "UpdatedAt": "1795300787000", "QueueName": null, '
    '"ApplicationVersion": "v1", "ExecutorID": "ce9a6987", "WorkflowTimeoutMS": null, '
    '"WorkflowDeadlineEpochMS": null, "DeduplicationID": null, "Priority": "0", '
    '"QueuePartitionKey": null, "ForkedFrom": null, "WasForkedFrom": false, '
    '"ParentWorkflowID": null, "DequeuedAt": null, "DelayUntilEpochMS": null, '
    '"CompletedAt": "1795300787000", "Attributes": null, "ScheduleName": null, '
    '"ApplicationName": "research-app"}'
)
TS_WORKFLOWS = (
    '{"WorkflowUUID":"ts-alice","Status":"SUCCESS","WorkflowName":"greet",'
    '"Input":"[ \'alice\', 2 ]","Output":"\'HELLO ALICE!!!!!HELLO ALICE!!!!!\'",'
    '"CreatedAt":"1795301123505","UpdatedAt":"1795301123529","ApplicationVersion":"tsv1",'
    '"ExecutorID":"1e228ea1","Priority":"0","WasForkedFrom":false,'
    '"CompletedAt":"1795301123529","ApplicationName":"research-ts"},'
    '{"WorkflowUUID":"ts-fail1","Status":"ERROR",'
    '"Error":"{\\"name\\":\\"Error\\",\\"message\\":\\"bad input fail1\\"}"}'
)


def test_it_parses_a_python_executor_info_reply():
    response = parse_response(PYTHON_EXECUTOR_INFO)

    assert response == ExecutorInfoResponse(
        type=MessageType.EXECUTOR_INFO,
        request_id="53680a65",
        executor_id="ce9a6987",
        application_version="v1",
        hostname="vm",
        language="python",
        dbos_version="3.2.0",
        executor_metadata={"role": "research"},
    )
    assert response.error_message is None


def test_it_parses_a_compact_typescript_executor_info_reply_without_error_message():
    response = parse_response(TS_EXECUTOR_INFO)

    assert isinstance(response, ExecutorInfoResponse)
    assert response.type == "executor_info"
    assert (response.executor_id, response.language) == ("1e228ea1", "typescript")
    assert response.executor_metadata == {"role": "ts-research"}
    assert response.error_message is None


def test_it_treats_missing_executor_metadata_like_null():
    response = parse_response(reply(type="executor_info", executor_id="e-1"))

    assert isinstance(response, ExecutorInfoResponse)
    assert response.executor_metadata is None
    assert response.hostname is None


def test_it_parses_a_python_workflow_listing():
    text = f'{{"type": "list_workflows", "request_id": "r-1", "output": [{PYTHON_WORKFLOW}], "error_message": null}}'  # noqa: E501

    response = parse_response(text)

    assert isinstance(response, ListWorkflowsResponse)
    (workflow,) = response.output
    assert workflow.workflow_uuid == "wf-alice"
    assert workflow.status == "SUCCESS"
    assert workflow.input == "{'args': ('alice',), 'kwargs': {'times': 2}}"
    assert workflow.output == "HELLO ALICE!!!!!HELLO ALICE!!!!!"
    assert workflow.created_at == 1795300787000
    assert workflow.completed_at == 1795300787000
    assert workflow.priority == 0
    assert workflow.executor_id == "ce9a6987"
    assert workflow.application_name == "research-app"
    assert workflow.was_forked_from is False
    assert workflow.workflow_class_name is None
    assert workflow.dequeued_at is None


def test_it_parses_a_typescript_workflow_listing_with_omitted_fields():
    text = f'{{"type":"list_queued_workflows","request_id":"r-1","output":[{TS_WORKFLOWS}]}}'

    response = parse_response(text)

    assert isinstance(response, ListWorkflowsResponse)
    alice, failed = response.output
    assert alice.input == "[ 'alice', 2 ]"
    assert alice.output == "'HELLO ALICE!!!!!HELLO ALICE!!!!!'"
    assert alice.updated_at == 1795301123529
    assert alice.queue_name is None
    assert alice.authenticated_roles is None
    assert failed == WorkflowsOutput(
        workflow_uuid="ts-fail1",
        status="ERROR",
        error='{"name":"Error","message":"bad input fail1"}',
    )


def test_it_reads_every_workflow_key_of_protocol_md():
    keys = {
        "WorkflowUUID": "wf-9",
        "WorkflowClassName": "Billing",
        "WorkflowConfigName": "eu",
        "AuthenticatedUser": "alice",
        "AssumedRole": "ops",
        "AuthenticatedRoles": "['admin', 'ops']",
        "WorkflowTimeoutMS": "60000",
        "WorkflowDeadlineEpochMS": "1795300847000",
        "DeduplicationID": "dedup-1",
        "QueuePartitionKey": "tenant-7",
        "ForkedFrom": "wf-1",
        "WasForkedFrom": True,
        "ParentWorkflowID": "wf-0",
        "DequeuedAt": "1795300787100",
        "DelayUntilEpochMS": "1795300790000",
        "Attributes": '{"tenant": "acme"}',
        "ScheduleName": "nightly",
    }

    response = parse_response(reply(type="get_workflow", output=keys))

    assert isinstance(response, GetWorkflowResponse)
    assert response.output == WorkflowsOutput(
        workflow_uuid="wf-9",
        workflow_class_name="Billing",
        workflow_config_name="eu",
        authenticated_user="alice",
        assumed_role="ops",
        authenticated_roles="['admin', 'ops']",
        workflow_timeout_ms=60000,
        workflow_deadline_epoch_ms=1795300847000,
        deduplication_id="dedup-1",
        queue_partition_key="tenant-7",
        forked_from="wf-1",
        was_forked_from=True,
        parent_workflow_id="wf-0",
        dequeued_at=1795300787100,
        delay_until_epoch_ms=1795300790000,
        attributes='{"tenant": "acme"}',
        schedule_name="nightly",
    )


def test_get_workflow_for_an_unknown_id_has_no_output_in_either_language():
    python = parse_response(
        '{"type": "get_workflow", "request_id": "r-1", "output": null, "error_message": null}'
    )
    typescript = parse_response('{"type":"get_workflow","request_id":"r-1"}')

    assert isinstance(python, GetWorkflowResponse)
    assert python == typescript
    assert python.output is None


def test_it_parses_python_steps_with_epoch_strings():
    text = (
        '{"type": "list_steps", "request_id": "r-1", "output": ['
        '{"function_id": 1, "function_name": "fetch", '
        "\"output\": \"{'greeting': 'hello alice', 'n': 5}\", \"error\": null, "
        '"child_workflow_id": null, "started_at_epoch_ms": "1795300787041", '
        '"completed_at_epoch_ms": "1795300787046"}, '
        '{"function_id": 2, "function_name": "DBOS.setEvent", "output": null}], '
        '"error_message": null}'
    )

    response = parse_response(text)

    assert isinstance(response, ListStepsResponse)
    fetch, set_event = response.output
    assert fetch == WorkflowSteps(
        function_id=1,
        function_name="fetch",
        output="{'greeting': 'hello alice', 'n': 5}",
        started_at_epoch_ms=1795300787041,
        completed_at_epoch_ms=1795300787046,
    )
    assert (set_event.function_id, set_event.output) == (2, None)


def test_it_parses_zero_based_typescript_steps_with_omitted_fields():
    text = (
        '{"type":"list_steps","request_id":"r-1","output":[{"function_id":0,'
        '"function_name":"fetch","output":"{ greeting: \'hello alice\', n: 5 }",'
        '"started_at_epoch_ms":"1795301123513","completed_at_epoch_ms":"1795301123517"}]}'
    )

    response = parse_response(text)

    assert isinstance(response, ListStepsResponse)
    (step,) = response.output
    assert step.function_id == 0
    assert step.error is None
    assert step.child_workflow_id is None
    assert step.completed_at_epoch_ms == 1795301123517


def test_it_parses_workflow_events_from_python_and_typescript():
    python = parse_response(
        '{"type": "get_workflow_events", "events": [{"key": "stage", "value": "after-fetch"}], '
        '"error_message": null, "request_id": "r-1"}'
    )
    typescript = parse_response(
        '{"type":"get_workflow_events","events":[{"key":"stage","value":"\'after-fetch\'"}],'
        '"request_id":"r-2"}'
    )

    assert isinstance(python, GetWorkflowEventsResponse)
    assert isinstance(typescript, GetWorkflowEventsResponse)
    assert [(e.key, e.value) for e in python.events] == [("stage", "after-fetch")]
    assert typescript.events[0].value == "'after-fetch'"


def test_it_parses_workflow_streams_and_notifications():
    streams = parse_response(
        '{"type": "get_workflow_streams", "request_id": "r-1", "streams": '
        '[{"key": "progress", "values": ["{\'done\': \'HELLO ALICE!!!!!\'}"]}]}'
    )
    notifications = parse_response(
        reply(
            type="get_workflow_notifications",
            notifications=[
                {"topic": None, "message": "hi", "created_at_epoch_ms": 1795300787000},
                {"topic": "t", "message": "'yo'", "created_at_epoch_ms": 5, "consumed": True},
            ],
        )
    )

    assert isinstance(streams, GetWorkflowStreamsResponse)
    assert streams.streams[0].key == "progress"
    assert streams.streams[0].values == ["{'done': 'HELLO ALICE!!!!!'}"]
    assert isinstance(notifications, GetWorkflowNotificationsResponse)
    first, second = notifications.notifications
    assert (first.topic, first.created_at_epoch_ms, first.consumed) == (None, 1795300787000, False)
    assert (second.topic, second.message, second.consumed) == ("t", "'yo'", True)


def test_it_parses_an_empty_notification_list():
    response = parse_response(
        '{"type": "get_workflow_notifications", "notifications": [], "request_id": "r-1"}'
    )

    assert isinstance(response, GetWorkflowNotificationsResponse)
    assert response.notifications == []


def test_it_parses_whether_pending_workflows_exist():
    response = parse_response(
        '{"type": "exist_pending_workflows", "exist": true, "request_id": "r-1"}'
    )

    assert isinstance(response, ExistPendingWorkflowsResponse)
    assert response.exist is True


def test_it_parses_application_versions_with_int_timestamps():
    response = parse_response(
        reply(
            type="list_application_versions",
            output=[
                {
                    "version_id": "05cdba98",
                    "version_name": "v1",
                    "version_timestamp": 1795300786000,
                    "created_at": 1795300786000,
                }
            ],
        )
    )

    assert isinstance(response, ListApplicationVersionsResponse)
    (version,) = response.output
    assert (version.version_name, version.version_timestamp) == ("v1", 1795300786000)


def test_it_parses_queues_and_a_single_queue():
    queue = {
        "name": "work_queue",
        "concurrency": None,
        "worker_concurrency": 4,
        "rate_limit_max": None,
        "rate_limit_period_sec": None,
        "priority_enabled": True,
        "partition_queue": False,
        "polling_interval_sec": 1.0,
        "application_name": "research-app",
        "partition_concurrency": None,
        "some_future_field": "ignored",
    }

    listing = parse_response(reply(type="list_queues", output=[queue]))
    single = parse_response(reply(type="get_queue", output=queue))

    assert isinstance(listing, ListQueuesResponse)
    assert isinstance(single, GetQueueResponse)
    assert single.output == listing.output[0]
    assert single.output is not None
    assert single.output.name == "work_queue"
    assert single.output.worker_concurrency == 4
    assert single.output.polling_interval_sec == 1.0
    assert single.output.priority_enabled is True
    assert single.output.concurrency is None


def test_it_parses_metrics_and_a_metrics_error():
    metrics = parse_response(
        reply(
            type="get_metrics",
            metrics=[
                {"metric_type": "workflow_count", "metric_name": "greet", "value": 1},
                {"metric_type": "step_count", "metric_name": "fetch", "value": 2},
            ],
            error_message=None,
        )
    )
    refused = parse_response(
        '{"type": "get_metrics", "request_id": "r-2", "metrics": [], '
        '"error_message": "Unexpected metric class: other"}'
    )

    assert isinstance(metrics, GetMetricsResponse)
    assert [(m.metric_name, m.value) for m in metrics.metrics] == [("greet", 1), ("fetch", 2)]
    assert isinstance(refused, GetMetricsResponse)
    assert refused.metrics == []
    assert refused.error_message == "Unexpected metric class: other"


def test_it_parses_workflow_and_step_aggregates():
    workflows = parse_response(
        reply(
            type="get_workflow_aggregates",
            output=[
                {
                    "group": {"status": "ERROR", "time_bucket": "1795300740000"},
                    "count": 1,
                    "min_created_at": None,
                    "max_queue_wait_ms": None,
                    "max_total_latency_ms": 0,
                }
            ],
        )
    )
    steps = parse_response(
        reply(
            type="get_step_aggregates",
            output=[{"group": {"function_name": "fetch"}, "count": None, "max_duration_ms": 5}],
        )
    )

    assert isinstance(workflows, GetWorkflowAggregatesResponse)
    (bucket,) = workflows.output
    assert bucket.group == {"status": "ERROR", "time_bucket": "1795300740000"}
    assert (bucket.count, bucket.min_created_at, bucket.max_total_latency_ms) == (1, None, 0)
    assert isinstance(steps, GetStepAggregatesResponse)
    assert (steps.output[0].count, steps.output[0].max_duration_ms) == (None, 5)


@pytest.mark.parametrize(
    "message_type",
    [
        "recovery",
        "cancel",
        "delete",
        "resume",
        "restart",
        "rewind_workflow",
        "retention",
        "alert",
        "import_workflow",
        "pause_schedule",
        "resume_schedule",
        "set_latest_application_version",
    ],
)
def test_it_parses_each_yes_or_no_reply_as_a_success_response(message_type):
    response = parse_response(f'{{"type": "{message_type}", "request_id": "r-1", "success": true}}')

    assert isinstance(response, SuccessResponse)
    assert response.type == message_type
    assert response.success is True


def test_it_keeps_the_traceback_of_a_failed_rewind():
    text = (
        '{"type": "rewind_workflow", "request_id": "r-1", "success": false, "error_message": '
        '"Exception encountered when rewinding workflow: Traceback (most recent call last):\\n'
        '  File \\"x.py\\", line 1"}'
    )

    response = parse_response(text)

    assert isinstance(response, SuccessResponse)
    assert response.success is False
    assert response.error_message is not None
    assert response.error_message.splitlines()[1] == '  File "x.py", line 1'


def test_it_parses_a_fork_reply_with_or_without_a_new_id():
    forked = parse_response(
        '{"type": "fork_workflow", "new_workflow_id": "wf-alice-fork3", "error_message": null, '
        '"request_id": "r-1"}'
    )
    failed = parse_response(
        reply(type="fork_workflow", new_workflow_id=None, error_message="no such workflow")
    )

    assert isinstance(forked, ForkWorkflowResponse)
    assert forked.new_workflow_id == "wf-alice-fork3"
    assert isinstance(failed, ForkWorkflowResponse)
    assert (failed.new_workflow_id, failed.error_message) == (None, "no such workflow")


def test_it_parses_bulk_fork_ids_and_treats_null_as_none_forked():
    forked = parse_response(reply(type="fork_from_failure", forked_workflow_ids=["n-1", "n-2"]))
    failed = parse_response(reply(type="fork_from_failure", forked_workflow_ids=None))

    assert isinstance(forked, ForkFromFailureResponse)
    assert forked.forked_workflow_ids == ["n-1", "n-2"]
    assert isinstance(failed, ForkFromFailureResponse)
    assert failed.forked_workflow_ids == []


def test_it_parses_an_export_payload():
    response = parse_response(reply(type="export_workflow", serialized_workflow="H4sIAAAA"))

    assert isinstance(response, ExportWorkflowResponse)
    assert response.serialized_workflow == "H4sIAAAA"


def test_it_parses_schedules():
    schedule = {
        "schedule_id": "s-1",
        "schedule_name": "nightly",
        "workflow_name": "report",
        "workflow_class_name": None,
        "schedule": "0 3 * * *",
        "status": "ACTIVE",
        "context": "{'region': 'eu'}",
        "last_fired_at": "2026-01-01T03:00:00+00:00",
        "automatic_backfill": True,
        "cron_timezone": "Europe/Paris",
        "queue_name": None,
        "application_name": "research-app",
    }

    listing = parse_response(reply(type="list_schedules", output=[schedule]))
    single = parse_response(reply(type="get_schedule", output=schedule))
    missing = parse_response(reply(type="get_schedule", output=None))

    assert isinstance(listing, ListSchedulesResponse)
    assert isinstance(single, GetScheduleResponse)
    assert single.output == listing.output[0]
    assert single.output is not None
    assert (single.output.schedule, single.output.automatic_backfill) == ("0 3 * * *", True)
    assert single.output.cron_timezone == "Europe/Paris"
    assert isinstance(missing, GetScheduleResponse)
    assert missing.output is None


def test_it_parses_backfilled_and_triggered_workflow_ids():
    backfill = parse_response(reply(type="backfill_schedule", workflow_ids=["b-1", "b-2"]))
    trigger = parse_response(reply(type="trigger_schedule", workflow_id="t-1"))

    assert isinstance(backfill, BackfillScheduleResponse)
    assert backfill.workflow_ids == ["b-1", "b-2"]
    assert isinstance(trigger, TriggerScheduleResponse)
    assert trigger.workflow_id == "t-1"


def test_it_parses_an_unknown_type_into_a_generic_response():
    text = '{"type": "bogus_type", "request_id": "r-1", "error_message": "Unknown message type"}'

    response = parse_response(text)

    assert response == UnknownResponse(
        type="bogus_type", request_id="r-1", error_message="Unknown message type"
    )
    assert response.raw == json.loads(text)


def test_it_parses_unknown_message_type_for_a_known_request_as_a_failure():
    # What Python 3.2.0 and TS 5.0.2 answer to `restart` (§2.2).
    text = '{"type": "restart", "request_id": "r-1", "error_message": "Unknown message type"}'

    response = parse_response(text)

    assert isinstance(response, SuccessResponse)
    assert response.success is False
    assert response.error_message == "Unknown message type"


def test_it_ignores_unknown_fields_but_keeps_them_in_raw():
    response = parse_response(reply(type="recovery", success=True, added_in_4_0={"x": 1}))

    assert response.raw["added_in_4_0"] == {"x": 1}
    assert response.raw["success"] is True
    assert response.request_id == "r-1"


def test_it_accepts_a_frame_as_utf8_bytes():
    text = reply(type="get_workflow_events", events=[{"key": "café", "value": "crème"}])

    response = parse_response(text.encode())

    assert isinstance(response, GetWorkflowEventsResponse)
    assert response.events[0].value == "crème"


# --- parsing replies: malformed frames ------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ("this is not json", NOT_JSON),
        ("", NOT_JSON),
        ('{"type": "cancel", "request_id": "r-1"', NOT_JSON),
        ("[" * 100_000, NOT_JSON),
        (b"\xff\xfe{}", NOT_UTF8),
        (b"\x80", NOT_UTF8),
        ('[{"type": "cancel", "request_id": "r-1"}]', NOT_AN_OBJECT),
        ('"cancel"', NOT_AN_OBJECT),
        ("42", NOT_AN_OBJECT),
        ("null", NOT_AN_OBJECT),
        ('{"type": "cancel", "success": true}', NO_REQUEST_ID),
        ('{"type": "cancel", "request_id": 7}', NO_REQUEST_ID),
        ('{"type": "cancel", "request_id": ""}', NO_REQUEST_ID),
        ('{"request_id": "r-1", "success": true}', NO_TYPE),
        ('{"type": ["cancel"], "request_id": "r-1"}', NO_TYPE),
    ],
    ids=[
        "not-json",
        "empty",
        "truncated",
        "too-deep",
        "bytes-not-utf8",
        "lone-continuation-byte",
        "array",
        "string",
        "number",
        "null",
        "missing-request-id",
        "numeric-request-id",
        "empty-request-id",
        "missing-type",
        "list-type",
    ],
)
def test_it_refuses_a_frame_without_a_usable_envelope(frame, message):
    with pytest.raises(ProtocolError, match=re.escape(message)):
        parse_response(frame)


def test_protocol_errors_are_value_errors():
    with pytest.raises(ValueError, match=NOT_JSON):
        parse_response("nope")


# --- parsing replies: wrong field types -----------------------------------------------------------


def test_it_reads_a_non_boolean_success_as_failure():
    response = parse_response(reply(type="cancel", success="yes"))

    assert isinstance(response, SuccessResponse)
    assert response.success is False


def test_it_reads_an_output_that_is_not_a_list_as_empty():
    response = parse_response(reply(type="list_workflows", output={"WorkflowUUID": "wf-1"}))

    assert isinstance(response, ListWorkflowsResponse)
    assert response.output == []


def test_it_skips_list_items_that_are_not_objects():
    response = parse_response(reply(type="list_steps", output=[5, "x", None, {"function_id": 3}]))

    assert isinstance(response, ListStepsResponse)
    assert [step.function_id for step in response.output] == [3]


def test_it_reads_epoch_milliseconds_leniently():
    response = parse_response(
        reply(
            type="get_workflow",
            output={
                "CreatedAt": "junk",
                "UpdatedAt": 1795300787000,
                "CompletedAt": 1795300787000.0,
                "DequeuedAt": "17953.5",
                "Priority": True,
                "WorkflowTimeoutMS": {"ms": 5},
                "DelayUntilEpochMS": " 1795300790000 ",
            },
        )
    )

    assert isinstance(response, GetWorkflowResponse)
    workflow = response.output
    assert workflow is not None
    assert workflow.created_at is None
    assert workflow.updated_at == 1795300787000
    assert workflow.completed_at == 1795300787000
    assert workflow.dequeued_at is None
    assert workflow.priority is None
    assert workflow.workflow_timeout_ms is None
    assert workflow.delay_until_epoch_ms == 1795300790000


def test_it_reads_a_numeric_function_id_sent_as_text():
    response = parse_response(reply(type="list_steps", output=[{"function_id": "4"}]))

    assert isinstance(response, ListStepsResponse)
    assert response.output[0].function_id == 4


def test_it_shows_non_text_where_text_belongs_as_json():
    response = parse_response(
        reply(
            type="get_workflow",
            output={"WorkflowUUID": 12, "Output": {"a": [1, True]}, "WasForkedFrom": "true"},
            error_message={"code": 500},
        )
    )

    assert isinstance(response, GetWorkflowResponse)
    assert response.error_message == '{"code": 500}'
    assert response.output is not None
    assert response.output.workflow_uuid == "12"
    assert response.output.output == '{"a": [1, true]}'
    assert response.output.was_forked_from is False


def test_it_drops_executor_metadata_that_is_not_an_object():
    response = parse_response(reply(type="executor_info", executor_metadata=["role"]))

    assert isinstance(response, ExecutorInfoResponse)
    assert response.executor_metadata is None
    assert response.raw["executor_metadata"] == ["role"]


def test_it_reads_a_single_output_that_is_not_an_object_as_none():
    response = parse_response(reply(type="get_queue", output=["work_queue"]))

    assert isinstance(response, GetQueueResponse)
    assert response.output is None


def test_it_reads_queue_numbers_sent_as_text():
    response = parse_response(
        reply(
            type="get_queue",
            output={
                "name": "q",
                "rate_limit_period_sec": "2.5",
                "polling_interval_sec": False,
                "concurrency": "ten",
            },
        )
    )

    assert isinstance(response, GetQueueResponse)
    assert response.output is not None
    assert response.output.rate_limit_period_sec == 2.5
    assert response.output.polling_interval_sec is None
    assert response.output.concurrency is None


def test_it_reads_aggregate_groups_and_id_lists_leniently():
    aggregates = parse_response(
        reply(type="get_workflow_aggregates", output=[{"group": {"bucket": 60, "name": None}}])
    )
    backfill = parse_response(reply(type="backfill_schedule", workflow_ids=["b-1", None, 3]))
    streams = parse_response(
        reply(type="get_workflow_streams", streams=[{"key": "k", "values": 5}])
    )

    assert isinstance(aggregates, GetWorkflowAggregatesResponse)
    assert aggregates.output[0].group == {"bucket": "60", "name": None}
    assert isinstance(backfill, BackfillScheduleResponse)
    assert backfill.workflow_ids == ["b-1", "3"]
    assert isinstance(streams, GetWorkflowStreamsResponse)
    assert streams.streams[0].values == []
