"""Stories about acting on one workflow through the API: what is sent to the executor,
what is refused before anything is sent, and the one audit record each attempt leaves."""

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from conductor.models import Executor
from stepchange.models import Application, AuditRecord
from tests.conftest import make_user
from tests.fake_executor import FakeExecutor, connect_executor
from workflows import actions
from workflows.actions import Action, Sdk, offers
from workflows.sources import Workflow

pytestmark = pytest.mark.django_db(transaction=True)

# A POST with no body at all, as curl sends it.
JSON = "application/json"


def row(workflow_id: str = "wf-1", status: str = "PENDING", **fields: Any) -> dict[str, Any]:
    """A workflow as get_workflow returns it (PROTOCOL.md §2.3)."""
    return {
        "WorkflowUUID": workflow_id,
        "Status": status,
        "WorkflowName": "greet",
        "CreatedAt": "1795300787000",
        "ApplicationVersion": "v1",
        "WasForkedFrom": False,
        **fields,
    }


async def operator_client() -> AsyncClient:
    operator = await sync_to_async(make_user)(username="otto", role="operator")
    client = AsyncClient()
    await client.aforce_login(operator)
    return client


async def acting(
    executor: FakeExecutor, call: Any, *replies: dict[str, Any]
) -> tuple[Any, list[dict[str, Any]]]:
    """Run an API call while the fake executor answers its requests, one reply each."""
    calling = asyncio.create_task(call)
    requests = []
    for reply in replies:
        try:
            requests.append(await executor.answer(**reply))
        except TimeoutError:
            if calling.done():
                # The call ended without asking: its answer (or error) says why.
                raise AssertionError(f"asked {len(requests)} times: {await calling}") from None
            raise
    response = await calling
    return response, requests


async def audits(action: str) -> list[AuditRecord]:
    def read() -> list[AuditRecord]:
        return list(AuditRecord.objects.filter(action=action).order_by("pk"))

    return await sync_to_async(read)()


async def test_an_operator_cancels_a_pending_workflow_with_its_children(
    orders: Application, executor: FakeExecutor
) -> None:
    client = await operator_client()
    response, (lookup, cancel) = await acting(
        executor,
        client.post(
            "/api/v1/apps/orders/workflows/wf-1/cancel",
            {"cancel_children": True, "reason": "runaway loop"},
            content_type="application/json",
        ),
        {"output": row()},
        {"success": True},
    )
    assert response.status_code == 200, response.content
    assert lookup["type"] == "get_workflow"
    assert cancel["type"] == "cancel"
    assert (cancel["workflow_id"], cancel["cancel_children"]) == ("wf-1", True)
    outcome = response.json()
    assert outcome["request_id"] == cancel["request_id"]
    assert outcome["executor_id"] == executor.executor_id
    [record] = await audits("workflow.cancel")
    assert (record.actor_name, record.role, record.result) == ("otto", "operator", "ok")
    assert (record.target, record.reason) == ("wf-1", "runaway loop")
    assert record.request_id == cancel["request_id"]
    assert record.response == {
        "type": "cancel",
        "request_id": cancel["request_id"],
        "error_message": None,
        "success": True,
    }
    assert record.parameters == {"reason": "runaway loop", "cancel_children": True} | {
        "path": "executor"
    }


async def test_resuming_a_failed_workflow_is_refused_before_anything_is_sent(
    orders: Application, executor: FakeExecutor
) -> None:
    client = await operator_client()
    response, _ = await acting(
        executor,
        client.post("/api/v1/apps/orders/workflows/wf-1/resume", content_type=JSON),
        {"output": row(status="ERROR")},
    )
    assert response.status_code == 409
    assert response.json()["detail"] == actions.NO_RESUME_ERROR
    [record] = await audits("workflow.resume")
    assert (record.result, record.detail) == ("failed", actions.NO_RESUME_ERROR)
    assert await executor.communicator.receive_nothing(timeout=0.2)


async def test_an_unknown_workflow_is_a_404_and_is_audited(
    orders: Application, executor: FakeExecutor
) -> None:
    client = await operator_client()
    response, _ = await acting(
        executor,
        client.post("/api/v1/apps/orders/workflows/nope/delete", content_type=JSON),
        {"output": None},
    )
    assert response.status_code == 404
    assert response.json()["detail"] == "No workflow nope in orders."
    [record] = await audits("workflow.delete")
    assert (record.result, record.target) == ("failed", "nope")


async def test_a_workflow_of_another_application_is_a_403_and_is_audited(
    orders: Application, executor: FakeExecutor
) -> None:
    client = await operator_client()
    response, _ = await acting(
        executor,
        client.post("/api/v1/apps/orders/workflows/wf-1/cancel", content_type=JSON),
        {"output": row(ApplicationName="billing")},
    )
    assert response.status_code == 403
    assert "belongs to application billing" in response.json()["detail"]
    [record] = await audits("workflow.cancel")
    assert record.result == "denied"


async def test_with_no_executor_connected_the_action_is_a_503_and_is_audited(
    orders: Application,
) -> None:
    client = await operator_client()
    response = await client.post("/api/v1/apps/orders/workflows/wf-1/cancel", content_type=JSON)
    assert response.status_code == 503
    assert "No executor" in response.json()["detail"]
    [record] = await audits("workflow.cancel")
    assert record.result == "failed"
    assert "No executor" in record.detail


async def test_an_executor_that_says_no_is_a_502_with_its_answer_audited(
    orders: Application, executor: FakeExecutor
) -> None:
    client = await operator_client()
    response, (_, fork) = await acting(
        executor,
        client.post(
            "/api/v1/apps/orders/workflows/wf-1/fork",
            {"start_step": 3},
            content_type="application/json",
        ),
        {"output": row(status="ERROR")},
        {"new_workflow_id": None, "error_message": "Workflow wf-1 does not exist"},
    )
    assert response.status_code == 502
    assert "Workflow wf-1 does not exist" in response.json()["detail"]
    [record] = await audits("workflow.fork")
    assert record.result == "failed"
    assert record.request_id == fork["request_id"]
    assert (record.response or {})["error_message"] == "Workflow wf-1 does not exist"


async def test_a_fork_sends_every_key_python_needs_and_links_the_new_workflow(
    orders: Application, executor: FakeExecutor
) -> None:
    client = await operator_client()
    response, (_, lookup_new, fork) = await acting(
        executor,
        client.post(
            "/api/v1/apps/orders/workflows/wf-1/fork",
            {"start_step": 2, "new_workflow_id": "wf-1-fork", "queue_name": "slow"},
            content_type="application/json",
        ),
        {"output": row(status="SUCCESS")},
        {"output": None},
        {"new_workflow_id": "wf-1-fork"},
    )
    assert response.status_code == 200, response.content
    assert lookup_new["workflow_id"] == "wf-1-fork"
    assert fork["body"] == {
        "workflow_id": "wf-1",
        "start_step": 2,
        "application_version": None,
        "new_workflow_id": "wf-1-fork",
        "queue_name": "slow",
    }
    assert response.json()["new_workflow_id"] == "wf-1-fork"


async def test_submitting_the_same_fork_twice_forks_once(
    orders: Application, executor: FakeExecutor
) -> None:
    client = await operator_client()
    response, _ = await acting(
        executor,
        client.post(
            "/api/v1/apps/orders/workflows/wf-1/fork",
            {"start_step": 2, "new_workflow_id": "wf-1-fork"},
            content_type="application/json",
        ),
        {"output": row(status="SUCCESS")},
        {"output": row("wf-1-fork", status="PENDING", ForkedFrom="wf-1")},
    )
    assert response.status_code == 409
    assert "wf-1-fork already exists (forked from wf-1)" in response.json()["detail"]
    assert await executor.communicator.receive_nothing(timeout=0.2)
    [record] = await audits("workflow.fork")
    assert record.result == "failed"


async def test_restart_forks_from_step_zero_on_typescript(orders: Application) -> None:
    executor = await connect_executor(language="typescript", dbos_version="5.0.2")
    try:
        client = await operator_client()
        response, (_, fork) = await acting(
            executor,
            client.post("/api/v1/apps/orders/workflows/wf-1/restart", content_type=JSON),
            {"output": row(status="ERROR")},
            {"new_workflow_id": "fresh"},
        )
    finally:
        await executor.communicator.disconnect()
    assert response.status_code == 200, response.content
    assert (fork["type"], fork["body"]["start_step"]) == ("fork_workflow", 0)
    assert fork["body"]["new_workflow_id"] is None


async def test_rewind_goes_to_an_executor_that_can_rewind(orders: Application) -> None:
    old = await connect_executor(language="typescript", dbos_version="5.0.2")
    new = await connect_executor(language="python", dbos_version="3.2.0")
    try:
        client = await operator_client()
        calling = asyncio.create_task(
            client.post(
                "/api/v1/apps/orders/workflows/wf-1/rewind",
                {"start_step": 2},
                content_type="application/json",
            )
        )
        # The lookup goes to the most recent executor; the rewind to the capable one.
        await new.answer("get_workflow", output=row(status="ERROR"))
        rewind = await new.answer("rewind_workflow", success=True)
        response = await calling
    finally:
        await old.communicator.disconnect()
        await new.communicator.disconnect()
    assert response.status_code == 200, response.content
    assert rewind["body"] == {"workflow_id": "wf-1", "start_step": 2}


async def test_rewind_is_refused_when_no_executor_can_rewind(orders: Application) -> None:
    executor = await connect_executor(language="typescript", dbos_version="5.0.2")
    try:
        client = await operator_client()
        response, _ = await acting(
            executor,
            client.post("/api/v1/apps/orders/workflows/wf-1/rewind", content_type=JSON),
            {"output": row(status="ERROR")},
        )
    finally:
        await executor.communicator.disconnect()
    assert response.status_code == 409
    assert response.json()["detail"] == actions.NO_REWIND_EXECUTOR


async def test_fork_from_failure_sends_exactly_one_mode(
    orders: Application, executor: FakeExecutor
) -> None:
    client = await operator_client()
    response, (_, fork) = await acting(
        executor,
        client.post(
            "/api/v1/apps/orders/workflows/wf-1/fork-from-failure",
            {"mode": "step_name", "step_name": "charge"},
            content_type="application/json",
        ),
        {"output": row(status="ERROR")},
        {"forked_workflow_ids": ["f-1"]},
    )
    assert response.status_code == 200, response.content
    assert fork["body"] == {"workflow_ids": ["wf-1"], "from_step_name": "charge"}
    assert response.json()["new_workflow_ids"] == ["f-1"]


async def test_a_viewer_may_not_act_and_the_refusal_is_audited(
    orders: Application, executor: FakeExecutor
) -> None:
    viewer = await sync_to_async(make_user)(username="vera", role="viewer")
    client = AsyncClient()
    await client.aforce_login(viewer)
    response = await client.post("/api/v1/apps/orders/workflows/wf-1/cancel", content_type=JSON)
    assert response.status_code == 403
    [record] = await audits("access.denied")
    assert (record.actor_name, record.application_name) == ("vera", "orders")
    assert await executor.communicator.receive_nothing(timeout=0.2)


async def test_bad_bodies_are_400s(orders: Application, executor: FakeExecutor) -> None:
    client = await operator_client()
    negative = await client.post(
        "/api/v1/apps/orders/workflows/wf-1/fork",
        {"start_step": -1},
        content_type="application/json",
    )
    assert negative.status_code == 400
    response, _ = await acting(
        executor,
        client.post(
            "/api/v1/apps/orders/workflows/wf-1/fork-from-failure",
            {"mode": "step"},
            content_type="application/json",
        ),
        {"output": row(status="ERROR")},
    )
    assert response.status_code == 400
    assert response.json()["detail"] == actions.STEP_NEEDED


# What is offered, by status and SDK: no I/O.


def executor_of(language: str, version: str) -> Executor:
    return Executor(language=language, dbos_version=version)


@pytest.mark.parametrize(
    ("status", "allowed"),
    [
        ("PENDING", {"cancel", "fork"}),
        ("ENQUEUED", {"cancel", "fork"}),
        ("DELAYED", {"cancel", "resume", "fork"}),
        ("SUCCESS", {"restart", "fork", "rewind", "delete"}),
        ("ERROR", {"restart", "fork", "fork_from_failure", "rewind", "delete"}),
        ("CANCELLED", {"resume", "restart", "fork", "fork_from_failure", "rewind", "delete"}),
        (
            "MAX_RECOVERY_ATTEMPTS_EXCEEDED",
            {"cancel", "resume", "restart", "fork", "fork_from_failure", "rewind", "delete"},
        ),
    ],
)
def test_what_is_offered_follows_the_status(status: str, allowed: set[str]) -> None:
    offered = offers(Workflow("wf-1", status=status), [executor_of("python", "3.2.0")])
    assert {offer.action.value for offer in offered if offer.allowed} == allowed
    assert all(offer.why_not for offer in offered if not offer.allowed)


@pytest.mark.parametrize(
    ("language", "version", "rewinds", "first_step"),
    [
        ("python", "3.2.0", True, 1),
        ("python", "2.31.1", False, 1),
        ("typescript", "5.0.2", False, 0),
        ("typescript", "5.1.10", True, 0),
        ("go", "0.9.0", False, 1),
    ],
)
def test_what_an_sdk_can_do(language: str, version: str, rewinds: bool, first_step: int) -> None:
    sdk = Sdk.of(executor_of(language, version))
    assert (sdk.can_rewind, sdk.first_step) == (rewinds, first_step)


def test_rewind_is_not_offered_without_an_executor_that_can() -> None:
    [rewind] = [
        offer
        for offer in offers(Workflow("wf-1", status="ERROR"), [executor_of("typescript", "5.0.2")])
        if offer.action is Action.REWIND
    ]
    assert (rewind.allowed, rewind.why_not) == (False, actions.NO_REWIND_EXECUTOR)


@pytest.mark.parametrize(
    ("action", "body"),
    [
        ("delete", "true"),
        ("delete", "null"),
        ("restart", "[null, null]"),
        ("cancel", '"x"'),
        ("delete", '{"delete_children": 1}'),
        ("cancel", '{"cancel_children": true, "cancel_childern": true}'),
        ("fork", '{"start_step": false}'),
        ("fork", '{"start_step": "3"}'),
        ("fork-from-failure", '{"mode": "step", "start_step": 2.5}'),
    ],
)
async def test_a_body_that_is_not_the_documented_object_is_refused_before_anything_is_sent(
    orders: Application, executor: FakeExecutor, action: str, body: str
) -> None:
    client = await operator_client()
    response = await client.post(
        f"/api/v1/apps/orders/workflows/wf-1/{action}", body, content_type=JSON
    )
    assert response.status_code == 400, response.content
    assert response.json()["detail"][0]["loc"][:2] == ["body", "body"]
    assert await executor.communicator.receive_nothing(timeout=0.1)
    refused = AuditRecord.objects.filter(action__startswith="workflow.")
    assert not await refused.aexists()


async def test_a_whole_number_may_be_written_with_a_zero_fraction(
    orders: Application, executor: FakeExecutor
) -> None:
    client = await operator_client()
    calling = client.post(
        "/api/v1/apps/orders/workflows/wf-1/fork", '{"start_step": 2.0}', content_type=JSON
    )
    response, (_, fork) = await acting(
        executor,
        calling,
        {"output": row(status="ERROR")},
        {"new_workflow_id": "wf-2"},
    )
    assert response.status_code == 200, response.content
    assert fork["body"]["start_step"] == 2
