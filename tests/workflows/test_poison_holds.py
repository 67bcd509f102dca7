"""Stories about poison holds: cancelling or deleting a held workflow any way clears the
hold, and the API lists, cancels and dismisses holds like the console."""

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from conductor.models import PoisonWorkflow
from stepchange.models import Application, AuditRecord
from tests.conftest import make_user
from tests.fake_executor import FakeExecutor
from tests.workflows.test_actions import JSON, acting, operator_client, row

pytestmark = pytest.mark.django_db(transaction=True)


async def hold(application: Application, workflow_id: str = "wf-1") -> None:
    await PoisonWorkflow.objects.acreate(
        application=application, workflow_id=workflow_id, executors_killed=2
    )


async def still_held(workflow_id: str = "wf-1") -> bool:
    return await PoisonWorkflow.objects.filter(
        workflow_id=workflow_id, resolved_at__isnull=True
    ).aexists()


@pytest.mark.parametrize(("action", "status"), [("cancel", "PENDING"), ("delete", "ERROR")])
async def test_cancelling_or_deleting_a_held_workflow_through_the_api_clears_its_hold(
    orders: Application, executor: FakeExecutor, action: str, status: str
) -> None:
    await hold(orders)
    client = await operator_client()

    response, _ = await acting(
        executor,
        client.post(f"/api/v1/apps/orders/workflows/wf-1/{action}", content_type=JSON),
        {"output": row(status=status)},
        {"success": True},
    )

    assert response.status_code == 200, response.content
    assert not await still_held()
    assert await AuditRecord.objects.filter(action=f"poison.{action}").aexists()
    listed = await client.get("/api/v1/apps/orders/poison")
    assert listed.json() == []


async def test_a_failed_cancel_leaves_the_hold(orders: Application, executor: FakeExecutor) -> None:
    await hold(orders)
    client = await operator_client()

    response, _ = await acting(
        executor,
        client.post("/api/v1/apps/orders/workflows/wf-1/cancel", content_type=JSON),
        {"output": row()},
        {"success": False},
    )

    assert response.status_code == 502
    assert await still_held()


async def test_the_api_lists_and_cancels_a_poison_hold(
    orders: Application, executor: FakeExecutor
) -> None:
    await hold(orders)
    client = await operator_client()
    listed = await client.get("/api/v1/apps/orders/poison")
    assert [p["workflow_id"] for p in listed.json()] == ["wf-1"]

    response, (cancel,) = await acting(
        executor,
        client.post(
            "/api/v1/apps/orders/poison/wf-1/cancel", {"reason": "kills pods"}, content_type=JSON
        ),
        {"success": True},
    )

    assert response.status_code == 204, response.content
    assert cancel["type"] == "cancel"
    assert not await still_held()
    audit = await AuditRecord.objects.aget(action="poison.cancel")
    assert audit.reason == "kills pods"


async def test_the_api_dismisses_a_hold_for_an_operator_only(orders: Application) -> None:
    await hold(orders)
    viewer = await sync_to_async(make_user)(username="vic", role="viewer")
    watching = AsyncClient()
    await watching.aforce_login(viewer)
    refused = await watching.post("/api/v1/apps/orders/poison/wf-1/dismiss", content_type=JSON)
    assert refused.status_code == 403
    assert await still_held()

    client = await operator_client()
    response = await client.post("/api/v1/apps/orders/poison/wf-1/dismiss", content_type=JSON)

    assert response.status_code == 204, response.content
    assert not await still_held()
    assert await AuditRecord.objects.filter(action="poison.dismiss").aexists()
    gone = await client.post("/api/v1/apps/orders/poison/wf-1/dismiss", content_type=JSON)
    assert gone.status_code == 404


async def test_a_poison_decision_refuses_an_unknown_field_or_a_number_for_a_reason(
    orders: Application,
) -> None:
    await hold(orders)
    client = await operator_client()
    for body in ({"reason": "ok", "force": True}, {"reason": 5}):
        response = await client.post(
            "/api/v1/apps/orders/poison/wf-1/dismiss", body, content_type=JSON
        )
        assert response.status_code == 400, (body, response.content)
    assert await still_held()
    assert not await AuditRecord.objects.filter(action="poison.dismiss").aexists()
