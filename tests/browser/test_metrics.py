"""A viewer reads an application's Metrics page: the charts of the workflows a real DBOS
SDK ran, rolled up by StepChange, each with its values on hover and as a table, for each
window (axe-core reads the page in the accessibility tour, tests/browser/
test_accessibility.py). Its picture: `metrics.png` in the screenshots."""

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshot
from tests.browser.test_live_console import sign_in
from tests.e2e.servers import StepChange

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ROLL_UP = "from metrics.rollups import rollup_all; print(rollup_all())"


def test_a_viewer_reads_the_metrics_of_an_application_in_every_window(
    page: Page, stepchange: StepChange, sdk_fixtures: dict[str, dict[str, Any]]
) -> None:
    fixture = sdk_fixtures["py320-sqlite-default"]
    app = fixture["app_name"]
    stepchange.manage("register_app", app, "--system-database-url", fixture["url"])
    assert "problem=''" in stepchange.manage("shell", "-c", ROLL_UP)
    stepchange.user("mia", "viewer", "mia-pass-4417")
    sign_in(page, stepchange, "mia", "mia-pass-4417")

    page.goto(f"{stepchange.url}/apps/{app}/")
    expect(page.get_by_role("heading", name="Workflows, last hour")).to_be_visible()
    page.get_by_role("navigation", name=app).get_by_role("link", name="Metrics").click()
    expect(page.get_by_role("heading", name="Metrics", exact=True)).to_be_visible()
    # The default window is a day; the fixture's workflows ran minutes ago.
    windows = page.get_by_role("navigation", name="Window")
    expect(windows.get_by_role("link", name="24 hours")).to_have_attribute("aria-current", "page")
    started = page.get_by_role(
        "img",
        name="Workflows started per bucket, in workflows; the table below holds the same numbers",
    )
    expect(started).to_be_visible()
    # Hovering a bar names its bucket and its count.
    expect(started.locator("rect title").first).to_contain_text("started:")
    page.get_by_text("Workflows finished as a table").click()
    expect(page.get_by_role("columnheader", name="succeeded", exact=True)).to_be_visible()
    names = page.locator("section", has=page.get_by_role("heading", name="By workflow name"))
    expect(names.get_by_role("rowheader").first).to_be_visible()
    screenshot(page, "metrics")

    for window in ("1 hour", "7 days", "30 days"):
        windows.get_by_role("link", name=window).click()
        expect(windows.get_by_role("link", name=window)).to_have_attribute("aria-current", "page")
        expect(page.locator("svg[role=img]").first).to_be_visible()
    screenshot(page, "metrics-30-days")

    page.goto(f"{stepchange.url}/apps/{app}/metrics/?window=1y")
    expect(page.get_by_role("alert")).to_contain_text(
        "Unknown window “1y”: choose one of 1h, 24h, 7d, 30d."
    )
