"""An operator forks a real workflow from the console and follows the fork to SUCCESS."""

from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshot
from tests.browser.test_live_console import sign_in
from tests.e2e.servers import Executor, PostgresDatabases, StepChange, SystemDatabase, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_an_operator_forks_a_workflow_and_follows_the_fork_to_success(
    page: Page,
    stepchange: StepChange,
    new_app: Callable[..., tuple[str, str]],
    executors: Callable[..., Executor],
    databases: PostgresDatabases,
) -> None:
    stepchange.user("ossie", "operator", "ossie-pass-5521")
    url = databases.new("sc_fork")
    app, key = new_app("fork", system_database_url=url)
    executor = executors("python", app=app, key=key, system_database_url=url)
    stepchange.wait_executors(app, 1)
    executor.get("/?name=alice&workflow_id=wf-source")
    system = SystemDatabase(url)
    eventually(lambda: system.status("wf-source") == "SUCCESS", what="the source to succeed")

    sign_in(page, stepchange, "ossie", "ossie-pass-5521")
    page.goto(f"{stepchange.url}/apps/{app}/workflows/wf-source/")
    # Resume makes no sense for a finished workflow: shown, disabled, with the reason.
    expect(page.get_by_role("button", name="Resume", exact=True)).to_be_disabled()
    page.locator("summary", has_text="Fork…").click()
    form = page.locator("details[data-action=fork] form")
    form.get_by_label("Start from step").fill("2")
    form.get_by_label("New workflow ID").fill("wf-forked")
    form.get_by_label("Reason").fill("replay the greeting")
    screenshot(page, "fork-confirm")
    form.get_by_role("button", name="Fork wf-source").click()

    # The console goes to the new workflow and follows it until it finishes.
    expect(page).to_have_url(f"{stepchange.url}/apps/{app}/workflows/wf-forked/")
    expect(page.get_by_text("Fork done by executor")).to_be_visible()
    expect(page.locator(".wf-head .status-success")).to_be_visible(timeout=30_000)
    expect(page.get_by_role("link", name="wf-source", exact=True)).to_be_visible()
    screenshot(page, "forked")

    forked = system.workflow("wf-forked")
    assert forked is not None
    assert (forked["status"], forked["forked_from"]) == ("SUCCESS", "wf-source")
    # Step 1 was copied, not run again: its recorded output is the source's.
    source_steps = {step["function_id"]: step for step in system.steps("wf-source")}
    fork_steps = {step["function_id"]: step for step in system.steps("wf-forked")}
    assert fork_steps[1]["output"] == source_steps[1]["output"]
    # The fork's page keeps the attempt in its history; the source's links its fork.
    page.goto(f"{stepchange.url}/apps/{app}/workflows/wf-source/")
    expect(page.locator(".audit-history")).to_contain_text("workflow.fork")
    expect(page.locator(".audit-history")).to_contain_text("replay the greeting")
    expect(page.locator("#family a.fam-card", has_text="wf-forked")).to_be_visible()

    # The list follows the system database: a workflow started now appears without a reload.
    page.goto(f"{stepchange.url}/apps/{app}/workflows/")
    page.evaluate("() => (window.__notReloaded = true)")
    executor.get("/?name=bob&workflow_id=wf-arrives")
    expect(page.get_by_role("link", name="wf-arrives", exact=True)).to_be_visible(timeout=15_000)
    assert page.evaluate("() => window.__notReloaded") is True
