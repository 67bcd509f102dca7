"""An admin visits every page of the console, in the light and the dark scheme, and axe-core
finds nothing serious or critical on any of them; she works the workflow page from the
keyboard alone; and the workflow page stays light.

axe-core is a test-time tool (package.json, installed by `make install` with `npm ci`),
injected into each page here; it is never served to users.
"""

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.conftest import ROOT, screenshot
from tests.e2e.servers import StepChange
from tests.sdk_fixtures import by_role

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
# What fails a page; "moderate" and "minor" findings are printed, not failed.
BLOCKING = {"serious", "critical"}
ADMIN, PASSWORD = "ada-a11y", "ada-a11y-pass-6021"
# The workflow page, values small, before any value is shown: document, CSS and JS.
PAGE_WEIGHT_LIMIT = 150 * 1024

SEED = """
from datetime import timedelta
from django.utils import timezone
from conductor.models import Executor, RequestLog
from forks.models import EditedFork
from stepchange.models import Application
from workflows.models import BulkJob, BulkJobItem

app = Application.objects.get(name={app!r})
now = timezone.now()
Executor.objects.create(
    application=app, executor_id="exec-a11y", state=Executor.State.DISCONNECTED,
    application_version="v1", hostname="host-1", language="python", dbos_version="3.2.0",
    disconnected_at=now,
)
log = RequestLog.objects.create(
    application=app, request_id="req-a11y", message_type="cancel", executor_id="exec-a11y",
    actor_name={admin!r}, source="console", sent_at=now - timedelta(minutes=1), duration_ms=12.5,
    request_bytes=80, response_bytes=40, outcome=RequestLog.Outcome.ERROR,
    error_message="the workflow was already finished",
    request_body='{{"type": "cancel"}}', response_body='{{"success": false}}',
)
job = BulkJob.objects.create(
    application=app, action=BulkJob.Action.CANCEL, selection="status=ERROR", reason="a11y",
    created_by_name={admin!r}, state=BulkJob.State.DONE, started_at=now, finished_at=now,
)
BulkJobItem.objects.create(job=job, workflow_id={failed!r}, status="ERROR", state="skipped",
    detail="already finished")
fork = EditedFork.objects.create(
    application=app, source_workflow_id={source!r}, start_step=2, new_workflow_id={fork!r},
    queue_name="_dbos_internal_queue", serialization="py_pickle", reason="a11y comparison",
    created_by_name={admin!r}, status="run", run_by_name={admin!r}, run_at=now,
)
# An export file the admin opened in the offline viewer: a workflow with a step, signed.
from django.contrib.auth.models import User
from forks import exports, offline
created = int(now.timestamp() * 1000)
element = exports.Element(
    status={{"workflow_uuid": "a11y-export", "status": "ERROR", "name": "greet",
             "inputs": None, "output": None, "error": None, "serialization": "portable_json",
             "created_at": created, "updated_at": created + 50}},
    steps=[{{"workflow_uuid": "a11y-export", "function_id": 1, "function_name": "fetch",
             "output": '{{"json": {{"name": "ada"}}}}', "error": None,
             "started_at_epoch_ms": created + 5, "completed_at_epoch_ms": created + 20,
             "serialization": "portable_json"}}],
    events=[], history=[], streams=[],
)
raw = exports.dumps(exports.document(
    application=app.name, language="python", schema_version=123,
    source=exports.FROM_DATABASE, root_id="a11y-export", elements=[element],
    exported_by={admin!r}, exported_at=now,
))
opened = offline.opened_export_create(
    user=User.objects.get(username={admin!r}), name="a11y.stepchange.json", raw=raw
)
# Alerting: a channel that failed, a rule pointed at it, an alert that fired.
from alerts.models import Alert, AlertChannel, AlertDelivery, AlertRule
channel = AlertChannel.objects.create(
    application=app, name="ops hook", kind="webhook", url="https://hooks.example.com/ops",
    secret="a11y-secret",
)
rule = AlertRule.objects.create(
    application=app, name="greet keeps failing", kind="failures",
    parameters={{"workflow_name": "greet", "threshold": 3, "window_seconds": 300}},
)
rule.channels.set([channel])
alert = Alert.objects.create(
    rule=rule, key="greet", summary="More than 3 workflows greet failed in the last 300 s",
    link="/apps/" + app.name + "/workflows/?status=ERROR&workflow_name=greet",
)
AlertDelivery.objects.create(
    alert=alert, channel=channel, event="firing", message={{"summary": alert.summary}},
    state="failed", attempts=12, last_error="HTTP 503: unavailable",
)
# The Metrics page's charts: the workflows rolled up as the background job does it.
from metrics.rollups import rollup_all
rollup_all()
print(log.pk, job.pk, fork.pk, opened.record.pk, rule.pk, channel.pk)
"""


@dataclass(frozen=True)
class Console:
    url: str
    app: str
    failed: str
    paths: dict[str, str]
    signed_in: dict[str, Any]


@pytest.fixture(scope="module")
def console(
    browser: Browser, stepchange: StepChange, sdk_fixtures: dict[str, dict[str, Any]]
) -> Console:
    """One application over a system database a real SDK wrote (a failed workflow with
    steps, a parent and its child, a fork), an executor that went away, a request, a bulk
    job and an edited fork that ran: something on every page."""
    if not AXE.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{AXE} is missing and CI=true: run `make install`")
        pytest.skip(f"{AXE} is missing: run `npm ci`")
    fixture = sdk_fixtures["py320-sqlite-default"]
    app = fixture["app_name"]
    stepchange.manage("register_app", app, "--system-database-url", fixture["url"])
    stepchange.user(ADMIN, "admin", PASSWORD)
    failed, parent = by_role(fixture, "error"), by_role(fixture, "parent")
    seeded = stepchange.manage(
        "shell",
        "-c",
        SEED.format(
            app=app,
            admin=ADMIN,
            failed=failed,
            source=by_role(fixture, "success"),
            fork=by_role(fixture, "fork"),
        ),
    )
    # The last line: importing the models may print before it.
    log_id, job_id, fork_id, opened_id, rule_id, channel_id = (
        seeded.strip().splitlines()[-1].split()
    )
    on_app = f"/apps/{app}"

    def workflow(workflow_id: str) -> str:
        return f"{on_app}/workflows/{quote(workflow_id)}/"

    paths = {
        "home": "/",
        "dashboard": f"{on_app}/",
        "workflow list": f"{on_app}/workflows/",
        "workflow list, filtered": f"{on_app}/workflows/?status=ERROR&workflow_name=fixture",
        "workflow list, newer filters": f"{on_app}/workflows/?attribute=tenant%3Dacme"
        "&was_forked_from=false&has_parent=true&completed_after=2020-01-01T00%3A00",
        # A bad filter opens the form's further filters, every box shown.
        "workflow list, a bad attribute": f"{on_app}/workflows/?attribute=tenant",
        "queued list": f"{on_app}/queued/",
        "failed workflow": workflow(failed),
        "parent workflow": workflow(parent),
        "child workflow": workflow(by_role(fixture, "parent-child")),
        "forked workflow": workflow(by_role(fixture, "fork")),
        "workflow not found": workflow("no-such-workflow"),
        "go to a workflow, blank": f"{on_app}/go/?id=",
        "executors": f"{on_app}/executors/",
        "executor detail": f"{on_app}/executors/exec-a11y/",
        "schedules": f"{on_app}/schedules/",
        "versions": f"{on_app}/versions/",
        "metrics": f"{on_app}/metrics/?window=1h",
        "metrics, 30 days": f"{on_app}/metrics/?window=30d",
        "metrics, an unknown window": f"{on_app}/metrics/?window=90d",
        "new bulk fork onto a version": f"{on_app}/bulk/new/?action=fork_to_version"
        f"&scope=selected&ids={quote(failed)}",
        "request log": f"{on_app}/requests/",
        "request detail": f"{on_app}/requests/{log_id}/",
        "edited forks": f"{on_app}/edited-forks/",
        "edit a fork": f"{on_app}/workflows/{quote(failed)}/edit-fork/",
        "start a workflow": f"{on_app}/start/",
        "start like this one": f"{on_app}/start/?like={quote(failed)}",
        "import a workflow": f"{on_app}/import/",
        "edited fork": f"{on_app}/edited-forks/{fork_id}/",
        "edited fork compared": f"{on_app}/edited-forks/{fork_id}/compare/",
        "bulk jobs": f"{on_app}/jobs/",
        "new bulk job": f"{on_app}/bulk/new/?action=cancel&scope=selected&ids={quote(failed)}",
        "bulk job": f"{on_app}/jobs/{job_id}/",
        "retention": f"{on_app}/retention/",
        "alert history": f"{on_app}/alerts/",
        "alert rules": f"{on_app}/alerts/rules/",
        "alert rule": f"{on_app}/alerts/rules/{rule_id}/",
        "alert channels": f"{on_app}/alerts/channels/",
        "alert channel": f"{on_app}/alerts/channels/{channel_id}/",
        "audit log": "/audit/",
        "API tokens": "/tokens/",
        "API keys": "/keys/",
        "roles": "/roles/",
        "password change": "/accounts/password/",
        "admin": "/admin/",
        "open an export": "/exports/",
        "offline viewer": f"/exports/{opened_id}/workflows/a11y-export/",
        "offline viewer, not in the file": f"/exports/{opened_id}/workflows/elsewhere/",
    }
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{stepchange.url}/accounts/login/")
    page.get_by_label("Username").fill(ADMIN)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Applications")).to_be_visible()
    state = context.storage_state()
    context.close()
    return Console(stepchange.url, app, failed, paths, dict(state))


@pytest.fixture(params=["light", "dark"])
def scheme(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _context(browser: Browser, console: Console | None, scheme: str, **options: Any) -> Any:
    # bypass_csp: axe is injected as an inline script, which the console's CSP forbids.
    return browser.new_context(
        viewport={"width": 1280, "height": 860},
        color_scheme="dark" if scheme == "dark" else "light",
        bypass_csp=True,
        storage_state=console.signed_in if console else None,  # type: ignore[arg-type]
        **options,
    )


@pytest.fixture
def admin_page(browser: Browser, console: Console, scheme: str) -> Iterator[Page]:
    context: BrowserContext = _context(browser, console, scheme)
    yield context.new_page()
    context.close()


def axe_findings(page: Page) -> list[dict[str, Any]]:
    """What axe-core finds on the page as it stands (WCAG 2.x A and AA, and best practice)."""
    page.add_script_tag(path=str(AXE))
    result: dict[str, Any] = page.evaluate(
        """() => axe.run(document, {
             runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa",
                                             "wcag22aa", "best-practice"]},
             resultTypes: ["violations"],
           })"""
    )
    violations: list[dict[str, Any]] = result["violations"]
    return violations


def described(violations: list[dict[str, Any]]) -> str:
    """The findings, one rule a paragraph, each offending element on its own line."""
    lines = []
    for violation in violations:
        lines.append(f"[{violation['impact']}] {violation['id']}: {violation['help']}")
        for node in violation["nodes"][:8]:
            lines.append(f"    {' '.join(node['target'])}: {node['failureSummary']}")
            lines.append(f"        {node['html'][:200]}")
    return "\n".join(lines)


def assert_accessible(page: Page, name: str) -> None:
    findings = axe_findings(page)
    blocking = [v for v in findings if v["impact"] in BLOCKING]
    others = [v for v in findings if v["impact"] not in BLOCKING]
    if others:
        print(f"\n{name}: lesser findings (not failing)\n{described(others)}")
    assert not blocking, f"axe-core on {name}:\n{described(blocking)}"


PAGES = [
    "home",
    "dashboard",
    "workflow list",
    "workflow list, filtered",
    "workflow list, newer filters",
    "workflow list, a bad attribute",
    "queued list",
    "failed workflow",
    "parent workflow",
    "child workflow",
    "forked workflow",
    "workflow not found",
    "go to a workflow, blank",
    "executors",
    "executor detail",
    "schedules",
    "versions",
    "metrics",
    "metrics, 30 days",
    "metrics, an unknown window",
    "new bulk fork onto a version",
    "request log",
    "request detail",
    "edited forks",
    "edit a fork",
    "start a workflow",
    "start like this one",
    "import a workflow",
    "edited fork",
    "edited fork compared",
    "bulk jobs",
    "new bulk job",
    "bulk job",
    "retention",
    "alert history",
    "alert rules",
    "alert rule",
    "alert channels",
    "alert channel",
    "audit log",
    "API tokens",
    "API keys",
    "roles",
    "password change",
    "admin",
    "open an export",
    "offline viewer",
    "offline viewer, not in the file",
]


@pytest.mark.parametrize("name", PAGES)
def test_every_console_page_passes_axe_core(admin_page: Page, console: Console, name: str) -> None:
    response = admin_page.goto(console.url + console.paths[name])
    assert response is not None
    # The pages that say "no" say it with a status, and are checked all the same.
    expected = {
        "workflow not found": 404,
        "offline viewer, not in the file": 404,
        "go to a workflow, blank": 400,
        "workflow list, a bad attribute": 400,
        "metrics, an unknown window": 400,
    }.get(name, 200)
    assert response.status == expected, name
    admin_page.wait_for_load_state("networkidle")
    assert_accessible(admin_page, name)


def test_the_sign_in_page_passes_axe_core(browser: Browser, console: Console, scheme: str) -> None:
    context = _context(browser, None, scheme)
    page = context.new_page()
    page.goto(f"{console.url}/accounts/login/")
    expect(page.get_by_label("Username")).to_be_visible()
    assert_accessible(page, "sign-in page")
    # A failed attempt shows its error, which must be as readable.
    page.get_by_label("Username").fill(ADMIN)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_label("Username")).to_be_visible()
    assert_accessible(page, "sign-in page, refused")
    context.close()


def test_the_shortcuts_dialog_and_an_opened_action_pass_axe_core(
    admin_page: Page, console: Console
) -> None:
    admin_page.goto(console.url + console.paths["failed workflow"])
    admin_page.locator("main").first.click(position={"x": 5, "y": 5})
    admin_page.keyboard.press("?")
    dialog = admin_page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(dialog).to_be_visible()
    assert_accessible(admin_page, "shortcuts dialog")
    admin_page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    admin_page.locator("details.action summary").first.click()
    assert_accessible(admin_page, "failed workflow, an action opened")


# From the keyboard alone.


def focused(page: Page) -> str:
    """The focused element, as `tag#id.class "text"`, for messages and checks."""
    described_element: str = page.evaluate(
        """() => { const e = document.activeElement;
                   return `${e.tagName.toLowerCase()}#${e.id}.${e.className} "${
                     (e.textContent || "").trim().slice(0, 30)}"`; }"""
    )
    return described_element


def test_she_goes_to_a_workflow_and_opens_an_action_from_the_keyboard(
    admin_page: Page, console: Console
) -> None:
    page = admin_page
    page.goto(console.url + console.paths["executors"])
    # "/" with no search box on the page, and "g", both land in the go-to box; a "g" typed
    # there is typed, not taken as a shortcut.
    page.keyboard.press("/")
    expect(page.locator("[data-goto-box]")).to_be_focused()
    page.keyboard.press("Escape")
    page.locator("h1").first.click()
    page.keyboard.press("g")
    box = page.locator("[data-goto-box]")
    expect(box).to_be_focused()
    page.keyboard.type(console.failed[:-1])
    expect(box).to_have_value(console.failed[:-1])
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/workflows/{quote(console.failed)}/")
    expect(page.get_by_role("heading", name=console.failed)).to_be_visible()

    # Tab from the top of the page to the first action, with a visible focus ring.
    first_action = page.locator("section.actions details.action > summary").first
    for _ in range(60):
        page.keyboard.press("Tab")
        if first_action.evaluate("e => e === document.activeElement"):
            break
    else:
        pytest.fail(f"Tab never reached the actions; focus ended on {focused(page)}")
    ring = first_action.evaluate("e => getComputedStyle(e).outlineStyle")
    assert ring != "none", "the focused action shows no focus ring"
    label = first_action.inner_text()
    page.keyboard.press("Enter")
    action = page.locator("section.actions details.action[open]")
    expect(action).to_have_count(1)
    expect(action.locator("summary")).to_have_text(label)
    # The next Tab goes into its form; Shift+Tab and Enter close it again.
    page.keyboard.press("Tab")
    assert action.evaluate("e => e.querySelector('form').contains(document.activeElement)"), (
        focused(page)
    )
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")
    expect(page.locator("section.actions details.action[open]")).to_have_count(0)


def test_a_shortcut_is_not_taken_from_someone_typing(admin_page: Page, console: Console) -> None:
    page = admin_page
    page.goto(console.url + console.paths["edit a fork"])
    reason = page.get_by_label("Reason")
    reason.click()
    page.keyboard.type("g/?")
    expect(reason).to_have_value("g/?")
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(page.locator("[data-goto-box]")).not_to_be_focused()


def test_slash_prefers_the_pages_own_search_box(admin_page: Page, console: Console) -> None:
    page = admin_page
    page.goto(console.url + console.paths["executors"])
    # A page with a search box of its own (the workflow list's) marks it data-search-box.
    page.evaluate(
        """() => document.querySelector("main").insertAdjacentHTML("afterbegin",
             '<input type="search" aria-label="Search" data-search-box id="probe-search">')"""
    )
    page.locator("h1").first.click()
    page.keyboard.press("/")
    expect(page.locator("#probe-search")).to_be_focused()
    # "/" was taken as the shortcut, not typed into the box.
    expect(page.locator("#probe-search")).to_have_value("")


# Layout, schemes and weight.


def test_the_workflow_page_weighs_under_150_kb_before_values(
    browser: Browser, console: Console
) -> None:
    context = _context(browser, console, "light")
    page = context.new_page()
    sizes: dict[str, int] = {}

    def count(response: Any) -> None:
        kind = response.request.resource_type
        if kind in {"document", "stylesheet", "script"}:
            sizes[response.url] = len(response.body())

    page.on("response", count)
    page.goto(console.url + console.paths["failed workflow"])
    page.wait_for_load_state("networkidle")
    # What went over the wire (compressed, headers included), as the browser counts it.
    transferred: int = page.evaluate(
        """() => performance.getEntriesByType("navigation")
                 .concat(performance.getEntriesByType("resource"))
                 .filter(e => ["navigation", "link", "script"].includes(e.initiatorType))
                 .reduce((sum, e) => sum + (e.transferSize || e.encodedBodySize), 0)"""
    )
    context.close()
    decoded = sum(sizes.values())
    listing = "\n".join(f"    {size / 1024:7.1f} KB  {url}" for url, size in sizes.items())
    print(
        f"\nworkflow page: {transferred / 1024:.1f} KB transferred, "
        f"{decoded / 1024:.1f} KB decoded\n{listing}"
    )
    assert any(url.endswith(".css") for url in sizes)
    assert any(url.endswith(".js") for url in sizes)
    assert transferred < PAGE_WEIGHT_LIMIT
    # Uncompressed too: the figure does not rest on the server compressing.
    assert decoded < PAGE_WEIGHT_LIMIT, listing


def test_the_console_in_the_dark_and_on_a_laptop(browser: Browser, console: Console) -> None:
    """The README's pictures: the workflow page in the dark scheme, and the workflow list
    at 1,024 px; at that width no page scrolls sideways as a whole."""
    dark = _context(browser, console, "dark")
    page = dark.new_page()
    page.goto(console.url + console.paths["failed workflow"])
    background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(16, 20, 28)", background  # --bg of the dark scheme
    screenshot(page, "dark-mode")
    dark.close()

    laptop = _context(browser, console, "light")
    page = laptop.new_page()
    page.set_viewport_size({"width": 1024, "height": 768})
    for name in PAGES:
        page.goto(console.url + console.paths[name])
        wide = page.evaluate("() => document.documentElement.scrollWidth")
        assert wide <= 1024, f"{name} is {wide} px wide at 1,024 px"
    # An ID with no place to break, in a heading and in the go-to page's form.
    long_id = "x" * 300
    for path in (f"/apps/{console.app}/workflows/{long_id}/", f"/apps/{console.app}/go/?id="):
        page.goto(console.url + path)
        wide = page.evaluate("() => document.documentElement.scrollWidth")
        assert wide <= 1024, f"{path[:40]} is {wide} px wide at 1,024 px"
    page.goto(console.url + console.paths["workflow list"])
    screenshot(page, "laptop-1024")
    laptop.close()
