"""An admin makes a scoped API key on the console, copies it from the one page that shows
it, sees it work and then revokes it; and defines a custom role. The pages pass axe-core."""

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import screenshot
from tests.browser.test_accessibility import _context, assert_accessible
from tests.browser.test_live_console import sign_in
from tests.e2e.servers import StepChange

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ADMIN, PASSWORD = "ada-keys", "ada-keys-pass-7310"


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page axe-core can be injected into (an inline script, which the CSP forbids)."""
    context = _context(browser, None, "light")
    yield context.new_page()
    context.close()


def apps_with(stepchange: StepChange, key: str) -> int:
    request = urllib.request.Request(
        f"{stepchange.url}/api/v1/apps", headers={"Authorization": f"Bearer {key}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            json.load(response)
            status: int = response.status
    except urllib.error.HTTPError as refused:
        status = refused.code
    return status


def test_an_admin_makes_a_key_sees_it_once_and_revokes_it(
    page: Page, stepchange: StepChange
) -> None:
    stepchange.user(ADMIN, "admin", PASSWORD)
    sign_in(page, stepchange, ADMIN, PASSWORD)
    page.get_by_role("link", name="API keys").click()
    expect(page.get_by_role("heading", name="API keys", exact=True)).to_be_visible()
    page.get_by_label("Name").fill("nightly report")
    page.get_by_label("Owner").select_option(label=ADMIN)
    page.get_by_label("Act: cancel, resume").check()
    page.get_by_label("Every application").check()
    page.get_by_role("button", name="Create key").click()

    shown = page.get_by_test_id("new-key")
    expect(shown).to_be_visible()
    key = shown.inner_text().strip()
    assert key.startswith("sck_")
    row = page.get_by_role("row").filter(has_text="nightly report")
    expect(row).to_contain_text("read, act")
    expect(row).to_contain_text("active")
    screenshot(page, "api-keys-made")
    assert_accessible(page, "API keys, a key just made")
    assert apps_with(stepchange, key) == 200

    # Back to the page (a reload would send the form again): the key is not on it.
    page.goto(f"{stepchange.url}/keys/")
    expect(page.get_by_test_id("new-key")).to_have_count(0)
    assert key not in page.content()
    page.get_by_role("button", name="Revoke nightly report").click()
    expect(page.get_by_text("Key “nightly report” revoked.")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text="nightly report")).to_contain_text("revoked")
    assert apps_with(stepchange, key) == 401


def test_an_admin_defines_a_custom_role(page: Page, stepchange: StepChange) -> None:
    stepchange.user(ADMIN, "admin", PASSWORD)
    sign_in(page, stepchange, ADMIN, PASSWORD)
    page.get_by_role("link", name="Roles").click()
    page.get_by_label("Name").fill("releaser")
    page.get_by_label("Act: cancel, resume").check()
    page.get_by_role("button", name="Create role").click()
    expect(page.get_by_text("Role “releaser” saved.")).to_be_visible()
    row = page.get_by_role("row").filter(has_text="releaser")
    expect(row).to_contain_text("read, act")
    screenshot(page, "roles")
    row.get_by_role("link", name="releaser").click()
    expect(page.get_by_role("heading", name="Role releaser")).to_be_visible()
    expect(page.get_by_label("Act: cancel, resume")).to_be_checked()
    screenshot(page, "role")
    assert_accessible(page, "a custom role")
