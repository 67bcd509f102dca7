"""Stories about edited forks in the console: the editor, the draft's page, the comparison."""

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from forks.models import EditedFork
from tests.conftest import make_user, signed_in
from tests.forks.test_services import SOURCE, copied, of


@pytest.fixture
def otto(system_databases: None) -> User:
    return make_user(username="otto", role="operator")


def test_the_editor_opens_seeded_with_the_stored_values(
    otto: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    app, _ = copied(sdk_fixtures["py320-sqlite-default"], tmp_path)
    page = signed_in(otto).get(f"/apps/{app.name}/workflows/{SOURCE}/edit-fork/", {"start_step": 2})
    text = page.content.decode()
    assert page.status_code == 200
    # The input decodes from the pickle and opens as JSON; step 1 is copied and editable.
    assert "&quot;fail1&quot;" in text
    assert 'name="step_1"' in text
    # Step 2 failed: it runs again from here, so it has no editor.
    assert 'name="step_2"' not in text
    assert "restart here</strong>" in text


def test_an_edit_is_staged_and_its_page_shows_the_diff(
    otto: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    app, path = copied(sdk_fixtures["py320-sqlite-default"], tmp_path)
    client = signed_in(otto)
    url = f"/apps/{app.name}/workflows/{SOURCE}/edit-fork/"
    editor = client.get(url, {"start_step": 3}).context
    original = editor["input_editor"]["original"]
    step_two = next(e for e in editor["step_editors"] if e["function_id"] == 2)
    assert step_two["failed"]
    response = client.post(
        url,
        {
            "start_step": "3",
            "input": original.replace("fail1", "ann"),
            "step_1": next(e for e in editor["step_editors"] if e["function_id"] == 1)["original"],
            "step_2_replace": "on",
            "step_2": '"HELLO ANN"',
            "new_workflow_id": "wf-console",
            "reason": "customer renamed",
            "submit": "stage",
        },
    )
    fork = EditedFork.objects.get()
    assert response["Location"] == f"/apps/{app.name}/edited-forks/{fork.pk}/"
    assert (fork.input_edited, fork.edited_steps(), fork.status) == (True, [2], "staged")
    assert of(path, "workflow_status", "wf-console") == []
    page = client.get(response["Location"]).content.decode()
    assert '<span class="removed">-     &quot;fail1&quot;\n' in page
    assert '<span class="added">+     &quot;ann&quot;\n' in page
    assert "was failed" in page
    ran = client.post(f"/apps/{app.name}/edited-forks/{fork.pk}/run/", follow=True)
    assert "Wrote workflow wf-console" in ran.content.decode()
    compare = client.get(f"/apps/{app.name}/edited-forks/{fork.pk}/compare/").content.decode()
    assert "how-copied" in compare
    assert "how-edited" in compare


def test_invalid_json_is_reported_beside_its_editor_and_nothing_is_staged(
    otto: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    app, _ = copied(sdk_fixtures["py320-sqlite-default"], tmp_path)
    response = signed_in(otto).post(
        f"/apps/{app.name}/workflows/{SOURCE}/edit-fork/",
        {"start_step": "2", "input": "{not json", "reason": "x", "submit": "run"},
    )
    assert response.status_code == 400
    assert "Not valid JSON" in response.content.decode()
    assert response.context["input_editor"]["problems"]
    assert not EditedFork.objects.exists()


def test_a_viewer_cannot_open_the_editor(
    sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path, system_databases: None
) -> None:
    app, _ = copied(sdk_fixtures["py320-sqlite-default"], tmp_path)
    vera = make_user(username="vera", role="viewer")
    response = signed_in(vera).get(f"/apps/{app.name}/workflows/{SOURCE}/edit-fork/")
    assert response.status_code == 403
