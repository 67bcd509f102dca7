"""An operator opens a failed workflow of a real Python executor and reads it from its
timeline: the error first, each step a bar, its child's steps opened in place, a step's
details in a side panel; read from the system database and again through the executor. A
viewer reads a 1,000-step workflow on one screen. These are the pictures of
docs/screenshots (`SCREENSHOT_DIR=docs/screenshots`)."""

import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshot
from tests.browser.test_live_console import sign_in
from tests.e2e.servers import Executor, PostgresDatabases, StepChange
from tests.sdk_fixtures import by_role
from tests.workflows.test_workflow_page import FAILED, SLOWEST, long_workflow

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_an_operator_reads_a_failed_workflow_from_its_error_its_timeline_and_a_step(
    page: Page,
    stepchange: StepChange,
    new_app: Callable[..., tuple[str, str]],
    executors: Callable[..., Executor],
    databases: PostgresDatabases,
) -> None:
    system_database = databases.new("sc_timeline")
    app, key = new_app("shop", system_database_url=system_database)
    executor = executors("python", app=app, key=key, system_database_url=system_database)
    stepchange.wait_executors(app, 1)
    workflow_id = f"checkout-{uuid.uuid4().hex[:8]}"
    assert "status: ERROR" in executor.get(f"/checkout?name=fail-ada&workflow_id={workflow_id}")
    stepchange.user("olga", "operator", "olga-pass-7731")
    sign_in(page, stepchange, "olga", "olga-pass-7731")
    page.goto(f"{stepchange.url}/apps/{app}/workflows/{workflow_id}/")

    # The error first: what it was, where it came from, what to do about it.
    failure = page.locator("section.failure")
    expect(failure.get_by_role("heading")).to_contain_text("ValueError: bad input fail-ada")
    expect(failure.get_by_role("link", name="#5 shout")).to_be_visible()
    expect(failure).to_contain_text("recovery attempts: 1")
    expect(failure.get_by_text("Fork from failure…")).to_be_visible()
    expect(failure.get_by_role("link", name="Edit and fork…")).to_be_visible()
    expect(page.locator(".wf-head")).to_contain_text("5 steps")
    screenshot(page, "workflow-failed")

    # The timeline: each step a bar on one axis, by outcome; the slowest marked.
    timeline = page.locator("#view-timeline")
    expect(timeline).to_be_visible()
    bars = timeline.locator("rect.bar[data-step]")
    expect(bars).to_have_count(5)
    expect(timeline.locator("rect.bar.failed")).to_have_count(1)
    expect(timeline.locator("rect.bar.wait")).to_have_count(2)  # getResult and the sleep
    expect(timeline.locator("rect.bar.child")).to_have_count(1)
    expect(timeline.locator("rect.bar.slowest")).to_have_count(1)
    expect(timeline.locator("rect.bar.failed title")).to_have_text(re.compile(r"^shout #5 · \d"))
    # The child's own steps open in place under the step that started it, on the same axis.
    toggle = timeline.get_by_role(
        "button", name=f"Show the steps of child workflow {workflow_id}-2"
    )
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    child = timeline.locator(".tl-children").first
    expect(child.get_by_role("link", name="record_audit")).to_be_visible()
    expect(child.locator("rect.bar[data-step]")).to_have_count(1)
    timeline.scroll_into_view_if_needed()
    screenshot(page, "workflow-timeline")

    # A click on the failed bar: its error, pretty-printed, beside the page.
    timeline.locator("rect.bar.failed").click()
    panel = page.locator("#step-panel")
    expect(panel).to_be_visible()
    expect(panel.get_by_role("heading")).to_contain_text("Step 5 shout")
    expect(panel.locator("details.value pre.json")).to_contain_text("bad input fail-ada")
    expect(panel.get_by_role("button", name="Copy")).to_be_visible()
    raw = panel.locator("details.raw")
    raw.locator("summary").click()
    expect(raw.locator("pre")).to_contain_text(" characters")
    expect(panel).to_contain_text("Took")
    screenshot(page, "step-panel")
    # Escape closes it; the keyboard goes back to where it was.
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(
        timeline.locator(".tl-lane").filter(has_text="shout").locator("a.tl-name")
    ).to_be_focused()

    # The Steps tab, from the keyboard: the table, its child link and its error line.
    page.get_by_role("tab", name="Timeline").focus()
    page.keyboard.press("ArrowRight")
    expect(page.get_by_role("tab", name="Steps")).to_have_attribute("aria-selected", "true")
    table = page.locator("#view-steps")
    expect(table).to_be_visible()
    expect(timeline).to_be_hidden()
    expect(table.locator("tr#step-5")).to_contain_text("ValueError: bad input fail-ada")
    expect(table.locator("tr#step-2").get_by_role("link", name=f"{workflow_id}-2")).to_be_visible()
    assert "view=steps" in page.url

    # Through the executor, with no system database: the same outline, the same bars.
    stepchange.manage("register_app", app, "--system-database-url=")
    page.goto(f"{stepchange.url}/apps/{app}/workflows/{workflow_id}/")
    expect(page.get_by_text("read from the executor")).to_be_visible()
    expect(page.locator("section.failure")).to_contain_text("bad input fail-ada")
    expect(page.locator("section.failure")).to_contain_text("not reported through an executor")
    expect(page.locator("#view-timeline rect.bar[data-step]")).to_have_count(5)
    expect(page.locator("#view-timeline rect.bar.failed")).to_have_count(1)
    page.locator("#view-timeline a.tl-name", has_text="fetch").click()
    expect(page.locator("#step-panel details.value pre.json")).to_contain_text("fail-ada")


def test_a_viewer_reads_a_thousand_step_workflow_on_one_screen(
    page: Page,
    stepchange: StepChange,
    sdk_fixtures: dict[str, dict[str, Any]],
    tmp_path: Path,
) -> None:
    fixture = sdk_fixtures["py320-sqlite-default"]
    path = tmp_path / "crawl.sqlite"
    workflow_id = long_workflow(Path(fixture["path"]), path, by_role(fixture, "success"))
    app = f"crawler-{uuid.uuid4().hex[:6]}"
    stepchange.manage("register_app", app, "--system-database-url", f"sqlite:///{path}")
    stepchange.user("vin", "viewer", "vin-pass-3380")
    sign_in(page, stepchange, "vin", "vin-pass-3380")
    page.goto(f"{stepchange.url}/apps/{app}/workflows/{workflow_id}/")
    expect(page.locator(".wf-head")).to_contain_text("1,000 steps")

    # Every step a bar, and the whole timeline within a screen.
    timeline = page.locator("#view-timeline")
    expect(timeline.locator("rect.bar[data-step]")).to_have_count(1000)
    box = timeline.locator(".tl").bounding_box()
    assert box is not None
    assert box["height"] < 450, box
    expect(timeline.locator(".tl-lane", has_text="fetch_page")).to_contain_text("\u00d7990")
    timeline.scroll_into_view_if_needed()
    screenshot(page, "workflow-timeline-1000")

    # The table: the 990 alike steps folded to the ones that matter.
    page.get_by_role("tab", name="Steps").click()
    table = page.locator("#view-steps")
    rows = table.locator("tbody tr[id^=step-]")
    folded = rows.count()
    assert folded < 20
    expect(table.locator(f"tr#step-{SLOWEST}")).to_contain_text("slowest")
    expect(table.locator(f"tr#step-{FAILED}")).to_contain_text("bad input")
    box = table.bounding_box()
    assert box is not None
    assert box["height"] < 860, box
    table.scroll_into_view_if_needed()
    screenshot(page, "workflow-steps-folded")

    # A fold opens in place; a jump goes to the last step and opens it.
    table.get_by_role("button", name="··· 447 more ···").click()
    expect(table.locator("tr#step-3")).to_be_visible()
    expect(rows).to_have_count(folded + 100)
    page.get_by_role("link", name="the last step #1000").click()
    expect(page.locator("#step-panel").get_by_role("heading")).to_contain_text("Step 1000 done")
    page.keyboard.press("Escape")

    # A filter by name narrows both views and stays in the URL.
    page.get_by_label("Filter steps by name").fill("summ")
    expect(page.get_by_text("2 of 1,000 steps have “summ” in their name.")).to_be_visible()
    expect(table.locator("tbody tr[id^=step-]")).to_have_count(2)
    assert "q=summ" in page.url
    page.get_by_role("tab", name="Timeline").click()
    expect(timeline.locator("rect.bar[data-step]")).to_have_count(2)

    # At 1,024 px the page still reads.
    page.set_viewport_size({"width": 1024, "height": 768})
    page.get_by_label("Filter steps by name").fill("")
    expect(timeline.locator("rect.bar[data-step]")).to_have_count(1000)
    screenshot(page, "workflow-timeline-1024")
