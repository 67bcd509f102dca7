"""Workflows started from StepChange run to SUCCESS on real, unmodified executors: dbos
3.2.0 (pickle, and portable JSON chosen by the operator) and @dbos-inc/dbos-sdk 5.0.2
(superjson, and portable JSON, which 5.0.2 reads as its positional arguments).

StepChange writes the ENQUEUED row and its input as DBOS's client enqueue does
(forks.starts); the sample application's executor dequeues it. greet's output holds the
greeting, so the output alone shows which input the workflow ran with.
"""

import uuid
from typing import Any

import pytest

from tests.e2e.test_edited_forks import (  # noqa: F401  (fixtures)
    PYTHON_SQLITE,
    TYPESCRIPT_POSTGRES,
    Deployment,
    deployment,
    deployments,
    legacy_python,
)
from workflows import serialization as codec

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("serialization", [None, codec.PORTABLE_JSON], ids=["own", "portable"])
@pytest.mark.parametrize("deployment", [PYTHON_SQLITE, TYPESCRIPT_POSTGRES], indirect=True, ids=str)
def test_a_started_workflow_runs_to_success_on_an_unmodified_executor(
    deployment: Deployment,  # noqa: F811  (the fixture imported above)
    serialization: str | None,
) -> None:
    source = deployment.source("alice")
    row = deployment.db.workflow(source)
    assert row is not None
    name = row["name"]
    new_id = f"st-{uuid.uuid4().hex[:8]}"
    body: dict[str, Any] = {
        "workflow_name": name,
        "input": ["gina", 3],
        "workflow_id": new_id,
        "like": source,
        "reason": "e2e: start",
    }
    if serialization is not None:
        body["serialization"] = serialization
    status, answer = deployment.server.api("POST", f"/apps/{deployment.app}/workflows", body)
    assert status == 201, answer
    assert answer["workflow_id"] == new_id
    expected_format = serialization or row["serialization"]
    assert answer["serialization"] == expected_format
    done = deployment.finished(new_id)
    error = deployment.payload(new_id, "error").value if done["status"] == "ERROR" else None
    assert done["status"] == "SUCCESS", f"{error}\n{deployment.log()}"
    assert done["serialization"] == expected_format
    output = deployment.payload(new_id, "output")
    assert output.ok, output
    assert isinstance(output.value, dict)
    assert output.value["greeting"] == "HELLO GINA!!!"
    assert deployment.payload(new_id, "inputs").value == {"args": ["gina", 3], "kwargs": {}}
