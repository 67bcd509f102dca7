"""Stories about edited forks for an application without a reachable system database: the
source is read from an executor's export and the fork goes back as an import_workflow
payload StepChange builds itself (PROTOCOL.md §5.4, option B).

The exports here have the shape real executors send (see forks/imports.py): a pickle of
builtin containers from dbos 3.2.0, JSON with BIGINT columns as text from
@dbos-inc/dbos-sdk 5.0.2. The executor is a fake one speaking the protocol; the payloads it
receives are opened with the restricted reader (or json), never with pickle.loads.
"""

import asyncio
import base64
import gzip
import json
import pickle
import pickletools
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.test import AsyncClient

from forks import imports, services
from forks.imports import BadExportError
from forks.models import EditedFork
from forks.plans import ForkInvalidError, Plan, SourceNotFoundError
from forks.services import Draft
from stepchange.models import Application, AuditRecord
from tests.conftest import make_user
from tests.fake_executor import FakeExecutor, connect_executor
from workflows import serialization as codec

SOURCE = "wf-alice"
NEW_ID = "wf-alice-edited"
APP = "orders"
# Opcodes that name or call code: never in what StepChange reads or sends.
CODE_OPCODES = {"GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX"}


def pickled(value: Any, kind: Any = "value") -> str:
    return codec.encode(value, codec.PY_PICKLE, kind=kind)


def superjson(value: Any, kind: Any = "value") -> str:
    return codec.encode(value, codec.JS_SUPERJSON, kind=kind)


def status_row(language: str) -> dict[str, Any]:
    """workflow_status as the SDK exports it: greet, finished, on version v1."""
    python = language == "python"
    stamp: Any = 1795315685000 if python else "1795315694040"
    row = dict.fromkeys(imports.STATUS_KEYS)
    return row | {
        "workflow_uuid": SOURCE,
        "status": "SUCCESS",
        "name": "greet",
        "authenticated_user": None if python else "",
        "assumed_role": None if python else "",
        "authenticated_roles": None if python else "[]",
        "output": pickled("HELLO ALICE!!") if python else superjson("HELLO ALICE!!"),
        "executor_id": "exec-1",
        "created_at": stamp,
        "updated_at": stamp,
        "completed_at": stamp,
        "application_version": "v1",
        "application_id": "",
        "recovery_attempts": 1 if python else "1",
        "inputs": pickled({"args": ["alice", 2], "kwargs": {}}, "inputs")
        if python
        else superjson({"args": ["alice", 2], "kwargs": {}}, "inputs"),
        "priority": 0,
        "serialization": "py_pickle" if python else "js_superjson",
        "was_forked_from": False,
        "rate_limited": False,
        "is_debounced": False,
        "application_name": APP,
    }


def export(language: str = "python", **changes: Any) -> dict[str, Any]:
    """One exported workflow: fetch, its event, shout, a stream entry, counted from the
    language's first step. Rows come out of order, as an export promises none."""
    python = language == "python"
    first = 1 if python else 0
    encode = pickled if python else superjson
    fmt = "py_pickle" if python else "js_superjson"
    ms: Any = (lambda n: n) if python else str
    step = {"workflow_uuid": SOURCE, "error": None, "child_workflow_id": None}
    step |= {"application_name": APP}
    steps = [
        step
        | {
            "function_id": first + 2,
            "function_name": "shout",
            "output": encode("HELLO ALICE!!"),
            "serialization": fmt,
            "started_at_epoch_ms": ms(1795315685996),
            "completed_at_epoch_ms": ms(1795315685997),
        },
        step
        | {
            "function_id": first,
            "function_name": "fetch",
            "output": encode({"name": "alice", "greeting": "hello"}),
            "serialization": fmt,
            "started_at_epoch_ms": ms(1795315685972),
            "completed_at_epoch_ms": ms(1795315685981),
        },
        step
        | {
            "function_id": first + 1,
            "function_name": "DBOS.setEvent",
            "output": None,
            "serialization": None if python else "portable_json",
            "started_at_epoch_ms": ms(1795315685986),
            "completed_at_epoch_ms": ms(1795315685992),
        },
        step
        | {
            "function_id": first + 3,
            "function_name": "DBOS.writeStream",
            "output": None,
            "serialization": None if python else "portable_json",
            "started_at_epoch_ms": ms(1795315686003),
            "completed_at_epoch_ms": ms(1795315686005),
        },
    ]
    event = {"workflow_uuid": SOURCE, "key": "stage", "serialization": fmt}
    history = [
        event | {"value": encode("done"), "function_id": 9},
        event | {"value": encode("fetched"), "function_id": first + 1},
    ]
    element = {
        "workflow_status": status_row(language),
        "operation_outputs": steps,
        "workflow_events": [event | {"value": encode("done")}],
        "workflow_events_history": history,
        "streams": [
            {"workflow_uuid": SOURCE, "key": "progress", "value": encode({"step": 1})}
            | {"offset": 0, "function_id": first + 3, "serialization": fmt}
        ],
    }
    return element | changes


def packed(data: Any, language: str = "python") -> str:
    """What the SDK sends: base64 of gzip of a pickle (Python) or of JSON (TypeScript)."""
    raw = pickle.dumps(data, protocol=4) if language == "python" else json.dumps(data).encode()
    return base64.b64encode(gzip.compress(raw)).decode()


def unpacked(payload: str, language: str) -> Any:
    """A payload opened without pickle.loads: its opcodes listed, then the restricted
    reader (the decoder of stored values) reads it."""
    raw = gzip.decompress(base64.b64decode(payload))
    if language == "typescript":
        return json.loads(raw)
    assert not {op.name for op, _, _ in pickletools.genops(raw)} & CODE_OPCODES
    decoded = codec.decode(base64.b64encode(raw).decode(), codec.PY_PICKLE)
    assert decoded.ok, decoded.notes
    assert decoded.raw is None, decoded.notes
    return decoded.value


@pytest.fixture(autouse=True)
def _no_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing in these stories may open executor data with the standard unpickler.
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("pickle.loads was called")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)


# Reading exports.


def test_a_python_export_reads_as_the_rows_a_database_would_give() -> None:
    source = imports.source_from_export(packed([export()]), "python", SOURCE)

    assert source.status == status_row("python")
    assert source.inputs == status_row("python")["inputs"]
    assert source.serialization == "py_pickle"
    assert [(step["function_id"], step["function_name"]) for step in source.steps] == [
        (1, "fetch"),
        (2, "DBOS.setEvent"),
        (3, "shout"),
        (4, "DBOS.writeStream"),
    ]
    assert [row["function_id"] for row in source.history] == [2, 9]
    assert source.streams == export()["streams"]


def test_a_typescript_export_has_its_step_numbers_read_as_numbers_and_the_rest_kept() -> None:
    element = export("typescript")
    for row in element["operation_outputs"]:
        row["function_id"] = str(row["function_id"])

    source = imports.source_from_export(packed([element], "typescript"), "typescript", SOURCE)

    assert [step["function_id"] for step in source.steps] == [0, 1, 2, 3]
    assert source.steps[0]["started_at_epoch_ms"] == "1795315685972"
    assert source.status["created_at"] == "1795315694040"
    assert source.serialization == "js_superjson"


def test_the_exported_workflow_is_found_among_its_exported_children() -> None:
    child = export(workflow_status=status_row("python") | {"workflow_uuid": "wf-child"})
    source = imports.source_from_export(packed([child, export()]), "python", SOURCE)
    assert source.status["workflow_uuid"] == SOURCE


class Evil:
    """Unpickling this would run a command; reading it must not even look it up."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("this must never run",))


@pytest.mark.parametrize(
    ("raw", "opcode"),
    [
        # Protocol 0: GLOBAL names os.system, REDUCE would call it.
        (b"cos\nsystem\n(S'touch pwned'\ntR.", "GLOBAL"),
        (pickle.dumps([{"workflow_status": Evil()}], protocol=4), "STACK_GLOBAL"),
    ],
    ids=["global", "stack-global"],
)
def test_a_python_export_that_names_any_code_is_refused(raw: bytes, opcode: str) -> None:
    payload = base64.b64encode(gzip.compress(raw)).decode()
    with pytest.raises(BadExportError) as refused:
        imports.source_from_export(payload, "python", SOURCE)
    assert imports.NOT_PLAIN_PICKLE.format(opcode=opcode) in str(refused.value)
    assert refused.value.status == 502


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ("not base64!", imports.NOT_BASE64),
        (base64.b64encode(b"plain").decode(), "not gzip"),
        (packed({"workflow_status": {}}), "the export is not a list"),
        (packed([export(operation_outputs={"a": 1})]), "operation_outputs is not a list"),
    ],
    ids=["base64", "gzip", "not-a-list", "rows"],
)
def test_an_export_that_is_not_what_an_sdk_sends_is_refused(payload: str, problem: str) -> None:
    with pytest.raises(BadExportError, match=problem):
        imports.source_from_export(payload, "python", SOURCE)


def test_an_export_with_a_step_numbered_in_words_or_without_the_workflow_is_refused() -> None:
    element = export()
    element["operation_outputs"][0]["function_id"] = "three"
    with pytest.raises(BadExportError, match=r"operation_outputs\.function_id"):
        imports.source_from_export(packed([element]), "python", SOURCE)
    with pytest.raises(BadExportError, match="holds no workflow wf-other"):
        imports.source_from_export(packed([export()]), "python", "wf-other")


def test_an_export_that_unzips_beyond_the_limit_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A Python export unzips up to PYTHON_EXPORT_MAX_BYTES if that is larger (the test above).
    monkeypatch.setattr(imports, "MAX_EXPORT_BYTES", 1000)
    payload = packed([export("typescript")], "typescript")
    with pytest.raises(BadExportError, match="larger than 1000 bytes"):
        imports.source_from_export(payload, "typescript", SOURCE)


def with_inputs(text: str) -> dict[str, Any]:
    element = export()
    element["workflow_status"] = element["workflow_status"] | {"inputs": text}
    return element


def test_a_python_export_over_its_setting_is_refused_naming_the_setting(settings: Any) -> None:
    settings.PYTHON_EXPORT_MAX_BYTES = 1024
    with pytest.raises(BadExportError, match="PYTHON_EXPORT_MAX_BYTES setting"):
        imports.source_from_export(packed([with_inputs("x" * 2000)]), "python", SOURCE)


def test_a_python_export_beyond_eight_mib_is_read_by_default() -> None:
    big = "x" * (9 * 1024 * 1024)
    source = imports.source_from_export(packed([with_inputs(big)]), "python", SOURCE)
    assert source.inputs == big


# Planning and sending, with a fake executor of the application.


@pytest.fixture
async def typescript(orders: Application) -> AsyncIterator[FakeExecutor]:
    fake = await connect_executor(language="typescript", dbos_version="5.0.2")
    yield fake
    await fake.communicator.disconnect()


def draft(**fields: Any) -> Draft:
    defaults: dict[str, Any] = {
        "source_workflow_id": SOURCE,
        "start_step": 3,
        "input": {"args": ["bob", 3], "kwargs": {}},
        "input_edited": True,
        "step_outputs": {"1": {"name": "dave", "greeting": "hey"}},
        "new_workflow_id": NEW_ID,
        "reason": "the profile service was down",
    }
    return Draft(**(defaults | fields))


async def planned(application: Application, executor: FakeExecutor, wanted: Draft) -> Plan:
    """The plan, with the executor answering the export and the new-id check."""
    planning = asyncio.create_task(
        sync_to_async(services.edited_fork_plan)(application, wanted, live_versions=["v1"])
    )
    await executor.answer("export_workflow", serialized_workflow=packed([export()]))
    asked = await executor.answer("get_workflow", output=None)
    assert (asked["workflow_id"], asked["load_input"]) == (NEW_ID, False)
    return await planning


@pytest.mark.django_db(transaction=True)
async def test_a_python_import_payload_holds_the_fork_with_the_edits_and_nothing_else(
    orders: Application, executor: FakeExecutor
) -> None:
    before = int(time.time() * 1000)
    plan = await planned(orders, executor, draft())

    assert (plan.route, plan.executor_id, plan.language) == (
        "import",
        executor.executor_id,
        "python",
    )
    [element] = unpacked(imports.import_payload(plan), "python")

    assert list(element) == [
        "workflow_status",
        "operation_outputs",
        "workflow_events",
        "workflow_events_history",
        "streams",
    ]
    status = element["workflow_status"]
    assert tuple(status) == imports.STATUS_KEYS
    assert status | {"created_at": 0, "updated_at": 0, "inputs": ""} == dict.fromkeys(
        imports.STATUS_KEYS
    ) | {
        "workflow_uuid": NEW_ID,
        "status": "ENQUEUED",
        "name": "greet",
        "created_at": 0,
        "updated_at": 0,
        "application_version": "v1",
        "application_id": "",
        "recovery_attempts": 0,
        "queue_name": "_dbos_internal_queue",
        "inputs": "",
        "priority": 0,
        "forked_from": SOURCE,
        "serialization": "py_pickle",
        "was_forked_from": False,
        "rate_limited": False,
        "is_debounced": False,
        "application_name": APP,
    }
    assert before <= status["created_at"] == status["updated_at"] <= int(time.time() * 1000)
    inputs = codec.decode(status["inputs"], "py_pickle", kind="inputs")
    assert inputs.value == {"args": ["bob", 3], "kwargs": {}}
    # Only the steps before the restart step, under the new id; fetch (1) edited.
    fetch, event = element["operation_outputs"]
    assert list(fetch) == list(imports.STEP_KEYS)
    assert (fetch["workflow_uuid"], fetch["function_id"], fetch["function_name"]) == (
        NEW_ID,
        1,
        "fetch",
    )
    assert (fetch["error"], fetch["serialization"]) == (None, "py_pickle")
    assert codec.decode(fetch["output"], "py_pickle").value == {"name": "dave", "greeting": "hey"}
    assert fetch["started_at_epoch_ms"] == 1795315685972
    assert event == {**export()["operation_outputs"][2], "workflow_uuid": NEW_ID}
    # The event set at step 2 is copied and rebuilt; the one at step 9 is not.
    [history] = element["workflow_events_history"]
    assert (history["workflow_uuid"], history["function_id"]) == (NEW_ID, 2)
    [event_row] = element["workflow_events"]
    assert list(event_row) == list(imports.EVENT_KEYS)
    assert codec.decode(event_row["value"], "py_pickle").value == "fetched"
    assert element["streams"] == []


@pytest.mark.django_db(transaction=True)
async def test_a_typescript_import_payload_is_json_in_the_sdks_own_formats(
    orders: Application, typescript: FakeExecutor
) -> None:
    wanted = draft(start_step=2, step_outputs={"0": {"name": "dave", "greeting": "hey"}})
    planning = asyncio.create_task(
        sync_to_async(services.edited_fork_plan)(orders, wanted, live_versions=["v1"])
    )
    await typescript.answer(
        "export_workflow", serialized_workflow=packed([export("typescript")], "typescript")
    )
    await typescript.answer("get_workflow", output=None)
    plan = await planning

    [element] = unpacked(imports.import_payload(plan), "typescript")

    status = element["workflow_status"]
    assert (status["workflow_uuid"], status["status"], status["forked_from"]) == (
        NEW_ID,
        "ENQUEUED",
        SOURCE,
    )
    assert (status["authenticated_roles"], status["executor_id"], status["output"]) == (
        "[]",
        None,
        None,
    )
    assert json.loads(status["inputs"]) == {"json": ["bob", 3], "__dbos_serializer": "superjson"}
    fetch, event = element["operation_outputs"]
    assert fetch["function_id"] == 0
    assert json.loads(fetch["output"])["json"] == {"name": "dave", "greeting": "hey"}
    assert fetch["started_at_epoch_ms"] == "1795315685972"
    assert (event["function_name"], event["output"]) == ("DBOS.setEvent", None)


@pytest.mark.django_db(transaction=True)
async def test_an_id_the_executor_already_has_is_refused_before_anything_is_sent(
    orders: Application, executor: FakeExecutor
) -> None:
    planning = asyncio.create_task(
        sync_to_async(services.edited_fork_plan)(orders, draft(), live_versions=["v1"])
    )
    await executor.answer("export_workflow", serialized_workflow=packed([export()]))
    await executor.answer("get_workflow", output={"WorkflowUUID": NEW_ID, "Status": "SUCCESS"})
    with pytest.raises(ForkInvalidError) as refused:
        await planning
    assert refused.value.errors == [
        {"field": "new_workflow_id", "message": services.ID_TAKEN.format(new_id=NEW_ID)}
    ]
    assert await executor.communicator.receive_nothing(timeout=0.2)


@pytest.mark.django_db(transaction=True)
async def test_a_missing_source_is_a_404_asked_of_the_executor(
    orders: Application, executor: FakeExecutor
) -> None:
    planning = asyncio.create_task(
        sync_to_async(services.edited_fork_plan)(orders, draft(), live_versions=["v1"])
    )
    await executor.answer(
        "export_workflow", serialized_workflow=None, error_message="Workflow does not exist"
    )
    asked = await executor.answer("get_workflow", output=None)
    assert asked["workflow_id"] == SOURCE
    with pytest.raises(SourceNotFoundError):
        await planning


# Through the API: run at once.


@pytest.fixture
async def otto(orders: Application) -> User:
    user: User = await sync_to_async(make_user)(username="otto", role="operator")
    return user


def posting(user: User, body: dict[str, Any]) -> "asyncio.Task[Any]":
    async def post() -> Any:
        client = AsyncClient()
        await client.aforce_login(user)
        return await client.post(
            f"/api/v1/apps/{APP}/workflows/{SOURCE}/edited-forks",
            body,
            content_type="application/json",
        )

    return asyncio.create_task(post())


BODY = {
    "start_step": 3,
    "input": {"args": ["bob", 3], "kwargs": {}},
    "step_outputs": {"1": {"name": "dave", "greeting": "hey"}},
    "new_workflow_id": NEW_ID,
    "reason": "the profile service was down",
    "run": True,
}


@pytest.mark.django_db(transaction=True)
async def test_an_operator_runs_a_fork_that_the_executor_imports_and_the_audit_says_so(
    otto: User, executor: FakeExecutor
) -> None:
    answer = posting(otto, BODY)
    # Staged (checked), then run (checked again against the source as it is now).
    for _ in range(2):
        await executor.answer("export_workflow", serialized_workflow=packed([export()]))
        await executor.answer("get_workflow", output=None)
    sent = await executor.answer("import_workflow", success=True)
    response = await answer

    assert response.status_code == 201, response.content
    assert response.json()["status"] == "done"
    [element] = unpacked(sent["serialized_workflow"], "python")
    assert element["workflow_status"]["workflow_uuid"] == NEW_ID
    record = await AuditRecord.objects.aget(action="edited_fork.run")
    assert (record.result, record.request_id) == ("ok", sent["request_id"])
    assert record.parameters["route"] == "import"
    assert record.detail == services.IMPORTED.format(
        new_id=NEW_ID, executor_id=executor.executor_id, steps=2
    )
    diff = record.value_diff
    assert diff is not None
    assert diff["steps"]["1"]["after"] == {"name": "dave", "greeting": "hey"}
    assert diff["input"]["before"] == {"args": ["alice", 2], "kwargs": {}}


@pytest.mark.django_db(transaction=True)
async def test_an_invalid_fork_sends_nothing_and_names_each_field(
    otto: User, executor: FakeExecutor
) -> None:
    answer = posting(otto, BODY | {"step_outputs": {"3": "too late"}, "reason": " "})
    await executor.answer("export_workflow", serialized_workflow=packed([export()]))
    await executor.answer("get_workflow", output=None)
    response = await answer

    assert response.status_code == 400
    assert {error["field"] for error in response.json()["detail"]} == {"step_outputs", "reason"}
    assert await executor.communicator.receive_nothing(timeout=0.2)
    assert not await EditedFork.objects.aexists()


@pytest.mark.django_db(transaction=True)
async def test_an_import_the_executor_refuses_leaves_the_fork_open_and_is_audited_as_failed(
    otto: User, executor: FakeExecutor
) -> None:
    answer = posting(otto, BODY)
    for _ in range(2):
        await executor.answer("export_workflow", serialized_workflow=packed([export()]))
        await executor.answer("get_workflow", output=None)
    await executor.answer("import_workflow", success=False, error_message="metadata-only mode")
    response = await answer

    assert response.status_code == 502
    assert "metadata-only mode" in response.json()["detail"]
    fork = await EditedFork.objects.aget()
    assert (fork.status, fork.open) == (EditedFork.Status.STAGED, True)
    record = await AuditRecord.objects.aget(action="edited_fork.run")
    assert record.result == "failed"
    assert "did not import workflow wf-alice-edited" in record.detail


@pytest.mark.django_db(transaction=True)
async def test_an_export_naming_code_stops_the_fork_before_anything_is_sent(
    otto: User, executor: FakeExecutor
) -> None:
    answer = posting(otto, BODY)
    evil = pickle.dumps([export(workflow_status=Evil())], protocol=4)
    await executor.answer(
        "export_workflow", serialized_workflow=base64.b64encode(gzip.compress(evil)).decode()
    )
    response = await answer

    assert response.status_code == 502
    assert "STACK_GLOBAL" in response.json()["detail"]
    assert await executor.communicator.receive_nothing(timeout=0.2)
