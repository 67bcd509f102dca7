"""Stories of delivery: a webhook receiver on 127.0.0.1 checks each signature and gets an
alert once though it failed twice; email goes through Django's mail; a channel that keeps
failing is retried with backoff, then marked failed where its admin sees it, never
dropped; the test button sends a sample."""

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone

from alerts import delivery as outbox
from alerts.evaluator import evaluate
from alerts.models import AlertChannel, AlertDelivery, AlertRule
from alerts.services import channel_test, delivery_retry
from conductor.models import Executor
from stepchange.asyncdb import db_async
from stepchange.models import Application, AuditRecord
from tests.alerts.helpers import Receiver, make_channel, make_rule
from tests.conftest import make_app

pytestmark = pytest.mark.django_db(transaction=True)
State = AlertDelivery.State


@pytest.fixture(autouse=True)
def _no_wait(settings: Any) -> None:
    settings.ALERT_RETRY_BASE_SECONDS = 0


@pytest.fixture
def orders() -> Application:
    return make_app()


@pytest.fixture
def flaky() -> Iterator[Receiver]:
    with Receiver([500, 500]) as receiver:
        yield receiver


async def _gone_executor_rule(app: Application, channel: AlertChannel) -> AlertRule:
    def make() -> AlertRule:
        Executor.objects.create(application=app, executor_id="exec-1", state="dead")
        return make_rule(application=app, kind=AlertRule.Kind.EXECUTOR_GONE, channels=[channel])

    return await db_async(make)()


async def test_a_receiver_that_fails_twice_gets_the_alert_once(
    orders: Application, flaky: Receiver
) -> None:
    hook = await db_async(make_channel)(application=orders, url=flaky.url)
    await _gone_executor_rule(orders, hook)
    await evaluate()
    for _ in range(4):
        await outbox.deliver_due()
    assert flaky.calls == 3
    assert flaky.bad_signatures == 0
    assert [m["event"] for m in flaky.received] == ["firing"]
    received = flaky.received[0]
    assert received["alert"]["key"] == "exec-1"
    assert received["link"] == "http://127.0.0.1:8001/apps/orders/executors/exec-1/"
    row = await db_async(AlertDelivery.objects.get)()
    assert (row.state, row.attempts, row.last_error) == (State.DELIVERED, 3, "")


async def test_a_resolved_notice_follows(orders: Application, flaky: Receiver) -> None:
    flaky.statuses.clear()
    hook = await db_async(make_channel)(application=orders, url=flaky.url)
    await _gone_executor_rule(orders, hook)
    await evaluate()
    await db_async(Executor.objects.update)(state="connected")
    await evaluate()
    await outbox.deliver_due()
    assert [m["event"] for m in flaky.received] == ["firing", "resolved"]
    assert flaky.received[1]["alert"]["state"] == "resolved"


async def test_a_wrong_secret_fails_the_signature_check(
    orders: Application, flaky: Receiver
) -> None:
    hook = await db_async(make_channel)(application=orders, url=flaky.url, secret="not-it")
    await _gone_executor_rule(orders, hook)
    await evaluate()
    await outbox.deliver_due()
    assert flaky.bad_signatures == 1
    assert flaky.received == []
    row = await db_async(AlertDelivery.objects.get)()
    assert row.state == State.PENDING
    assert "HTTP 401" in row.last_error


async def test_email_goes_through_djangos_mail(orders: Application, settings: Any) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    channel = await db_async(make_channel)(
        application=orders, url="", kind="email", recipients="ops@example.com", secret=""
    )
    await _gone_executor_rule(orders, channel)
    await evaluate()
    await outbox.deliver_due()
    assert len(mail.outbox) == 1
    sent = mail.outbox[0]
    assert sent.to == ["ops@example.com"]
    assert "orders" in sent.subject
    assert "firing" in sent.subject
    assert "http://127.0.0.1:8001/apps/orders/executors/exec-1/" in sent.body


def test_backoff_doubles_up_to_an_hour(settings: Any) -> None:
    settings.ALERT_RETRY_BASE_SECONDS = 10
    assert [outbox.backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [10, 20, 40, 80]
    assert outbox.backoff(30).total_seconds() == outbox.MAX_BACKOFF_SECONDS


async def test_a_channel_that_keeps_failing_is_marked_failed_not_dropped(
    orders: Application,
) -> None:
    # Nobody listens on port 9 (discard) of this machine: every attempt is refused.
    hook = await db_async(make_channel)(application=orders, url="http://127.0.0.1:9/hook")
    await _gone_executor_rule(orders, hook)
    await evaluate()
    for _ in range(outbox.MAX_ATTEMPTS + 2):
        await outbox.deliver_due()
    row = await db_async(AlertDelivery.objects.get)()
    assert row.state == State.FAILED
    assert row.attempts == outbox.MAX_ATTEMPTS
    assert "ConnectionError" in row.last_error
    # An admin sends it again, on record.
    await db_async(delivery_retry)(delivery=row, request=None)
    row = await db_async(AlertDelivery.objects.get)()
    assert (row.state, row.attempts) == (State.PENDING, 0)
    assert await db_async(AuditRecord.objects.filter(action="alert_delivery.retry").count)() == 1


async def test_a_waiting_retry_is_not_sent_early(orders: Application, settings: Any) -> None:
    settings.ALERT_RETRY_BASE_SECONDS = 60
    with Receiver([500]) as receiver:
        hook = await db_async(make_channel)(application=orders, url=receiver.url)
        await _gone_executor_rule(orders, hook)
        await evaluate()
        await outbox.deliver_due()
        await outbox.deliver_due()
        assert receiver.calls == 1
        await outbox.deliver_due(now=timezone.now() + timedelta(seconds=61))
        assert receiver.calls == 2
        assert len(receiver.received) == 1


async def test_the_test_button_sends_a_sample(orders: Application) -> None:
    with Receiver() as receiver:
        hook = await db_async(make_channel)(application=orders, url=receiver.url)
        await db_async(channel_test)(channel=hook, request=None)
        await outbox.deliver_due()
    assert [m["event"] for m in receiver.received] == ["test"]
    assert "test alert" in receiver.received[0]["summary"]
    assert await db_async(AuditRecord.objects.filter(action="alert_channel.test").count)() == 1


async def test_two_processes_deliver_each_message_once(orders: Application) -> None:
    with Receiver() as receiver:
        hook = await db_async(make_channel)(application=orders, url=receiver.url)
        await _gone_executor_rule(orders, hook)
        await evaluate()
        import asyncio

        await asyncio.gather(outbox.deliver_due(), outbox.deliver_due())
    assert receiver.calls == 1


async def test_metrics_count_firing_alerts_and_every_delivery_attempt(
    orders: Application, flaky: Receiver, settings: Any
) -> None:
    from tests.stepchange.test_prometheus import TOKEN, scrape, value

    settings.METRICS_TOKEN = TOKEN
    labels = {"application": orders.name, "channel_kind": "webhook"}

    def counted(outcome: str, text: str) -> float:
        return value(text, "stepchange_alert_deliveries_total", **labels, outcome=outcome)

    before = await db_async(scrape)()
    hook = await db_async(make_channel)(application=orders, url=flaky.url)
    await _gone_executor_rule(orders, hook)
    await evaluate()
    waiting = await db_async(scrape)()
    firing = {"application": orders.name, "kind": AlertRule.Kind.EXECUTOR_GONE}
    assert value(waiting, "stepchange_alerts_firing", **firing) == 1
    unfinished = labels | {"state": "pending"}
    assert value(waiting, "stepchange_alert_deliveries_unfinished", **unfinished) == 1
    for _ in range(4):
        await outbox.deliver_due()
    after = await db_async(scrape)()
    assert counted("failed", after) - counted("failed", before) == 2
    assert counted("delivered", after) - counted("delivered", before) == 1
    assert value(after, "stepchange_alert_deliveries_unfinished", **unfinished) == 0
