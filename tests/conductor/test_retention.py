"""Stories about retention: an admin sets an application's rules and sends them to one
executor, and each StepChange process sends them again once per interval."""

import asyncio
import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient
from django.utils import timezone

from conductor import retention
from conductor.protocol import RetentionBody, RetentionRequest, encode_request
from stepchange.models import Application, AuditRecord
from tests.conftest import make_user
from tests.fake_executor import FakeExecutor, connect_executor

pytestmark = pytest.mark.django_db(transaction=True)

API = "/api/v1/apps/orders/retention"
PAGE = "/apps/orders/retention/"
PERSONAS = {
    "stranger": ("sam", None),
    "viewer": ("vera", "viewer"),
    "operator": ("otto", "operator"),
    "admin": ("ada", "admin"),
}
NO_RULES = {"retention_days": None, "retention_rows": None, "retention_timeout_hours": None}


async def client_for(persona: str | None) -> AsyncClient:
    client = AsyncClient()
    if persona is not None:
        username, role = PERSONAS[persona]
        await client.aforce_login(await sync_to_async(make_user)(username=username, role=role))
    return client


async def set_rules(application: Application, **rules: int | None) -> None:
    for name, value in (NO_RULES | rules).items():
        setattr(application, name, value)
    await sync_to_async(application.save)()


async def reloaded(application: Application) -> Application:
    fresh: Application = await sync_to_async(Application.objects.get)(pk=application.pk)
    return fresh


async def records(action: str = retention.ACTION) -> list[AuditRecord]:
    return await sync_to_async(lambda: list(AuditRecord.objects.filter(action=action)))()


async def the_one_asked(fakes: list[FakeExecutor]) -> list[FakeExecutor]:
    """The executors that have a request waiting, once any has (none is consumed)."""
    for _ in range(200):
        asked = [fake for fake in fakes if not await fake.communicator.receive_nothing(0.01)]
        if asked:
            return asked
    raise AssertionError("no executor was asked")


def epoch_ms(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


# The request body


def test_each_rule_is_counted_back_from_now() -> None:
    now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    orders = Application(
        name="orders", retention_days=30, retention_rows=1000, retention_timeout_hours=24
    )
    assert retention.retention_body(orders, now) == RetentionBody(
        gc_cutoff_epoch_ms=1738238400000,  # 2025-01-30 12:00 UTC
        gc_rows_threshold=1000,
        timeout_cutoff_epoch_ms=1740744000000,  # 2025-02-28 12:00 UTC
    )


def test_an_unset_rule_is_sent_as_null_and_never_left_out() -> None:
    body = retention.retention_body(Application(name="orders", retention_rows=10), timezone.now())
    frame = json.loads(encode_request(RetentionRequest(body=body)))
    assert frame["body"] == {
        "gc_cutoff_epoch_ms": None,
        "gc_rows_threshold": 10,
        "timeout_cutoff_epoch_ms": None,
    }


# Sending by hand


async def test_an_admin_sends_retention_to_exactly_one_of_two_executors(
    orders: Application,
) -> None:
    await set_rules(orders, retention_days=30, retention_timeout_hours=24)
    first, second = await connect_executor(), await connect_executor()
    client = await client_for("admin")
    posting = asyncio.create_task(client.post(f"{API}/send"))
    [asked] = await the_one_asked([first, second])
    request = await asked.answer("retention", success=True)
    response = await posting
    assert response.status_code == 200, response.content
    sent = response.json()
    assert (sent["request_id"], sent["executor_id"], sent["success"]) == (
        request["request_id"],
        asked.executor_id,
        True,
    )
    sent_at = datetime.fromisoformat(sent["sent_at"])
    assert request["body"] == {
        "gc_cutoff_epoch_ms": epoch_ms(sent_at - timedelta(days=30)),
        "gc_rows_threshold": None,
        "timeout_cutoff_epoch_ms": epoch_ms(sent_at - timedelta(hours=24)),
    }
    [other] = [fake for fake in (first, second) if fake is not asked]
    assert await other.communicator.receive_nothing(timeout=0.2)
    # The API gives times to the millisecond.
    recorded = (await reloaded(orders)).retention_sent_at
    assert recorded is not None
    assert recorded - sent_at < timedelta(milliseconds=1)
    for fake in (first, second):
        await fake.communicator.disconnect()


async def test_a_send_is_audited_with_its_request_id_and_the_executors_answer(
    orders: Application, executor: FakeExecutor
) -> None:
    await set_rules(orders, retention_rows=500)
    client = await client_for("admin")
    posting = asyncio.create_task(client.post(f"{API}/send"))
    request = await executor.answer("retention", success=True)
    assert (await posting).status_code == 200
    [record] = await records()
    assert (record.actor_name, record.role, record.result) == ("ada", "admin", "ok")
    assert record.request_id == request["request_id"]
    assert record.response == {
        "type": "retention",
        "request_id": request["request_id"],
        "error_message": None,
        "success": True,
    }
    assert record.parameters == {
        **NO_RULES,
        "retention_rows": 500,
        "gc_cutoff_epoch_ms": None,
        "gc_rows_threshold": 500,
        "timeout_cutoff_epoch_ms": None,
    }
    assert executor.executor_id in record.target


async def test_with_a_system_database_too_a_connected_executor_still_runs_retention(
    orders: Application, executor: FakeExecutor
) -> None:
    # Nothing is written there (the file does not even exist): the executor path wins.
    orders.system_database_url = "sqlite:///nowhere/never-opened.sqlite"
    await set_rules(orders, retention_rows=500)
    client = await client_for("admin")
    posting = asyncio.create_task(client.post(f"{API}/send"))
    request = await executor.answer("retention", success=True)
    response = await posting
    assert response.status_code == 200, response.content
    sent = response.json()
    assert (sent["path"], sent["request_id"], sent["deleted"]) == (
        "executor",
        request["request_id"],
        None,
    )


async def test_with_no_executor_connected_the_send_fails_with_503_and_is_audited(
    orders: Application,
) -> None:
    await set_rules(orders, retention_days=7)
    client = await client_for("admin")
    response = await client.post(f"{API}/send")
    assert response.status_code == 503
    assert response.json() == {"detail": "No executor of orders is connected."}
    [record] = await records()
    assert record.result == "failed"
    assert record.detail == "No executor of orders is connected."
    assert record.request_id
    assert record.response is None
    assert (await reloaded(orders)).retention_sent_at is None


async def test_an_executor_that_answers_with_an_error_fails_the_send_with_502(
    orders: Application, executor: FakeExecutor
) -> None:
    await set_rules(orders, retention_days=7)
    client = await client_for("admin")
    posting = asyncio.create_task(client.post(f"{API}/send"))
    await executor.answer("retention", success=False, error_message="database is locked")
    response = await posting
    assert response.status_code == 502
    assert "database is locked" in response.json()["detail"]
    [record] = await records()
    assert record.result == "failed"
    assert record.response is not None
    assert record.response["error_message"] == "database is locked"
    assert (await reloaded(orders)).retention_sent_at is None


async def test_nothing_is_sent_while_no_rule_is_set(
    orders: Application, executor: FakeExecutor
) -> None:
    client = await client_for("admin")
    response = await client.post(f"{API}/send")
    assert response.status_code == 409
    assert response.json() == {"detail": retention.NO_RULE.format(app="orders")}
    assert await executor.communicator.receive_nothing(timeout=0.1)
    # The attempt is audited, as a failure that sent nothing.
    [record] = await records()
    assert (record.result, record.request_id) == ("failed", "")
    assert record.detail == retention.NO_RULE.format(app="orders")


# Reading and changing the rules


async def test_an_admin_changes_the_rules_and_the_change_is_audited(orders: Application) -> None:
    await set_rules(orders, retention_days=90)
    client = await client_for("admin")
    wanted = {"retention_days": None, "retention_rows": 10000, "retention_timeout_hours": 48}
    response = await client.put(API, wanted, content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json() == wanted | {"retention_sent_at": None}
    assert (await client.get(API)).json() == wanted | {"retention_sent_at": None}
    fresh = await reloaded(orders)
    assert (fresh.retention_days, fresh.retention_rows, fresh.retention_timeout_hours) == (
        None,
        10000,
        48,
    )
    [record] = await records("application.update")
    assert record.actor_name == "ada"
    assert record.parameters == {
        "before": NO_RULES | {"retention_days": 90},
        "after": wanted,
    }


@pytest.mark.parametrize(
    "change",
    [
        {"retention_days": 0},
        {"retention_rows": -1},
        {"retention_timeout_hours": 876_001},
        {"retention_days": "30"},
        {"retention_days": 1.5},
        {"retention_rows": True},
    ],
)
async def test_invalid_rules_are_refused_with_400(
    orders: Application, change: dict[str, Any]
) -> None:
    client = await client_for("admin")
    response = await client.put(API, NO_RULES | change, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["detail"]
    assert (await reloaded(orders)).retention_days is None
    assert await records("application.update") == []


async def test_a_put_must_give_all_three_rules(orders: Application) -> None:
    client = await client_for("admin")
    response = await client.put(API, {"retention_days": 30}, content_type="application/json")
    assert response.status_code == 400
    assert (await reloaded(orders)).retention_days is None


# Who may do it

EXPECTED = {None: 401, "stranger": 404, "viewer": 403, "operator": 403, "admin": 200}


@pytest.mark.parametrize("persona", list(EXPECTED))
@pytest.mark.parametrize("method", ["get", "put", "send"])
async def test_only_an_admin_may_read_change_or_send_retention(
    orders: Application, executor: FakeExecutor, persona: str | None, method: str
) -> None:
    await set_rules(orders, retention_days=30)
    client = await client_for(persona)
    if method == "get":
        calling = client.get(API)
    elif method == "put":
        calling = client.put(API, NO_RULES | {"retention_days": 1}, content_type="application/json")
    else:
        calling = client.post(f"{API}/send")
    response_task = asyncio.create_task(calling)
    if method == "send" and persona == "admin":
        await executor.answer("retention", success=True)
    response = await response_task
    assert response.status_code == EXPECTED[persona], response.content
    if persona == "admin":
        return
    assert await executor.communicator.receive_nothing(timeout=0.05)
    assert (await reloaded(orders)).retention_days == 30
    assert await records() == []
    if persona is not None:
        denied = await records("access.denied")
        # Refused (403) or kept from an application they may not see (404): either way a
        # change was attempted, and audited. Reads that miss are not.
        refused = EXPECTED[persona] == 403 or (EXPECTED[persona] == 404 and method != "get")
        assert [record.actor_name for record in denied] == (
            [PERSONAS[persona][0]] if refused else []
        )


@pytest.mark.parametrize("persona", list(EXPECTED))
async def test_only_an_admin_may_open_the_retention_page(
    orders: Application, persona: str | None
) -> None:
    client = await client_for(persona)
    response = await client.get(PAGE)
    if persona is None:
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")
        return
    assert response.status_code == EXPECTED[persona]
    denied = await records("access.denied")
    assert len(denied) == (1 if EXPECTED[persona] == 403 else 0)


async def test_a_viewer_cannot_change_the_rules_from_the_page(orders: Application) -> None:
    client = await client_for("viewer")
    response = await client.post(PAGE, {"retention_days": "1", "send": ""})
    assert response.status_code == 403
    assert (await reloaded(orders)).retention_days is None


async def test_only_admins_see_the_retention_link(orders: Application) -> None:
    admin_page = await (await client_for("admin")).get("/apps/orders/executors/")
    viewer_page = await (await client_for("viewer")).get("/apps/orders/executors/")
    assert PAGE.encode() in admin_page.content
    assert PAGE.encode() not in viewer_page.content


# The console page


async def test_an_admin_reads_the_warning_and_the_current_rules(orders: Application) -> None:
    await set_rules(orders, retention_days=30)
    html = (await (await client_for("admin")).get(PAGE)).content.decode()
    assert "across the <strong>whole system database</strong>" in html
    assert 'name="retention_days" value="30"' in html
    assert "Cancels this application&#x27;s workflows still pending, enqueued or delayed" in html
    assert "Last sent</dt>\n  <dd>never" in html


async def test_an_admin_saves_the_rules_from_the_page(orders: Application) -> None:
    await set_rules(orders, retention_days=30)
    client = await client_for("admin")
    response = await client.post(
        PAGE,
        {"retention_days": "", "retention_rows": "2000", "retention_timeout_hours": "12"},
    )
    assert response.status_code == 302
    fresh = await reloaded(orders)
    assert (fresh.retention_days, fresh.retention_rows, fresh.retention_timeout_hours) == (
        None,
        2000,
        12,
    )
    [record] = await records("application.update")
    assert record.parameters["after"] == {
        "retention_days": None,
        "retention_rows": 2000,
        "retention_timeout_hours": 12,
    }
    assert await records() == []


async def test_the_page_refuses_a_zero_and_saves_nothing(orders: Application) -> None:
    client = await client_for("admin")
    response = await client.post(PAGE, {"retention_days": "0", "retention_rows": ""})
    assert response.status_code == 200
    assert "greater than or equal to 1" in response.content.decode()
    assert (await reloaded(orders)).retention_days is None
    assert await records("application.update") == []


async def test_save_and_send_now_sends_the_new_rules_and_lists_the_send(
    orders: Application, executor: FakeExecutor
) -> None:
    client = await client_for("admin")
    posting = asyncio.create_task(
        client.post(PAGE, {"retention_rows": "100", "retention_timeout_hours": "", "send": ""})
    )
    request = await executor.answer("retention", success=True)
    assert (await posting).status_code == 302
    assert request["body"]["gc_rows_threshold"] == 100
    html = (await client.get(PAGE)).content.decode()
    assert f"Saved and sent to executor {executor.executor_id}" in html
    assert request["request_id"] in html
    assert "never" not in html


async def test_save_and_send_now_without_an_executor_saves_and_says_why_it_did_not_send(
    orders: Application,
) -> None:
    client = await client_for("admin")
    await client.post(PAGE, {"retention_days": "14", "send": ""})
    assert (await reloaded(orders)).retention_days == 14
    html = (await client.get(PAGE)).content.decode()
    assert "Saved, but not sent: No executor of orders is connected." in html
    assert (await records())[0].result == "failed"


# The periodic sender


async def test_the_sweeper_sends_retention_once_per_interval(
    orders: Application, executor: FakeExecutor
) -> None:
    await set_rules(orders, retention_days=30)
    sweeping = asyncio.create_task(retention.retention_sweep())
    request = await executor.answer("retention", success=True)
    [sent] = await sweeping
    assert sent.request_id == request["request_id"]
    [record] = await records()
    assert (record.actor_name, record.result) == (retention.AUTOMATIC, "ok")
    # Within the interval, nothing more is sent.
    assert await retention.retention_sweep() == []
    assert await executor.communicator.receive_nothing(timeout=0.1)
    # Once it has passed, the rules go out again.
    await sync_to_async(Application.objects.filter(pk=orders.pk).update)(
        retention_sent_at=timezone.now() - timedelta(seconds=3601)
    )
    sweeping = asyncio.create_task(retention.retention_sweep())
    await executor.answer("retention", success=True)
    assert len(await sweeping) == 1
    assert len(await records()) == 2


async def test_the_sweeper_sends_nothing_for_an_application_without_a_rule(
    orders: Application, executor: FakeExecutor
) -> None:
    assert await retention.retention_sweep() == []
    assert await executor.communicator.receive_nothing(timeout=0.1)
    assert await records() == []
    assert (await reloaded(orders)).retention_sent_at is None


async def test_the_sweeper_waits_for_a_live_executor(orders: Application) -> None:
    await set_rules(orders, retention_timeout_hours=24)
    assert await retention.retention_sweep() == []
    assert await records() == []
    assert (await reloaded(orders)).retention_sent_at is None


async def test_of_two_processes_claiming_the_same_interval_only_one_wins(
    orders: Application,
) -> None:
    await set_rules(orders, retention_days=30)
    # Both processes read the application before either claimed it.
    mine, theirs = await reloaded(orders), await reloaded(orders)
    now = timezone.now()
    assert await sync_to_async(retention.retention_claim)(mine, now)
    assert not await sync_to_async(retention.retention_claim)(theirs, now)
    assert (await reloaded(orders)).retention_sent_at == now


async def test_the_retention_loop_of_every_process_runs_the_periodic_sender(
    orders: Application, executor: FakeExecutor, settings: Any
) -> None:
    await set_rules(orders, retention_rows=1000)
    settings.RECOVERY_SWEEP_SECONDS = 0.01
    loop = asyncio.create_task(retention.retention_forever())
    try:
        request = await executor.answer("retention", success=True)
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
    assert request["body"]["gc_rows_threshold"] == 1000
