"""Stories about the "go to workflow" box of every application page: a viewer types an ID,
or the start of one, and lands on the workflow, on the list of those it starts, or back
where she was with a message saying nothing matched."""

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from tests.conftest import make_app, make_user, signed_in
from tests.sdk_fixtures import by_role, registered
from workflows.views import GO_BLANK, GO_MAX_ID, GO_NOTHING, GO_TOO_LONG


@pytest.fixture
def fixture(sdk_fixtures: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return sdk_fixtures["py320-sqlite-default"]


def go(client: Client, app: str, **params: str) -> Any:
    return client.get(reverse("go-to-workflow", args=[app]), params)


def test_an_exact_id_opens_its_workflow_even_when_it_starts_other_ids(
    vera: User, fixture: dict[str, Any]
) -> None:
    app = registered(fixture).name
    parent = by_role(fixture, "parent")
    assert by_role(fixture, "parent-child").startswith(parent)
    response = go(signed_in(vera), app, id=parent)
    assert response.status_code == 302
    assert response["Location"] == reverse("workflow-detail", args=[app, parent])


def test_the_start_of_one_id_opens_that_workflow(vera: User, fixture: dict[str, Any]) -> None:
    app = registered(fixture).name
    cancelled = by_role(fixture, "cancel")
    response = go(signed_in(vera), app, id=f"  {cancelled[:-2]}\n")
    assert response.status_code == 302
    assert response["Location"] == reverse("workflow-detail", args=[app, cancelled])


def test_the_start_of_several_ids_opens_the_list_filtered_by_it(
    vera: User, fixture: dict[str, Any]
) -> None:
    app = registered(fixture).name
    prefix = by_role(fixture, "success")[:4]
    response = go(signed_in(vera), app, id=prefix)
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert location.path == reverse("workflows", args=[app])
    assert parse_qs(location.query) == {"workflow_id_prefix": [prefix]}


def test_an_id_nothing_starts_with_sends_her_back_saying_so(
    vera: User, fixture: dict[str, Any]
) -> None:
    app = registered(fixture).name
    client = signed_in(vera)
    back = reverse("executors", args=[app])
    response = go(client, app, id="no-such-workflow", back=back)
    assert response.status_code == 302
    assert response["Location"] == back
    page = client.get(back).content.decode()
    assert GO_NOTHING.format(app=app, prefix="no-such-workflow") in page


def test_it_sends_her_back_only_to_a_page_of_this_site(vera: User, fixture: dict[str, Any]) -> None:
    app = registered(fixture).name
    response = go(signed_in(vera), app, id="no-such-workflow", back="https://elsewhere.example/")
    assert response["Location"] == reverse("workflows", args=[app])


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("", GO_BLANK),
        ("   ", GO_BLANK),
        ("w" * (GO_MAX_ID + 1), GO_TOO_LONG.format(limit=GO_MAX_ID)),
    ],
    ids=["blank", "spaces", "too-long"],
)
def test_a_blank_or_impossible_id_is_a_400_that_says_why(
    vera: User, fixture: dict[str, Any], typed: str, message: str
) -> None:
    app = registered(fixture).name
    response = go(signed_in(vera), app, id=typed)
    assert response.status_code == 400
    page = response.content.decode()
    assert message in page
    assert 'aria-invalid="true"' in page


def test_a_nul_in_the_id_is_a_400_too(vera: User, fixture: dict[str, Any]) -> None:
    app = registered(fixture).name
    assert go(signed_in(vera), app, id="wf\x00").status_code == 400


def test_without_a_source_to_ask_the_page_says_why_with_the_relays_status(
    vera: User,
) -> None:
    app = make_app(name="orders").name  # no system database, no executor connected
    response = go(signed_in(vera), app, id="wf-1")
    assert response.status_code == 503
    assert b"Could not look for it" in response.content


def test_a_stranger_cannot_tell_whether_the_application_exists(
    fixture: dict[str, Any], system_databases: None
) -> None:
    app = registered(fixture).name
    stranger = signed_in(make_user(username="sam"))
    assert go(stranger, app, id=by_role(fixture, "success")).status_code == 404


def test_every_application_page_carries_the_box(vera: User, fixture: dict[str, Any]) -> None:
    app = registered(fixture).name
    client = signed_in(vera)
    for name in ("dashboard", "workflows", "executors", "requests"):
        page = client.get(reverse(name, args=[app])).content.decode()
        assert f'action="{reverse("go-to-workflow", args=[app])}"' in page, name
        assert "data-goto-box" in page, name
