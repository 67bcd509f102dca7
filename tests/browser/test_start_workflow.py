"""An operator starts a workflow from the console: "Start like this one" on a finished
workflow prefills the form, a bad argument list is refused on the form, and the started
workflow's page opens and follows it to SUCCESS on a real executor."""

from collections.abc import Callable

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.conftest import screenshot
from tests.browser.test_accessibility import assert_accessible
from tests.browser.test_live_console import sign_in
from tests.e2e.servers import Executor, PostgresDatabases, StepChange, SystemDatabase, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

OPERATOR = (
    "from django.contrib.auth.models import User, Group\n"
    "u = User.objects.create_user('stella', password='stella-pass-4471')\n"
    "u.groups.add(Group.objects.get(name='operator'))\n"
)


def test_start_like_this_one_then_follow_it_to_success(
    browser: Browser,
    stepchange: StepChange,
    new_app: Callable[..., tuple[str, str]],
    executors: Callable[..., Executor],
    databases: PostgresDatabases,
) -> None:
    stepchange.manage("shell", "-c", OPERATOR)
    url = databases.new("sc_start")
    app, key = new_app("start", system_database_url=url)
    executor = executors("python", app=app, key=key, system_database_url=url)
    stepchange.wait_executors(app, 1)
    executor.get("/?name=alice&workflow_id=wf-first")
    system = SystemDatabase(url)
    eventually(lambda: system.status("wf-first") == "SUCCESS", what="the first run to succeed")
    # The names offered are the ones StepChange has seen: note them as the loop would.
    stepchange.manage(
        "shell",
        "-c",
        "from stepchange.models import Application\n"
        "from workflows.names import names_seen_refresh\n"
        f"names_seen_refresh(Application.objects.get(name='{app}'))\n",
    )

    # bypass_csp: axe is injected as an inline script, which the console's CSP forbids.
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    sign_in(page, stepchange, "stella", "stella-pass-4471")
    page.goto(f"{stepchange.url}/apps/{app}/workflows/")
    expect(page.get_by_role("link", name="Start a workflow…")).to_be_visible()
    page.goto(f"{stepchange.url}/apps/{app}/workflows/wf-first/")
    page.get_by_role("link", name="Start like this one…").click()
    expect(page.get_by_role("heading", name="Start a workflow")).to_be_visible()
    name = page.get_by_label("Workflow", exact=True)
    started_name = name.input_value()
    assert started_name, "the name is prefilled from the earlier run"
    offered = page.locator("#start-names option").evaluate_all("os => os.map(o => o.value)")
    assert started_name in offered
    args = page.get_by_label("Arguments (a JSON list, one item per positional argument)")
    assert '"alice"' in args.input_value()

    # A broken argument list is refused on the form, nothing written.
    args.fill('["gina", 3')
    page.get_by_role("button", name="Start workflow").click()
    expect(page.locator("#start-errors")).to_contain_text("Not valid JSON")
    assert_accessible(page, "start form with an error")
    screenshot(page, "start-workflow")

    args.fill('["gina", 3]')
    page.get_by_label("Workflow ID", exact=True).fill("wf-started")
    page.get_by_label("Reason").fill("a second greeting")
    page.get_by_role("button", name="Start workflow").click()
    expect(page).to_have_url(f"{stepchange.url}/apps/{app}/workflows/wf-started/")
    expect(page.get_by_text("Started workflow wf-started")).to_be_visible()
    eventually(lambda: system.status("wf-started") == "SUCCESS", what="the start to succeed")
    expect(page.locator(".wf-head")).to_contain_text("success", timeout=15_000)
    context.close()
