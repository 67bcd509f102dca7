"""A database-managed application: a real executor whose Conductor client is not open
source (Python dbos 3.4.0 on SQLite and on Postgres, TypeScript @dbos-inc/dbos-sdk 5.3.0
on Postgres) with no conductor setting at all, and StepChange steering it only through its
system database. Each action is done from
StepChange's API and its effect is seen in what the executor then does.

One executor per kind serves the module; each story uses workflow ids of its own.
"""

import os
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.e2e.servers import (
    ROOT,
    Executor,
    PostgresDatabases,
    StepChange,
    SystemDatabase,
    eventually,
)

pytestmark = pytest.mark.e2e

PYTHON_340 = ROOT / ".venv-dbos340" / "bin" / "python"
# The TypeScript sample's npm alias of @dbos-inc/dbos-sdk 5.3.0.
TYPESCRIPT_530 = "dbos-sdk-530"
# The migration each SDK's system database is on.
MIGRATION = {"python": 125, "typescript": 123}
# What slow_task keeps besides its status row; all of it goes on delete.
TABLES = ["workflow_status", "workflow_input", "workflow_output", "operation_outputs"]


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Deployment:
    """A registered application with no executor key in use, its conductor-less
    executor, and its system database."""

    language: str
    app: str
    server: StepChange
    executor: Executor
    db: SystemDatabase
    # Another executor of the application, under the executor id given (DBOS__VMID).
    start: Callable[[str], Executor]

    def act(self, workflow_id: str, action: str, **body: Any) -> tuple[int, Any]:
        path = f"/apps/{self.app}/workflows/{workflow_id}/{action}"
        return self.server.api("POST", path, {"reason": "no conductor", **body})

    def slow(self, seconds: float) -> str:
        """slow_task: a nap step of half the time, a durable sleep, then a finish step."""
        workflow_id = new_id("slow")
        self.executor.get(f"/slow?seconds={seconds}&workflow_id={workflow_id}")
        return workflow_id

    def step_names(self, workflow_id: str) -> list[str]:
        return [str(step["function_name"]) for step in self.db.steps(workflow_id)]

    def output(self, workflow_id: str) -> str:
        page = self.server.api("GET", f"/apps/{self.app}/workflows/{workflow_id}")[1]
        return str(page["output"])


@pytest.fixture(scope="module")
def stepchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StepChange]:
    server = StepChange(tmp_path_factory.mktemp("stepchange")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def databases() -> Iterator[PostgresDatabases]:
    made = PostgresDatabases()
    yield made
    made.drop_all()


def _require(present: bool, what: str) -> None:
    if not present:
        message = f"no {what}: run `make install`"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module", params=["python-sqlite", "python-postgres", "typescript-postgres"])
def deployment(
    request: pytest.FixtureRequest,
    stepchange: StepChange,
    databases: PostgresDatabases,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployment]:
    language, database = request.param.split("-")
    if language == "python":
        _require(PYTHON_340.exists(), ".venv-dbos340 (dbos 3.4.0)")
    else:
        modules = ROOT / "samples" / "typescript" / "node_modules" / TYPESCRIPT_530
        _require(modules.exists(), f"samples/typescript/node_modules/{TYPESCRIPT_530}")
    directory = tmp_path_factory.mktemp("executor")
    if database == "sqlite":
        url = f"sqlite:///{directory / 'system.sqlite'}"
    else:
        url = databases.new("sc_dbm")
    app = new_id("dbm")
    stepchange.manage("register_app", app, "--system-database-url", url)

    def start(executor_id: str = "") -> Executor:
        # No conductor URL and no key: the SDK's own executor, as such an application runs;
        # without DBOS__VMID its executor id is "local".
        env = {"DBOS_SDK_PACKAGE": TYPESCRIPT_530}
        return Executor(
            language,
            conductor_url="",
            app=app,
            key="",
            system_database_url=url,
            version="v1",
            log_dir=directory,
            python=str(PYTHON_340),
            extra_env=env | ({"DBOS__VMID": executor_id} if executor_id else {}),
        )

    executor = start()
    try:
        yield Deployment(language, app, stepchange, executor, SystemDatabase(url), start)
    finally:
        executor.stop()


def test_the_application_has_no_executor_and_its_database_is_known(
    deployment: Deployment,
) -> None:
    assert deployment.server.executors(deployment.app) == []
    status, body = deployment.server.api("GET", f"/apps/{deployment.app}/system-database")
    assert status == 200, body
    migration = MIGRATION[deployment.language]
    assert (body["migration_version"], body["known_version"]) == (migration, True)


def test_a_cancelled_workflow_stops_at_its_next_step_and_a_resumed_one_finishes(
    deployment: Deployment,
) -> None:
    workflow_id = deployment.slow(8)
    deployment.db.wait_status(workflow_id, "PENDING")

    status, answer = deployment.act(workflow_id, "cancel")
    assert status == 200, answer
    assert answer["path"] == "database"
    assert deployment.db.wait_status(workflow_id, "CANCELLED")["queue_name"] is None
    # The nap (4 s) ends; the durable sleep after it and the finish are never started.
    time.sleep(6)
    assert deployment.step_names(workflow_id) in ([], ["nap"])
    assert deployment.db.row(workflow_id)["status"] == "CANCELLED"
    assert deployment.act(workflow_id, "cancel")[0] == 409

    status, answer = deployment.act(workflow_id, "resume")
    assert status == 200, answer
    assert answer["path"] == "database"
    deployment.db.wait_status(workflow_id, "SUCCESS", timeout=40)
    assert deployment.step_names(workflow_id) == ["nap", "DBOS.sleep", "finish"]
    assert deployment.output(workflow_id) == "slept 8s"


def test_a_fork_runs_from_its_step_and_a_restart_runs_everything(
    deployment: Deployment,
) -> None:
    source = deployment.slow(2)
    deployment.db.wait_status(source, "SUCCESS")
    recorded = deployment.db.steps(source)

    fork_id = new_id("fork")
    # The finish step: 3 in Python, whose step ids start at 1, and 2 in TypeScript.
    finish = recorded[2]["function_id"]
    status, answer = deployment.act(source, "fork", start_step=finish, new_workflow_id=fork_id)
    assert status == 200, answer
    assert (answer["new_workflow_id"], answer["path"]) == (fork_id, "database")
    deployment.db.wait_status(fork_id, "SUCCESS")
    steps = deployment.db.steps(fork_id)
    # The nap and the sleep are the source's, copied; the finish ran again in the fork.
    assert [s["started_at_epoch_ms"] for s in steps[:2]] == [
        s["started_at_epoch_ms"] for s in recorded[:2]
    ]
    assert steps[2]["function_name"] == "finish"
    assert steps[2]["started_at_epoch_ms"] > recorded[2]["started_at_epoch_ms"]
    assert deployment.db.row(fork_id)["forked_from"] == source

    status, answer = deployment.act(source, "restart")
    assert status == 200, answer
    restarted = answer["new_workflow_id"]
    deployment.db.wait_status(restarted, "SUCCESS")
    again = deployment.db.steps(restarted)
    assert [s["function_name"] for s in again] == ["nap", "DBOS.sleep", "finish"]
    assert again[0]["started_at_epoch_ms"] > recorded[-1]["started_at_epoch_ms"]


def test_a_fork_from_failure_runs_again_from_the_step_that_failed(
    deployment: Deployment,
) -> None:
    failed = new_id("fail")
    deployment.executor.get(f"/?name=fail-{failed}&workflow_id={failed}")
    deployment.db.wait_status(failed, "ERROR")
    recorded = deployment.db.steps(failed)
    assert [s["function_name"] for s in recorded] == ["fetch", "DBOS.setEvent", "shout"]
    status, answer = deployment.act(failed, "fork-from-failure")
    assert status == 200, answer
    assert answer["path"] == "database"
    [fork_id] = answer["new_workflow_ids"]
    # The same input fails the same way, in the fork's own run of the failed step.
    deployment.db.wait_status(fork_id, "ERROR")
    steps = deployment.db.steps(fork_id)
    assert [s["started_at_epoch_ms"] for s in steps[:2]] == [
        s["started_at_epoch_ms"] for s in recorded[:2]
    ]
    assert steps[2]["function_name"] == "shout"
    assert steps[2]["started_at_epoch_ms"] > recorded[2]["started_at_epoch_ms"]
    assert steps[2]["error"] is not None


def test_a_deleted_workflow_leaves_nothing_behind(deployment: Deployment) -> None:
    workflow_id = deployment.slow(1)
    deployment.db.wait_status(workflow_id, "SUCCESS")
    assert deployment.db.count("operation_outputs", workflow_id) == 3
    status, answer = deployment.act(workflow_id, "delete")
    assert status == 200, answer
    assert answer["path"] == "database"
    for table in TABLES:
        assert deployment.db.count(table, workflow_id) == 0, table
    assert deployment.act(workflow_id, "delete")[0] == 404


def test_a_killed_executors_pending_work_finishes_on_another_after_recovery(
    deployment: Deployment,
) -> None:
    doomed_id = new_id("doomed")
    doomed = deployment.start(doomed_id)
    workflow_id = new_id("slow")
    try:
        doomed.get(f"/slow?seconds=6&workflow_id={workflow_id}")
        row = deployment.db.wait_status(workflow_id, "PENDING")
        assert row["executor_id"] == doomed_id
    finally:
        doomed.kill()
    recovery = f"/apps/{deployment.app}/database-recovery"
    status, seen = deployment.server.api("GET", recovery)
    assert status == 200, seen
    [held] = [e for e in seen if e["executor_id"] == doomed_id]
    assert held["workflow_ids"] == [workflow_id]
    body = {"executor_id": doomed_id, "reason": "host lost"}
    status, answer = deployment.server.api("POST", recovery, body)
    assert status == 200, answer
    assert (answer["path"], answer["recovered"]) == ("database", [workflow_id])
    # The live executor of the same version takes it from the queue and finishes it.
    row = deployment.db.wait_status(workflow_id, "SUCCESS", timeout=60)
    assert row["executor_id"] != doomed_id
    assert deployment.output(workflow_id) == "slept 6s"


class HealthRouter:
    """The liveness source of the story: /health/<executor id> answers as that executor's
    own /health page does (its sample's HTTP server), 502 when it does not answer, 404 for
    an executor id it was not told of. It stands in for per-host DNS, which the test's
    executors, all on 127.0.0.1, do not have."""

    def __init__(self) -> None:
        self.ports: dict[str, int] = {}
        router = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                port = router.ports.get(self.path.rsplit("/", 1)[-1])
                self.send_response(404 if port is None else router.ask(port))
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        port = self.server.server_address[1]
        self.template = f"http://127.0.0.1:{port}/health/{{executor_id}}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def ask(port: int) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as error:
            return int(error.code)
        except OSError:
            return 502

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_killed_executor_is_recovered_automatically_once_its_liveness_url_fails(
    deployment: Deployment,
) -> None:
    app, server = deployment.app, deployment.server
    server.manage("register_app", app, "--recovery-grace-seconds", "3")
    router = HealthRouter()
    doomed_id, survivor_id = new_id("doomed"), new_id("survivor")
    doomed = deployment.start(doomed_id)
    survivor = deployment.start(survivor_id)
    router.ports = {
        "local": deployment.executor.http_port,
        doomed_id: doomed.http_port,
        survivor_id: survivor.http_port,
    }
    liveness = f"/apps/{app}/liveness"
    status, body = server.api("PUT", liveness, {"liveness_url_template": router.template})
    assert status == 200, body
    workflow_id = new_id("slow")
    try:
        doomed.get(f"/slow?seconds=15&workflow_id={workflow_id}")
        assert deployment.db.wait_status(workflow_id, "PENDING")["executor_id"] == doomed_id

        def probed_alive() -> bool:
            executors = server.api("GET", liveness)[1]["executors"]
            return any(e["executor_id"] == doomed_id and e["state"] == "alive" for e in executors)

        # Alive while its health page answers: probed, and its work left where it is.
        eventually(probed_alive, timeout=20, what=f"{doomed_id} probed alive")
        assert deployment.db.status(workflow_id) == "PENDING"
        doomed.kill()
        # StepChange recovers it by itself; the other executor finishes the workflow.
        row = deployment.db.wait_status(workflow_id, "SUCCESS", timeout=90)
        assert row["executor_id"] != doomed_id
        assert deployment.output(workflow_id) == "slept 15s"
        status, records = server.api("GET", f"/audit?action=executor.recovery&app={app}")
        assert status == 200, records
        [record] = [r for r in records["items"] if r["target"] == f"executor {doomed_id}"]
        assert record["actor_name"] == "stepchange (automatic recovery)"
        assert record["parameters"]["path"] == "database"
        assert workflow_id in record["parameters"]["pending_workflow_ids"]
        [seen] = [
            e for e in server.api("GET", liveness)[1]["executors"] if e["executor_id"] == doomed_id
        ]
        assert seen["state"] == "recovered"
    finally:
        server.api("PUT", liveness, {"liveness_url_template": ""})
        survivor.stop()
        doomed.stop()
        router.close()


def _greet(deployment: Deployment, name: str) -> str:
    """A greet workflow run to SUCCESS on the executor: fetch (a profile), its event, shout,
    and the audit of the greeting."""
    workflow_id = new_id(f"greet-{name}")
    deployment.executor.get(f"/?name={name}&workflow_id={workflow_id}")
    deployment.db.wait_status(workflow_id, "SUCCESS")
    return workflow_id


def _workflow(deployment: Deployment, workflow_id: str) -> dict[str, Any]:
    status, page = deployment.server.api("GET", f"/apps/{deployment.app}/workflows/{workflow_id}")
    assert status == 200, page
    return dict(page)


def test_an_edited_fork_runs_on_the_rewritten_input_and_step_output(
    deployment: Deployment,
) -> None:
    source = _greet(deployment, "alice")
    recorded = deployment.db.steps(source)
    assert [s["function_name"] for s in recorded[:3]] == ["fetch", "DBOS.setEvent", "shout"]
    fetch, shout = recorded[0]["function_id"], recorded[2]["function_id"]
    fork_id = new_id("edited")
    body = {
        "start_step": shout,
        # times comes from the input; name and greeting from fetch's recorded profile.
        "input": {"args": ["bob", 3], "kwargs": {}},
        "step_outputs": {str(fetch): {"name": "dave", "greeting": "hey"}},
        "new_workflow_id": fork_id,
        "reason": "e2e: edited fork without a conductor",
        "run": True,
    }
    path = f"/apps/{deployment.app}/workflows/{source}/edited-forks"
    status, answer = deployment.server.api("POST", path, body)
    assert status == 201, answer
    assert (answer["status"], answer["new_workflow_id"]) == ("done", fork_id)
    row = deployment.db.wait_status(fork_id, "SUCCESS", timeout=60)
    assert row["forked_from"] == source
    steps = deployment.db.steps(fork_id)
    # fetch was copied with its edited output and not run again; shout ran in the fork.
    assert steps[0]["started_at_epoch_ms"] == recorded[0]["started_at_epoch_ms"]
    assert steps[2]["started_at_epoch_ms"] > recorded[-1]["started_at_epoch_ms"]
    page = _workflow(deployment, fork_id)
    assert page["output"]["greeting"] == "HEY DAVE!!!"
    assert page["input"] == {"args": ["bob", 3], "kwargs": {}}


def test_a_workflow_started_through_the_api_runs_to_success(deployment: Deployment) -> None:
    like = _greet(deployment, "alice")
    started = new_id("started")
    body = {
        "workflow_name": deployment.db.row(like)["name"],
        "input": ["gina", 3],
        "workflow_id": started,
        "like": like,
        "reason": "e2e: start without a conductor",
    }
    status, answer = deployment.server.api("POST", f"/apps/{deployment.app}/workflows", body)
    assert status == 201, answer
    assert answer["workflow_id"] == started
    deployment.db.wait_status(started, "SUCCESS", timeout=60)
    assert [s["function_name"] for s in deployment.db.steps(started)][:3] == [
        "fetch",
        "DBOS.setEvent",
        "shout",
    ]
    assert _workflow(deployment, started)["output"]["greeting"] == "HELLO GINA!!!"
