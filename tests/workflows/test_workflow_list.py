"""Stories about the workflow list's search box, its chips, its families and its columns,
over the database a real Python SDK (dbos 3.2.0) wrote; and the list's mended bugs."""

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils.html import escape

from stepchange.models import Application
from tests.conftest import make_user, signed_in
from tests.sdk_fixtures import by_role, registered
from workflows import jobs, names
from workflows.models import ListPreference, SeenName
from workflows.views import DEFAULT_COLUMNS, DEFAULT_LIMIT


@pytest.fixture
def fixture(system_databases: None, sdk_fixtures: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return sdk_fixtures["py320-sqlite-default"]


@pytest.fixture
def app(fixture: dict[str, Any]) -> Application:
    """The fixture's application, its names learned as the background loop would."""
    application = registered(fixture)
    names.names_seen_refresh(application)
    return application


@pytest.fixture
def vera(db: None) -> Client:
    return signed_in(make_user(username="vera", role="viewer"))


def listed(page: str) -> list[str]:
    """The ids of the rows of a list page, in order."""
    return re.findall(r'<td class="col-id id"><a href="/apps/[^/]+/workflows/([^/]+)/"', page)


@pytest.mark.parametrize("name", ["py320-sqlite-default", "py320-pg-default"])
def test_the_names_seen_are_learned_once_then_only_from_newer_workflows(
    system_databases: None, sdk_fixtures: dict[str, dict[str, Any]], name: str
) -> None:
    fixture = sdk_fixtures[name]
    app = registered(fixture)
    assert names.names_offered(app) == []
    assert names.names_seen_refresh(app) > 0
    expected = sorted({w["name"] for w in fixture["workflows"]})
    assert names.names_offered(app) == expected
    newest = max(SeenName.objects.filter(application=app).values_list("last_seen_ms", flat=True))
    # Nothing newer than the newest seen: the next refresh reads nothing.
    assert names.names_seen_refresh(app) == 0
    assert SeenName.objects.get(application=app, name="fixture_greet").last_seen_ms <= newest


def test_the_search_box_offers_the_names_seen(app: Application, vera: Client) -> None:
    page = vera.get(f"/apps/{app.name}/workflows/").content.decode()
    assert 'type="search" name="q"' in page
    assert "data-search-box" in page
    assert 'list="workflow-names"' in page
    assert '<option value="fixture_greet"></option>' in page
    assert page.count('<option value="fixture_') == len(names.names_offered(app))


def test_a_search_that_starts_a_known_name_lists_the_workflows_of_that_name(
    app: Application, vera: Client, fixture: dict[str, Any]
) -> None:
    page = vera.get(f"/apps/{app.name}/workflows/", {"q": "FIXTURE_GR"}).content.decode()
    greeted = [w["workflow_id"] for w in fixture["workflows"] if w["name"] == "fixture_greet"]
    assert sorted(listed(page)) == sorted(greeted)
    assert "Names starting with “FIXTURE_GR”: <code>fixture_greet</code>" in page
    # The other reading is a link away.
    assert escape("?q=FIXTURE_GR&workflow_id_prefix=FIXTURE_GR") not in page
    assert escape("workflow_id_prefix=FIXTURE_GR") in page


def test_a_search_no_name_starts_with_is_the_start_of_an_id_and_finds_children_too(
    app: Application, vera: Client, fixture: dict[str, Any]
) -> None:
    page = vera.get(f"/apps/{app.name}/workflows/", {"q": "py-default-par"}).content.decode()
    assert sorted(listed(page)) == [by_role(fixture, "parent"), by_role(fixture, "parent-child")]
    assert "Workflow ids starting with “py-default-par”" in page
    nothing = vera.get(f"/apps/{app.name}/workflows/", {"q": "zz-no-such"}).content.decode()
    assert listed(nothing) == []
    assert "No workflows match." in nothing


def test_a_search_and_a_filter_that_contradict_it_are_said_to(
    app: Application, vera: Client
) -> None:
    """A search read as names none of the Name filter's, or as the start of an id another
    start contradicts, is refused with the reason (no query: a contradicting pair of id
    prefixes once reached Postgres as one text holding a NUL, which it refuses)."""
    url = f"/apps/{app.name}/workflows/"
    names = vera.get(url, {"q": "fixture_g", "workflow_name": "fixture_parent"})
    assert names.status_code == 400
    assert "None of the names under Name starts with “fixture_g”" in names.content.decode()
    assert listed(names.content.decode()) == []
    ids = vera.get(url, {"q": "zz-no-such", "workflow_id_prefix": "py-default"})
    assert ids.status_code == 400
    assert "No workflow id starts with both “zz-no-such” and “py-default”" in (ids.content.decode())
    # A search that narrows the id filter holds both.
    narrowed = vera.get(url, {"q": "py-default-par", "workflow_id_prefix": "py-default"})
    assert narrowed.status_code == 200
    assert listed(narrowed.content.decode())


def test_children_nest_under_their_parent_which_opens_them_in_place(
    app: Application, vera: Client, fixture: dict[str, Any]
) -> None:
    parent, child = by_role(fixture, "parent"), by_role(fixture, "parent-child")
    page = vera.get(f"/apps/{app.name}/workflows/").content.decode()
    assert child not in listed(page)
    assert parent in listed(page)
    assert 'aria-label="Show the children of fixture_parent"' in page
    assert "Top-level only" in page
    family = vera.get(
        f"/apps/{app.name}/workflows/",
        {"parent": parent, "depth": "1"},
        headers={"HX-Request": "true"},
    )
    assert family.status_code == 200
    rows = family.content.decode()
    assert "<html" not in rows
    assert listed(rows) == [child]
    assert f'class="depth-1" data-child-of="{parent}"' in rows
    for bad in ({"parent": ""}, {"parent": parent, "depth": "deep"}):
        assert vera.get(f"/apps/{app.name}/workflows/", bad).status_code == 400


def test_a_failed_row_shows_the_first_line_of_its_error(
    app: Application, vera: Client, fixture: dict[str, Any]
) -> None:
    page = vera.get(f"/apps/{app.name}/workflows/", {"status": "ERROR"}).content.decode()
    assert listed(page) == [by_role(fixture, "error")]
    assert '<div class="error-line small" title="ValueError: bad input fail1">' in page


def test_each_filter_set_is_a_chip_whose_removal_keeps_the_others(
    app: Application, vera: Client
) -> None:
    url = f"/apps/{app.name}/workflows/"
    page = vera.get(url, {"queue_name": "fixture-queue", "status": "SUCCESS"}).content.decode()
    assert "Queue: <strong>fixture-queue</strong>" in page
    assert f'<a href="{url}?status=SUCCESS" class="chip-remove"' in page
    # Top-level only is a chip too: removing it lists children as rows.
    top = escape(f"{url}?queue_name=fixture-queue&status=SUCCESS&all_levels=on")
    removal = f'<a href="{top}" class="chip-remove" aria-label="Remove the filter Top-level only"'
    assert removal in page
    every = vera.get(url, {"all_levels": "on"}).content.decode()
    assert "Children listed as rows" in every
    assert f'<a href="{url}" class="chip-remove"' in every


def test_the_page_size_shown_is_the_one_applied(app: Application, vera: Client) -> None:
    """The limit select read 25 while 50 rows showed: the applied default is now its value."""
    for asked in ({}, {"status": "SUCCESS"}):
        page = vera.get(f"/apps/{app.name}/workflows/", asked).content.decode()
        assert f'<option value="{DEFAULT_LIMIT}" selected>' in page
        assert '<option value="25" selected>' not in page
    small = vera.get(f"/apps/{app.name}/workflows/", {"limit": "25"}).content.decode()
    assert '<option value="25" selected>' in small


def test_the_filter_form_asks_for_the_bare_list_path(app: Application, vera: Client) -> None:
    """hx-get="" kept the page's query string and added the form's to it on every change."""
    url = f"/apps/{app.name}/workflows/"
    page = vera.get(url, {"status": "ERROR", "queue_name": "q"}).content.decode()
    assert f'hx-get="{url}" hx-target="#workflow-rows"' in page
    assert 'hx-get=""' not in page


def test_columns_chosen_are_remembered_for_their_chooser_only(
    app: Application, vera: Client
) -> None:
    url = f"/apps/{app.name}/workflows/"
    page = vera.get(url).content.decode()
    assert 'class="grid workflows hide-executor"' in page
    chosen = vera.post(
        f"/apps/{app.name}/columns/",
        {"columns": ["executor", "created"], "query": "status=ERROR"},
    )
    assert chosen.status_code == 302
    assert chosen["Location"] == f"{url}?status=ERROR"
    assert ListPreference.objects.get(user__username="vera").columns == ["executor", "created"]
    again = vera.get(url).content.decode()
    assert 'class="grid workflows hide-id hide-queue hide-version hide-duration"' in again
    # Through htmx the table changed already: nothing to render.
    quiet = vera.post(
        f"/apps/{app.name}/columns/", {"columns": ["id"]}, headers={"HX-Request": "true"}
    )
    assert quiet.status_code == 204
    other = signed_in(make_user(username="otis", role="viewer")).get(url).content.decode()
    assert "executor" not in DEFAULT_COLUMNS
    assert 'class="grid workflows hide-executor"' in other
    bad = vera.post(f"/apps/{app.name}/columns/", {"columns": ["password"]})
    assert bad.status_code == 400
    assert b"password" in bad.content


def test_a_bulk_action_over_the_limit_says_so_and_leads_back_to_the_filtered_list(
    app: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs, "MAX_WORKFLOWS", 2)
    otto: User = make_user(username="otto", role="operator")
    page = signed_in(otto).get(
        f"/apps/{app.name}/bulk/new/",
        {"action": "cancel", "scope": "filter", "filter": "status=SUCCESS"},
    )
    assert page.status_code == 200
    html = page.content.decode()
    assert "one bulk action takes at most" in html
    assert "Narrow the filter" in html
    back = f'href="/apps/{app.name}/workflows/?status=SUCCESS">Back to the list, filter kept'
    assert back in html
    assert "Start:" not in html


def test_the_favicon_is_found(db: None) -> None:
    answer = Client().get("/favicon.ico")
    assert answer.status_code == 301
    assert answer["Location"].endswith("stepchange/favicon.svg")
    assert 'rel="icon"' in Client().get("/accounts/login/").content.decode()
