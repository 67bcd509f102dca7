"""An admin makes an alert rule in the console: a window of zero is refused on the form
with the reason, the corrected rule is listed with its channel, and the form passes axe."""

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import screenshot
from tests.browser.test_accessibility import AXE, assert_accessible
from tests.browser.test_live_console import sign_in
from tests.e2e.servers import StepChange

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    # bypass_csp: axe is injected as an inline script, which the console's CSP forbids.
    context = browser.new_context(viewport={"width": 1360, "height": 860}, bypass_csp=True)
    yield context.new_page()
    context.close()


def test_an_admin_makes_a_rule_and_a_bad_window_is_refused_on_the_form(
    page: Page, stepchange: StepChange
) -> None:
    if not AXE.exists():
        pytest.skip(f"{AXE} is missing: run `npm ci`")
    stepchange.manage("register_app", "shop")
    stepchange.user("ada-alerts", "admin", "ada-alerts-pass-3310")
    sign_in(page, stepchange, "ada-alerts", "ada-alerts-pass-3310")

    page.goto(f"{stepchange.url}/apps/shop/")
    page.get_by_role("link", name="Alerts", exact=True).click()
    page.get_by_role("link", name="Channels", exact=True).click()
    page.get_by_label("Name").fill("ops hook")
    page.get_by_label("Kind").select_option("webhook")
    page.get_by_label("URL").fill("http://127.0.0.1:8001/loop")
    page.get_by_role("button", name="Create channel").click()
    expect(page.get_by_role("alert")).to_contain_text("points at StepChange itself")
    page.get_by_label("URL").fill("https://hooks.example.com/ops")
    page.get_by_role("button", name="Create channel").click()
    expect(page.get_by_role("heading", name="ops hook")).to_be_visible()
    page.get_by_role("button", name="Send a test alert").click()
    expect(page.get_by_role("cell", name="test", exact=True)).to_be_visible()
    assert_accessible(page, "alert channel")
    screenshot(page, "alert-channel")

    page.get_by_role("link", name="Rules", exact=True).click()
    form = page.get_by_role("form", name="New rule")
    form.get_by_label("Name", exact=True).fill("checkout keeps failing")
    form.get_by_label("Kind").select_option("failures")
    form.get_by_label("Workflow name").fill("checkout")
    form.get_by_label("Threshold (N)").fill("3")
    form.get_by_label("Window (seconds)").fill("0")
    form.get_by_label("ops hook").check()
    form.get_by_role("button", name="Create rule").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "The window (seconds) must be at least 1; got 0."
    )
    assert_accessible(page, "alert rules, refused")
    screenshot(page, "alert-rule-refused")

    form = page.get_by_role("form", name="New rule")
    form.get_by_label("Window (seconds)").fill("300")
    form.get_by_role("button", name="Create rule").click()
    row = page.get_by_role("row", name="checkout keeps failing")
    expect(row).to_contain_text("more than 3 failures of checkout in 300 s")
    expect(row).to_contain_text("ops hook")
    screenshot(page, "alert-rules")
