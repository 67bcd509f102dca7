"""Stories about executors that go away, and the work StepChange recovers for them."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.test import AsyncClient

from conductor import recovery
from conductor.models import Executor, PoisonWorkflow, RecoveryAttempt
from stepchange.models import Application, AuditRecord
from tests.conftest import make_user
from tests.fake_executor import FakeExecutor, connect_executor

pytestmark = pytest.mark.django_db(transaction=True)


async def die(executor: FakeExecutor, code: int = 1006) -> None:
    """The executor's socket ends: by default as a crash does (no close frame)."""
    await executor.communicator.disconnect(code=code)
    for _ in range(100):
        state = await sync_to_async(
            lambda: Executor.objects.get(executor_id=executor.executor_id).state
        )()
        if state != "connected":
            return
        await asyncio.sleep(0.01)


async def grace(orders: Application, seconds: int) -> None:
    orders.recovery_grace_seconds = seconds
    await sync_to_async(orders.save)()


async def recover_through(survivor: FakeExecutor, dead: FakeExecutor, pending: list[str]) -> None:
    """Answer the three requests a recovery sends, as a live executor would."""
    exists = await survivor.answer("exist_pending_workflows", exist=bool(pending))
    assert exists["executor_id"] == dead.executor_id
    assert exists["application_version"] == dead.version
    if not pending:
        return
    listing = await survivor.answer(
        "list_workflows", output=[{"WorkflowUUID": wf, "Status": "PENDING"} for wf in pending]
    )
    assert listing["body"]["executor_id"] == [dead.executor_id]
    assert listing["body"]["status"] == ["PENDING"]
    sent = await survivor.answer("recovery", success=True)
    assert sent["executor_ids"] == [dead.executor_id]


async def test_a_gone_executor_is_recovered_onto_one_of_the_same_version(
    orders: Application,
) -> None:
    await grace(orders, 0)
    crashed, survivor = await connect_executor(), await connect_executor()
    await die(crashed)
    sweeping = asyncio.create_task(recovery.sweep())
    await recover_through(survivor, crashed, ["wf-left-pending"])
    [attempt] = await sweeping
    assert attempt.outcome == "sent"
    assert attempt.target_executor_id == survivor.executor_id
    assert attempt.pending_workflow_ids == ["wf-left-pending"]
    row = await sync_to_async(Executor.objects.get)(executor_id=crashed.executor_id)
    assert row.state == "recovered"
    record = await sync_to_async(AuditRecord.objects.get)(action="executor.recovery")
    assert record.actor_name == recovery.AUTOMATIC
    assert record.parameters["pending_workflow_ids"] == ["wf-left-pending"]
    assert await recovery.sweep() == []
    await survivor.communicator.disconnect()


async def test_nothing_happens_within_the_grace_period(orders: Application) -> None:
    await grace(orders, 3600)
    crashed, survivor = await connect_executor(), await connect_executor()
    await die(crashed)
    assert await recovery.sweep() == []
    assert await survivor.communicator.receive_nothing(timeout=0.1)
    await survivor.communicator.disconnect()


async def test_recovery_waits_for_an_executor_of_the_same_version(orders: Application) -> None:
    await grace(orders, 0)
    crashed = await connect_executor(version="v1")
    newer = await connect_executor(version="v2")
    await die(crashed)
    [waiting] = await recovery.sweep()
    assert waiting.outcome == "waiting"
    assert await newer.communicator.receive_nothing(timeout=0.1)
    same = await connect_executor(version="v1")
    sweeping = asyncio.create_task(recovery.sweep())
    await recover_through(same, crashed, ["wf-1"])
    [sent] = await sweeping
    assert sent.outcome == "sent"
    for fake in (newer, same):
        await fake.communicator.disconnect()


async def test_an_executor_with_nothing_pending_is_simply_marked_recovered(
    orders: Application,
) -> None:
    await grace(orders, 0)
    crashed, survivor = await connect_executor(), await connect_executor()
    await die(crashed)
    sweeping = asyncio.create_task(recovery.sweep())
    await recover_through(survivor, crashed, [])
    [attempt] = await sweeping
    assert attempt.outcome == "nothing_pending"
    await survivor.communicator.disconnect()


async def test_a_workflow_that_kills_executor_after_executor_is_held_as_poison(
    orders: Application,
) -> None:
    await grace(orders, 0)
    first, second = await connect_executor(), await connect_executor()
    await die(first)
    sweeping = asyncio.create_task(recovery.sweep())
    await recover_through(second, first, ["wf-poison", "wf-innocent"])
    assert (await sweeping)[0].outcome == "sent"
    # The second executor picked the poison workflow up and died of it too.
    third = await connect_executor()
    await die(second)
    sweeping = asyncio.create_task(recovery.sweep())
    await third.answer("exist_pending_workflows", exist=True)
    await third.answer("list_workflows", output=[{"WorkflowUUID": "wf-poison"}])
    [held] = await sweeping
    assert held.outcome == "held"
    assert "wf-poison" in held.detail
    poison = await sync_to_async(PoisonWorkflow.objects.get)(workflow_id="wf-poison")
    assert poison.executors_killed == 2
    assert poison.executor_ids == [first.executor_id, second.executor_id]
    innocent = await sync_to_async(PoisonWorkflow.objects.get)(workflow_id="wf-innocent")
    assert innocent.executors_killed == 1
    # Nothing more is sent until an operator deals with it.
    assert await recovery.sweep() == []
    assert await third.communicator.receive_nothing(timeout=0.1)
    # Once it is resolved (cancelled), recovery of the rest goes ahead.
    await sync_to_async(PoisonWorkflow.objects.filter(pk=poison.pk).update)(
        resolved_at=poison.last_seen_at, resolution="cancelled"
    )
    sweeping = asyncio.create_task(recovery.sweep())
    await recover_through(third, second, ["wf-other"])
    assert (await sweeping)[0].outcome == "sent"
    await third.communicator.disconnect()


@pytest.mark.parametrize("code", [1000, 1001])
async def test_a_clean_close_with_work_still_pending_is_recovered_once_not_as_a_death(
    orders: Application, code: int
) -> None:
    await grace(orders, 0)
    closed, survivor = await connect_executor(), await connect_executor()
    await die(closed, code=code)
    sweeping = asyncio.create_task(recovery.sweep())
    await recover_through(survivor, closed, ["wf-still-pending"])
    [attempt] = await sweeping
    assert attempt.outcome == "sent"
    assert f"closed cleanly (code {code})" in attempt.detail
    # Not a death: no poison tally, and not recovered again.
    assert not await PoisonWorkflow.objects.filter(workflow_id="wf-still-pending").aexists()
    assert await recovery.sweep() == []
    assert await survivor.communicator.receive_nothing(timeout=0.1)
    await survivor.communicator.disconnect()


async def test_a_clean_close_with_nothing_pending_sends_no_recovery(orders: Application) -> None:
    await grace(orders, 0)
    closed, survivor = await connect_executor(), await connect_executor()
    await die(closed, code=1000)
    sweeping = asyncio.create_task(recovery.sweep())
    # Its work was finished, or a live executor took it: nothing is PENDING on it.
    await recover_through(survivor, closed, [])
    [attempt] = await sweeping
    assert attempt.outcome == "nothing_pending"
    assert await survivor.communicator.receive_nothing(timeout=0.1)
    assert await recovery.sweep() == []
    await survivor.communicator.disconnect()


async def test_an_operator_recovers_a_gone_executor_by_hand(orders: Application) -> None:
    await grace(orders, 3600)
    crashed, survivor = await connect_executor(), await connect_executor()
    await die(crashed)
    operator = await sync_to_async(make_user)(username="otto", role="operator")
    client = AsyncClient()
    await client.aforce_login(operator)
    posting = asyncio.create_task(
        client.post(
            "/api/v1/apps/orders/recovery",
            {"executor_ids": [crashed.executor_id]},
            content_type="application/json",
        )
    )
    await recover_through(survivor, crashed, ["wf-1"])
    response = await posting
    assert response.status_code == 200, response.content
    [attempt] = response.json()
    assert (attempt["outcome"], attempt["manual"], attempt["requested_by"]) == (
        "sent",
        True,
        "otto",
    )
    record = await sync_to_async(AuditRecord.objects.get)(action="executor.recovery")
    assert record.actor_name == "otto"
    await survivor.communicator.disconnect()


@pytest.mark.parametrize(
    ("executor_ids", "status", "detail"),
    [([], 400, "at least one"), (["ghost"], 404, "No executor ghost"), (None, 409, "twice")],
)
async def test_manual_recovery_refuses_what_it_cannot_do(
    orders: Application, executor_ids: list[str] | None, status: int, detail: str
) -> None:
    live = await connect_executor()
    operator = await sync_to_async(make_user)(username="otto", role="operator")
    client = AsyncClient()
    await client.aforce_login(operator)
    response = await client.post(
        "/api/v1/apps/orders/recovery",
        {"executor_ids": [live.executor_id] if executor_ids is None else executor_ids},
        content_type="application/json",
    )
    assert response.status_code == status
    assert detail in response.json()["detail"]
    # The refused attempt is audited, with why.
    record = await sync_to_async(AuditRecord.objects.get)(action="executor.recovery")
    assert (record.result, record.actor_name) == ("failed", "otto")
    assert detail in record.detail
    await live.communicator.disconnect()


async def test_a_viewer_may_not_trigger_recovery(orders: Application) -> None:
    viewer: User = await sync_to_async(make_user)(username="vera", role="viewer")
    client = AsyncClient()
    await client.aforce_login(viewer)
    response = await client.post(
        "/api/v1/apps/orders/recovery", {"executor_ids": ["x"]}, content_type="application/json"
    )
    assert response.status_code == 403
    assert await sync_to_async(
        AuditRecord.objects.filter(action="access.denied", actor_name="vera").exists
    )()
    assert not await sync_to_async(RecoveryAttempt.objects.exists)()
