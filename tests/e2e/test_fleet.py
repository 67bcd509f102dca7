"""A fleet against a live server: sixty executors of bench/fleet.py's load generator, all
registered, the Executors page paged right, and every request relayed to them answered."""

import asyncio
import http.client
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bench.console import VIEWER_SESSION
from bench.fleet import Fleet
from tests.e2e.servers import StepChange, eventually

pytestmark = pytest.mark.e2e

COUNT = 60


class FleetThread:
    """The fleet on an event loop of its own thread, as beside a synchronous test."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, work: Callable[[], Any], timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(work(), self.loop).result(timeout)

    def close(self) -> None:
        self.run(self.fleet.stop)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def fleet(
    stepchange: StepChange, new_app: Callable[..., tuple[str, str]]
) -> Iterator[tuple[str, Fleet]]:
    app, key = new_app("fleet")
    running = FleetThread(Fleet([f"{stepchange.ws_url}/websocket/{app}/{key}"], COUNT))
    try:
        running.run(running.fleet.start)
        running.run(running.fleet.identified)
        yield app, running.fleet
    finally:
        running.close()


def page(stepchange: StepChange, session: str, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", stepchange.port, timeout=30)
    try:
        conn.request("GET", path, headers={"Cookie": f"sessionid={session}"})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def test_sixty_executors_are_registered_paged_and_answer_every_relayed_request(
    stepchange: StepChange, fleet: tuple[str, Fleet]
) -> None:
    app, executors = fleet
    registered = stepchange.wait_executors(app, COUNT, timeout=20)
    assert {row["executor_id"] for row in registered} == set(executors.executor_ids)

    session = stepchange.manage("shell", "-c", VIEWER_SESSION).strip().splitlines()[-1]
    status, first = page(stepchange, session, f"/apps/{app}/executors/")
    assert status == 200
    assert f'<span class="count">{COUNT}</span>' in first
    shown = re.compile(rf'href="/apps/{app}/executors/([^/"]+)/"')
    assert len(shown.findall(first)) == 50
    status, second = page(stepchange, session, f"/apps/{app}/executors/?page=2")
    assert status == 200
    connected = second.split("<h2>Gone</h2>")[0]
    assert len(shown.findall(connected)) == COUNT - 50
    assert set(shown.findall(first)) | set(shown.findall(connected)) == set(executors.executor_ids)
    assert page(stepchange, session, f"/apps/{app}/executors/?page=3")[0] == 400

    # Every read and action relayed to the fleet is answered, by whichever executor.
    for n in range(10):
        status, listed = stepchange.api("GET", f"/apps/{app}/workflows?limit=5")
        assert status == 200, listed
        assert len(listed["items"]) == 5
        status, one = stepchange.api("GET", f"/apps/{app}/workflows/wf-{n}")
        assert (status, one["workflow_id"]) == (200, f"wf-{n}")
        status, done = stepchange.api("POST", f"/apps/{app}/workflows/wf-pending-{n}/cancel", {})
        assert status == 200, done
    answered = executors.stats.answered
    assert answered["list_workflows"] >= 10
    assert answered["get_workflow"] >= 20  # each cancel reads the workflow first
    assert answered["cancel"] == 10
    assert executors.stats.closed == 0
    eventually(lambda: executors.stats.identified == COUNT, timeout=5)
