"""Export and import between real, unmodified executors (dbos 3.2.0, @dbos-inc/dbos-sdk
5.0.2): a slow_task cancelled mid-way in application A (after its slow step, during its
durable sleep), exported from A through the live server, imported into B (its own system
database and executor running the same code) with "resume after import", and run to
SUCCESS there, the recorded step not run again. The same as a copy with new ids into A
itself, and into an application StepChange reaches only through its executor (the
`import_workflow` route). Tampered and unsigned files are refused by the live server.
"""

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.servers import Executor, PostgresDatabases, StepChange, SystemDatabase, eventually

pytestmark = pytest.mark.e2e

PYTHON, TYPESCRIPT = "python", "typescript"
SECONDS = 6  # slow_task: a 3 s step (nap), a 3 s durable sleep, then finish.
EXPECTED = f"slept {SECONDS}s"


@dataclass
class App:
    """A registered application, its executor and (when StepChange reaches it) its database."""

    language: str
    name: str
    server: StepChange
    executor: Executor
    db: SystemDatabase | None

    def workflow(self, workflow_id: str) -> dict[str, Any] | None:
        status, body = self.server.api("GET", f"/apps/{self.name}/workflows/{workflow_id}")
        assert status in {200, 404}, body
        return dict(body) if status == 200 else None

    def finished(self, workflow_id: str, *, timeout: float = 90) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            found = self.workflow(workflow_id)
            return found if found and found["status"] in {"SUCCESS", "ERROR"} else None

        try:
            done: dict[str, Any] = eventually(check, timeout=timeout, what=f"{workflow_id} ends")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.workflow(workflow_id)}\n{self.log()}") from None
        return done

    def log(self) -> str:
        return "executor log (tail):\n" + self.executor.output()[-4000:]


@dataclass
class Apps:
    server: StepChange
    databases: PostgresDatabases
    directory: Path
    started: list[App] = field(default_factory=list)

    def deploy(self, language: str, *, reachable: bool = True) -> App:
        name, key = f"ex-{language[:2]}-{uuid.uuid4().hex[:6]}", f"key-{uuid.uuid4().hex}"
        if language == PYTHON:
            url = f"sqlite:///{self.directory / name}.sqlite"
        else:
            url = self.databases.new("sc_ex_ts")
        flags = ["--system-database-url", url] if reachable else []
        self.server.manage("register_app", name, "--key", key, *flags)
        executor = Executor(
            language,
            conductor_url=self.server.ws_url,
            app=name,
            key=key,
            system_database_url=url,
            version="tsv1" if language == TYPESCRIPT else "v1",
            log_dir=self.directory,
        )
        app = App(language, name, self.server, executor, SystemDatabase(url) if reachable else None)
        self.started.append(app)
        self.server.wait_executors(name, 1)
        return app

    def stop(self) -> None:
        for app in self.started:
            app.executor.stop()


@pytest.fixture(scope="module")
def apps(
    stepchange: StepChange, databases: PostgresDatabases, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Apps]:
    made = Apps(stepchange, databases, tmp_path_factory.mktemp("exports"))
    yield made
    made.stop()


def raw(
    server: StepChange, method: str, path: str, body: bytes | None = None
) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(
        f"{server.url}/api/v1{path}",
        method=method,
        data=body,
        headers={"Authorization": f"Bearer {server.token()}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read(), dict(error.headers)


def cancelled_mid_way(app: App) -> str:
    """A slow_task cancelled after its slow step, during its durable sleep."""
    workflow_id = f"slow-{uuid.uuid4().hex[:8]}"
    app.executor.get(f"/slow?seconds={SECONDS}&workflow_id={workflow_id}")

    eventually(
        lambda: steps_named(app, workflow_id, "nap"),
        timeout=30,
        what=f"{workflow_id}'s nap step recorded",
    )
    status, answer = app.server.api(
        "POST", f"/apps/{app.name}/workflows/{workflow_id}/cancel", {"reason": "e2e: export"}
    )
    assert status == 200, answer
    eventually(
        lambda: (app.workflow(workflow_id) or {}).get("status") == "CANCELLED",
        what=f"{workflow_id} cancelled",
    )
    return workflow_id


def exported(app: App, workflow_id: str) -> bytes:
    status, content, headers = raw(
        app.server, "GET", f"/apps/{app.name}/workflows/{workflow_id}/export"
    )
    assert status == 200, content[:2000]
    assert workflow_id in headers.get("Content-Disposition", ""), headers
    return content


def imported(target: App, content: bytes, query: str) -> dict[str, Any]:
    status, answer, _ = raw(target.server, "POST", f"/apps/{target.name}/imports?{query}", content)
    assert status == 201, answer[:4000]
    body: dict[str, Any] = json.loads(answer)
    return body


def succeeded(app: App, workflow_id: str) -> dict[str, Any]:
    done = app.finished(workflow_id)
    assert done["status"] == "SUCCESS", f"{done}\n{app.log()}"
    return done


def output_of(done: dict[str, Any]) -> Any:
    """The output as the API shows it: JSON-decoded where it can be, else its display text."""
    value = done.get("output")
    return value.strip("'\"") if isinstance(value, str) else value


def steps_named(app: App, workflow_id: str, name: str) -> list[dict[str, Any]]:
    assert app.db is not None
    return [s for s in app.db.steps(workflow_id) if s["function_name"] == name]


@pytest.mark.parametrize("language", [PYTHON, TYPESCRIPT])
def test_a_cancelled_workflow_exported_from_one_application_runs_to_success_in_another(
    apps: Apps, language: str
) -> None:
    a, b = apps.deploy(language), apps.deploy(language)
    workflow_id = cancelled_mid_way(a)
    content = exported(a, workflow_id)
    [nap] = steps_named(a, workflow_id, "nap")

    answer = imported(b, content, "resume=true")

    assert answer["workflow_ids"] == [workflow_id]
    assert answer["route"] == "database"
    assert answer["source_application"] == a.name
    done = succeeded(b, workflow_id)
    assert EXPECTED in str(done["output"]), done
    # The recorded slow step was copied, not run again: the same output row, once.
    [copied] = steps_named(b, workflow_id, "nap")
    assert copied["output"] == nap["output"]
    # A is untouched: its workflow is still cancelled.
    assert (a.workflow(workflow_id) or {}).get("status") == "CANCELLED"

    # The same file as a copy with new ids into A itself.
    again = imported(a, content, "resume=true&new_ids=true")
    [new_id] = again["workflow_ids"]
    assert new_id != workflow_id
    assert again["ids"] == {workflow_id: new_id}
    done = succeeded(a, new_id)
    assert EXPECTED in str(done["output"]), done
    assert (a.workflow(workflow_id) or {}).get("status") == "CANCELLED"


def test_an_export_is_imported_through_the_executor_where_no_system_database_is_reachable(
    apps: Apps,
) -> None:
    a, c = apps.deploy(PYTHON), apps.deploy(PYTHON, reachable=False)
    workflow_id = cancelled_mid_way(a)
    content = exported(a, workflow_id)

    answer = imported(c, content, "resume=true")

    assert answer["route"] == "import"
    assert answer["workflow_ids"] == [workflow_id]
    done = succeeded(c, workflow_id)
    assert EXPECTED in str(done["output"]), done


def test_a_tampered_or_unsigned_file_is_refused_by_the_live_server_and_nothing_is_written(
    apps: Apps,
) -> None:
    a, b = apps.deploy(PYTHON), apps.deploy(PYTHON)
    workflow_id = cancelled_mid_way(a)
    document = json.loads(exported(a, workflow_id))
    tampered = json.loads(json.dumps(document))
    tampered["exported_by"] = "mallory"
    unsigned = {key: value for key, value in document.items() if key != "signature"}
    assert b.db is not None

    for body, words in (
        (tampered, "changed"),
        (unsigned, "no signature"),
    ):
        status, answer, _ = raw(
            b.server, "POST", f"/apps/{b.name}/imports?resume=true", json.dumps(body).encode()
        )
        assert status == 400, answer
        detail = json.loads(answer)["detail"]
        assert words in detail, detail
        assert b.db.workflow(workflow_id) is None
