"""Stories about the dashboard's headline numbers and the status badges that link to the
list of workflows in their status, everywhere a status is shown."""

import asyncio
import re
import threading
import time
from datetime import UTC, datetime

import psycopg
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth.models import User
from django.template.loader import render_to_string
from django.test import AsyncClient
from django.urls import reverse

from stepchange.models import Application
from tests.conftest import make_user, signed_in
from tests.fake_executor import FakeExecutor
from tests.workflows.family_data import (
    CHILDREN,
    FAILED_CHILD,
    FAILED_TODAY,
    IN_FLIGHT,
    QUEUED,
)
from workflows import sources
from workflows.sources import DatabaseSource, failed_since, source_for


def tiles(html: str) -> dict[str, tuple[str, str]]:
    """Each headline tile's label: (its number as shown, its link)."""
    found = re.findall(
        r'<a class="tile[^"]*" href="([^"]*)"><span class="tile-count">(.*?)</span>'
        r'<span class="tile-label">([^<]*)</span>',
        html,
    )
    return {label: (re.sub(r"<[^>]+>", "", count), href) for href, count, label in found}


def test_the_dashboard_opens_on_its_numbers_each_a_link_to_what_it_counts(
    family: Application,
) -> None:
    client = signed_in(User.objects.get(username="vera"))
    html = client.get(reverse("dashboard", args=[family.name])).content.decode()
    shown = tiles(html)
    since = failed_since(datetime.now(tz=UTC)).strftime("%Y-%m-%dT%H%%3A%M")
    assert shown == {
        "in flight": (str(IN_FLIGHT), "/apps/family/workflows/?status=PENDING&amp;all_levels=on"),
        "queued": (str(QUEUED), "/apps/family/workflows/?status=ENQUEUED&amp;all_levels=on"),
        "failed in the last 24 h": (
            str(FAILED_TODAY),
            "/apps/family/workflows/?status=ERROR&amp;status=MAX_RECOVERY_ATTEMPTS_EXCEEDED"
            f"&amp;all_levels=on&amp;completed_after={since}",
        ),
        "executors connected": ("0", "/apps/family/executors/"),
    }
    # The numbers come before everything else the dashboard shows.
    assert html.index('class="tiles"') < html.index("<h3>Executors")
    # The failures tile's list holds exactly what it counted: today's, not the old one.
    failed = client.get(shown["failed in the last 24 h"][1].replace("&amp;", "&"))
    assert failed.status_code == 200
    listed = failed.content.decode()
    assert listed.count('<td class="col-id id">') == FAILED_TODAY
    assert FAILED_CHILD in listed
    assert "fam-old-failure" not in listed


def test_numbers_past_the_cap_are_shown_as_over_it(
    family: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "COUNT_CAP", 1)
    client = signed_in(User.objects.get(username="vera"))
    shown = tiles(client.get(reverse("dashboard", args=[family.name])).content.decode())
    assert shown["in flight"][0] == "1"
    assert shown["queued"][0] == "over 1"
    assert shown["failed in the last 24 h"][0] == "over 1"


def test_counts_stopped_by_the_statement_timeout_are_not_counted(family: Application) -> None:
    """A count that runs past COUNT_TIMEOUT_MS is stopped by Postgres and said as not
    counted (here it waits on a lock another session holds on DBOS's table)."""
    source = async_to_sync(source_for)(family)
    assert isinstance(source, DatabaseSource)
    if family.system_database_url.startswith("sqlite"):
        pytest.skip("a statement timeout is Postgres's; SQLite's counts are not bounded by one")
    table = f'"{family.system_database_schema}".workflow_status'
    with psycopg.connect(family.system_database_url) as blocker:
        blocker.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        # Should the read not be stopped, the lock goes after 10 s and the test fails.
        release = threading.Timer(10, blocker.rollback)
        release.start()
        started = time.monotonic()
        try:
            headline = source._headline(datetime.now(tz=UTC))
        finally:
            release.cancel()
            blocker.rollback()
        waited = time.monotonic() - started
    assert [t.count for t in (headline.in_flight, headline.queued, headline.failed)] == [None] * 3
    assert waited < 5
    # Once the lock is gone, the same read counts again.
    counted = source._headline(datetime.now(tz=UTC))
    assert (counted.in_flight.count, counted.queued.count) == (IN_FLIGHT, QUEUED)


def test_a_database_that_is_down_leaves_the_numbers_uncounted_and_the_page_up(
    vera: User,
) -> None:
    Application.objects.create(
        name="orders", system_database_url="postgresql://nobody@127.0.0.1:1/gone"
    )
    page = signed_in(vera).get(reverse("dashboard", args=["orders"]))
    assert page.status_code == 200
    shown = tiles(page.content.decode())
    assert [shown[label][0] for label in ("in flight", "queued", "failed in the last 24 h")] == [
        "not counted"
    ] * 3
    assert shown["executors connected"][0] == "0"
    assert "No executor of orders is connected." in page.content.decode()


@pytest.mark.django_db(transaction=True)
async def test_through_an_executor_each_number_is_a_bounded_sample_and_says_so(
    orders: Application, executor: FakeExecutor
) -> None:
    """No system database and an SDK that cannot count (get_workflow_aggregates is an
    unknown message to it): each number is asked of the executor as a list of at most
    RELAYED_HEADLINE_SAMPLE workflows; a full sample reads "over" it."""
    viewer = await sync_to_async(make_user)(username="vera", role="viewer")
    client = AsyncClient()
    await client.aforce_login(viewer)
    page = asyncio.create_task(client.get("/apps/orders/"))
    sample = sources.RELAYED_HEADLINE_SAMPLE
    asked = []
    for _ in range(6):
        request = await executor.receive_not_counting()
        body = request["body"]
        asked.append(body)
        count = {("PENDING",): sample + 1, ("ENQUEUED",): 3}.get(tuple(body.get("status") or ()))
        if body.get("limit") != sample + 1:
            count = 0
        rows = [{"WorkflowUUID": f"wf-{n}", "Status": "PENDING"} for n in range(count or 0)]
        await executor.reply(request, output=rows)
    html = (await page).content.decode()
    shown = tiles(html)
    assert shown["in flight"][0] == f"over {sample}"
    assert shown["queued"][0] == "3"
    assert shown["failed in the last 24 h"][0] == "0"
    assert shown["executor connected"][0] == "1"
    failed = next(body for body in asked if body.get("start_time") and body["limit"] == sample + 1)
    assert failed["status"] == ["ERROR", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"]
    assert "does not count them" in html


# Status badges.


def test_a_badge_reads_as_words_and_links_to_its_status_unless_plain(db: None) -> None:
    application = Application(name="shop")
    linked = render_to_string(
        "workflows/_status.html",
        {"status": "MAX_RECOVERY_ATTEMPTS_EXCEEDED", "application": application},
    )
    assert linked.strip() == (
        '<a class="status status-max_recovery_attempts_exceeded"'
        ' href="/apps/shop/workflows/?status=MAX_RECOVERY_ATTEMPTS_EXCEEDED"'
        ' title="MAX_RECOVERY_ATTEMPTS_EXCEEDED" data-status="MAX_RECOVERY_ATTEMPTS_EXCEEDED">'
        "max recovery attempts exceeded</a>"
    )
    plain = render_to_string(
        "workflows/_status.html", {"status": "SUCCESS", "application": application, "plain": True}
    )
    assert plain.strip() == (
        '<span class="status status-success" title="SUCCESS" data-status="SUCCESS">success</span>'
    )
    unknown = render_to_string("workflows/_status.html", {"status": None})
    assert unknown.strip() == '<span class="status status-unknown">unknown</span>'


def test_badges_on_the_list_the_workflow_and_the_dashboard_link_to_their_status(
    family: Application,
) -> None:
    client = signed_in(User.objects.get(username="vera"))
    badge = (
        '<a class="status status-{lower}" href="/apps/family/workflows/?status={status}"'
        ' title="{status}" data-status="{status}">{words}</a>'
    )
    exhausted = badge.format(
        lower="max_recovery_attempts_exceeded",
        status="MAX_RECOVERY_ATTEMPTS_EXCEEDED",
        words="max recovery attempts exceeded",
    )
    failed = badge.format(lower="error", status="ERROR", words="error")
    # Children are rows too (the list nests them under their parents by default).
    listed = client.get("/apps/family/workflows/?all_levels=on").content.decode()
    assert exhausted in listed
    assert failed in listed
    page = client.get(reverse("workflow-detail", args=[family.name, CHILDREN[5]]))
    head = page.content.decode().split('<header class="wf-head')[1].split("</header>")[0]
    assert exhausted in head
    dashboard = client.get(reverse("dashboard", args=[family.name])).content.decode()
    # Among the recent failures (the charts count outcomes, not statuses).
    assert dashboard.count(exhausted) == 1
    # No link is ever inside another.
    for html in (listed, page.content.decode(), dashboard):
        assert not re.search(r"<a [^>]*>(?:(?!</a>).)*<a ", html, re.DOTALL)
