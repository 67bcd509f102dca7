"""An admin walks the console's main pages and the API docs under the Content-Security-
Policy: the browser reports no refused script, style or connection, and no page error."""

from typing import Any

import pytest
from playwright.sync_api import ConsoleMessage, Page, expect

from tests.browser.test_live_console import sign_in
from tests.e2e.servers import StepChange
from tests.sdk_fixtures import by_role

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_the_main_pages_break_no_rule_of_the_content_security_policy(
    page: Page, stepchange: StepChange, sdk_fixtures: dict[str, dict[str, Any]]
) -> None:
    fixture = sdk_fixtures["py320-sqlite-default"]
    app = fixture["app_name"]
    stepchange.manage(
        "register_app", app, "--system-database-url", fixture["url"], "--schema", "dbos"
    )
    stepchange.user("csp-ada", "admin", "csp-ada-pass-5521")
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            problems.append(f"{page.url}: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"{page.url}: {error}"))
    sign_in(page, stepchange, "csp-ada", "csp-ada-pass-5521")
    workflow = by_role(fixture, "parent")
    visits = {
        "/": "Applications",
        f"/apps/{app}/": "Workflows, last hour",
        f"/apps/{app}/workflows/": None,
        f"/apps/{app}/workflows/{workflow}/": workflow,
        f"/apps/{app}/executors/": None,
        "/audit/": None,
    }
    for path, heading in visits.items():
        response = page.goto(f"{stepchange.url}{path}")
        assert response is not None
        assert response.ok, path
        assert "default-src 'self'" in response.headers["content-security-policy"]
        if heading:
            expect(page.get_by_role("heading", name=heading).first).to_be_visible()
        page.wait_for_load_state("networkidle")
    response = page.goto(f"{stepchange.url}/api/v1/docs")
    assert response is not None
    assert response.headers["x-frame-options"] == "DENY"
    # Swagger UI from StepChange's own static files, drawing the operations it read.
    expect(page.locator(".opblock").first).to_be_visible()
    page.wait_for_load_state("networkidle")
    assert problems == [], "\n".join(problems)
