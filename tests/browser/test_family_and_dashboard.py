"""A viewer walks a workflow's family on its page (parent, siblings, children, forks, each
a card that opens its workflow) and follows the dashboard's headline numbers to the lists
they count, by mouse and by keyboard. The README's pictures of both come from here
(`SCREENSHOT_DIR=docs/screenshots`)."""

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshot
from tests.browser.test_live_console import sign_in
from tests.e2e.servers import StepChange
from tests.workflows.family_data import (
    FAILED_CHILD,
    FAILED_TODAY,
    FORKS,
    GRANDCHILD,
    PARENT,
    QUEUED,
    drop_family_schema,
    family_schema,
)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture
def family(stepchange: StepChange, sdk_fixtures: dict[str, dict[str, Any]]) -> Iterator[str]:
    url, schema = family_schema(sdk_fixtures)
    stepchange.manage("register_app", "family", "--system-database-url", url, "--schema", schema)
    yield "family"
    drop_family_schema(url, schema)


def test_a_viewer_walks_a_family_and_follows_the_dashboards_numbers(
    page: Page, stepchange: StepChange, family: str
) -> None:
    stepchange.user("fay", "viewer", "fay-pass-2231")
    sign_in(page, stepchange, "fay", "fay-pass-2231")

    page.goto(f"{stepchange.url}/apps/{family}/workflows/{FAILED_CHILD}/")
    graph = page.get_by_role("region", name="Family")
    here = graph.locator(".fam-card.here")
    expect(here).to_contain_text(FAILED_CHILD)
    expect(here.locator("[data-status]")).to_have_attribute("data-status", "ERROR")
    expect(graph.get_by_role("link", name=re.compile(PARENT))).to_be_visible()
    for fork in FORKS:
        expect(graph.get_by_role("link", name=re.compile(fork))).to_be_visible()
    expect(graph.get_by_role("link", name="+8 more siblings")).to_be_visible()
    # A sibling that ran out of recovery attempts says so in words.
    expect(graph.get_by_text("max recovery attempts exceeded")).to_be_visible()
    screenshot(page, "workflow-family")

    graph.get_by_role("link", name=re.compile(GRANDCHILD)).click()
    expect(page.get_by_role("heading", name=GRANDCHILD)).to_be_visible()
    expect(
        page.get_by_role("region", name="Family").get_by_role("link", name=re.compile(FAILED_CHILD))
    ).to_be_visible()
    # The badge in the page's head links to every workflow in its status.
    page.locator(".wf-head a.status").click()
    page.wait_for_url("**/workflows/?status=SUCCESS")
    expect(page.get_by_label("success", exact=True)).to_be_checked()

    page.goto(f"{stepchange.url}/apps/{family}/")
    numbers = page.get_by_role("navigation", name="Headline numbers")
    failed = numbers.get_by_role("link", name=re.compile("failed in the last 24 h"))
    expect(failed).to_contain_text(str(FAILED_TODAY))
    expect(numbers.get_by_role("link", name=re.compile("queued"))).to_contain_text(str(QUEUED))
    screenshot(page, "dashboard")
    failed.click()
    page.wait_for_url(
        re.compile(
            r"status=ERROR&status=MAX_RECOVERY_ATTEMPTS_EXCEEDED&all_levels=on&completed_after="
        )
    )
    expect(page.locator("#workflow-rows td.id")).to_have_count(FAILED_TODAY)
    expect(page.get_by_role("link", name=FAILED_CHILD, exact=True)).to_be_visible()
    expect(page.get_by_label("error", exact=True)).to_be_checked()

    # From the keyboard: the queued tile, focused and entered.
    page.go_back()
    queued = page.get_by_role("navigation", name="Headline numbers").get_by_role(
        "link", name=re.compile("queued")
    )
    queued.focus()
    page.keyboard.press("Enter")
    page.wait_for_url("**/workflows/?status=ENQUEUED&all_levels=on")
    expect(page.locator("#workflow-rows td.id")).to_have_count(QUEUED)
