"""Operating StepChange: probes, a SIGTERM while executors are connected and a request is
in flight, and JSON logs that never hold a secret. Real Daphne, real dbos 3.2.0."""

import json
import signal
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.e2e.servers import Executor, PostgresDatabases, StepChange, free_port

pytestmark = pytest.mark.e2e


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read()), error.headers


def register(server: StepChange, **options: str) -> tuple[str, str]:
    name, key = f"ops-{uuid.uuid4().hex[:6]}", f"key-{uuid.uuid4().hex}"
    flags = [f"--{option.replace('_', '-')}={value}" for option, value in options.items()]
    server.manage("register_app", name, "--key", key, *flags)
    return name, key


def python_executor(server: StepChange, app: str, key: str, directory: Path) -> Executor:
    return Executor(
        "python",
        conductor_url=server.ws_url,
        app=app,
        key=key,
        system_database_url=f"sqlite:///{directory / uuid.uuid4().hex}.sqlite",
        version="v1",
        log_dir=directory,
    )


def test_readyz_names_redis_when_it_is_unreachable(tmp_path: Path) -> None:
    closed = free_port()
    server = StepChange(tmp_path, env={"REDIS_URL": f"redis://127.0.0.1:{closed}/0"}).start()
    try:
        assert get(f"{server.url}/healthz")[:2] == (200, {"status": "ok"})
        status, body, _ = get(f"{server.url}/readyz")
        assert status == 503
        assert body["failing"] == ["channel_layer"]
        assert body["checks"] == {"database": "ok", "channel_layer": "failed"}
    finally:
        server.stop()


def test_readyz_names_the_app_database_when_it_is_down(tmp_path: Path) -> None:
    databases = PostgresDatabases()
    url = databases.new("stepchange_ready")
    name = url.rsplit("/", 1)[1]
    server = StepChange(tmp_path, env={"DATABASE_URL": url}).start()
    try:
        status, body, _ = get(f"{server.url}/readyz")
        assert (status, body["failing"]) == (200, []), body
        with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                [name],
            )
        status, body, _ = get(f"{server.url}/readyz")
        assert status == 503
        assert body["failing"] == ["database"]
        assert get(f"{server.url}/healthz")[0] == 200
    finally:
        server.stop()
        with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        databases.drop_all()


GRACE = 3


def test_sigterm_sends_executors_elsewhere_and_answers_what_waits(tmp_path: Path) -> None:
    """Two real executors on A; one is frozen with a request in flight. SIGTERM: the request
    answers 502 within the grace (not the 60 s relay timeout), A exits within its bound, and
    both executors reconnect to the StepChange that takes A's port (same app database),
    none of them recovered."""
    # No second executor is asked instead: the read waits on the frozen one.
    env = {
        "SHUTDOWN_GRACE_SECONDS": str(GRACE),
        "RELAY_TIMEOUT_SECONDS": "60",
        "RELAY_READ_FAILOVER_SECONDS": "60",
    }
    server = StepChange(tmp_path, env=env).start()
    # A grace shorter than the restart: only the hand-off rule keeps them from recovery.
    app, key = register(server, recovery_grace_seconds="1")
    steady = python_executor(server, app, key, tmp_path)
    frozen = python_executor(server, app, key, tmp_path)
    try:
        ids = {e["executor_id"] for e in server.wait_executors(app, 2, timeout=60)}
        frozen.popen.send_signal(signal.SIGSTOP)
        answered: dict[str, Any] = {}

        def read() -> None:
            answered["status"], answered["body"] = server.api(
                "GET", f"/apps/{app}/workflows/wf-nowhere"
            )
            answered["at"] = time.monotonic()

        asking = threading.Thread(target=read)
        server.token()
        asking.start()
        time.sleep(1)
        assert server.process is not None
        sent = time.monotonic()
        server.process.popen.send_signal(signal.SIGTERM)
        server.process.popen.wait(timeout=GRACE + 5)
        exited = time.monotonic() - sent
        asking.join(timeout=5)
        assert answered["status"] == 502, answered
        assert "shutting down" in answered["body"]["detail"]
        assert answered["at"] - sent < GRACE + 1
        assert exited < GRACE + 3

        frozen.popen.send_signal(signal.SIGCONT)
        server.start(migrate=False)
        back = {e["executor_id"] for e in server.wait_executors(app, 2, timeout=30)}
        assert back == ids
        time.sleep(3)  # a few recovery sweeps (RECOVERY_SWEEP_SECONDS=1)
        report = server.manage(
            "shell",
            "-c",
            "import json\n"
            "from conductor.models import ExecutorConnection, RecoveryAttempt\n"
            f"print(json.dumps({{'recoveries': RecoveryAttempt.objects.filter("
            f"application__name={app!r}).count(), 'ends': sorted(set(ExecutorConnection.objects"
            f".filter(executor__application__name={app!r}, close_code__isnull=False)"
            ".values_list('close_code', 'ended_by')))}))",
        )
        found = json.loads(report.strip().splitlines()[-1])
        assert found["recoveries"] == 0
        # The steady one closed cleanly (the frozen one could not answer the close).
        assert [1000, "StepChange shut down"] in found["ends"]
    finally:
        frozen.popen.send_signal(signal.SIGCONT)
        for executor in (steady, frozen):
            executor.stop()
        server.stop()


def test_json_logs_carry_request_ids_and_no_secret(tmp_path: Path) -> None:
    env = {"LOG_FORMAT": "json", "LOG_LEVEL": "DEBUG"}
    server = StepChange(tmp_path, env=env).start()
    password = f"pw-{uuid.uuid4().hex}"
    wrong = f"wrong-{uuid.uuid4().hex}"
    try:
        app, key = register(server)
        server.user("olga", "admin", password)
        token = server.token()
        for attempt in (wrong, password):
            assert (server.sign_in("olga", attempt) is None) == (attempt == wrong)
        executor = python_executor(server, app, key, tmp_path)
        server.wait_executors(app, 1, timeout=60)
        request = urllib.request.Request(
            f"{server.url}/api/v1/apps/{app}/workflows?limit=5",
            headers={"Authorization": f"Bearer {token}", "X-Request-ID": "trace-e2e-1"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.headers["X-Request-ID"] == "trace-e2e-1"
        executor.stop()
    finally:
        server.stop()
    logs = sorted(tmp_path.glob("*.log"))
    assert logs
    server_lines = server.process.output().splitlines() if server.process else []
    parsed = [json.loads(line) for line in server_lines if line.strip()]
    assert parsed
    assert all({"time", "level", "logger", "message", "request_id"} <= set(line) for line in parsed)
    # The relayed list's answer is logged by the consumer under the caller's id.
    assert any(
        line["request_id"] == "trace-e2e-1" and " answered list_workflows " in line["message"]
        for line in parsed
    )
    for log in logs:
        text = log.read_text(errors="replace")
        for secret in (key, token, password, wrong):
            assert secret not in text, f"{log.name} holds a secret"
