"""A viewer signs in, filters the workflow list, opens a workflow and follows its child:
over the SDK fixtures' system database, and over a real Python executor's, whose new
workflows arrive on the open page."""

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshot
from tests.browser.test_live_console import sign_in
from tests.e2e.servers import Executor, PostgresDatabases, StepChange
from tests.sdk_fixtures import by_role

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_a_viewer_filters_opens_a_workflow_and_follows_its_child(
    page: Page, stepchange: StepChange, sdk_fixtures: dict[str, dict[str, Any]]
) -> None:
    fixture = sdk_fixtures["py320-pg-default"]
    app = fixture["app_name"]
    stepchange.manage(
        "register_app", app, "--system-database-url", fixture["url"], "--schema", "dbos"
    )
    stepchange.user("vic", "viewer", "vic-pass-4417")
    sign_in(page, stepchange, "vic", "vic-pass-4417")
    page.get_by_role("link", name=app).first.click()
    expect(page.get_by_role("heading", name="Workflows, last hour")).to_be_visible()
    page.goto(f"{stepchange.url}/apps/{app}/workflows/")
    expect(page.get_by_text("read from the system database")).to_be_visible()
    expect(page.get_by_role("link", name=by_role(fixture, "success"), exact=True)).to_be_visible()

    # Filtering swaps the rows in place and puts the filter in the URL.
    page.get_by_label("error", exact=True).check()
    expect(page.get_by_role("link", name=by_role(fixture, "success"), exact=True)).to_have_count(0)
    expect(page.get_by_role("link", name=by_role(fixture, "error"), exact=True)).to_be_visible()
    assert "status=ERROR" in page.url

    page.goto(f"{stepchange.url}/apps/{app}/workflows/{by_role(fixture, 'parent')}/")
    expect(page.get_by_role("heading", name=by_role(fixture, "parent"))).to_be_visible()
    # The input as stored, fetched when its box is opened.
    raw = page.locator("details.raw").first
    expect(raw.locator("pre")).to_have_text("Loading…")
    raw.locator("summary").click()
    expect(raw.locator("pre")).to_contain_text(" characters")
    expect(raw.locator("pre")).not_to_contain_text("Loading")
    page.get_by_role("link", name=by_role(fixture, "parent-child")).first.click()
    expect(page.get_by_role("heading", name=by_role(fixture, "parent-child"))).to_be_visible()
    expect(page.get_by_role("link", name=by_role(fixture, "parent"), exact=True)).to_be_visible()

    # A fold of the step table whose rows cannot be read is replaced by the server's answer,
    # which says why (htmx drops error answers unless the row opts in).
    page.get_by_role("tab", name="Steps").click()
    page.evaluate(
        """() => {
            const body = document.querySelector("table.steps tbody");
            body.insertAdjacentHTML("beforeend", '<tr class="fold" id="probe"><td colspan="6">'
              + '<button type="button" hx-get="?steps_cursor=bad" hx-target="closest tr" '
              + 'hx-swap="outerHTML" data-swap-errors>··· 3 more ···</button></td></tr>');
            htmx.process(document.getElementById("probe"));
        }"""
    )
    page.get_by_role("button", name="··· 3 more ···").click()
    expect(page.get_by_role("alert")).to_contain_text("cursor")
    expect(page.get_by_role("button", name="Try again")).to_be_visible()


def test_a_viewer_follows_a_real_executors_workflows_and_sees_a_new_one_arrive(
    page: Page,
    stepchange: StepChange,
    new_app: Callable[..., tuple[str, str]],
    executors: Callable[..., Executor],
    databases: PostgresDatabases,
) -> None:
    """A live Python executor (dbos 3.2.0) and its system database: the dashboard shows it,
    the list filters, a workflow's page shows its steps, events and streams and links its
    child, and a workflow started meanwhile appears on the open list without a reload.
    These are the README's pictures (`SCREENSHOT_DIR=docs/screenshots`)."""
    system_database = databases.new("sc_pages")
    app, key = new_app("shop", system_database_url=system_database)
    executor = executors("python", app=app, key=key, system_database_url=system_database)
    stepchange.wait_executors(app, 1)
    greeted = f"greet-{uuid.uuid4().hex[:8]}"
    executor.get(f"/?name=ada&workflow_id={greeted}")
    executor.get("/?name=ben")
    stepchange.user("val", "viewer", "val-pass-5120")
    sign_in(page, stepchange, "val", "val-pass-5120")
    page.get_by_role("link", name=app).first.click()
    expect(page.get_by_role("heading", name="Workflows, last hour")).to_be_visible()
    expect(page.get_by_text("None connected.")).to_have_count(0)
    expect(page.get_by_text("python", exact=True).first).to_be_visible()
    screenshot(page, "dashboard")

    page.get_by_role("link", name="Workflows", exact=True).click()
    expect(page.get_by_text("read from the system database")).to_be_visible()
    # The name filter waits under "More filters" (the search box reads names seen too).
    page.get_by_text("More filters").click()
    page.get_by_role("textbox", name="Name", exact=True).fill("greet")
    page.get_by_role("textbox", name="Name", exact=True).press("Enter")
    page.wait_for_url("**workflow_name=greet**")
    expect(page.get_by_role("link", name=greeted, exact=True)).to_be_visible()
    expect(page.locator("#workflow-rows td.id")).to_have_count(2)
    expect(page.locator(".row-count")).to_have_text("· 2 in all")
    screenshot(page, "workflows")

    # A workflow started now shows up on the open page, which is not reloaded.
    page.evaluate("() => (window.__notReloaded = true)")
    arrived = f"greet-{uuid.uuid4().hex[:8]}"
    executor.get(f"/?name=cy&workflow_id={arrived}")
    expect(page.get_by_role("link", name=arrived, exact=True)).to_be_visible(timeout=20_000)
    expect(page.locator(".row-count")).to_have_text("· 3 in all")
    assert page.evaluate("() => window.__notReloaded") is True

    page.get_by_role("link", name=greeted, exact=True).click()
    expect(page.get_by_role("heading", name=greeted)).to_be_visible()
    expect(page.locator("#view-timeline").get_by_role("link", name="shout")).to_be_visible()
    expect(page.get_by_text("stage", exact=True).first).to_be_visible()
    expect(page.get_by_role("heading", name="progress")).to_be_visible()
    screenshot(page, "workflow")
    page.get_by_role("tab", name="Steps").click()
    expect(page.locator("table.steps").get_by_text("shout", exact=True)).to_be_visible()
    page.locator("#family a.fam-card").first.click()
    expect(page.get_by_text("audit_greeting").first).to_be_visible()
    expect(page.get_by_role("link", name=greeted, exact=True)).to_be_visible()
