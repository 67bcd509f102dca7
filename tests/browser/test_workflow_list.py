"""An operator works the workflow list in a real browser: searches by name and by id and
sees it searching, opens a parent to see its children, removes a filter's chip, changes
filters twice and finds each once in the URL, sees as many rows as the page size says,
and gets the bulk bar once she ticks a row. Over a DBOS schema filled with a family-rich
history of our own (the SDK fixtures have one parent), on Postgres."""

import random
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import psycopg
import pytest
from playwright.sync_api import Page, Route, expect

from tests.browser.conftest import screenshot
from tests.browser.test_live_console import sign_in
from tests.e2e.servers import StepChange
from tests.sdk_fixtures import empty_schema_copy

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

NAMES = ("order_workflow", "send_email", "charge_card", "sync_inventory", "generate_report")
SCHEMA = "list_story"
WORKFLOWS = 90
# Every sixth workflow is a parent of three children.
CHILDREN = 3
EXACT_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$")
INSERT = (
    f"INSERT INTO {SCHEMA}.workflow_status (workflow_uuid, status, name, queue_name,"
    " executor_id, application_version, parent_workflow_id, error, created_at, updated_at,"
    " completed_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


# Who started the workflows of some names, and for which tenant (an attribute).
PEOPLE = (
    ("order_workflow", "alice", "acme"),
    ("send_email", "alice", "globex"),
    ("charge_card", "bob", "acme"),
)


def _rows(now_ms: int) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    draw = random.Random(2231)
    versions = [f"{draw.getrandbits(128):032x}" for _ in range(3)]
    for n in range(WORKFLOWS):
        workflow_id = str(uuid.UUID(int=draw.getrandbits(128), version=4))
        created = now_ms - (WORKFLOWS - n) * 97_000
        failed = n % 7 == 3
        rows.append(
            (
                workflow_id,
                "ERROR" if failed else ("PENDING" if n == WORKFLOWS - 1 else "SUCCESS"),
                NAMES[n % len(NAMES)],
                ("orders", "emails", None)[n % 3],
                f"executor-{n % 4 + 1}",
                versions[n % 3],
                None,
                f"ValueError: card {n} declined\nTraceback (most recent call last): ..."
                if failed
                else None,
                created,
                created + 1_500,
                None if n == WORKFLOWS - 1 else created + 1_500 + n * 10,
            )
        )
        if n % 6 == 0:
            for child in range(CHILDREN):
                at = created + 200 + child * 50
                rows.append(
                    (
                        f"{workflow_id}-{child + 3}",
                        "SUCCESS",
                        "process_item",
                        None,
                        f"executor-{n % 4 + 1}",
                        versions[n % 3],
                        workflow_id,
                        None,
                        at,
                        at + 300,
                        at + 300,
                    )
                )
    return rows


@pytest.fixture(scope="module")
def story(
    stepchange: StepChange, sdk_fixtures: dict[str, dict[str, Any]]
) -> Iterator[dict[str, Any]]:
    """The application (its names learned, as the background loop does each minute) and
    its workflows; an operator to sign in as."""
    url = sdk_fixtures["py320-pg-default"]["url"]
    empty_schema_copy(url, SCHEMA)
    rows = _rows(int(datetime.now(UTC).timestamp() * 1000))
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cursor:
        cursor.executemany(INSERT, rows)
        for name, user, tenant in PEOPLE:
            cursor.execute(
                f"UPDATE {SCHEMA}.workflow_status SET authenticated_user = %s,"
                " attributes = jsonb_build_object('tenant', %s::text) WHERE name = %s",
                (user, tenant, name),
            )
    app = f"list-{uuid.uuid4().hex[:6]}"
    stepchange.manage("register_app", app, "--system-database-url", url, "--schema", SCHEMA)
    stepchange.manage(
        "shell",
        "-c",
        "from stepchange.models import Application\n"
        "from workflows.names import names_seen_refresh\n"
        f"names_seen_refresh(Application.objects.get(name={app!r}))",
    )
    stepchange.user("olga", "operator", "olga-pass-2231")
    yield {"app": app, "rows": rows}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {SCHEMA} CASCADE")


@pytest.fixture
def listing(page: Page, stepchange: StepChange, story: dict[str, Any]) -> str:
    """Signed in as the operator; the list's URL."""
    sign_in(page, stepchange, "olga", "olga-pass-2231")
    return f"{stepchange.url}/apps/{story['app']}/workflows/"


def params(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


def test_the_search_box_shows_it_is_searching_then_the_workflows_of_a_name(
    page: Page, listing: str, story: dict[str, Any]
) -> None:
    page.goto(listing)
    # A search box with suggestions is a combobox to assistive technology.
    box = page.get_by_role("combobox", name="Search")
    expect(box).to_have_attribute("data-search-box", "")
    # The names the database has seen are offered as she types.
    expect(page.locator("datalist#workflow-names option[value=send_email]")).to_have_count(1)

    # Held answers: the page says it is searching until they come.
    held: list[Route] = []
    page.route("**/workflows/?q=*", lambda route: held.append(route))
    box.fill("send")
    searching = page.locator("#list-searching")
    expect(searching).to_have_css("opacity", "1")
    expect(searching).to_have_text("Searching…")
    assert held
    for route in held:
        route.continue_()
    page.unroute("**/workflows/?q=*")
    expect(searching).to_have_css("opacity", "0")
    expect(page.get_by_text("Names starting with “send”:")).to_be_visible()
    names = page.locator("#workflow-rows td.name .name-line > a:first-of-type")
    expect(names.first).to_have_text("send_email")
    assert set(names.all_text_contents()) == {"send_email"}
    assert params(page.url) == [("q", "send"), ("limit", "50")]
    screenshot(page, "workflows-search")

    # Text no name starts with is the start of an id.
    newest = story["rows"][-1][0]
    box.fill(newest[:6])
    expect(page.get_by_text(f"Workflow ids starting with “{newest[:6]}”")).to_be_visible()
    ids = page.locator("#workflow-rows td.col-id")
    expect(ids.first).to_contain_text(newest[:6])
    assert all(text.strip().startswith(newest[:6]) for text in ids.all_text_contents())


def test_a_parent_opens_to_show_its_children_and_closes_again(
    page: Page, listing: str, story: dict[str, Any]
) -> None:
    page.goto(listing)
    children = page.get_by_role("link", name="process_item", exact=True)
    expect(children).to_have_count(0)
    toggle = page.get_by_role("button", name="Show the children of order_workflow").first
    expect(page.get_by_text("3 children").first).to_be_visible()
    toggle.click()
    expect(children).to_have_count(CHILDREN)
    expect(children.first).to_be_visible()
    hide = page.get_by_role("button", name="Hide the children of order_workflow").first
    expect(hide).to_have_attribute("aria-expanded", "true")
    screenshot(page, "workflows-family")
    hide.click()
    expect(children.first).to_be_hidden()
    # From the keyboard too: it opens again without asking the server twice.
    again = page.get_by_role("button", name="Show the children of order_workflow").first
    again.focus()
    page.keyboard.press("Enter")
    expect(children.first).to_be_visible()
    expect(children).to_have_count(CHILDREN)
    # The live refresh waits while a family is open (it would close it), and goes once
    # it is closed: a mark on the rows survives the first refresh asked for, not the second.
    mark = "() => document.getElementById('workflow-rows').dataset.mark = 'kept'"
    page.evaluate(mark)
    page.evaluate("() => htmx.trigger(document.body, 'sc-workflows')")
    page.wait_for_timeout(3_000)
    expect(page.locator("#workflow-rows[data-mark=kept]")).to_have_count(1)
    expect(children.first).to_be_visible()
    page.get_by_role("button", name="Hide the children of order_workflow").first.click()
    page.evaluate("() => htmx.trigger(document.body, 'sc-workflows')")
    expect(page.locator("#workflow-rows[data-mark=kept]")).to_have_count(0, timeout=10_000)
    expect(page.locator("#workflow-rows")).to_have_count(1)


def test_filters_changed_twice_appear_once_each_and_a_chip_removes_one(
    page: Page, listing: str
) -> None:
    page.goto(listing)
    page.get_by_label("success", exact=True).check()
    page.wait_for_url("**status=SUCCESS**")
    page.get_by_text("More filters").click()
    queue = page.get_by_role("textbox", name="Queue", exact=True)
    queue.fill("orders")
    queue.press("Enter")
    page.wait_for_url("**queue_name=orders**")
    found = params(page.url)
    assert found.count(("status", "SUCCESS")) == 1, page.url
    assert found.count(("queue_name", "orders")) == 1, page.url
    assert [name for name, _ in found].count("status") == 1, page.url
    # Empty fields are not sent: the URL holds what is set.
    assert all(value for _, value in found), page.url
    expect(page.get_by_role("listitem").filter(has_text="Queue: orders")).to_be_visible()
    queues = page.locator("#workflow-rows td.col-queue")
    expect(queues.first).to_have_text("orders")
    assert set(queues.all_text_contents()) == {"orders"}

    page.get_by_role("link", name="Remove the filter Queue orders").click()
    page.wait_for_url(lambda url: "queue_name" not in url)
    assert sorted(params(page.url)) == [("limit", "50"), ("status", "SUCCESS")]
    expect(page.get_by_label("success", exact=True)).to_be_checked()
    expect(page.get_by_role("listitem").filter(has_text="Queue: orders")).to_have_count(0)


def test_a_user_and_an_attribute_filter_the_list_and_a_chip_removes_the_user(
    page: Page, listing: str
) -> None:
    page.goto(listing)
    page.get_by_text("More filters").click()
    user = page.get_by_role("textbox", name="Authenticated user", exact=True)
    user.fill("alice")
    user.press("Enter")
    page.wait_for_url("**authenticated_user=alice**")
    attribute = page.get_by_role("textbox", name="Attribute filter 1", exact=True)
    attribute.fill("tenant=acme")
    attribute.press("Enter")
    page.wait_for_url("**attribute=tenant%3Dacme**")
    found = params(page.url)
    assert ("authenticated_user", "alice") in found
    assert found.count(("attribute", "tenant=acme")) == 1, page.url
    assert all(value for _, value in found), page.url
    expect(page.get_by_role("listitem").filter(has_text="User: alice")).to_be_visible()
    expect(page.get_by_role("listitem").filter(has_text="Attribute: tenant=acme")).to_be_visible()
    names = page.locator("#workflow-rows td.name .name-line > a:not(.children-count)")
    expect(names.first).to_have_text("order_workflow")
    assert set(names.all_text_contents()) == {"order_workflow"}

    page.get_by_role("link", name="Remove the filter User alice").click()
    page.wait_for_url(lambda url: "authenticated_user" not in url)
    assert ("attribute", "tenant=acme") in params(page.url)
    expect(page.get_by_role("listitem").filter(has_text="User: alice")).to_have_count(0)
    expect(page.get_by_role("listitem").filter(has_text="Attribute: tenant=acme")).to_be_visible()
    expect(names.first).to_be_visible()
    assert set(names.all_text_contents()) == {"order_workflow", "charge_card"}
    # The form holds the attribute still set, and an empty box for another.
    page.get_by_text("More filters").click()
    expect(page.get_by_role("textbox", name="Attribute filter 1")).to_have_value("tenant=acme")
    expect(page.get_by_role("textbox", name="Attribute filter 2")).to_have_value("")


def test_the_page_size_shown_is_the_number_of_rows_shown(page: Page, listing: str) -> None:
    page.goto(listing)
    size = page.get_by_label("Per page")
    rows = page.locator("#workflow-rows tbody tr")
    expect(size).to_have_value("50")
    expect(rows).to_have_count(50)
    size.select_option("25")
    page.wait_for_url("**limit=25**")
    expect(rows).to_have_count(25)
    expect(size).to_have_value("25")
    assert params(page.url) == [("limit", "25")]
    page.goto(f"{listing}?status=SUCCESS")
    expect(size).to_have_value("50")
    expect(rows).to_have_count(50)


def test_the_bulk_bar_shows_once_a_row_is_ticked(page: Page, listing: str) -> None:
    page.goto(listing)
    bar = page.locator("form#bulk")
    expect(bar).to_be_hidden()
    first = page.locator("#workflow-rows tbody input[name=ids]").first
    first.check()
    expect(bar).to_be_visible()
    expect(bar).to_contain_text("1 selected")
    expect(page.get_by_role("button", name="On the selected…")).to_be_visible()
    first.uncheck()
    expect(bar).to_be_hidden()


def test_failed_rows_lead_with_their_name_and_say_why_and_columns_can_be_chosen(
    page: Page, listing: str
) -> None:
    page.goto(f"{listing}?status=ERROR")
    line = page.locator(".error-line").first
    expect(line).to_contain_text("ValueError: card")
    expect(line).not_to_contain_text("Traceback")
    created = page.locator("td.col-created time").first
    expect(created).to_contain_text("ago")
    expect(created).to_have_attribute("title", EXACT_TIME)
    executor = page.locator("th.col-executor")
    expect(executor).to_be_hidden()
    page.get_by_text("Columns", exact=True).click()
    page.get_by_role("checkbox", name="Executor", exact=True).check()
    expect(executor).to_be_visible()
    # Remembered: the next visit shows it too.
    page.wait_for_timeout(300)
    page.reload()
    expect(page.locator("th.col-executor")).to_be_visible()
    page.get_by_text("Columns", exact=True).click()
    page.get_by_role("checkbox", name="Executor", exact=True).uncheck()
    expect(page.locator("th.col-executor")).to_be_hidden()


def test_the_favicon_is_served(page: Page, stepchange: StepChange) -> None:
    answer = page.goto(f"{stepchange.url}/favicon.ico")
    assert answer is not None
    assert answer.status == 200
    assert answer.url.endswith(".svg")
