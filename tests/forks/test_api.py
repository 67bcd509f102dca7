"""Stories about edited forks through the JSON API."""

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from forks.models import EditedFork
from stepchange.models import AuditRecord
from tests.conftest import make_user, signed_in
from tests.forks.test_services import SOURCE, copied, of


@pytest.fixture
def otto(system_databases: None) -> User:
    return make_user(username="otto", role="operator")


def post(user: User, url: str, body: dict[str, Any] | None = None) -> Any:
    return signed_in(user).post(url, body or {}, content_type="application/json")


def test_an_operator_stages_then_runs_an_edited_fork(
    otto: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    app, path = copied(sdk_fixtures["py320-sqlite-default"], tmp_path)
    base = f"/api/v1/apps/{app.name}"
    staged = post(
        otto,
        f"{base}/workflows/{SOURCE}/edited-forks",
        {"start_step": 2, "input": {"args": ["ann"], "kwargs": {}}, "reason": "typo in name"},
    )
    assert staged.status_code == 201, staged.content
    fork = staged.json()
    assert (fork["status"], fork["input_edited"], fork["edited_steps"]) == ("staged", True, [])
    assert fork["created_by"] == "otto"
    assert of(path, "workflow_status", fork["new_workflow_id"]) == []
    ran = post(otto, f"{base}/edited-forks/{fork['id']}/run")
    assert ran.status_code == 200, ran.content
    assert ran.json()["status"] == "done"
    [row] = of(path, "workflow_status", fork["new_workflow_id"], "forked_from")
    assert row["forked_from"] == SOURCE
    listed = signed_in(otto).get(f"{base}/edited-forks").json()
    assert [item["id"] for item in listed] == [fork["id"]]


def test_an_invalid_fork_is_a_400_naming_each_field_and_step(
    otto: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    app, _ = copied(sdk_fixtures["py320-sqlite-default"], tmp_path)
    response = post(
        otto,
        f"/api/v1/apps/{app.name}/workflows/{SOURCE}/edited-forks",
        {"start_step": 2, "step_outputs": {"2": 1}, "reason": "x", "run": True},
    )
    assert response.status_code == 400
    [error] = response.json()["detail"]
    assert (error["field"], error["step"]) == ("step_outputs", 2)
    assert not EditedFork.objects.exists()


def test_an_unknown_source_is_a_404_and_a_viewer_is_refused(
    otto: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    app, _ = copied(sdk_fixtures["py320-sqlite-default"], tmp_path)
    url = f"/api/v1/apps/{app.name}/workflows/nope/edited-forks"
    missing = post(otto, url, {"start_step": 1, "reason": "x"})
    assert missing.status_code == 404
    vera = make_user(username="vera", role="viewer")
    refused = post(vera, url, {"start_step": 1, "reason": "x"})
    assert refused.status_code == 403
    assert AuditRecord.objects.filter(action="access.denied", actor_name="vera").count() == 1


def test_run_at_once_where_approval_is_required_keeps_it_staged_and_says_why(
    otto: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    app, _ = copied(sdk_fixtures["py320-sqlite-default"], tmp_path, fork_approval_required=True)
    base = f"/api/v1/apps/{app.name}"
    response = post(
        otto,
        f"{base}/workflows/{SOURCE}/edited-forks",
        {"start_step": 1, "reason": "x", "run": True},
    )
    fork = response.json()
    assert (response.status_code, fork["status"]) == (201, "staged")
    assert any("second operator's approval" in warning for warning in fork["warnings"])
    own = post(otto, f"{base}/edited-forks/{fork['id']}/approve")
    assert own.status_code == 409
    opal = make_user(username="opal", role="operator")
    assert post(opal, f"{base}/edited-forks/{fork['id']}/approve").json()["approved_by"] == "opal"
    assert post(otto, f"{base}/edited-forks/{fork['id']}/run").json()["status"] == "done"
    assert post(otto, f"{base}/edited-forks/{fork['id']}/discard").status_code == 409
