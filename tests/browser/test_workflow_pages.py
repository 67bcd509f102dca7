"""A viewer signs in, filters the workflow list, opens a workflow and follows its child."""

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshot
from tests.browser.test_live_console import sign_in
from tests.e2e.servers import StepChange
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
    stepchange.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User, Group\n"
        "if not User.objects.filter(username='vic').exists():\n"
        "    u = User.objects.create_user('vic', password='vic-pass-4417')\n"
        "    u.groups.add(Group.objects.get(name='viewer'))",
    )
    sign_in(page, stepchange, "vic", "vic-pass-4417")
    page.get_by_role("link", name=app).first.click()
    expect(page.get_by_role("heading", name="Workflows, last hour")).to_be_visible()
    screenshot(page, "dashboard")
    page.goto(f"{stepchange.url}/apps/{app}/workflows/")
    expect(page.get_by_text("read from the system database")).to_be_visible()
    expect(page.get_by_role("link", name=by_role(fixture, "success"), exact=True)).to_be_visible()
    screenshot(page, "workflows")

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
    screenshot(page, "workflow")
    page.get_by_role("link", name=by_role(fixture, "parent-child")).first.click()
    expect(page.get_by_role("heading", name=by_role(fixture, "parent-child"))).to_be_visible()
    expect(page.get_by_role("link", name=by_role(fixture, "parent"))).to_be_visible()

    # A "more steps" row whose rows cannot be read is replaced by the server's answer, which
    # says why (htmx drops error answers unless the row opts in).
    page.evaluate(
        """() => {
            const body = document.querySelector("table.steps tbody");
            body.insertAdjacentHTML("beforeend", '<tr class="more" id="probe"><td colspan="5">'
              + '<button type="button" hx-get="?steps_cursor=bad" hx-target="closest tr" '
              + 'hx-swap="outerHTML" data-swap-errors>More steps…</button></td></tr>');
            htmx.process(document.getElementById("probe"));
        }"""
    )
    page.get_by_role("button", name="More steps…").click()
    expect(page.get_by_role("alert")).to_contain_text("cursor")
    expect(page.get_by_role("button", name="Try again")).to_be_visible()
