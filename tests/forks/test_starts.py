"""Stories about starting a workflow: the rows written are the ones DBOS's own client
enqueue writes, and bad input is refused with every reason at once, nothing written.
Over copies of databases real SDKs wrote."""

import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from forks import starts
from forks.plans import ForkInvalidError, ForkRefusedError, NoSystemDatabaseError
from forks.starts import StartRequest
from stepchange.models import Application, AuditRecord
from tests.conftest import make_user
from tests.forks.test_services import copied, of, rows
from workflows import serialization as codec

GREET = "fixture_greet"  # greet(name: str, times: int = 2), run as ("alice", times=2)
PARKED = "fixture-parked"  # a queue the fixture app registers but never listens to
# Set by DBOS (or by the moment of writing), never the same twice.
OWN_COLUMNS = {"workflow_uuid", "created_at", "updated_at", "creator_xid"}


@pytest.fixture
def otto(system_databases: None) -> User:
    return make_user(username="otto", role="operator")


def start(app: Application, user: User, **fields: Any) -> starts.StartPlan:
    asked = StartRequest(**({"workflow_name": GREET} | fields))
    return starts.workflow_start(
        application=app, asked=asked, live_versions=["fixture-v1"], user=user
    )


def count(path: Path) -> int:
    return int(rows(path, "SELECT count(*) AS n FROM workflow_status")[0]["n"])


def client_enqueue(path: Path, app: str, serialization: str | None, **options: Any) -> str:
    """The reference: dbos 3.2.0's own DBOSClient enqueues into the same database."""
    from dbos import DBOSClient, WorkflowSerializationFormat

    client = DBOSClient(system_database_url=f"sqlite:///{path}", application_name=app)
    try:
        if serialization == "portable_json":
            options["serialization_type"] = WorkflowSerializationFormat.PORTABLE
        handle: Any = client.enqueue(
            {"workflow_name": GREET, "queue_name": PARKED, **options},  # type: ignore[typeddict-item]
            "zed",
            times=3,
        )
        return str(handle.get_workflow_id())
    finally:
        client.destroy()


@pytest.mark.parametrize("fixture", ["py320-sqlite-default", "py320-sqlite-portable"])
def test_a_started_workflow_has_the_row_dbos_client_enqueue_writes(
    otto: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path, fixture: str
) -> None:
    app, path = copied(sdk_fixtures[fixture], tmp_path)
    fmt = "portable_json" if fixture.endswith("portable") else "py_pickle"
    plan = start(
        app,
        otto,
        input={"args": ["zed"], "kwargs": {"times": 3}},
        queue_name=PARKED,
        workflow_id="wf-started",
        application_version="fixture-v1",
        priority=5,
        deduplication_id="d-1",
    )
    assert (plan.serialization, plan.notes, plan.doubts) == (fmt, [], [])
    theirs = client_enqueue(
        path, app.name, fmt, app_version="fixture-v1", priority=5, deduplication_id="d-2"
    )
    [mine] = of(path, "workflow_status", "wf-started")
    [reference] = of(path, "workflow_status", theirs)
    differ = {
        column for column in mine if column not in OWN_COLUMNS and mine[column] != reference[column]
    }
    assert differ == {"deduplication_id"}, {c: (mine[c], reference[c]) for c in differ}
    assert (mine["status"], mine["serialization"], mine["priority"]) == ("ENQUEUED", fmt, 5)
    [my_input] = of(path, "workflow_input", "wf-started")
    [their_input] = of(path, "workflow_input", theirs)
    assert codec.decode(my_input["inputs"], fmt, kind="inputs").value == {
        "args": ["zed"],
        "kwargs": {"times": 3},
    }
    assert codec.decode(my_input["inputs"], fmt, kind="inputs").value == (
        codec.decode(their_input["inputs"], fmt, kind="inputs").value
    )
    if fmt == "portable_json":
        # The same JSON; the key order is each SDK's own (Python and TypeScript differ).
        assert json.loads(my_input["inputs"]) == json.loads(their_input["inputs"])
    record = AuditRecord.objects.get(action=starts.START_ACTION)
    assert record.target == "wf-started"
    assert record.parameters["input_sha256"] == plan.input_sha256
    assert len(plan.input_sha256) == 64
    assert record.parameters["workflow_name"] == GREET
    assert record.parameters["queue_name"] == PARKED


def test_before_migration_109_the_input_goes_into_the_status_row(
    otto: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    app, path = copied(sdk_fixtures["py2311-sqlite-default"], tmp_path)
    plan = start(app, otto, input={"args": ["old"], "kwargs": {}}, workflow_id="wf-old")
    assert plan.input_row is None
    [row] = of(path, "workflow_status", "wf-old", "inputs, serialization, queue_name")
    assert (row["serialization"], row["queue_name"]) == ("py_pickle", starts.INTERNAL_QUEUE)
    assert codec.decode(row["inputs"], "py_pickle", kind="inputs").value == {
        "args": ["old"],
        "kwargs": {},
    }


def test_start_like_this_one_copies_the_earlier_run_and_portable_json_may_be_chosen(
    otto: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    fixture = sdk_fixtures["py320-sqlite-default"]
    app, path = copied(fixture, tmp_path)
    like = next(w["workflow_id"] for w in fixture["workflows"] if w["role"] == "success")
    plan = start(
        app, otto, like=like, input=["bob"], workflow_id="wf-like", serialization="portable_json"
    )
    # A plain list is the positional arguments; a keyword left out may have a default.
    assert plan.input == {"args": ["bob"], "kwargs": {}}
    [row] = of(path, "workflow_status", "wf-like", "name, serialization")
    assert (row["name"], row["serialization"]) == (GREET, "portable_json")


def test_every_wrong_value_is_reported_at_once_and_nothing_is_written(
    otto: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    app, path = copied(sdk_fixtures["py320-sqlite-default"], tmp_path)
    before = count(path)
    with pytest.raises(ForkInvalidError) as raised:
        start(
            app,
            otto,
            input={"positional": ["x"]},
            workflow_id="no spaces",
            queue_name=" ",
            priority=2**31,
            deduplication_id="",
            serialization="java_jackson",
        )
    fields = {error["field"] for error in raised.value.errors}
    assert fields == {
        "input",
        "workflow_id",
        "queue_name",
        "priority",
        "deduplication_id",
        "serialization",
    }
    messages = {error["field"]: error["message"] for error in raised.value.errors}
    assert messages["priority"] == starts.BAD_PRIORITY.format(high=2**31 - 1, got=2**31)
    assert messages["input"] == starts.INPUT_SHAPE
    with pytest.raises(ForkInvalidError) as unseen:
        start(app, otto, workflow_name="no_such_workflow", input=[])
    [error] = unseen.value.errors
    assert error["message"] == starts.NAME_NOT_SEEN.format(
        name="no_such_workflow", qualifier="", app=app.name
    )
    assert count(path) == before
    refused = AuditRecord.objects.filter(action=starts.START_ACTION, result="failed")
    assert refused.count() == 2


def test_an_input_unlike_earlier_runs_and_an_unseen_queue_need_a_second_word(
    otto: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    app, path = copied(sdk_fixtures["py320-sqlite-default"], tmp_path)
    before = count(path)
    odd = {"args": [1, 2], "kwargs": {"loud": True}, "queue_name": "nowhere"}
    with pytest.raises(ForkInvalidError) as raised:
        start(app, otto, input={"args": odd["args"], "kwargs": odd["kwargs"]}, queue_name="nowhere")
    messages = [error["message"] for error in raised.value.errors]
    assert all(error["confirm"] for error in raised.value.errors)
    assert starts.ARITY.format(name=GREET, expected="1", got=2) in messages
    assert starts.KIND.format(index=0, name=GREET, expected="a string", got="a number") in messages
    assert starts.QUEUE_NOT_SEEN.format(queue="nowhere") in messages
    assert any(
        message.startswith("Earlier runs of fixture_greet took keyword") for message in messages
    )
    assert count(path) == before
    plan = start(
        app,
        otto,
        input={"args": odd["args"], "kwargs": odd["kwargs"]},
        queue_name="nowhere",
        accept_warnings=True,
    )
    assert len(plan.doubts) == len(messages)
    assert count(path) == before + 1


def test_an_id_or_a_deduplication_id_in_use_is_a_conflict(
    otto: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    fixture = sdk_fixtures["py320-sqlite-default"]
    app, path = copied(fixture, tmp_path)
    taken = fixture["workflows"][0]["workflow_id"]
    greet = {"input": {"args": ["a"], "kwargs": {"times": 1}}, "queue_name": PARKED}
    with pytest.raises(ForkRefusedError, match="already exists"):
        start(app, otto, workflow_id=taken, **greet)
    start(app, otto, deduplication_id="once", **greet)
    before = count(path)
    with pytest.raises(ForkRefusedError) as raised:
        start(app, otto, deduplication_id="once", **greet)
    assert raised.value.status == 409
    assert "Deduplication id 'once' is in use on queue fixture-parked" in str(raised.value)
    assert count(path) == before


def test_a_version_no_executor_runs_is_said_and_the_latest_is_the_default(
    otto: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    app, _ = copied(sdk_fixtures["py320-sqlite-default"], tmp_path)
    asked = StartRequest(workflow_name=GREET, input={"args": ["a"], "kwargs": {"times": 1}})
    plan = starts.workflow_start_plan(app, asked, live_versions=["v7"])
    latest = starts.latest_version(app, ["v7"])
    assert plan.application_version == latest
    if latest != "v7":
        assert plan.notes == [starts.VERSION_NOT_RUN.format(version=latest)]
    nobody = starts.workflow_start_plan(app, asked, live_versions=[])
    assert nobody.notes == [starts.NO_EXECUTOR.format(app=app.name)]


def test_without_a_system_database_it_says_why_it_cannot_start(
    otto: User, system_databases: None
) -> None:
    app = Application.objects.create(name="no-db")
    with pytest.raises(NoSystemDatabaseError) as raised:
        start(app, otto, input=[])
    assert "cannot start one" in str(raised.value)


def test_the_form_offers_each_name_with_its_class_and_config(
    otto: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    app, _ = copied(sdk_fixtures["py320-sqlite-default"], tmp_path)
    offered = starts.names_startable(app)
    assert {"name": GREET, "class_name": None, "config_name": None} in offered
    assert PARKED in starts.queues_seen(app) or starts.INTERNAL_QUEUE in starts.queues_seen(app)
