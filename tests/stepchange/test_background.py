"""The process's background work (stepchange/background.py): every loop started once, all
of it stopped cleanly, whether a server's start and stop or a lifespan server asks."""

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from channels.testing import ApplicationCommunicator
from django.utils import timezone

from conductor import events, relay, requestlog
from conductor.models import RequestLog
from stepchange import background
from stepchange.asgi import application
from stepchange.background import background_running, background_start, background_stop
from stepchange.models import Application
from tests.fake_executor import FakeExecutor

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
# Everything a StepChange process runs beside its requests.
EVERYTHING = [
    "relay-routes",
    "heartbeat",
    "process-beat",
    "recovery",
    "liveness",
    "retention",
    "bulk-jobs",
    "workflow-names",
    "alert-evaluator",
    "alert-delivery",
    "metric-rollups",
    "request-log",
]


@pytest.fixture
def queued_request_log(settings: Any) -> None:
    # As in production: entries go through the writer thread (tests write them at once).
    settings.REQUEST_LOG_INLINE = False


def background_tasks() -> list["asyncio.Task[Any]"]:
    return [task for task in asyncio.all_tasks() if task.get_name() in EVERYTHING]


def writer_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == requestlog.WRITER_NAME]


async def until(check: Callable[[], bool]) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("it never happened")


@pytest.mark.usefixtures("queued_request_log")
async def test_starting_twice_runs_every_loop_and_the_writer_once() -> None:
    background_start()
    try:
        started = background_tasks()
        background_start()
        assert background_running() == EVERYTHING
        assert background_tasks() == started
        assert sorted(task.get_name() for task in started) == sorted(EVERYTHING[:-1])
        assert len(writer_threads()) == 1
    finally:
        await background_stop()


@pytest.mark.usefixtures("queued_request_log")
async def test_stopping_ends_every_loop_and_joins_the_writer() -> None:
    background_start()
    tasks = background_tasks()
    [writer] = writer_threads()
    await background_stop()
    assert all(task.cancelled() for task in tasks)
    assert background_tasks() == []
    assert not writer.is_alive()
    assert background_running() == []


@pytest.mark.usefixtures("queued_request_log")
async def test_entries_still_queued_when_the_server_stops_are_written(
    orders: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The writer's next turn would come long after the stop: only the stop can write them.
    monkeypatch.setattr(requestlog, "FLUSH_SECONDS", 3600)
    background_start()
    for number in range(3):
        requestlog.request_log_add(
            application=orders,
            request_id=f"r{number}",
            message_type="get_workflow",
            sent_at=timezone.now() - timedelta(seconds=1),
            outcome="ok",
        )
    await background_stop()
    assert await RequestLog.objects.acount() == 3


async def test_a_loop_that_fails_starts_again(monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[int] = []
    second_run = asyncio.Event()

    async def fails_once() -> None:
        runs.append(len(runs) + 1)
        if len(runs) == 1:
            raise ConnectionError("the channel layer went away")
        second_run.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(background, "LOOPS", (background.Loop("flaky", fails_once),))
    monkeypatch.setattr(background, "RESTART_SECONDS", 0.01)
    background_start()
    try:
        await asyncio.wait_for(second_run.wait(), 5)
    finally:
        await background_stop()
    assert runs == [1, 2]


@pytest.mark.usefixtures("queued_request_log")
async def test_a_server_that_speaks_lifespan_starts_and_stops_the_same_work() -> None:
    server = ApplicationCommunicator(application, {"type": "lifespan", "asgi": {"version": "3.0"}})
    await server.send_input({"type": "lifespan.startup"})
    assert await server.receive_output() == {"type": "lifespan.startup.complete"}
    assert background_running() == EVERYTHING
    await server.send_input({"type": "lifespan.shutdown"})
    assert await server.receive_output(timeout=15) == {"type": "lifespan.shutdown.complete"}
    assert background_running() == []
    assert background_tasks() == []
    await server.wait()


async def test_the_relay_caches_routes_only_while_its_listener_runs(
    orders: Application, executor: FakeExecutor
) -> None:
    async def pick() -> str:
        chosen = await relay.routes.candidates(orders, executor_id=None, latest_version=False)
        return chosen[0].executor_id

    assert await pick() == executor.executor_id
    assert relay.routes.entries == {}
    background_start()
    try:
        await until(lambda: relay.routes.listening is not None)
        assert await pick() == executor.executor_id
        assert orders.pk in relay.routes.entries
        # An executor came or went somewhere: the cache is dropped.
        await events.registry_changed()
        await until(lambda: relay.routes.entries == {})
        await pick()
    finally:
        await background_stop()
    assert relay.routes.listening is None
    assert relay.routes.entries == {}


def test_neither_importing_the_application_nor_a_management_command_starts_anything(
    tmp_path: Path,
) -> None:
    script = (
        "import threading, stepchange.asgi\n"
        "from stepchange.background import background_running\n"
        "print(background_running(), [t.name for t in threading.enumerate()])"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", script],
        cwd=ROOT,
        env={**os.environ, "STEPCHANGE_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "[] ['MainThread']"
