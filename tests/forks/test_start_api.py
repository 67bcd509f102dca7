"""Stories about starting a workflow through the JSON API and the console form."""

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from forks import starts
from stepchange.models import Application, AuditRecord
from tests.conftest import make_user, signed_in
from tests.forks.test_services import copied, of
from tests.forks.test_starts import GREET, PARKED, count
from workflows import serialization as codec


@pytest.fixture
def otto(system_databases: None) -> User:
    return make_user(username="otto", role="operator")


@pytest.fixture
def vera(system_databases: None) -> User:
    return make_user(username="vera", role="viewer")


def post(user: User, app: Application, body: dict[str, Any]) -> Any:
    return signed_in(user).post(
        f"/api/v1/apps/{app.name}/workflows", body, content_type="application/json"
    )


def test_an_operator_starts_a_workflow_through_the_api(
    otto: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    app, path = copied(sdk_fixtures["py320-sqlite-portable"], tmp_path)
    response = post(
        otto,
        app,
        {
            "workflow_name": GREET,
            "input": {"args": ["api"], "kwargs": {"times": 1}},
            "queue_name": PARKED,
            "priority": 3,
        },
    )
    assert response.status_code == 201, response.content
    started = response.json()
    assert (started["workflow_name"], started["serialization"]) == (GREET, "portable_json")
    [row] = of(path, "workflow_status", started["workflow_id"], "status, priority, queue_name")
    assert (row["status"], row["priority"], row["queue_name"]) == ("ENQUEUED", 3, PARKED)
    [stored] = of(path, "workflow_input", started["workflow_id"], "inputs")
    assert codec.decode(stored["inputs"], "portable_json", kind="inputs").value == {
        "args": ["api"],
        "kwargs": {"times": 1},
    }
    record = AuditRecord.objects.get(pk=started["audit_id"])
    assert (record.action, record.parameters["input_sha256"]) == (
        "workflow.start",
        started["input_sha256"],
    )


def test_bad_starts_are_4xx_with_the_reason_and_write_nothing(
    otto: User, vera: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    fixture = sdk_fixtures["py320-sqlite-default"]
    app, path = copied(fixture, tmp_path)
    before = count(path)
    bad = post(otto, app, {"workflow_name": GREET, "input": {"positional": []}})
    assert bad.status_code == 400
    assert bad.json()["detail"] == [{"field": "input", "message": starts.INPUT_SHAPE}]
    priority = post(otto, app, {"workflow_name": GREET, "priority": -1})
    assert priority.status_code == 400
    odd = post(otto, app, {"workflow_name": GREET, "input": [1, 2, 3]})
    assert odd.status_code == 400
    assert all(error["confirm"] for error in odd.json()["detail"])
    taken = fixture["workflows"][0]["workflow_id"]
    conflict = post(otto, app, {"workflow_name": GREET, "input": ["x"], "workflow_id": taken})
    assert conflict.status_code == 409
    assert conflict.json()["detail"] == starts.ID_TAKEN.format(workflow_id=taken)
    assert post(vera, app, {"workflow_name": GREET, "input": ["x"]}).status_code == 403
    assert count(path) == before
    nowhere = Application.objects.create(name="nowhere")
    missing = post(otto, nowhere, {"workflow_name": GREET})
    assert missing.status_code == 503
    assert "cannot start one" in missing.json()["detail"]


def test_the_console_form_prefills_from_an_earlier_run_and_opens_the_new_workflow(
    otto: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    fixture = sdk_fixtures["py320-sqlite-default"]
    app, path = copied(fixture, tmp_path)
    like = next(w["workflow_id"] for w in fixture["workflows"] if w["role"] == "success")
    client = signed_in(otto)
    url = f"/apps/{app.name}/start/"
    page = client.get(url, {"like": like})
    assert page.status_code == 200
    html = page.content.decode()
    assert 'value="fixture_greet"' in html
    assert "&quot;alice&quot;" in html
    assert "&quot;times&quot;: 2" in html
    before = count(path)
    bad = client.post(url, {"workflow_name": GREET, "args": "[not json", "like": like})
    assert bad.status_code == 400
    assert "Not valid JSON" in bad.content.decode()
    assert count(path) == before
    done = client.post(
        url,
        {"workflow_name": GREET, "args": '["form"]', "kwargs": '{"times": 4}', "like": like},
    )
    assert done.status_code == 302
    new_id = done["Location"].rstrip("/").rsplit("/", 1)[-1]
    [row] = of(path, "workflow_status", new_id, "name, status")
    assert (row["name"], row["status"]) == (GREET, "ENQUEUED")


def test_the_form_asks_again_for_an_input_unlike_earlier_runs(
    otto: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    app, path = copied(sdk_fixtures["py320-sqlite-default"], tmp_path)
    client = signed_in(otto)
    url = f"/apps/{app.name}/start/"
    before = count(path)
    asked = client.post(url, {"workflow_name": GREET, "args": "[1, 2]"})
    assert asked.status_code == 400
    assert "Start it anyway" in asked.content.decode()
    assert count(path) == before
    sure = client.post(url, {"workflow_name": GREET, "args": "[1, 2]", "accept_warnings": "1"})
    assert sure.status_code == 302
    assert count(path) == before + 1


def test_without_a_system_database_the_page_says_why(otto: User) -> None:
    app = Application.objects.create(name="bare")
    page = signed_in(otto).get(f"/apps/{app.name}/start/")
    assert page.status_code == 503
    assert "cannot start one" in page.content.decode()
