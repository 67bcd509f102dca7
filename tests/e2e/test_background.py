"""`python -m stepchange.server` runs the process's background work from its start, before
any executor or request arrives, and stops it cleanly on SIGTERM and SIGINT."""

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.servers import StepChange, eventually

pytestmark = pytest.mark.e2e

STARTED = (
    "Background work started: relay-routes, heartbeat, process-beat, recovery, liveness,"
    " retention, bulk-jobs, workflow-names, alert-evaluator, alert-delivery, metric-rollups,"
    " request-log"
)
STOPPED = "Background work stopped"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[StepChange]:
    started = StepChange(tmp_path).start()
    yield started
    started.stop()


def output(server: StepChange) -> str:
    assert server.process is not None
    return server.process.output()


def test_a_fresh_server_recovers_an_executor_lost_before_it_started(server: StepChange) -> None:
    server.manage("register_app", "orders", "--recovery-grace-seconds", "1")
    # Held by a StepChange process that went down with it: gone an hour ago. No executor
    # connects and no request asks: only the server's own sweep can find it.
    server.manage(
        "shell",
        "-c",
        "from datetime import timedelta\n"
        "from django.utils import timezone\n"
        "from conductor.models import Executor\n"
        "from stepchange.models import Application\n"
        "Executor.objects.create(application=Application.objects.get(name='orders'),\n"
        "    executor_id='lost', state='disconnected',\n"
        "    disconnected_at=timezone.now() - timedelta(hours=1))",
    )

    def attempts() -> list[dict[str, Any]]:
        _, history = server.api("GET", "/apps/orders/recovery")
        return list(history["attempts"])

    [attempt] = eventually(attempts, timeout=20, what="a recovery attempt")
    assert (attempt["dead_executor_id"], attempt["outcome"]) == ("lost", "waiting")
    assert STARTED in output(server)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_background_work_and_the_server_cleanly(
    server: StepChange, stop: signal.Signals
) -> None:
    assert server.process is not None
    eventually(lambda: STARTED in output(server), timeout=10, what="the background work")
    server.process.popen.send_signal(stop)
    assert server.process.popen.wait(timeout=15) == 0
    log = output(server)
    assert STOPPED in log
    assert "Traceback" not in log
    assert "Task was destroyed but it is pending" not in log
