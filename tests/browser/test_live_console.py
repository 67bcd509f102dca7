"""An operator signs in, watches the executors page, and sees a real executor arrive live."""

from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshot
from tests.e2e.servers import Executor, PostgresDatabases, StepChange

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def sign_in(page: Page, stepchange: StepChange, username: str, password: str) -> None:
    page.goto(f"{stepchange.url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Applications")).to_be_visible()


def test_a_new_executor_appears_on_the_page_without_a_reload(
    page: Page,
    stepchange: StepChange,
    new_app: Callable[..., tuple[str, str]],
    executors: Callable[..., Executor],
    databases: PostgresDatabases,
) -> None:
    stepchange.user("olive", "operator", "olive-pass-8731")
    app, key = new_app("live")
    sign_in(page, stepchange, "olive", "olive-pass-8731")
    page.get_by_role("link", name=app).first.click()
    page.get_by_role("link", name="Executors", exact=True).click()
    expect(page.get_by_text("No executor is connected")).to_be_visible()
    expect(page.locator("#live-status.on")).to_be_attached(timeout=10_000)
    marker = page.evaluate("() => (window.__notReloaded = true)")
    assert marker is True

    executor = executors("python", app=app, key=key, system_database_url=databases.new("sc_live"))
    [info] = stepchange.wait_executors(app, 1)
    expect(page.get_by_role("link", name=info["executor_id"])).to_be_visible(timeout=10_000)
    assert page.evaluate("() => window.__notReloaded") is True
    screenshot(page, "executors")

    executor.kill()
    expect(page.get_by_text("No executor is connected")).to_be_visible(timeout=10_000)
    expect(page.get_by_role("button", name="Recover now")).to_be_visible()
    # The same session authenticates the JSON API, which is served by its own handler.
    api = page.request.get(f"{stepchange.url}/api/v1/apps/{app}/executors?include_gone=true")
    assert api.status == 200
    assert api.json()[0]["executor_id"] == info["executor_id"]
    page.goto(f"{stepchange.url}/apps/{app}/requests/")
    expect(page.get_by_text("executor_info").first).to_be_visible()
    screenshot(page, "requests")
