"""Two StepChange processes sharing Redis and Postgres behind nginx from deploy/: one is
killed (SIGKILL) while a real executor is connected to it. The executor reconnects to the
other within 5 s, requests meanwhile fail fast (502) instead of waiting out the relay
timeout, and the executor is not recovered as if it had died."""

import json
import os
import signal
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.servers import Executor, PostgresDatabases, Proxy, StepChange, eventually

# Two processes sharing Redis and a Postgres app database (RELAY_TIMEOUT_SECONDS 30).
from tests.e2e.test_scale import two_processes  # noqa: F401

pytestmark = pytest.mark.e2e

KEY = "failover-key-0123456789abcdef"


def held(server: StepChange) -> int:
    """How many executors this process holds, from its /readyz."""
    try:
        with urllib.request.urlopen(f"{server.url}/readyz", timeout=2) as response:
            return int(json.loads(response.read())["executors"])
    except OSError:
        return 0


def test_a_killed_process_hands_its_executor_to_the_other_within_seconds(
    two_processes: list[StepChange],  # noqa: F811
    databases: PostgresDatabases,
    tmp_path: Path,
) -> None:
    fleet = two_processes
    proxy = Proxy(fleet, tmp_path)
    fleet[0].manage("register_app", "failover", "--key", KEY, "--recovery-grace-seconds", "1")
    executor = Executor(
        "python",
        conductor_url=proxy.ws_url,
        app="failover",
        key=KEY,
        system_database_url=databases.new("sc_failover_sys"),
        version="v1",
        log_dir=tmp_path,
    )
    try:
        [before] = fleet[0].wait_executors("failover", 1)
        executor.get("/?name=before&workflow_id=wf-before")
        holder = eventually(
            lambda: next((s for s in fleet if held(s) == 1), None), what="a process holds it"
        )
        survivor = next(s for s in fleet if s is not holder)
        assert holder.process is not None
        holder.process.popen.kill()
        killed_at = time.monotonic()
        # Asked at once, through the survivor: answered, or refused fast; never a wait.
        status, _ = survivor.api("GET", "/apps/failover/workflows/wf-before")
        assert time.monotonic() - killed_at < 5
        assert status in (200, 502)
        eventually(lambda: held(survivor) == 1, timeout=10, what="the executor reconnected")
        assert time.monotonic() - killed_at < 5
        status, workflow = survivor.api("GET", "/apps/failover/workflows/wf-before")
        assert status == 200, workflow
        assert workflow["status"] == "SUCCESS"
        [after] = survivor.wait_executors("failover", 1)
        assert after["executor_id"] == before["executor_id"]
        # Back under the same id: past the grace period, it is never recovered.
        time.sleep(3)
        status, attempts = survivor.api("GET", "/apps/failover/recovery")
        assert status == 200, attempts
        assert attempts["attempts"] == []
    finally:
        executor.stop()
        proxy.stop()


def pause(popen: Any) -> None:
    os.kill(popen.pid, signal.SIGSTOP)


def go_on(popen: Any) -> None:
    if popen.poll() is None:
        os.kill(popen.pid, signal.SIGCONT)


def audited(server: StepChange, action: str) -> list[dict[str, Any]]:
    status, page = server.api("GET", f"/audit?app=failover&action={action}&limit=200")
    assert status == 200, page
    return list(page["items"])


def test_a_killed_process_fails_its_requests_at_once_and_its_bulk_job_is_taken_over(
    two_processes: list[StepChange],  # noqa: F811
    databases: PostgresDatabases,
    tmp_path: Path,
) -> None:
    """The process holding the executor, and running a bulk delete through it, is killed
    while the executor (stopped) has the batch and another request unanswered: the request
    waiting on it is a 502 in seconds, the other process takes the job over and finishes
    it, every workflow deleted once and audited once, and the executor comes back."""
    fleet = two_processes
    proxy = Proxy(fleet, tmp_path)
    system_database = databases.new("sc_failover_jobs_sys")
    fleet[0].manage(
        "register_app", "failover", "--key", KEY, "--system-database-url", system_database
    )
    executor = Executor(
        "python",
        conductor_url=proxy.ws_url,
        app="failover",
        key=KEY,
        system_database_url=system_database,
        version="v1",
        log_dir=tmp_path,
    )
    stopped: list[Any] = []
    try:
        fleet[0].wait_executors("failover", 1)
        ids = [f"wf-job-{n:02}" for n in range(12)]
        for workflow_id in ids:
            executor.get(f"/?name=job&workflow_id={workflow_id}")
        holder = eventually(
            lambda: next((s for s in fleet if held(s) == 1), None), what="a process holds it"
        )
        survivor = next(s for s in fleet if s is not holder)
        assert holder.process is not None
        assert survivor.process is not None
        # The executor takes what it is sent and answers nothing; the survivor cannot
        # claim the job, so the holder runs it and its batch waits on the executor.
        for popen in (executor.popen, survivor.process.popen):
            pause(popen)
            stopped.append(popen)
        status, job = holder.api(
            "POST", "/apps/failover/bulk-actions", {"action": "delete", "workflow_ids": ids}
        )
        assert status == 201, job
        eventually(
            lambda: (
                holder.api("GET", f"/apps/failover/bulk-actions/{job['id']}")[1]["progress"].get(
                    "sent", 0
                )
                == len(ids)
            ),
            timeout=10,
            what="the batch sent to the executor",
        )
        go_on(survivor.process.popen)
        stopped.remove(survivor.process.popen)
        # A request through the survivor, relayed to the holder and waiting on the executor.
        waiting: dict[str, Any] = {}

        def ask() -> None:
            started = time.monotonic()
            waiting["answer"] = survivor.api(
                "POST", "/apps/failover/workflows/wf-job-00/fork", {"start_step": 0}
            )
            waiting["seconds"] = time.monotonic() - started

        asking = threading.Thread(target=ask)
        asking.start()
        time.sleep(1.5)
        assert asking.is_alive(), waiting
        holder.process.popen.kill()
        asking.join(timeout=20)
        assert not asking.is_alive()
        status, problem = waiting["answer"]
        # Failed at once (the relay timeout is 30 s), not answered by a dead process.
        assert status == 502, problem
        assert waiting["seconds"] < 1.5 + 6

        # The survivor takes the job over and finishes it.
        def finished() -> dict[str, Any] | None:
            _, detail = survivor.api("GET", f"/apps/failover/bulk-actions/{job['id']}")
            return detail if detail["state"] in ("done", "failed") else None

        detail = eventually(finished, timeout=30, what="the job taken over and finished")
        assert detail["state"] == "done", (detail["detail"], detail["items"][:2])
        assert {item["workflow_id"]: item["state"] for item in detail["items"]} == dict.fromkeys(
            ids, "ok"
        )
        go_on(executor.popen)
        stopped.remove(executor.popen)
        eventually(lambda: held(survivor) == 1, timeout=10, what="the executor reconnected")
        for workflow_id in ids:
            status, _ = survivor.api("GET", f"/apps/failover/workflows/{workflow_id}")
            assert status == 404, workflow_id
        # Every workflow's deletion audited once, and the failed fork once.
        deletions = audited(survivor, "workflow.delete")
        assert sorted(record["target"] for record in deletions) == ids
        assert {record["result"] for record in deletions} == {"ok"}
        forks = audited(survivor, "workflow.fork")
        assert [(record["target"], record["result"]) for record in forks] == [
            ("wf-job-00", "failed")
        ]
    finally:
        for popen in stopped:
            go_on(popen)
        executor.stop()
        proxy.stop()
