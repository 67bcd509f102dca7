"""What an executor answers, as plain JSON-ready dicts: shared by the in-process fake
executor of the unit tests (tests/fake_executor.py) and the fleet load generator
(bench/fleet.py), so both speak the same protocol the same way.

The shapes are dbos 3.2.0's (PROTOCOL.md §2): a workflow row with its display-text
payloads and epoch-millisecond times, steps numbered from 1, `success` for actions.
No Django here: the load generator runs without it.
"""

import time
from typing import Any

# How many workflows a list answers when the request sets no limit (the SDK's default is
# everything; a fleet's simulated executor keeps it to a page).
LIST_DEFAULT = 20
STEPS = 3


def executor_info_reply(
    request: dict[str, Any],
    *,
    executor_id: str,
    version: str = "v1",
    language: str = "python",
    dbos_version: str = "3.2.0",
    hostname: str = "test-host",
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The answer to `executor_info`: who this executor is."""
    return {
        "type": "executor_info",
        "request_id": request["request_id"],
        "executor_id": executor_id,
        "application_version": version,
        "hostname": hostname,
        "language": language,
        "dbos_version": dbos_version,
        "executor_metadata": {"role": "test"} if metadata is None else metadata,
        "error_message": None,
    }


def workflow_row(workflow_id: str, *, executor_id: str, version: str = "v1") -> dict[str, Any]:
    """One workflow as list_workflows and get_workflow carry it: a finished checkout, or a
    running one when its id says "pending" (something to cancel)."""
    now = int(time.time() * 1000)
    running = "pending" in workflow_id
    row = {
        "WorkflowUUID": workflow_id,
        "Status": "SUCCESS",
        "WorkflowName": "checkout",
        "WorkflowClassName": "Shop",
        "WorkflowConfigName": None,
        "AuthenticatedUser": None,
        "AssumedRole": None,
        "AuthenticatedRoles": None,
        "Input": "{'args': ('order-" + workflow_id[-6:] + "', 3), 'kwargs': {'express': True}}",
        "Output": "{'charged': 4200, 'currency': 'EUR', 'shipment': 'SHP-" + workflow_id[:6] + "'}",
        "Error": None,
        "CreatedAt": now - 5_000,
        "UpdatedAt": now - 1_000,
        "QueueName": "orders",
        "ApplicationVersion": version,
        "ExecutorID": executor_id,
        "WorkflowTimeoutMS": None,
        "WorkflowDeadlineEpochMS": None,
        "DeduplicationID": None,
        "Priority": 0,
        "QueuePartitionKey": None,
        "ForkedFrom": None,
        "WasForkedFrom": False,
        "ParentWorkflowID": None,
        "DequeuedAt": now - 4_900,
        "DelayUntilEpochMS": None,
        "CompletedAt": now - 1_000,
        "Attributes": None,
        "ScheduleName": None,
        "ApplicationName": None,
    }
    if running:
        row |= {"Status": "PENDING", "Output": None, "CompletedAt": None, "UpdatedAt": now}
    return row


def step_rows(workflow_id: str) -> list[dict[str, Any]]:
    """The checkout's steps, numbered from 1 as Python numbers them."""
    now = int(time.time() * 1000)
    names = ("reserve_stock", "charge_card", "ship")
    return [
        {
            "function_id": number,
            "function_name": names[(number - 1) % len(names)],
            "output": "{'ok': True, 'step': " + str(number) + "}",
            "error": None,
            "child_workflow_id": None,
            "started_at_epoch_ms": now - 5_000 + number * 100,
            "completed_at_epoch_ms": now - 5_000 + number * 100 + 50,
        }
        for number in range(1, STEPS + 1)
    ]


def aggregate_rows(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Counts for each status asked (every status when none is), on one queue and on none
    when grouped by queue."""
    statuses = body.get("status") or ["PENDING", "ENQUEUED", "SUCCESS", "ERROR"]
    queues = ["default", None] if body.get("group_by_queue_name") else [None]
    rows = []
    for status in statuses:
        for queue in queues:
            group: dict[str, Any] = {"status": status} if body.get("group_by_status") else {}
            if body.get("group_by_queue_name"):
                group["queue_name"] = queue
            rows.append({"group": group, "count": 7})
    return rows


def reply_to(request: dict[str, Any], *, executor_id: str, version: str = "v1") -> dict[str, Any]:
    """The answer a healthy executor gives to any request but `executor_info`: workflows
    for lists and gets, steps for list_steps, counts for get_workflow_aggregates, `success`
    for everything else."""
    kind = request["type"]
    answer: dict[str, Any] = {
        "type": kind,
        "request_id": request["request_id"],
        "error_message": None,
    }
    if kind in ("list_workflows", "list_queued_workflows"):
        body = request.get("body") or {}
        wanted = body.get("workflow_uuids")
        if wanted is None:
            count = min(int(body.get("limit") or LIST_DEFAULT), LIST_DEFAULT)
            wanted = [f"{executor_id[:8]}-wf-{n:06d}" for n in range(count)]
        answer["output"] = [
            workflow_row(workflow_id, executor_id=executor_id, version=version)
            for workflow_id in wanted
        ]
    elif kind == "get_workflow":
        answer["output"] = workflow_row(
            request["workflow_id"], executor_id=executor_id, version=version
        )
    elif kind == "list_steps":
        answer["output"] = step_rows(request["workflow_id"])
    elif kind == "get_workflow_aggregates":
        answer["output"] = aggregate_rows(request.get("body") or {})
    elif kind == "exist_pending_workflows":
        answer["exist"] = False
    else:
        answer["success"] = True
    return answer
