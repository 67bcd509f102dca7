"""Two StepChange processes sharing Redis and Postgres behind nginx from deploy/: one is
killed (SIGKILL) while a real executor is connected to it. The executor reconnects to the
other within 5 s, requests meanwhile fail fast (502) instead of waiting out the relay
timeout, and the executor is not recovered as if it had died."""

import json
import time
import urllib.request
from pathlib import Path

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
