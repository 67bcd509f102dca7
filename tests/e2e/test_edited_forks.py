"""Edited forks run by real, unmodified executors: dbos 3.2.0 on SQLite and on Postgres,
@dbos-inc/dbos-sdk 5.0.2 on Postgres, and dbos 2.31.1, whose schema (migration 108) keeps
inputs in `workflow_status.inputs`.

StepChange writes each fork into the system database (PROTOCOL.md §5.4) and the sample
application's executor claims it from its queue. The greet workflow's final output is
`{"greeting": shout(fetch(name), times), "audit": audit_greeting(greeting)}`, so the
output alone shows which input and which step outputs the fork ran with.
"""

import importlib.util
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.servers import Executor, PostgresDatabases, StepChange, SystemDatabase, eventually
from tests.sdk_fixtures import OUT as SDK_FIXTURES
from workflows import serialization as codec

pytestmark = pytest.mark.e2e

GENERATE = Path(__file__).resolve().parents[1] / "fixtures" / "generate.py"


@dataclass(frozen=True)
class Kind:
    """A kind of executor: its language, database and SDK version."""

    language: str
    database: str
    sdk: str

    @property
    def first_step(self) -> int:
        return 0 if self.language == "typescript" else 1

    @property
    def version(self) -> str:
        return "tsv1" if self.language == "typescript" else "v1"

    @property
    def legacy(self) -> bool:
        """Before migration 109: payloads live in workflow_status, not workflow_input/output."""
        return self.sdk.startswith("2.")

    def __str__(self) -> str:
        return f"{self.language}-{self.sdk}-{self.database}"


PYTHON_SQLITE = Kind("python", "sqlite", "3.2.0")
PYTHON_POSTGRES = Kind("python", "postgres", "3.2.0")
TYPESCRIPT_POSTGRES = Kind("typescript", "postgres", "5.0.2")
PYTHON_LEGACY = Kind("python", "postgres", "2.31.1")
KINDS = [PYTHON_SQLITE, PYTHON_POSTGRES, TYPESCRIPT_POSTGRES, PYTHON_LEGACY]


@dataclass(frozen=True)
class Case:
    """One edited fork of greet. Steps are counted from the language's first step: fetch
    is 0, its event 1, shout 2. `expected` is the greeting the fork must end with."""

    name: str
    source: str
    start: int
    expected: str
    input: list[Any] | None = None
    steps: dict[int, Any] = field(default_factory=dict)
    serialization: str | None = None

    def __str__(self) -> str:
        return self.name


FETCH, SHOUT = 0, 2
CASES = [
    # Only the input: shout runs again with the new `times` (five "!"), while the name
    # still comes from the copied fetch step (alice), which is not run again.
    Case("input-only", "alice", SHOUT, "HELLO ALICE!!!!!", input=["bob", 5]),
    # Only fetch's recorded profile: shout reads the edited name and greeting.
    Case(
        "step-only",
        "alice",
        SHOUT,
        "HOWDY CAROL!!",
        steps={FETCH: {"name": "carol", "greeting": "howdy"}},
    ),
    Case(
        "input-and-step",
        "alice",
        SHOUT,
        "HEY DAVE!!!",
        input=["bob", 3],
        steps={FETCH: {"name": "dave", "greeting": "hey"}},
    ),
    # shout raised for fail1; given an output, the fork goes on from the step after it.
    Case(
        "failed-step-succeeds",
        "fail1",
        SHOUT + 1,
        "RESCUED FAIL1!",
        steps={SHOUT: "RESCUED FAIL1!"},
    ),
    # Nothing copied: fetch runs again, with the new name.
    Case("from-the-first-step", "alice", FETCH, "HELLO ERIN!!!!", input=["erin", 4]),
    # Edited values written as portable JSON, not the source's own format: the fork's
    # output is then written as portable JSON too.
    Case(
        "portable-json",
        "alice",
        SHOUT,
        "HI FRAN!!",
        input=["bob", 2],
        steps={FETCH: {"name": "fran", "greeting": "hi"}},
        serialization=codec.PORTABLE_JSON,
    ),
]


@dataclass
class Deployment:
    """A registered application (with its system database), its executor and its sources."""

    kind: Kind
    app: str
    server: StepChange
    executor: Executor
    db: SystemDatabase
    sources: dict[str, str] = field(default_factory=dict)

    def source(self, name: str) -> str:
        """A greet workflow run to its end, one per name, shared by the cases."""
        if name not in self.sources:
            workflow_id = f"src-{name}-{uuid.uuid4().hex[:8]}"
            self.executor.get(f"/?name={name}&workflow_id={workflow_id}")
            self.finished(workflow_id)
            self.sources[name] = workflow_id
        return self.sources[name]

    def finished(self, workflow_id: str, *, timeout: float = 60) -> dict[str, Any]:
        """The workflow_status row once SUCCESS or ERROR (the executor's log if never)."""

        def check() -> dict[str, Any] | None:
            row = self.db.workflow(workflow_id)
            return row if row is not None and row["status"] in {"SUCCESS", "ERROR"} else None

        try:
            found: dict[str, Any] = eventually(check, timeout=timeout, what=f"{workflow_id} to end")
        except AssertionError as exc:
            row = self.db.workflow(workflow_id)
            raise AssertionError(f"{exc}\nrow: {row}\n{self.log()}") from None
        return found

    def fork(self, source: str, body: dict[str, Any]) -> dict[str, Any]:
        status, answer = self.server.api(
            "POST", f"/apps/{self.app}/workflows/{source}/edited-forks", body
        )
        assert status == 201, answer
        assert answer["status"] == "done", answer
        return dict(answer)

    def payload(self, workflow_id: str, column: str) -> codec.Decoded:
        """`inputs`, `output` or `error` as the row's own format decodes it."""
        row = self.db.workflow(workflow_id)
        assert row is not None
        table = "workflow_input" if column == "inputs" else "workflow_output"
        if self.kind.legacy:
            stored = row[column]
        else:
            [held] = self.db.rows(
                f"SELECT {column} FROM {table} WHERE workflow_uuid = %s", workflow_id
            )
            stored = held[column]
        kind: Any = "value" if column == "output" else column
        return codec.decode(stored, row["serialization"], kind=kind)

    def log(self) -> str:
        return "executor log (tail):\n" + self.executor.output()[-4000:]


@dataclass
class Deployments:
    """Each kind of executor started once, when a case first asks for it."""

    server: StepChange
    databases: PostgresDatabases
    directory: Path
    started: dict[Kind, Deployment] = field(default_factory=dict)

    def get(self, kind: Kind, python: str) -> Deployment:
        if kind not in self.started:
            self.deploy(kind, python)
        return self.started[kind]

    def deploy(self, kind: Kind, python: str) -> None:
        app, key = f"ef-{kind.language[:2]}-{uuid.uuid4().hex[:6]}", f"key-{uuid.uuid4().hex}"
        if kind.database == "sqlite":
            url = f"sqlite:///{self.directory / app}.sqlite"
        else:
            url = self.databases.new(f"sc_ef_{kind.language[:2]}")
        # StepChange writes the fork into this database itself.
        self.server.manage("register_app", app, "--key", key, "--system-database-url", url)
        executor = Executor(
            kind.language,
            conductor_url=self.server.ws_url,
            app=app,
            key=key,
            system_database_url=url,
            version=kind.version,
            log_dir=self.directory,
            python=python,
        )
        # Kept before it is checked, so that stop() stops it either way.
        self.started[kind] = Deployment(kind, app, self.server, executor, SystemDatabase(url))
        [info] = self.server.wait_executors(app, 1)
        assert info["dbos_version"] == kind.sdk, info
        [migration] = self.started[kind].db.rows("SELECT version FROM dbos_migrations")
        assert (migration["version"] < 109) == kind.legacy, migration

    def stop(self) -> None:
        for deployment in self.started.values():
            deployment.executor.stop()


@pytest.fixture(scope="module")
def legacy_python() -> str:
    """A Python with dbos 2.31.1: the virtualenv the SDK fixtures use, made if missing."""
    spec = importlib.util.spec_from_file_location("sdk_fixture_generator", GENERATE)
    assert spec is not None
    assert spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    # Its dataclasses look their module up in sys.modules while they are made.
    sys.modules[spec.name] = generator
    spec.loader.exec_module(generator)
    python, _ = generator.prepare_py2311(SDK_FIXTURES)
    return str(python)


@pytest.fixture(scope="module")
def deployments(
    stepchange: StepChange,
    databases: PostgresDatabases,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployments]:
    made = Deployments(stepchange, databases, tmp_path_factory.mktemp("edited-forks"))
    yield made
    made.stop()


@pytest.fixture
def deployment(request: pytest.FixtureRequest, deployments: Deployments) -> Deployment:
    kind: Kind = request.param
    python = request.getfixturevalue("legacy_python") if kind.legacy else sys.executable
    return deployments.get(kind, python)


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("deployment", KINDS, indirect=True, ids=str)
def test_an_edited_fork_runs_on_an_unmodified_executor_with_the_edited_values(
    deployment: Deployment, case: Case
) -> None:
    first = deployment.kind.first_step
    source = deployment.source(case.source)
    assert deployment.db.status(source) == (
        "ERROR" if case.source.startswith("fail") else "SUCCESS"
    )
    new_id = f"ef-{case.name}-{uuid.uuid4().hex[:8]}"
    body: dict[str, Any] = {
        "start_step": first + case.start,
        "step_outputs": {str(first + step): value for step, value in case.steps.items()},
        "new_workflow_id": new_id,
        "reason": f"e2e: {case.name}",
        "run": True,
    }
    if case.input is not None:
        body["input"] = {"args": case.input, "kwargs": {}}
    if case.serialization is not None:
        body["serialization"] = case.serialization

    answer = deployment.fork(source, body)

    assert answer["new_workflow_id"] == new_id
    assert answer["edited_steps"] == sorted(first + step for step in case.steps)
    row = deployment.finished(new_id)
    error = deployment.payload(new_id, "error").value if row["status"] == "ERROR" else None
    assert row["status"] == "SUCCESS", f"{error}\n{deployment.log()}"
    assert row["forked_from"] == source
    if case.serialization is not None:
        assert row["serialization"] == case.serialization
    output = deployment.payload(new_id, "output")
    assert output.ok, output
    expected = case.expected
    assert output.value == {
        "greeting": expected,
        "audit": {"length": len(expected), "words": len(expected.split()), "audited": True},
    }
    if case.input is not None:
        # Where this schema keeps inputs: workflow_input, or workflow_status.inputs before 109.
        assert deployment.payload(new_id, "inputs").value == {"args": case.input, "kwargs": {}}
