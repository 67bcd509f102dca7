"""Real DBOS executors (dbos 3.2.0 and @dbos-inc/dbos-sdk 5.0.2) against a running StepChange."""

import os
import re
import signal
import threading
import time
import urllib.error
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.servers import Executor, PostgresDatabases, StepChange, eventually

pytestmark = pytest.mark.e2e


def wait_status(stepchange: StepChange, app: str, workflow_id: str, status: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        code, body = stepchange.api("GET", f"/apps/{app}/workflows/{workflow_id}")
        return body if code == 200 and body["status"] == status else None

    return eventually(check, timeout=60, what=f"{workflow_id} to reach {status}")


@pytest.mark.parametrize(
    ("language", "version", "first_step", "output_shape"),
    [("python", "v1", 1, "HELLO ALICE"), ("typescript", "tsv1", 0, "HELLO ALICE")],
)
def test_a_real_executor_registers_and_answers_relayed_reads(
    stepchange: StepChange,
    new_app: Callable[..., tuple[str, str]],
    executors: Callable[..., Executor],
    databases: PostgresDatabases,
    language: str,
    version: str,
    first_step: int,
    output_shape: str,
) -> None:
    app, key = new_app(language)
    executor = executors(
        language,
        app=app,
        key=key,
        version=version,
        system_database_url=databases.new(f"sc_{language[:2]}"),
    )
    [info] = stepchange.wait_executors(app, 1)
    assert info["language"] == language
    assert info["dbos_version"] == ("3.2.0" if language == "python" else "5.0.2")
    assert info["application_version"] == version
    assert info["metadata"] == {"sample": language}
    assert info["hostname"]

    executor.get("/?name=alice&workflow_id=wf-alice")
    executor.get("/?name=fail1&workflow_id=wf-fail1")
    done = wait_status(stepchange, app, "wf-alice", "SUCCESS")
    assert output_shape in done["output"]
    assert done["output_format"] == f"{language}-display"
    failed = wait_status(stepchange, app, "wf-fail1", "ERROR")
    assert "bad input fail1" in failed["error"]

    code, page = stepchange.api("GET", f"/apps/{app}/workflows?workflow_id_prefix=wf-&limit=10")
    assert code == 200, page
    assert {"wf-alice", "wf-fail1"} <= {item["workflow_id"] for item in page["items"]}
    code, steps = stepchange.api("GET", f"/apps/{app}/workflows/wf-alice/steps")
    assert code == 200, steps
    names = [step["function_name"] for step in steps["items"]]
    assert names[:3] == ["fetch", "DBOS.setEvent", "shout"]
    assert steps["items"][0]["function_id"] == first_step
    child = next(step for step in steps["items"] if step["child_workflow_id"])
    assert child["child_workflow_id"].startswith("wf-alice-")
    # The overview: the executor counts (get_workflow_aggregates) rather than lists.
    html = stepchange.page(f"/apps/{app}/")
    tiles = {
        label: count
        for count, label in re.findall(
            r'<span class="tile-count">([^<]*)</span><span class="tile-label">([^<]*)<', html
        )
    }
    assert tiles["failed in the last 24 h"] == "1"
    assert (tiles["in flight"], tiles["queued"]) == ("0", "0")
    assert "Counted by a connected executor." in html
    assert "does not count them" not in html

    # The request log is written in batches, a moment later.
    wanted = {"executor_info", "get_workflow", "list_workflows", "list_steps"}
    wanted.add("get_workflow_aggregates")
    eventually(
        lambda: (
            wanted
            <= {
                entry["message_type"]
                for entry in stepchange.api("GET", f"/apps/{app}/requests")[1]["items"]
            }
        ),
        timeout=5,
        what="the request log",
    )
    code, counted = stepchange.api(
        "GET", f"/apps/{app}/requests?message_type=get_workflow_aggregates"
    )
    assert code == 200, counted
    assert {entry["outcome"] for entry in counted["items"]} == {"ok"}


def test_a_wrong_key_is_refused_and_the_executor_retries_without_harm(
    stepchange: StepChange,
    new_app: Callable[..., tuple[str, str]],
    executors: Callable[..., Executor],
    databases: PostgresDatabases,
) -> None:
    app, _ = new_app("wrongkey")
    late_key = "a-key-registered-later-0123456789"
    executor = executors(
        "python", app=app, key=late_key, system_database_url=databases.new("sc_wrong")
    )
    time.sleep(3)
    assert stepchange.executors(app) == []
    assert executor.popen.poll() is None
    assert "server rejected WebSocket connection: HTTP 403" in executor.output()
    log = stepchange.process.output() if stepchange.process else ""
    assert late_key not in log
    assert f"/websocket/{app}/[redacted]" in log
    # The operator adds the key the executor has; its next retry gets in.
    stepchange.manage("register_app", app, "--key", late_key)
    stepchange.wait_executors(app, 1, timeout=15)


def test_killing_an_executor_mid_request_fails_the_request_within_a_second(
    stepchange: StepChange,
    new_app: Callable[..., tuple[str, str]],
    executors: Callable[..., Executor],
    databases: PostgresDatabases,
) -> None:
    app, key = new_app("kill")
    executor = executors("python", app=app, key=key, system_database_url=databases.new("sc_kill"))
    stepchange.wait_executors(app, 1)
    # Frozen, it cannot answer: the request waits on it.
    os.kill(executor.popen.pid, signal.SIGSTOP)
    result: dict[str, Any] = {}

    def ask() -> None:
        result["answer"] = stepchange.api("GET", f"/apps/{app}/workflows/anything")
        result["at"] = time.monotonic()

    asking = threading.Thread(target=ask)
    asking.start()
    time.sleep(1)
    assert "answer" not in result
    killed_at = time.monotonic()
    executor.kill()
    asking.join(timeout=10)
    status, body = result["answer"]
    assert status == 502
    assert "disconnected before answering get_workflow" in body["detail"]
    assert result["at"] - killed_at < 1.0


def test_a_crashed_executors_work_is_recovered_onto_another_after_the_grace_period(
    stepchange: StepChange,
    new_app: Callable[..., tuple[str, str]],
    executors: Callable[..., Executor],
    databases: PostgresDatabases,
) -> None:
    app, key = new_app("poison", recovery_grace_seconds=2)
    system_db = databases.new("sc_poison")
    first = executors("python", app=app, key=key, system_database_url=system_db)
    [dead] = stepchange.wait_executors(app, 1)
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        first.get("/?name=poison&workflow_id=wf-poison")
    assert first.popen.wait(timeout=30) == 3
    executors("python", app=app, key=key, system_database_url=system_db, POISON_DISARMED="1")
    done = wait_status(stepchange, app, "wf-poison", "SUCCESS")
    assert "POISON" in done["output"]
    _, history = stepchange.api("GET", f"/apps/{app}/recovery")
    [attempt] = [a for a in history["attempts"] if a["outcome"] == "sent"]
    assert attempt["dead_executor_id"] == dead["executor_id"]
    assert "wf-poison" in attempt["pending_workflow_ids"]


def test_a_workflow_that_kills_the_executors_that_recover_it_is_flagged_as_poison(
    stepchange: StepChange,
    new_app: Callable[..., tuple[str, str]],
    executors: Callable[..., Executor],
    databases: PostgresDatabases,
) -> None:
    app, key = new_app("poison2", recovery_grace_seconds=1)
    system_db = databases.new("sc_poison2")
    first = executors("python", app=app, key=key, system_database_url=system_db)
    stepchange.wait_executors(app, 1)
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        first.get("/?name=poison&workflow_id=wf-deadly")
    first.popen.wait(timeout=30)
    # The second executor is armed too: recovery hands it the workflow, and it dies of it.
    second = executors("python", app=app, key=key, system_database_url=system_db)
    assert second.popen.wait(timeout=60) == 3
    # A third, disarmed executor connects; StepChange holds the recovery for an operator.
    executors("python", app=app, key=key, system_database_url=system_db, POISON_DISARMED="1")

    def flagged() -> dict[str, Any] | None:
        # The flag is written a moment before the attempt that holds the recovery.
        _, history = stepchange.api("GET", f"/apps/{app}/recovery")
        attempts = history["attempts"]
        settled = attempts and attempts[0]["outcome"] != "sent"
        return history if history["poison"] and settled else None

    history = eventually(flagged, timeout=60, what="a poison flag and the held recovery")
    [poison] = history["poison"]
    assert poison["workflow_id"] == "wf-deadly"
    assert poison["executors_killed"] == 2
    assert history["attempts"][0]["outcome"] == "held"
    _, row = stepchange.api("GET", f"/apps/{app}/workflows/wf-deadly")
    assert row["status"] == "PENDING"
