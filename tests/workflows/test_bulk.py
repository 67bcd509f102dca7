"""Stories about bulk actions: a selection fixed up front, sent in bounded batches by a
background job, each workflow's outcome recorded and audited, and a job that survives a
restart of StepChange without doing anything twice."""

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient
from django.utils import timezone

from stepchange.models import Application, AuditRecord
from tests.conftest import make_user
from tests.fake_executor import FakeExecutor, connect_executor
from workflows import jobs
from workflows.models import BulkJob, BulkJobItem

# The job runner is one of the server's background loops.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("background")]


def row(workflow_id: str, status: str) -> dict[str, Any]:
    return {"WorkflowUUID": workflow_id, "Status": status, "CreatedAt": "1795300787000"}


async def operator_client() -> AsyncClient:
    operator = await sync_to_async(make_user)(username="otto", role="operator")
    client = AsyncClient()
    await client.aforce_login(operator)
    return client


async def finished(job_id: int) -> BulkJob:
    for _ in range(200):
        job = await BulkJob.objects.aget(pk=job_id)
        if job.finished:
            return job
        await asyncio.sleep(0.02)
    items = [
        (i.workflow_id, i.state, i.detail) async for i in BulkJobItem.objects.filter(job_id=job_id)
    ]
    raise AssertionError(f"bulk job {job_id} never finished {job.state} {job.detail} {items}")


async def items_of(job_id: int) -> dict[str, BulkJobItem]:
    return {
        item.workflow_id: item
        async for item in BulkJobItem.objects.filter(job_id=job_id).order_by("pk")
    }


async def start(
    client: AsyncClient, executor: FakeExecutor, body: dict[str, Any], rows: list[Any]
) -> Any:
    """POST a bulk action while the executor answers the selection's list_workflows."""
    posting = asyncio.create_task(
        client.post("/api/v1/apps/orders/bulk-actions", body, content_type="application/json")
    )
    listing = await executor.answer("list_workflows", output=rows)
    response = await posting
    assert response.status_code == 201, response.content
    return response.json(), listing


async def test_a_bulk_cancel_sends_the_chosen_workflows_in_one_request_and_audits_each(
    orders: Application, executor: FakeExecutor
) -> None:
    client = await operator_client()
    job, listing = await start(
        client,
        executor,
        {"action": "cancel", "workflow_ids": ["a", "b", "c"], "reason": "incident 42"},
        [row("a", "PENDING"), row("b", "ENQUEUED"), row("c", "SUCCESS")],
    )
    assert listing["body"]["workflow_uuids"] == ["a", "b", "c"]
    assert job["progress"]["pending"] == 2
    assert job["progress"]["skipped"] == 1
    cancel = await executor.answer("cancel", success=True)
    assert (cancel["workflow_id"], cancel["workflow_ids"]) == ("a", ["a", "b"])
    done = await finished(job["id"])
    assert done.state == "done"
    items = await items_of(job["id"])
    assert [items[w].state for w in "abc"] == ["ok", "ok", "skipped"]
    assert items["c"].detail.startswith("The workflow is SUCCESS")
    assert items["a"].request_id == cancel["request_id"]
    records = [r async for r in AuditRecord.objects.filter(action="workflow.cancel")]
    assert sorted(r.target for r in records) == ["a", "b"]
    assert {(r.request_id, r.reason, r.result) for r in records} == {
        (cancel["request_id"], "incident 42", "ok")
    }
    assert await AuditRecord.objects.filter(action="bulk.create").acount() == 1


async def test_a_large_selection_goes_in_bounded_batches(
    orders: Application, executor: FakeExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs, "BATCH_SIZE", 2)
    client = await operator_client()
    ids = [f"wf-{n}" for n in range(5)]
    job, _ = await start(
        client,
        executor,
        {"action": "delete", "filters": {"status": "SUCCESS"}, "delete_children": True},
        [row(workflow_id, "SUCCESS") for workflow_id in ids],
    )
    sent = [await executor.answer("delete", success=True) for _ in range(3)]
    assert [request["workflow_ids"] for request in sent] == [ids[0:2], ids[2:4], ids[4:5]]
    assert all(request["delete_children"] for request in sent)
    assert (await finished(job["id"])).state == "done"
    assert job["selection"] == "filter status=SUCCESS"


async def test_the_preview_counts_before_anything_is_sent(
    orders: Application, executor: FakeExecutor
) -> None:
    client = await operator_client()
    posting = asyncio.create_task(
        client.post(
            "/api/v1/apps/orders/bulk-actions/preview",
            {"action": "resume", "filters": {"status": "ERROR,CANCELLED"}},
            content_type="application/json",
        )
    )
    await executor.answer(
        "list_workflows",
        output=[row("a", "ERROR"), row("b", "CANCELLED"), row("c", "CANCELLED")],
    )
    preview = (await posting).json()
    assert preview["count"] == 3
    assert preview["by_status"] == {"ERROR": 1, "CANCELLED": 2}
    assert preview["skipped"] == 1  # resuming an ERROR workflow would do nothing
    assert await executor.communicator.receive_nothing(timeout=0.2)
    assert not await BulkJob.objects.aexists()


async def test_a_job_with_no_executor_stops_and_a_retry_sends_the_rest(
    orders: Application, executor: FakeExecutor
) -> None:
    client = await operator_client()
    job, _ = await start(
        client, executor, {"action": "cancel", "workflow_ids": ["a"]}, [row("a", "PENDING")]
    )
    # The executor goes away before the job sends anything.
    await executor.communicator.disconnect()
    stopped = await finished(job["id"])
    assert stopped.state == "failed"
    assert stopped.detail.startswith("Stopped: No executor")
    assert (await items_of(job["id"]))["a"].state == "pending"
    again = await connect_executor()
    try:
        response = await client.post(f"/api/v1/apps/orders/bulk-actions/{job['id']}/retry")
        assert response.status_code == 200
        cancel = await again.answer("cancel", success=True)
        assert cancel["workflow_ids"] == ["a"]
        assert (await finished(job["id"])).state == "done"
    finally:
        await again.communicator.disconnect()
    assert await AuditRecord.objects.filter(action="bulk.retry").acount() == 1


async def job_left_behind(orders: Application, action: str, states: dict[str, str]) -> BulkJob:
    """A job a stopped process was running: its lease has run out."""

    def make() -> BulkJob:
        job = BulkJob.objects.create(
            application=orders,
            action=action,
            created_by_name="otto",
            state=BulkJob.State.RUNNING,
            started_at=timezone.now() - timedelta(minutes=5),
            lease_until=timezone.now() - timedelta(seconds=1),
        )
        for workflow_id, state in states.items():
            BulkJobItem.objects.create(job=job, workflow_id=workflow_id, state=state)
        return job

    return await sync_to_async(make)()


async def test_after_a_restart_a_cancel_job_sends_again_what_it_never_heard_back_about(
    orders: Application, executor: FakeExecutor
) -> None:
    job = await job_left_behind(orders, "cancel", {"a": "ok", "b": "sent", "c": "pending"})
    running = asyncio.create_task(jobs.run_next())
    cancel = await executor.answer("cancel", success=True)
    assert await running
    assert cancel["workflow_ids"] == ["b", "c"]
    items = await items_of(job.pk)
    assert [items[w].state for w in "abc"] == ["ok", "ok", "ok"]


async def test_after_a_restart_a_fork_job_never_forks_twice(
    orders: Application, executor: FakeExecutor
) -> None:
    job = await job_left_behind(
        orders, "fork_from_failure", {"forked": "sent", "not-yet": "sent", "later": "pending"}
    )
    running = asyncio.create_task(jobs.run_next())
    # StepChange looks for forks of each unanswered item before sending anything again.
    lookup = await executor.answer(
        "list_workflows", output=[row("fork-of-forked", "PENDING") | {"ForkedFrom": "forked"}]
    )
    assert lookup["body"]["forked_from"] == ["forked"]
    await executor.answer("list_workflows", output=[])
    fork = await executor.answer("fork_from_failure", forked_workflow_ids=["f1", "f2"])
    assert await running
    assert fork["body"]["workflow_ids"] == ["not-yet", "later"]
    items = await items_of(job.pk)
    assert items["forked"].new_workflow_id == "fork-of-forked"
    assert items["forked"].detail.startswith("Forked (found after StepChange restarted)")
    assert (items["not-yet"].new_workflow_id, items["later"].new_workflow_id) == ("f1", "f2")


async def test_a_fork_batch_whose_answer_never_comes_is_reported_not_resent(
    orders: Application, executor: FakeExecutor, settings: Any
) -> None:
    settings.RELAY_TIMEOUT_SECONDS = 0.3
    job = await job_left_behind(orders, "fork_from_failure", {"a": "pending"})
    running = asyncio.create_task(jobs.run_next())
    await executor.receive()  # the fork_from_failure, never answered
    assert await running
    item = (await items_of(job.pk))["a"]
    assert item.state == "unknown"
    assert "the answer never came" in item.detail
    assert (await BulkJob.objects.aget(pk=job.pk)).state == "done"
    assert await executor.communicator.receive_nothing(timeout=0.2)


async def test_a_viewer_may_not_start_a_bulk_action(orders: Application) -> None:
    viewer = await sync_to_async(make_user)(username="vera", role="viewer")
    client = AsyncClient()
    await client.aforce_login(viewer)
    response = await client.post(
        "/api/v1/apps/orders/bulk-actions",
        {"action": "cancel", "workflow_ids": ["a"]},
        content_type="application/json",
    )
    assert response.status_code == 403
    assert await AuditRecord.objects.filter(action="access.denied").acount() == 1
    assert not await BulkJob.objects.aexists()


async def test_a_bulk_action_needs_a_selection(orders: Application) -> None:
    client = await operator_client()
    response = await client.post(
        "/api/v1/apps/orders/bulk-actions", {"action": "cancel"}, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["detail"] == "Give workflow_ids or filters."


async def test_refused_bulk_attempts_are_audited(orders: Application) -> None:
    client = await operator_client()
    # No executor and no system database: the selection cannot be made.
    response = await client.post(
        "/api/v1/apps/orders/bulk-actions",
        {"action": "cancel", "filters": {"status": "PENDING"}},
        content_type="application/json",
    )
    assert response.status_code == 503
    record = await AuditRecord.objects.aget(action="bulk.create")
    assert record.result == "failed"
    assert record.detail.startswith("Could not select the workflows: No executor")
    done = await job_left_behind(orders, "cancel", {"a": "ok"})
    await BulkJob.objects.filter(pk=done.pk).aupdate(state=BulkJob.State.DONE)
    again = await client.post(f"/api/v1/apps/orders/bulk-actions/{done.pk}/retry")
    assert again.status_code == 409
    retry = await AuditRecord.objects.aget(action="bulk.retry")
    assert (retry.result, retry.detail) == (
        "failed",
        jobs.NOT_STOPPED.format(job_id=done.pk, state="done"),
    )


async def test_a_batch_whose_executor_drops_it_is_sent_again_once_it_is_back(
    orders: Application, executor: FakeExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An executor whose StepChange process died reconnects to another within seconds: the
    # job pauses between tries instead of spending them all at once.
    monkeypatch.setattr(jobs, "RETRY_PAUSE_SECONDS", 1.0)
    job = await job_left_behind(orders, "cancel", {"a": "pending"})
    running = asyncio.create_task(jobs.run_next())
    first = await executor.receive()
    assert first["type"] == "cancel"
    await executor.communicator.disconnect()
    back = await connect_executor()
    try:
        cancel = await back.answer("cancel", success=True)
        assert cancel["workflow_ids"] == ["a"]
        assert await running
    finally:
        await back.communicator.disconnect()
    done = await BulkJob.objects.aget(pk=job.pk)
    assert done.state == "done", done.detail
    assert (await items_of(job.pk))["a"].state == "ok"
