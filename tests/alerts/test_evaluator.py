"""Stories of the evaluator: each kind of rule fires on what it watches and resolves when
that ends; an alert is sent once, again after its repeat interval, not while muted, and
once more when it resolves; two evaluators send each alert once."""

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from alerts import evaluator
from alerts.evaluator import evaluate, evaluate_if_leader, lease_claim
from alerts.models import Alert, AlertDelivery, AlertRule
from conductor.models import Executor, PoisonWorkflow, RecoveryAttempt
from forks.models import EditedFork
from stepchange.asyncdb import db_async
from stepchange.models import Application
from tests.alerts.helpers import make_channel, make_rule
from tests.conftest import make_app

Kind = AlertRule.Kind
pytestmark = pytest.mark.django_db(transaction=True)


def _executor(app: Application, executor_id: str, state: str, **fields: Any) -> Executor:
    return Executor.objects.create(
        application=app, executor_id=executor_id, state=state, hostname="box", **fields
    )


def _events() -> list[tuple[str, str]]:
    return [
        (d.event, d.message["alert"]["key"])
        for d in AlertDelivery.objects.order_by("created_at", "id")
    ]


@pytest.fixture
def orders() -> Application:
    return make_app()


@pytest.fixture
def hook(orders: Application) -> Any:
    return make_channel(application=orders, url="https://hooks.example.com/x")


async def test_an_executor_gone_fires_once_and_resolves_when_it_comes_back(
    orders: Application, hook: Any
) -> None:
    await _db(make_rule, application=orders, kind=Kind.EXECUTOR_GONE, channels=[hook])
    executor = await _db(_executor, orders, "exec-1", Executor.State.DISCONNECTED)
    await evaluate()
    await evaluate()
    assert await _db(_events) == [("firing", "exec-1")]
    executor.state = Executor.State.CONNECTED
    await _db(executor.save)
    await evaluate()
    assert await _db(_events) == [("firing", "exec-1"), ("resolved", "exec-1")]
    message = (await _db(lambda: AlertDelivery.objects.get(event="resolved"))).message
    assert message["link"].endswith("/apps/orders/executors/exec-1/")
    assert message["link"].startswith("http")


async def test_no_executor_for_a_while_fires(orders: Application, hook: Any) -> None:
    rule = await _db(
        make_rule,
        application=orders,
        kind=Kind.NO_EXECUTOR,
        parameters={"older_than_seconds": 60},
        channels=[hook],
    )
    await evaluate()
    assert await _db(_events) == []  # the rule itself is only just made
    later = timezone.now() + timedelta(seconds=61)
    await evaluate(now=later)
    assert await _db(_events) == [("firing", "")]
    await _db(_executor, orders, "exec-1", Executor.State.CONNECTED)
    await evaluate(now=later)
    assert await _db(_events) == [("firing", ""), ("resolved", "")]
    assert await _db(lambda: rule.alerts.get().state) == Alert.State.RESOLVED


async def test_a_poison_workflow_held_fires(orders: Application, hook: Any) -> None:
    await _db(make_rule, application=orders, kind=Kind.POISON, channels=[hook])
    await _db(
        lambda: PoisonWorkflow.objects.create(
            application=orders, workflow_id="wf-bad", executors_killed=1
        )
    )
    await evaluate()
    assert await _db(_events) == []  # one death is not yet poison
    await _db(lambda: PoisonWorkflow.objects.update(executors_killed=2))
    await evaluate()
    assert await _db(_events) == [("firing", "wf-bad")]


async def test_recovery_flapping_fires_above_its_threshold(orders: Application, hook: Any) -> None:
    await _db(
        make_rule,
        application=orders,
        kind=Kind.FLAPPING,
        parameters={"threshold": 2, "window_seconds": 600},
        channels=[hook],
    )

    def attempts(n: int) -> None:
        for i in range(n):
            RecoveryAttempt.objects.create(
                application=orders, dead_executor_id=f"e{i}", outcome="sent"
            )

    await _db(attempts, 2)
    await evaluate()
    assert await _db(_events) == []
    await _db(attempts, 1)
    await evaluate()
    assert await _db(_events) == [("firing", "")]


async def test_an_edited_fork_waiting_for_approval_fires(orders: Application, hook: Any) -> None:
    await _db(
        make_rule,
        application=orders,
        kind=Kind.FORK_WAITING,
        parameters={"older_than_seconds": 600},
        channels=[hook],
    )
    fork = await _db(
        lambda: EditedFork.objects.create(
            application=orders,
            source_workflow_id="wf-1",
            start_step=1,
            new_workflow_id="wf-1-fix",
            queue_name="q",
            serialization="json",
            reason="fix",
            created_by_name="otto",
        )
    )
    await evaluate()
    assert await _db(_events) == []
    await evaluate(now=timezone.now() + timedelta(seconds=601))
    assert await _db(_events) == [("firing", str(fork.pk))]
    fork.status = EditedFork.Status.APPROVED
    await _db(fork.save)
    await evaluate(now=timezone.now() + timedelta(seconds=601))
    assert await _db(_events) == [("firing", str(fork.pk)), ("resolved", str(fork.pk))]


async def test_a_firing_alert_repeats_after_its_interval(orders: Application, hook: Any) -> None:
    await _db(
        make_rule,
        application=orders,
        kind=Kind.EXECUTOR_GONE,
        channels=[hook],
        repeat_seconds=600,
    )
    await _db(_executor, orders, "exec-1", Executor.State.DEAD)
    now = timezone.now()
    await evaluate(now=now)
    await evaluate(now=now + timedelta(seconds=599))
    assert await _db(_events) == [("firing", "exec-1")]
    await evaluate(now=now + timedelta(seconds=600))
    assert await _db(_events) == [("firing", "exec-1"), ("repeat", "exec-1")]


async def test_a_muted_rule_sends_nothing_until_the_mute_ends(
    orders: Application, hook: Any
) -> None:
    now = timezone.now()
    await _db(
        make_rule,
        application=orders,
        kind=Kind.EXECUTOR_GONE,
        channels=[hook],
        muted_until=now + timedelta(minutes=10),
    )
    await _db(_executor, orders, "exec-1", Executor.State.DEAD)
    await evaluate(now=now)
    assert await _db(_events) == []
    assert await _db(lambda: Alert.objects.get().state) == Alert.State.FIRING
    await evaluate(now=now + timedelta(minutes=11))
    assert await _db(_events) == [("firing", "exec-1")]


async def test_a_disabled_rule_is_not_evaluated(orders: Application, hook: Any) -> None:
    await _db(
        make_rule, application=orders, kind=Kind.EXECUTOR_GONE, channels=[hook], enabled=False
    )
    await _db(_executor, orders, "exec-1", Executor.State.DEAD)
    await evaluate()
    assert await _db(lambda: Alert.objects.count()) == 0


async def test_only_the_lease_holder_evaluates(orders: Application, hook: Any) -> None:
    await _db(make_rule, application=orders, kind=Kind.EXECUTOR_GONE, channels=[hook])
    await _db(_executor, orders, "exec-1", Executor.State.DEAD)
    assert await evaluate_if_leader(holder="process-a") is not None
    assert await evaluate_if_leader(holder="process-b") is None
    # The holder's lease lapses (its process died): the other takes over.
    await _db(lease_claim, holder="process-a", seconds=-1)
    assert await evaluate_if_leader(holder="process-b") is not None
    assert await _db(_events) == [("firing", "exec-1")]


def test_two_evaluators_reconciling_at_once_send_each_event_once(
    orders: Application, hook: Any
) -> None:
    rule = make_rule(application=orders, kind=Kind.EXECUTOR_GONE, channels=[hook])
    finding = evaluator.Finding(key="exec-1", summary="gone")
    now = timezone.now()
    # Two processes that read the same state before either wrote (no lease between them).
    stale = AlertRule.objects.get(pk=rule.pk)
    evaluator.reconcile(rule, [finding], now)
    evaluator.reconcile(stale, [finding], now)
    assert Alert.objects.count() == 1
    assert AlertDelivery.objects.count() == 1
    evaluator.reconcile(rule, [], now)
    evaluator.reconcile(stale, [], now)
    assert list(AlertDelivery.objects.values_list("event", flat=True).order_by("id")) == [
        "firing",
        "resolved",
    ]


# The stories are async because the evaluator is; the database is reached as it does.


async def _db(function: Any, *args: Any, **kwargs: Any) -> Any:
    return await db_async(function)(*args, **kwargs)
