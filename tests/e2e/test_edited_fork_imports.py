"""Edited forks for applications whose system database StepChange cannot reach: the fork
travels to a real, unmodified executor as an `import_workflow` payload (PROTOCOL.md §5.4,
option B) that StepChange builds from the executor's own export, for dbos 3.2.0 (a pickle)
and @dbos-inc/dbos-sdk 5.0.2 (JSON).

Each application is registered without a system database URL: StepChange reads and acts
only through the executor, which keeps its own database. The greet workflow's output is
`{"greeting": shout(fetch(name), times), "audit": audit_greeting(greeting)}`, so the
output alone shows which input and which step outputs the fork ran with.
"""

import ast
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.servers import Executor, PostgresDatabases, StepChange, eventually

pytestmark = pytest.mark.e2e

PYTHON, TYPESCRIPT = "python", "typescript"
# Steps counted from the language's first step: fetch, its event, shout.
FETCH, SHOUT = 0, 2


@dataclass
class Deployment:
    """An application StepChange knows only through its executor."""

    language: str
    app: str
    server: StepChange
    executor: Executor
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def first(self) -> int:
        return 0 if self.language == TYPESCRIPT else 1

    def source(self, name: str) -> str:
        """A greet workflow run to its end, one per name, shared by the stories."""
        if name not in self.sources:
            workflow_id = f"src-{name}-{uuid.uuid4().hex[:8]}"
            self.executor.get(f"/?name={name}&workflow_id={workflow_id}")
            self.finished(workflow_id)
            self.sources[name] = workflow_id
        return self.sources[name]

    def workflow(self, workflow_id: str) -> dict[str, Any] | None:
        """The workflow as the API shows it: relayed by the executor (get_workflow)."""
        status, body = self.server.api("GET", f"/apps/{self.app}/workflows/{workflow_id}")
        assert status in {200, 404}, body
        return dict(body) if status == 200 else None

    def finished(self, workflow_id: str, *, timeout: float = 60) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            found = self.workflow(workflow_id)
            return found if found and found["status"] in {"SUCCESS", "ERROR"} else None

        try:
            done: dict[str, Any] = eventually(check, timeout=timeout, what=f"{workflow_id} ends")
        except AssertionError as exc:
            found = self.workflow(workflow_id)
            raise AssertionError(f"{exc}\nworkflow: {found}\n{self.log()}") from None
        return done

    def fork(self, source: str, body: dict[str, Any]) -> tuple[int, Any]:
        return self.server.api("POST", f"/apps/{self.app}/workflows/{source}/edited-forks", body)

    def output(self, workflow: dict[str, Any]) -> Any:
        """The executor's display text of the output, read back as data: Python shows a
        repr, TypeScript what node's util.inspect prints."""
        text = workflow["output"]
        assert isinstance(text, str), workflow
        return ast.literal_eval(text) if self.language == PYTHON else from_inspect(text)

    def log(self) -> str:
        return "executor log (tail):\n" + self.executor.output()[-4000:]


def from_inspect(text: str) -> Any:
    """Plain objects as util.inspect prints them (`{ greeting: 'HI', n: 2 }`), as data:
    single-quoted strings and bare keys become JSON. Enough for greet's output."""
    quoted = re.sub(r"'((?:[^'\\]|\\.)*)'", lambda found: json.dumps(found[1]), text)
    return json.loads(re.sub(r"([{,]\s*)([A-Za-z_$][\w$]*):", r'\1"\2":', quoted))


@dataclass
class Deployments:
    server: StepChange
    databases: PostgresDatabases
    directory: Path
    started: dict[str, Deployment] = field(default_factory=dict)

    def get(self, language: str) -> Deployment:
        if language not in self.started:
            self.deploy(language)
        return self.started[language]

    def deploy(self, language: str) -> None:
        app, key = f"efi-{language[:2]}-{uuid.uuid4().hex[:6]}", f"key-{uuid.uuid4().hex}"
        if language == PYTHON:
            url = f"sqlite:///{self.directory / app}.sqlite"
        else:
            url = self.databases.new("sc_efi_ts")
        # No --system-database-url: only the executor knows its database.
        self.server.manage("register_app", app, "--key", key)
        executor = Executor(
            language,
            conductor_url=self.server.ws_url,
            app=app,
            key=key,
            system_database_url=url,
            version="v1",
            log_dir=self.directory,
        )
        self.started[language] = Deployment(language, app, self.server, executor)
        [info] = self.server.wait_executors(app, 1)
        assert info["dbos_version"] == ("3.2.0" if language == PYTHON else "5.0.2"), info
        status, database = self.server.api("GET", f"/apps/{app}/system-database")
        assert (status, database["configured"]) == (200, False), database

    def stop(self) -> None:
        for deployment in self.started.values():
            deployment.executor.stop()


@pytest.fixture(scope="module")
def deployments(
    stepchange: StepChange,
    databases: PostgresDatabases,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployments]:
    made = Deployments(stepchange, databases, tmp_path_factory.mktemp("edited-fork-imports"))
    yield made
    made.stop()


@pytest.fixture(params=[PYTHON, TYPESCRIPT])
def deployment(request: pytest.FixtureRequest, deployments: Deployments) -> Deployment:
    return deployments.get(request.param)


@dataclass(frozen=True)
class Case:
    """One edited fork of greet; `expected` is the greeting it must end with."""

    name: str
    source: str
    start: int
    expected: str
    input: list[Any] | None = None
    steps: dict[int, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.name


CASES = [
    # The new input and fetch's recorded profile: shout runs again on the edited profile
    # with the new `times`.
    Case(
        "input-and-step",
        "alice",
        SHOUT,
        "HEY DAVE!!!",
        input=["bob", 3],
        steps={FETCH: {"name": "dave", "greeting": "hey"}},
    ),
    # Only the input, from the first step: nothing is copied and fetch runs again.
    Case("input-from-the-first-step", "alice", FETCH, "HELLO ERIN!!!!", input=["erin", 4]),
    # shout raised for fail1; given an output, the fork goes on from the step after it.
    Case(
        "failed-step-succeeds",
        "fail1",
        SHOUT + 1,
        "RESCUED FAIL1!",
        steps={SHOUT: "RESCUED FAIL1!"},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_an_edited_fork_travels_as_an_import_and_runs_with_the_edited_values(
    deployment: Deployment, case: Case
) -> None:
    first = deployment.first
    source = deployment.source(case.source)
    before = deployment.workflow(source)
    assert before is not None
    assert before["status"] == ("ERROR" if case.source.startswith("fail") else "SUCCESS")
    new_id = f"efi-{case.name}-{uuid.uuid4().hex[:8]}"
    body: dict[str, Any] = {
        "start_step": first + case.start,
        "step_outputs": {str(first + step): value for step, value in case.steps.items()},
        "new_workflow_id": new_id,
        "reason": f"e2e import: {case.name}",
        "run": True,
    }
    if case.input is not None:
        body["input"] = {"args": case.input, "kwargs": {}}

    status, answer = deployment.fork(source, body)

    assert status == 201, answer
    assert (answer["status"], answer["new_workflow_id"]) == ("done", new_id), answer
    forked = deployment.finished(new_id)
    assert forked["status"] == "SUCCESS", f"{forked}\n{deployment.log()}"
    assert forked["forked_from"] == source
    expected = case.expected
    assert deployment.output(forked) == {
        "greeting": expected,
        "audit": {"length": len(expected), "words": len(expected.split()), "audited": True},
    }
    code, audit = deployment.server.api(
        "GET", f"/audit?action=edited_fork.run&application={deployment.app}&target={source}"
    )
    assert code == 200, audit
    [record] = [item for item in audit["items"] if item["parameters"]["new_workflow_id"] == new_id]
    assert record["result"] == "ok", record
    assert record["parameters"]["route"] == "import"
    assert record["request_id"], record
    assert "as import_workflow" in record["detail"]


def test_a_fork_onto_an_id_the_executor_already_has_is_refused_and_nothing_is_imported(
    deployment: Deployment,
) -> None:
    source = deployment.source("alice")
    taken = deployment.source("fail1")
    before = deployment.workflow(taken)
    body = {
        "start_step": deployment.first + SHOUT,
        "input": {"args": ["mallory", 9], "kwargs": {}},
        "new_workflow_id": taken,
        "reason": "e2e import: taken id",
        "run": True,
    }

    status, answer = deployment.fork(source, body)

    assert status == 400, answer
    [error] = answer["detail"]
    assert error["field"] == "new_workflow_id"
    assert taken in error["message"]
    after = deployment.workflow(taken)
    assert after == before
