"""Stories about a NUL character (U+0000) in what a caller sends: no text column can hold
one (Postgres answers with an error), so it is refused before any query, on either
database, as a 400 (a 404 for an id in the path)."""

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from forks.models import EditedFork
from stepchange.middleware import NUL_IN_PATH
from tests.conftest import make_app, make_user, signed_in
from tests.forks.test_services import SOURCE, copied

JSON = "application/json"


@pytest.fixture
def otto(db: None) -> User:
    make_app(name="orders")
    return make_user(username="otto", role="operator")


def test_a_workflow_id_with_a_nul_is_not_found(otto: User) -> None:
    client = signed_in(otto)
    for url in (
        "/api/v1/apps/orders/workflows/wf%00x",
        "/api/v1/apps/orders/workflows/wf%00x/steps",
        "/api/v1/apps/ord%00ers/workflows",
    ):
        response = client.get(url)
        assert response.status_code == 404, url
        assert response.json() == {"detail": NUL_IN_PATH}
    cancel = client.post("/api/v1/apps/orders/workflows/wf%00x/cancel", content_type=JSON)
    assert cancel.status_code == 404
    page = client.get("/apps/orders/workflows/wf%00x/")
    assert page.status_code == 404


def test_a_list_filter_with_a_nul_is_refused(otto: User) -> None:
    client = signed_in(otto)
    response = client.get("/api/v1/apps/orders/workflows", {"workflow_name": "a\x00b"})
    assert response.status_code == 400
    assert "'workflow_name' contains a NUL" in response.json()["detail"]
    page = client.get("/apps/orders/workflows/", {"name": "a\x00b"})
    assert page.status_code == 400


def test_bulk_ids_and_filters_with_a_nul_are_refused(otto: User) -> None:
    client = signed_in(otto)
    url = "/api/v1/apps/orders/bulk-actions/preview"
    for body in (
        {"action": "cancel", "workflow_ids": ["wf\x00"]},
        {"action": "cancel", "filters": {"queue_name": "q\x00"}},
        {"action": "cancel", "workflow_ids": ["wf-1"], "reason": "\x00"},
    ):
        response = client.post(url, body, content_type=JSON)
        assert response.status_code == 400, body
        assert "contains a NUL" in str(response.json()["detail"])


def test_a_bearer_token_or_a_console_form_with_a_nul_is_refused(otto: User) -> None:
    token = signed_in(otto).get("/api/v1/apps", HTTP_AUTHORIZATION="Bearer sc_\x00x")
    assert token.status_code == 400
    form = signed_in(otto).post("/apps/orders/views/", {"name": "mine\x00"})
    assert form.status_code == 400


def test_an_edited_fork_with_a_nul_is_refused_by_the_api_and_the_console(
    system_databases: None, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    app, _ = copied(sdk_fixtures["py320-sqlite-default"], tmp_path)
    otto = make_user(username="otto", role="operator")
    api = signed_in(otto).post(
        f"/api/v1/apps/{app.name}/workflows/{SOURCE}/edited-forks",
        {"start_step": 2, "input": {"args": ["a\x00"], "kwargs": {}}, "reason": "x"},
        content_type=JSON,
    )
    assert api.status_code == 400
    assert "contains a NUL" in str(api.json()["detail"])
    # The console's editor takes JSON text: the NUL arrives escaped, as \u0000.
    console = signed_in(otto).post(
        f"/apps/{app.name}/workflows/{SOURCE}/edit-fork/",
        {
            "start_step": "2",
            "input": '{"args": ["a\\u0000"], "kwargs": {}}',
            "reason": "x",
            "submit": "stage",
        },
    )
    assert console.status_code == 400
    assert "contains a NUL" in console.content.decode()
    assert not EditedFork.objects.exists()
