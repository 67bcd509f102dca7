"""Alerts end to end: a real DBOS 3.2.0 executor whose workflows fail, a StepChange under
Daphne that evaluates a failures rule, and the alert arriving, signed, at a webhook
receiver the test runs on 127.0.0.1 and at the application's own alert handler."""

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.alerts.helpers import SECRET, Receiver
from tests.e2e.servers import Executor, PostgresDatabases, StepChange, eventually

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stepchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StepChange]:
    # Evaluated and sent every second, retried at once: the story takes seconds.
    fast = {
        "ALERT_EVALUATE_SECONDS": "1",
        "ALERT_DELIVERY_SECONDS": "1",
        "ALERT_RETRY_BASE_SECONDS": "0",
    }
    server = StepChange(tmp_path_factory.mktemp("stepchange"), env=fast).start()
    yield server
    server.stop()


def test_failures_of_a_real_executor_fire_a_rule_that_reaches_a_webhook_and_the_app(
    stepchange: StepChange,
    new_app: Callable[..., tuple[str, str]],
    executors: Callable[..., Executor],
    databases: PostgresDatabases,
    tmp_path: Path,
) -> None:
    system_db = databases.new("sc_alerts")
    app, key = new_app("alerts", system_database_url=system_db)
    handled = tmp_path / "handled-alerts.jsonl"
    executor = executors(
        "python", app=app, key=key, system_database_url=system_db, SAMPLE_ALERTS_FILE=str(handled)
    )
    stepchange.wait_executors(app, 1)
    with Receiver([500]) as receiver:
        status, hook = stepchange.api(
            "POST",
            f"/apps/{app}/alert-channels",
            {"name": "hook", "kind": "webhook", "url": receiver.url, "secret": SECRET},
        )
        assert status == 201, hook
        status, own = stepchange.api(
            "POST", f"/apps/{app}/alert-channels", {"name": "own", "kind": "application"}
        )
        assert status == 201, own
        status, rule = stepchange.api(
            "POST",
            f"/apps/{app}/alert-rules",
            {
                "name": "greet keeps failing",
                "kind": "failures",
                "parameters": {"workflow_name": "greet", "threshold": 1, "window_seconds": 600},
                "channels": [hook["id"], own["id"]],
            },
        )
        assert status == 201, rule

        executor.get("/?name=fail1")
        executor.get("/?name=fail2")
        [message] = eventually(lambda: receiver.received, timeout=30, what="a webhook alert")
        assert receiver.bad_signatures == 0
        assert receiver.calls == 2  # a 500 first, then taken: sent once
    assert message["event"] == "firing"
    assert message["application"] == app
    assert message["rule"]["name"] == "greet keeps failing"
    assert message["link"].endswith(f"/apps/{app}/workflows/?status=ERROR&workflow_name=greet")
    assert len(message["details"]["workflow_ids"]) == 2

    line = eventually(
        lambda: handled.exists() and handled.read_text().strip(), timeout=30, what="the handler"
    )
    [forwarded] = [json.loads(text) for text in line.splitlines()]
    assert forwarded["name"] == "greet keeps failing"
    assert forwarded["metadata"]["event"] == "firing"
    assert forwarded["metadata"]["key"] == "greet"

    status, history = stepchange.api("GET", f"/apps/{app}/alerts")
    assert status == 200
    assert [(a["state"], a["key"]) for a in history] == [("firing", "greet")]


@pytest.fixture
def two_processes(tmp_path: Path, databases: PostgresDatabases) -> Iterator[list[StepChange]]:
    from tests.e2e.test_scale import REDIS_URL, require_redis

    require_redis()
    shared = {
        "DATABASE_URL": databases.new("sc_alerts_two"),
        "REDIS_URL": REDIS_URL,
        "ALERT_EVALUATE_SECONDS": "1",
        "ALERT_DELIVERY_SECONDS": "1",
    }
    servers = [StepChange(tmp_path / name, env=shared, name=name) for name in ("one", "two")]
    for server, migrate in zip(servers, (True, False), strict=True):
        server.data_dir.mkdir()
        server.start(migrate=migrate)
    yield servers
    for server in servers:
        server.stop()


def test_two_stepchange_processes_send_each_alert_once(
    two_processes: list[StepChange],
    executors: Callable[..., Executor],
    databases: PostgresDatabases,
) -> None:
    first, second = two_processes
    key = "alerts-two-key-0123456789abcdef"
    first.manage("register_app", "lonely", "--key", key)
    with Receiver() as receiver:
        status, hook = first.api(
            "POST",
            "/apps/lonely/alert-channels",
            {"name": "hook", "kind": "webhook", "url": receiver.url, "secret": SECRET},
        )
        assert status == 201, hook
        status, rule = second.api(
            "POST",
            "/apps/lonely/alert-rules",
            {
                "name": "nobody home",
                "kind": "no_executor",
                "parameters": {"older_than_seconds": 1},
                "channels": [hook["id"]],
                "repeat_seconds": 0,
            },
        )
        assert status == 201, rule
        eventually(lambda: receiver.received, timeout=30, what="the firing alert")
        executors(
            "python",
            app="lonely",
            key=key,
            system_database_url=databases.new("sc_alerts_two_sys"),
            server=first,
        )
        eventually(lambda: len(receiver.received) >= 2, timeout=30, what="the resolved notice")
        # Both processes evaluate and deliver every second: give a duplicate time to come.
        time.sleep(4)
    assert [m["event"] for m in receiver.received] == ["firing", "resolved"]
    assert receiver.bad_signatures == 0
