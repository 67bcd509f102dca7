"""The whole edited-fork flow in the console: an operator edits a recorded step output and
sees the diff, stages the fork, a second operator approves and runs it, the fork finishes
on a real executor with the edited value, and the comparison shows what changed."""

from collections.abc import Callable

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import screenshot
from tests.browser.test_live_console import sign_in
from tests.e2e.servers import Executor, PostgresDatabases, StepChange, SystemDatabase, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

OPERATORS = (
    "from django.contrib.auth.models import User, Group\n"
    "for name in ('edie', 'abe'):\n"
    "    u = User.objects.create_user(name, password=name + '-pass-3390')\n"
    "    u.groups.add(Group.objects.get(name='operator'))\n"
)


def test_edit_stage_approve_run_follow_and_compare(
    page: Page,
    browser: Browser,
    stepchange: StepChange,
    new_app: Callable[..., tuple[str, str]],
    executors: Callable[..., Executor],
    databases: PostgresDatabases,
) -> None:
    stepchange.manage("shell", "-c", OPERATORS)
    url = databases.new("sc_edit")
    app, key = new_app("edit", system_database_url=url)
    stepchange.manage(
        "shell",
        "-c",
        "from stepchange.models import Application\n"
        f"Application.objects.filter(name='{app}').update(fork_approval_required=True)",
    )
    executor = executors("python", app=app, key=key, system_database_url=url)
    stepchange.wait_executors(app, 1)
    executor.get("/?name=alice&workflow_id=wf-original")
    system = SystemDatabase(url)
    eventually(lambda: system.status("wf-original") == "SUCCESS", what="the source to succeed")

    # Edie opens the editor from the workflow's page and restarts from step 3 (shout).
    sign_in(page, stepchange, "edie", "edie-pass-3390")
    page.goto(f"{stepchange.url}/apps/{app}/workflows/wf-original/")
    page.get_by_role("link", name="Edit and fork…").click()
    page.locator("table.timeline tr", has_text="shout").get_by_role(
        "link", name="restart here"
    ).click()
    expect(page.locator("tr.restart")).to_contain_text("shout")

    # Step 1 (fetch) recorded a profile; she changes its greeting and sees the diff.
    step_one = page.get_by_label("Step 1: fetch (JSON)")
    original = step_one.input_value()
    assert '"greeting": "hello"' in original
    step_one.fill(original.replace('"greeting": "hello"', '"greeting": "howdy"'))
    editor = page.locator("[data-editor]", has=step_one)
    expect(editor.locator(".json-status")).to_have_text("Valid JSON, edited:")
    expect(editor.locator(".diff .added")).to_contain_text('"greeting": "howdy"')
    expect(editor.locator(".diff .removed")).to_contain_text('"greeting": "hello"')
    # Invalid JSON is caught while typing.
    step_one.fill("{broken")
    expect(editor.locator(".json-status")).to_contain_text("Not valid JSON")
    step_one.fill(original.replace('"greeting": "hello"', '"greeting": "howdy"'))
    page.get_by_label("New workflow ID").fill("wf-howdy")
    page.get_by_label("Reason").fill("greeting should be howdy")
    screenshot(page, "edit-fork")
    expect(page.get_by_role("button", name="Run now")).to_have_count(0)
    page.get_by_role("button", name="Stage for review").click()
    expect(page.get_by_role("heading", name="Edited fork")).to_contain_text("staged")
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    assert system.workflow("wf-howdy") is None

    # Abe, a second operator, approves and runs it.
    other = browser.new_context(viewport={"width": 1360, "height": 860})
    second = other.new_page()
    try:
        sign_in(second, stepchange, "abe", "abe-pass-3390")
        second.goto(page.url)
        screenshot(second, "edited-fork-draft")
        second.get_by_role("button", name="Approve").click()
        expect(second.get_by_text("Approved edited fork")).to_be_visible()
        second.get_by_role("button", name="Run it").click()
        expect(second.get_by_text("Wrote workflow wf-howdy")).to_be_visible()

        # The fork runs on the unmodified executor, with the edited greeting.
        second.get_by_role("link", name="wf-howdy").first.click()
        expect(second.locator(".wf-head .status-success")).to_be_visible(timeout=30_000)
        expect(second.locator("section.values")).to_contain_text("HOWDY ALICE")
        second.goto(second.url.replace("/workflows/wf-howdy/", "/edited-forks/"))
        second.get_by_role("link", name="#").first.click()
        second.get_by_role("link", name="Compare with the source").click()
        expect(second.locator("tr", has_text="fetch").locator(".badge")).to_have_text("edited")
        expect(second.locator("tr", has_text="shout").locator(".badge")).to_have_text("re-run")
        screenshot(second, "edited-fork-compare")
    finally:
        other.close()
    forked = system.workflow("wf-howdy")
    assert forked is not None
    assert (forked["status"], forked["forked_from"]) == ("SUCCESS", "wf-original")
