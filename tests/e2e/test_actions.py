"""The operator's actions against real executors (dbos 3.2.0 on SQLite and Postgres,
@dbos-inc/dbos-sdk 5.0.2 on Postgres), each checked in the system database afterwards.

One executor per kind serves the whole module; each story uses workflow ids of its own.
StepChange reads the Python SQLite and the TypeScript system databases itself, and the
Python Postgres one only through its executor, so both read paths decide what is allowed.
"""

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.servers import (
    Executor,
    PostgresDatabases,
    StepChange,
    SystemDatabase,
    eventually,
)

pytestmark = pytest.mark.e2e

# Where greet keeps its data besides its status row; every one of them must go on delete.
GREET_TABLES = [
    "workflow_status",
    "workflow_input",
    "workflow_output",
    "operation_outputs",
    "workflow_events",
    "workflow_events_history",
    "streams",
]


@dataclass(frozen=True)
class Variant:
    language: str
    database: str
    # Whether StepChange is given the system database (else it reads through the executor).
    reads_database: bool

    @property
    def first_step(self) -> int:
        return 0 if self.language == "typescript" else 1

    @property
    def version(self) -> str:
        return "tsv1" if self.language == "typescript" else "v1"

    def __str__(self) -> str:
        return f"{self.language}-{self.database}"


PYTHON_SQLITE = Variant("python", "sqlite", reads_database=True)
PYTHON_POSTGRES = Variant("python", "postgres", reads_database=False)
TYPESCRIPT_POSTGRES = Variant("typescript", "postgres", reads_database=True)
EVERY = [PYTHON_SQLITE, PYTHON_POSTGRES, TYPESCRIPT_POSTGRES]


@dataclass
class Deployment:
    """A registered application, its executor, and its system database."""

    variant: Variant
    app: str
    server: StepChange
    executor: Executor
    db: SystemDatabase

    def act(self, workflow_id: str, action: str, **body: Any) -> tuple[int, Any]:
        path = f"/apps/{self.app}/workflows/{workflow_id}/{action}"
        return self.server.api("POST", path, body)

    def greet(self, name: str) -> str:
        """A greet workflow, run to its end (SUCCESS, or ERROR for names starting `fail`)."""
        workflow_id = new_id(name)
        self.executor.get(f"/?name={name}&workflow_id={workflow_id}")
        return workflow_id

    def approval(self) -> str:
        """A workflow that waits for a message: PENDING until it gets one."""
        workflow_id = new_id("approval")
        self.executor.get(f"/approval?workflow_id={workflow_id}&timeout=120")
        self.wait_status(workflow_id, "PENDING")
        return workflow_id

    def wait_status(self, workflow_id: str, *statuses: str, timeout: float = 20) -> dict[str, Any]:
        return self.db.wait_status(workflow_id, *statuses, timeout=timeout)

    def row(self, workflow_id: str) -> dict[str, Any]:
        return self.db.row(workflow_id)

    def checkpoints(self, workflow_id: str, *, below: int) -> list[tuple[Any, ...]]:
        """The steps before `below` as recorded: what a fork copies verbatim."""
        return [
            (s["function_id"], s["function_name"], s["output"], s["started_at_epoch_ms"])
            for s in self.db.steps(workflow_id)
            if s["function_id"] < below
        ]

    def step_id(self, workflow_id: str, function_name: str) -> int:
        [step] = [s for s in self.db.steps(workflow_id) if s["function_name"] == function_name]
        return int(step["function_id"])

    def audit(self, workflow_id: str) -> list[dict[str, Any]]:
        status, page = self.server.api("GET", f"/audit?app={self.app}&target={workflow_id}")
        assert status == 200, page
        return list(page["items"])


@dataclass
class Deployments:
    """Each kind of executor started once, when a story first asks for it."""

    server: StepChange
    databases: PostgresDatabases
    directory: Path
    started: dict[Variant, Deployment] = field(default_factory=dict)

    def get(self, variant: Variant) -> Deployment:
        if variant not in self.started:
            self.started[variant] = deploy(
                variant, server=self.server, databases=self.databases, directory=self.directory
            )
        return self.started[variant]

    def stop(self) -> None:
        # Killed, not stopped: the cancelled workflows' threads still wait in recv, and a
        # Python executor waits for them at exit (ten seconds each before stop() kills).
        for deployment in self.started.values():
            deployment.executor.kill()


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def system_database_url(variant: Variant, databases: PostgresDatabases, directory: Path) -> str:
    if variant.database == "sqlite":
        return f"sqlite:///{directory / new_id('system')}.sqlite"
    return databases.new(f"sc_act_{variant.language[:2]}")


def deploy(
    variant: Variant,
    *,
    server: StepChange,
    databases: PostgresDatabases,
    directory: Path,
    start: Callable[..., Executor] | None = None,
) -> Deployment:
    """Register an application for `variant` and start its executor."""
    app, key = new_id(f"act-{variant.language[:2]}"), f"key-{uuid.uuid4().hex}"
    url = system_database_url(variant, databases, directory)
    given = ["--system-database-url", url] if variant.reads_database else []
    server.manage("register_app", app, "--key", key, *given)
    options: dict[str, Any] = {
        "app": app,
        "key": key,
        "system_database_url": url,
        "version": variant.version,
    }
    if start is None:
        executor = Executor(
            variant.language, conductor_url=server.ws_url, log_dir=directory, **options
        )
    else:
        executor = start(variant.language, **options)
    try:
        server.wait_executors(app, 1)
    except AssertionError:
        executor.stop()
        raise
    return Deployment(variant, app, server, executor, SystemDatabase(url))


@pytest.fixture(scope="module")
def deployments(
    stepchange: StepChange,
    databases: PostgresDatabases,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployments]:
    made = Deployments(stepchange, databases, tmp_path_factory.mktemp("executors"))
    yield made
    made.stop()


@pytest.fixture
def deployment(request: pytest.FixtureRequest, deployments: Deployments) -> Deployment:
    variant: Variant = request.param
    return deployments.get(variant)


def on(*variants: Variant) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("deployment", variants, indirect=True, ids=str)


def now_ms() -> int:
    return int(time.time() * 1000)


@on(*EVERY)
def test_an_operator_cancels_a_waiting_workflow_then_resumes_it_to_success(
    deployment: Deployment,
) -> None:
    workflow_id = deployment.approval()

    status, answer = deployment.act(workflow_id, "cancel", cancel_children=True, reason="stuck")
    assert status == 200, answer
    assert answer["action"] == "cancel"
    row = deployment.wait_status(workflow_id, "CANCELLED")
    assert row["queue_name"] is None
    # Cancelling it again is refused: there is nothing left to cancel.
    status, answer = deployment.act(workflow_id, "cancel")
    assert status == 409, answer

    status, answer = deployment.act(workflow_id, "resume")
    assert status == 200, answer
    row = deployment.wait_status(workflow_id, "ENQUEUED", "PENDING")
    assert row["queue_name"] == "_dbos_internal_queue"
    assert row["recovery_attempts"] <= 1
    # Running again, it gets the message it waits for and finishes.
    deployment.executor.get(f"/send?workflow_id={workflow_id}&message=approved")
    deployment.wait_status(workflow_id, "SUCCESS")
    [recv] = [s for s in deployment.db.steps(workflow_id) if "recv" in s["function_name"]]
    assert recv["output"] is not None
    code, shown = deployment.server.api("GET", f"/apps/{deployment.app}/workflows/{workflow_id}")
    assert code == 200, shown
    assert "received" in str(shown["output"])
    actions = {record["action"]: record for record in deployment.audit(workflow_id)}
    assert actions["workflow.cancel"]["result"] == "ok"
    assert actions["workflow.cancel"]["reason"] == "stuck"
    assert actions["workflow.resume"]["result"] == "ok"


@on(*EVERY)
def test_a_fork_from_a_step_copies_the_steps_before_it_and_a_restart_copies_none(
    deployment: Deployment,
) -> None:
    source = deployment.greet("forky")
    deployment.wait_status(source, "SUCCESS")
    shout = deployment.step_id(source, "shout")
    assert deployment.step_id(source, "fetch") == deployment.variant.first_step
    fork_id = new_id("fork")

    status, answer = deployment.act(source, "fork", start_step=shout, new_workflow_id=fork_id)
    assert status == 200, answer
    assert answer["new_workflow_id"] == fork_id
    fork = deployment.wait_status(fork_id, "SUCCESS")
    assert fork["forked_from"] == source
    # The steps before `start_step` are the source's checkpoints, copied (fetch and the
    # first event); from shout on, the fork ran them itself, after the source had finished.
    copied = deployment.checkpoints(fork_id, below=shout)
    assert len(copied) == 2
    assert copied == deployment.checkpoints(source, below=shout)
    source_done = max(s["completed_at_epoch_ms"] for s in deployment.db.steps(source))
    [rerun] = [s for s in deployment.db.steps(fork_id) if s["function_id"] == shout]
    assert rerun["function_name"] == "shout"
    assert rerun["started_at_epoch_ms"] > source_done
    # Forking to the same id again forks nothing.
    status, answer = deployment.act(source, "fork", start_step=shout, new_workflow_id=fork_id)
    assert status == 409, answer

    asked_at = now_ms()
    status, answer = deployment.act(source, "restart")
    assert status == 200, answer
    restart_id = answer["new_workflow_id"]
    restarted = deployment.wait_status(restart_id, "SUCCESS")
    assert restarted["forked_from"] == source
    # Restarted from the first step (1 in Python, 0 in TypeScript): even fetch ran again.
    first = deployment.db.steps(restart_id)[0]
    assert first["function_name"] == "fetch"
    assert first["function_id"] == deployment.variant.first_step
    assert first["started_at_epoch_ms"] >= asked_at
    assert deployment.row(source)["was_forked_from"]


@on(*EVERY)
def test_a_failed_workflow_is_forked_from_its_failed_step(deployment: Deployment) -> None:
    source = deployment.greet("fail1")
    deployment.wait_status(source, "ERROR")
    shout = deployment.step_id(source, "shout")

    status, answer = deployment.act(source, "fork-from-failure", mode="last_failure")
    assert status == 200, answer
    [fork_id] = answer["new_workflow_ids"]
    assert fork_id != source
    # The same input fails the same way again; what matters is where it started.
    fork = deployment.wait_status(fork_id, "ERROR")
    assert fork["forked_from"] == source
    # It started at the failed step: the steps before it were copied, that one ran again.
    copied = deployment.checkpoints(fork_id, below=shout)
    assert len(copied) == 2
    assert copied == deployment.checkpoints(source, below=shout)
    [failed] = [s for s in deployment.db.steps(source) if s["function_id"] == shout]
    [again] = [s for s in deployment.db.steps(fork_id) if s["function_id"] == shout]
    assert failed["error"] is not None
    assert again["error"] is not None
    assert again["started_at_epoch_ms"] > failed["completed_at_epoch_ms"]


@on(PYTHON_SQLITE, PYTHON_POSTGRES)
def test_a_python_executor_rewinds_a_finished_workflow_under_the_same_id(
    deployment: Deployment,
) -> None:
    workflow_id = deployment.greet("rewound")
    deployment.wait_status(workflow_id, "SUCCESS")
    shout = deployment.step_id(workflow_id, "shout")
    [fetch] = [s for s in deployment.db.steps(workflow_id) if s["function_name"] == "fetch"]

    asked_at = now_ms()
    status, answer = deployment.act(workflow_id, "rewind", start_step=shout)
    assert status == 200, answer
    assert answer["new_workflow_ids"] == []

    def rerun() -> list[dict[str, Any]] | None:
        steps = deployment.db.steps(workflow_id)
        redone = [s for s in steps if s["function_id"] >= shout]
        finished = deployment.db.status(workflow_id) == "SUCCESS"
        return (
            steps if finished and redone and redone[0]["started_at_epoch_ms"] >= asked_at else None
        )

    steps = eventually(rerun, timeout=20, what=f"{workflow_id} to run again from step {shout}")
    # The step before the rewind point was kept, not run again.
    assert steps[0]["function_id"] == fetch["function_id"]
    assert steps[0]["started_at_epoch_ms"] == fetch["started_at_epoch_ms"]
    assert deployment.db.count("workflow_output", workflow_id) == 1
    assert deployment.db.rows(
        "SELECT count(*) AS n FROM workflow_status WHERE forked_from = %s", workflow_id
    ) == [{"n": 0}]


@on(TYPESCRIPT_POSTGRES)
def test_rewind_is_refused_when_no_executor_can_do_it(deployment: Deployment) -> None:
    workflow_id = deployment.greet("unrewound")
    before = deployment.wait_status(workflow_id, "SUCCESS")

    shout = deployment.step_id(workflow_id, "shout")

    status, answer = deployment.act(workflow_id, "rewind", start_step=shout)
    assert status == 409, answer
    assert "No connected executor can rewind" in answer["detail"]
    assert deployment.db.workflow(workflow_id) == before
    [record] = deployment.audit(workflow_id)
    assert (record["action"], record["result"]) == ("workflow.rewind", "failed")


@on(*EVERY)
def test_deleting_a_workflow_and_its_child_removes_every_row(deployment: Deployment) -> None:
    workflow_id = deployment.greet("doomed")
    deployment.wait_status(workflow_id, "SUCCESS")
    # Starting the child and waiting for it are two steps that both name it.
    [child] = {s["child_workflow_id"] for s in deployment.db.steps(workflow_id)} - {None}
    held = {table: deployment.db.count(table, workflow_id) for table in GREET_TABLES}
    assert all(held.values()), held
    assert deployment.db.count("workflow_status", child) == 1

    status, answer = deployment.act(workflow_id, "delete", delete_children=True)
    assert status == 200, answer
    left = {table: deployment.db.count(table, workflow_id) for table in GREET_TABLES}
    assert left == dict.fromkeys(GREET_TABLES, 0)
    assert deployment.db.count("workflow_status", child) == 0
    assert deployment.db.count("operation_outputs", child) == 0
    status, answer = deployment.server.api("GET", f"/apps/{deployment.app}/workflows/{workflow_id}")
    assert status == 404, answer


def follow_job(deployment: Deployment, job_id: int) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        status, job = deployment.server.api("GET", f"/apps/{deployment.app}/bulk-actions/{job_id}")
        assert status == 200, job
        assert job["state"] != "failed", job
        return job if job["state"] == "done" else None

    job: dict[str, Any] = eventually(done, timeout=20, what=f"bulk job {job_id} to finish")
    return job


@on(*EVERY)
def test_a_bulk_cancel_then_a_bulk_delete_reach_every_chosen_workflow(
    deployment: Deployment,
) -> None:
    chosen = [deployment.approval() for _ in range(3)]
    bystander = deployment.approval()

    status, job = deployment.server.api(
        "POST",
        f"/apps/{deployment.app}/bulk-actions",
        {"action": "cancel", "workflow_ids": chosen, "reason": "drain"},
    )
    assert status == 201, job
    job = follow_job(deployment, job["id"])
    assert job["progress"]["ok"] == job["progress"]["total"] == 3
    assert sorted(item["workflow_id"] for item in job["items"]) == sorted(chosen)
    assert {item["state"] for item in job["items"]} == {"ok"}
    # One request carried the whole batch.
    assert len({item["request_id"] for item in job["items"]}) == 1
    assert [deployment.db.status(workflow_id) for workflow_id in chosen] == ["CANCELLED"] * 3
    assert deployment.db.status(bystander) == "PENDING"

    status, job = deployment.server.api(
        "POST", f"/apps/{deployment.app}/bulk-actions", {"action": "delete", "workflow_ids": chosen}
    )
    assert status == 201, job
    job = follow_job(deployment, job["id"])
    assert [item["state"] for item in job["items"]] == ["ok"] * 3
    assert [deployment.db.workflow(workflow_id) for workflow_id in chosen] == [None] * 3
    assert deployment.db.status(bystander) == "PENDING"


@on(*EVERY)
def test_an_unknown_workflow_is_a_404_and_is_audited(deployment: Deployment) -> None:
    ghost = new_id("ghost")

    status, answer = deployment.act(ghost, "cancel")
    assert status == 404, answer
    assert answer["detail"] == f"No workflow {ghost} in {deployment.app}."
    [record] = deployment.audit(ghost)
    assert (record["action"], record["result"]) == ("workflow.cancel", "failed")
    assert record["detail"] == answer["detail"]
    assert deployment.db.workflow(ghost) is None


@pytest.mark.parametrize("variant", EVERY, ids=str)
def test_with_its_executor_stopped_an_action_takes_the_database_path_or_is_a_503(
    variant: Variant,
    stepchange: StepChange,
    databases: PostgresDatabases,
    executors: Callable[..., Executor],
    tmp_path: Path,
) -> None:
    lonely = deploy(
        variant, server=stepchange, databases=databases, directory=tmp_path, start=executors
    )
    source = lonely.greet("orphan")
    lonely.wait_status(source, "SUCCESS")
    lonely.executor.stop()
    eventually(lambda: stepchange.executors(lonely.app) == [], timeout=10, what="a goodbye")

    status, answer = lonely.act(source, "fork", start_step=variant.first_step)
    [record] = lonely.audit(source)
    forks = lonely.db.rows(
        "SELECT workflow_uuid, status FROM workflow_status WHERE forked_from = %s", source
    )
    if not variant.reads_database:
        # No executor and no system database: nowhere to act, and nothing reached the database.
        assert status == 503, answer
        assert answer["detail"] == f"No executor of {lonely.app} is connected."
        assert (record["action"], record["result"]) == ("workflow.fork", "failed")
        assert record["detail"] == answer["detail"]
        assert not lonely.row(source)["was_forked_from"]
        assert forks == []
        return
    # With the system database registered, the fork is written into it, as the SDK would,
    # for the next executor to pick up; the answer and the audit record say which path.
    assert status == 200, answer
    assert answer["path"] == "database"
    [fork] = forks
    assert fork["workflow_uuid"] == answer["new_workflow_id"]
    assert fork["status"] == "ENQUEUED"
    assert lonely.row(source)["was_forked_from"]
    assert (record["action"], record["result"]) == ("workflow.fork", "ok")
    assert record["parameters"]["path"] == "database"
