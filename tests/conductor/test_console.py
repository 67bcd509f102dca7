"""Stories about the console pages for executors and the request log, and live updates."""

import re
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import AsyncClient
from django.utils import timezone

from conductor.models import Executor, PoisonWorkflow, RequestLog
from stepchange.asgi import application as asgi_app
from stepchange.models import Application, AuditRecord
from tests.conftest import make_app, make_user, signed_in
from tests.fake_executor import FakeExecutor, connect_executor


def executor_row(application: Application, executor_id: str, **fields: object) -> Executor:
    return Executor.objects.create(
        application=application,
        executor_id=executor_id,
        application_version="v1",
        language="python",
        dbos_version="3.2.0",
        hostname="box",
        channel_name="specific.x!y",
        **fields,
    )


def test_a_viewer_sees_connected_and_gone_executors(viewer: User) -> None:
    orders = make_app(name="orders")
    executor_row(orders, "exec-live", metadata={"region": "eu"})
    executor_row(orders, "exec-gone", state="dead", disconnected_at=timezone.now())
    page = signed_in(viewer).get("/apps/orders/executors/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "exec-live" in html
    assert "{&quot;region&quot;: &quot;eu&quot;}" in html
    assert "exec-gone" in html
    assert "Recover now" not in html  # viewers cannot act


def test_an_operator_is_offered_recovery_and_the_poison_decision(operator: User) -> None:
    orders = make_app(name="orders")
    executor_row(orders, "exec-gone", state="dead", disconnected_at=timezone.now())
    PoisonWorkflow.objects.create(
        application=orders, workflow_id="wf-deadly", executors_killed=2, executor_ids=["a", "b"]
    )
    html = signed_in(operator).get("/apps/orders/executors/").content.decode()
    assert "Recover now" in html
    assert "Poison workflow <code>wf-deadly</code>" in html
    assert "Cancel this workflow" in html


def test_the_executor_page_is_a_404_for_an_application_outside_ones_access(db: None) -> None:
    make_app(name="orders")
    limited = make_user(username="lena", role="viewer", apps=[make_app(name="billing")])
    assert signed_in(limited).get("/apps/orders/executors/").status_code == 404
    assert signed_in(limited).get("/apps/orders/requests/").status_code == 404


def test_a_viewer_may_not_dismiss_a_poison_flag(viewer: User) -> None:
    orders = make_app(name="orders")
    PoisonWorkflow.objects.create(application=orders, workflow_id="wf-deadly", executors_killed=2)
    response = signed_in(viewer).post("/apps/orders/poison/wf-deadly/dismiss/")
    assert response.status_code == 403
    assert AuditRecord.objects.filter(action="access.denied", actor_name="vera").exists()
    assert PoisonWorkflow.objects.get().resolved_at is None


def test_an_operator_dismisses_a_poison_flag_with_a_reason(operator: User) -> None:
    orders = make_app(name="orders")
    PoisonWorkflow.objects.create(application=orders, workflow_id="wf-deadly", executors_killed=2)
    response = signed_in(operator).post(
        "/apps/orders/poison/wf-deadly/dismiss/", {"reason": "it was the disk, not the workflow"}
    )
    assert response.status_code == 302
    assert PoisonWorkflow.objects.get().resolution == "dismiss"
    record = AuditRecord.objects.get(action="poison.dismiss")
    assert record.reason == "it was the disk, not the workflow"
    assert record.actor_name == "otto"


def test_the_request_log_page_filters_and_shows_bodies(viewer: User) -> None:
    orders = make_app(name="orders")
    for n, outcome in enumerate(["ok", "timeout", "ok"]):
        RequestLog.objects.create(
            application=orders,
            request_id=f"r{n}",
            message_type="get_workflow",
            executor_id="exec-1",
            sent_at=timezone.now(),
            outcome=outcome,
            request_body='{"type": "get_workflow"}',
            response_body=f'{{"n": {n}}}',
        )
    client = signed_in(viewer)
    html = client.get("/apps/orders/requests/", {"outcome": "timeout"}).content.decode()
    assert html.count("outcome-timeout") == 1
    assert "outcome-ok" not in html
    entry = RequestLog.objects.get(request_id="r2")
    detail = client.get(f"/apps/orders/requests/{entry.pk}/").content.decode()
    assert "&quot;n&quot;: 2" in detail


@pytest.mark.django_db(transaction=True)
async def test_the_console_socket_needs_a_session_and_an_allowed_origin(
    orders: Application,
) -> None:
    anonymous = WebsocketCommunicator(
        asgi_app, "/ws/console/", headers=[(b"origin", b"http://127.0.0.1:8001")]
    )
    assert (await anonymous.connect())[0] is False
    viewer = await sync_to_async(make_user)(username="vera", role="viewer")
    cookie = await session_cookie(viewer)
    foreign = WebsocketCommunicator(
        asgi_app, "/ws/console/", headers=[(b"origin", b"http://evil.example"), cookie]
    )
    assert (await foreign.connect())[0] is False


@pytest.mark.django_db(transaction=True)
async def test_the_console_hears_executors_come_and_go(orders: Application) -> None:
    viewer = await sync_to_async(make_user)(username="vera", role="viewer")
    console = WebsocketCommunicator(
        asgi_app,
        "/ws/console/",
        headers=[(b"origin", b"http://127.0.0.1:8001"), await session_cookie(viewer)],
    )
    connected, _ = await console.connect()
    assert connected
    executor: FakeExecutor = await connect_executor()
    event = await next_event(console, "executor.connected")
    assert event == {
        "kind": "executor.connected",
        "application_id": orders.pk,
        "executor_id": executor.executor_id,
    }
    await executor.communicator.disconnect()
    assert await next_event(console, "executor.disconnected")
    await console.disconnect()


async def next_event(console: WebsocketCommunicator, kind: str) -> dict[str, object]:
    """The next event of `kind`, passing over others (request-log events interleave)."""
    while True:
        event = await console.receive_json_from(timeout=2)
        if event["kind"] == kind:
            return event


@pytest.mark.django_db(transaction=True)
async def test_the_console_hears_nothing_of_applications_it_may_not_see(
    orders: Application,
) -> None:
    other = await sync_to_async(make_app)(name="billing")
    limited = await sync_to_async(make_user)(username="lena", role="viewer", apps=[other])
    console = WebsocketCommunicator(
        asgi_app,
        "/ws/console/",
        headers=[(b"origin", b"http://127.0.0.1:8001"), await session_cookie(limited)],
    )
    assert (await console.connect())[0]
    executor = await connect_executor()
    assert await console.receive_nothing(timeout=0.3)
    await executor.communicator.disconnect()
    await console.disconnect()


async def session_cookie(user: User) -> tuple[bytes, bytes]:
    client = AsyncClient()
    await client.aforce_login(user)
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


def test_the_executor_route_takes_no_origin_check() -> None:
    # Executors send no Origin header (DESIGN.md); the console route is the one that checks.
    from conductor.routing import websocket_urlpatterns

    executor_route, console_route, _refused = websocket_urlpatterns
    assert "AllowedHostsOriginValidator" not in type(executor_route.callback).__qualname__
    assert type(console_route.callback).__name__ == "OriginValidator"


@pytest.mark.django_db(transaction=True)
async def test_the_console_hears_workflows_change_only_when_a_request_changes_them(
    orders: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read relayed to an executor changes the request log ("requests") and nothing else:
    the lists and the dashboard, which refresh on "workflows", would otherwise refresh on
    their own reads when an executor answers them, and ask again, without end. An action
    changes both."""
    from conductor import events, relay
    from conductor.protocol import CancelRequest, ListQueuesRequest

    monkeypatch.setattr(events, "REQUEST_EVENT_INTERVAL_SECONDS", 0)
    viewer = await sync_to_async(make_user)(username="vera", role="viewer")
    console = WebsocketCommunicator(
        asgi_app,
        "/ws/console/",
        headers=[(b"origin", b"http://127.0.0.1:8001"), await session_cookie(viewer)],
    )
    assert (await console.connect())[0]
    executor = await connect_executor()
    await next_event(console, "executor.connected")

    async def kinds_after(request: object, reply: dict[str, Any]) -> set[str]:
        import asyncio

        asking = asyncio.create_task(relay.request(orders, request))  # type: ignore[arg-type]
        await executor.answer(**reply)
        await asking
        heard = set()
        while not await console.receive_nothing(timeout=0.3):
            heard.add(str((await console.receive_json_from())["kind"]))
        return heard

    assert await kinds_after(ListQueuesRequest(), {"error_message": None, "output": []}) == {
        "requests"
    }
    cancel = CancelRequest(workflow_id="wf-1")
    assert await kinds_after(cancel, {"error_message": None, "success": True}) == {
        "requests",
        "workflows",
    }
    await executor.communicator.disconnect()
    await console.disconnect()


def fleet_of(application: Application, count: int) -> None:
    """`count` connected executors, exec-000 the first to connect and each next one later."""
    start = timezone.now() - timedelta(hours=1)
    Executor.objects.bulk_create(
        Executor(
            application=application,
            executor_id=f"exec-{n:03d}",
            application_version="v1",
            channel_name=f"specific.x!{n}",
            connected_at=start + timedelta(seconds=n),
        )
        for n in range(count)
    )


def rows_shown(html: str) -> list[str]:
    return re.findall(r'href="/apps/orders/executors/(exec-\d+)/"', html)


def test_a_viewer_pages_through_a_fleet_fifty_executors_at_a_time_newest_first(
    viewer: User,
) -> None:
    orders = make_app(name="orders")
    fleet_of(orders, 120)
    client = signed_in(viewer)
    first = client.get("/apps/orders/executors/").content.decode()
    assert '<span class="count">120</span>' in first
    assert rows_shown(first) == [f"exec-{n:03d}" for n in range(119, 69, -1)]
    assert 'href="?page=2"' in first
    assert "Page 1 of 3" in first
    last = client.get("/apps/orders/executors/?page=3").content.decode()
    assert rows_shown(last) == [f"exec-{n:03d}" for n in range(19, -1, -1)]
    assert 'href="?page=2"' in last
    assert 'rel="next"' not in last
    # The live refresh of page 3 asks for page 3 again.
    assert "/apps/orders/executors/?page=3" in last


@pytest.mark.parametrize("page", ["4", "0", "-1", "two", ""])
def test_a_page_of_executors_that_does_not_exist_is_a_400(viewer: User, page: str) -> None:
    orders = make_app(name="orders")
    fleet_of(orders, 120)
    response = signed_in(viewer).get(f"/apps/orders/executors/?page={page}")
    assert response.status_code == 400
    assert response.content.decode() == f"No such page of connected executors: {page}."


def test_an_application_without_executors_has_a_first_page_and_no_pager(viewer: User) -> None:
    make_app(name="orders")
    html = signed_in(viewer).get("/apps/orders/executors/").content.decode()
    assert "No executor is connected." in html
    assert "Pages of connected executors" not in html


def test_a_live_executor_is_never_among_the_gone_ones(viewer: User) -> None:
    orders = make_app(name="orders")
    fleet_of(orders, 60)
    executor_row(orders, "exec-gone", state="dead", disconnected_at=timezone.now())
    html = signed_in(viewer).get("/apps/orders/executors/?page=2").content.decode()
    connected, gone = html.split("<h2>Gone</h2>")
    assert rows_shown(connected) == [f"exec-{n:03d}" for n in range(9, -1, -1)]
    assert "exec-gone" in gone
    assert not rows_shown(gone.split("<h2>Recovery</h2>")[0])
