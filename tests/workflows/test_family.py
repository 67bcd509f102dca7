"""Stories about a workflow's family graph: read from the system database (SQLite and
Postgres) in one bounded statement, or through an executor, and drawn as linked cards."""

import asyncio
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth.models import User
from django.db import connections
from django.test import AsyncClient
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.html import escape

from stepchange.models import Application
from tests.conftest import make_user, signed_in
from tests.fake_executor import FakeExecutor
from tests.workflows.family_data import (
    CHILDREN,
    FAILED_CHILD,
    FORKS,
    GONE_PARENT,
    GRANDCHILD,
    ORPHAN,
    PARENT,
)
from workflows import sources
from workflows.sources import DatabaseSource, Family, Kin, source_for


def database_source(application: Application) -> DatabaseSource:
    source = async_to_sync(source_for)(application)
    assert isinstance(source, DatabaseSource)
    return source


def read_family(application: Application, workflow_id: str) -> Family:
    return database_source(application)._family(workflow_id)


def ids(kin: Kin) -> list[str]:
    return [w.workflow_id for w in kin.shown]


def test_a_failed_child_has_its_parent_siblings_child_and_forks_in_one_statement(
    family: Application,
) -> None:
    source = database_source(family)
    with CaptureQueriesContext(connections[source.alias]) as queries:
        found = source._family(FAILED_CHILD)
    assert len(queries) == 1
    assert found.workflow is not None
    assert (found.workflow.workflow_id, found.workflow.status) == (FAILED_CHILD, "ERROR")
    assert found.parent is not None
    assert (found.parent.workflow_id, found.parent.name) == (PARENT, "checkout")
    assert found.parent.duration is not None
    assert found.parent.duration.total_seconds() == 90
    assert found.fork_source is None
    # Siblings as they were started, the first six of fourteen, itself not among them.
    others = [c for c in CHILDREN if c != FAILED_CHILD]
    assert ids(found.siblings) == others[: sources.SIBLINGS_SHOWN]
    assert (found.siblings.total, found.siblings.more) == (14, 8)
    assert ids(found.children) == [GRANDCHILD]
    assert (found.children.total, found.children.more) == (1, 0)
    # Forks newest first.
    assert ids(found.forks) == [FORKS[1], FORKS[0]]
    assert [f.status for f in found.forks.shown] == ["PENDING", "SUCCESS"]


def test_a_parent_shows_its_first_children_and_counts_the_rest(family: Application) -> None:
    found = read_family(family, PARENT)
    assert ids(found.children) == CHILDREN[: sources.KIN_SHOWN]
    assert (found.children.total, found.children.more, found.children.over) == (15, 3, False)
    assert found.parent is None
    assert found.siblings == Kin()
    assert found.forks == Kin()


def test_children_past_the_scan_are_said_to_be_over_it(
    family: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "KIN_SCANNED", 13)
    found = read_family(family, PARENT)
    assert len(found.children.shown) == sources.KIN_SHOWN
    assert (found.children.total, found.children.over, found.children.more) == (13, True, 1)


def test_a_fork_knows_its_source_and_a_missing_parent_is_a_card_without_status(
    family: Application,
) -> None:
    fork = read_family(family, FORKS[0])
    assert fork.fork_source is not None
    assert (fork.fork_source.workflow_id, fork.fork_source.status) == (FAILED_CHILD, "ERROR")
    orphan = read_family(family, ORPHAN)
    assert orphan.parent == sources.Workflow(GONE_PARENT)
    assert read_family(family, "no-such-workflow") == Family(None)


def test_the_page_asks_for_the_family_and_draws_it_as_linked_cards(family: Application) -> None:
    client = signed_in(User.objects.get(username="vera"))
    page = client.get(reverse("workflow-detail", args=[family.name, FAILED_CHILD]))
    assert page.status_code == 200
    assert 'id="family"' in page.content.decode()
    assert 'hx-get="?part=family"' in page.content.decode()
    part = client.get(
        reverse("workflow-detail", args=[family.name, FAILED_CHILD]),
        {"part": "family"},
        HTTP_HX_REQUEST="true",
    )
    assert part.status_code == 200
    html = part.content.decode()
    assert "<html" not in html
    for relative in [PARENT, GRANDCHILD, *FORKS, CHILDREN[0]]:
        url = reverse("workflow-detail", args=[family.name, relative])
        assert f'<a class="fam-card" href="{url}">' in html, relative
    # The workflow itself is highlighted, not a link to itself.
    assert '<div class="fam-card here" aria-current="page">' in html
    assert f'href="{reverse("workflow-detail", args=[family.name, FAILED_CHILD])}"' not in html
    # A card's badge is plain (a link cannot hold a link), and reads as words.
    assert '<span class="status status-error" title="ERROR" data-status="ERROR">error</span>' in (
        html
    )
    assert "+8 more siblings" in html
    assert f'href="/apps/family/workflows/?parent_workflow_id={PARENT}">+8 more siblings' in html
    assert "took 250 ms" in html


def test_the_parents_more_children_link_to_the_list_of_them(family: Application) -> None:
    client = signed_in(User.objects.get(username="vera"))
    html = client.get(
        reverse("workflow-detail", args=[family.name, PARENT]),
        {"part": "family"},
        HTTP_HX_REQUEST="true",
    ).content.decode()
    assert f'href="/apps/family/workflows/?parent_workflow_id={PARENT}">+3 more children' in html
    assert "No parent" not in html
    listed = client.get("/apps/family/workflows/", {"parent_workflow_id": PARENT}).content
    assert all(child.encode() in listed for child in CHILDREN)


def test_a_missing_parent_is_said_and_an_unknown_workflow_is_a_404(family: Application) -> None:
    client = signed_in(User.objects.get(username="vera"))
    url = reverse("workflow-detail", args=[family.name, ORPHAN])
    html = client.get(url, {"part": "family"}, HTTP_HX_REQUEST="true").content.decode()
    assert "not found: it may have been deleted" in html
    assert escape(GONE_PARENT) in html
    missing = client.get(
        reverse("workflow-detail", args=[family.name, "nope"]),
        {"part": "family"},
        HTTP_HX_REQUEST="true",
    )
    assert missing.status_code == 404
    assert b'role="alert"' in missing.content
    assert b"Workflow nope is no longer there." in missing.content


def test_a_workflow_without_relatives_says_so_in_a_line(family: Application) -> None:
    client = signed_in(User.objects.get(username="vera"))
    url = reverse("workflow-detail", args=[family.name, "fam-queued-1"])
    html = client.get(url, {"part": "family"}, HTTP_HX_REQUEST="true").content.decode()
    assert "No parent, fork source, children or forks." in html
    assert "fam-card" not in html
    parent = client.get(
        reverse("workflow-detail", args=[family.name, PARENT]),
        {"part": "family"},
        HTTP_HX_REQUEST="true",
    ).content.decode()
    assert "fam-card" in parent
    assert "No parent, fork source" not in parent


def test_a_stranger_cannot_read_a_family(family: Application) -> None:
    stranger = make_user(username="sam", role=None)
    url = reverse("workflow-detail", args=[family.name, FAILED_CHILD])
    assert (
        signed_in(stranger).get(url, {"part": "family"}, HTTP_HX_REQUEST="true").status_code == 404
    )


# Through an executor.

ROW = {
    "Status": "SUCCESS",
    "WorkflowName": "charge_card",
    "CreatedAt": "1795300787000",
    "UpdatedAt": "1795300787250",
    "CompletedAt": "1795300787250",
}


def row(workflow_id: str, **more: Any) -> dict[str, Any]:
    return ROW | {"WorkflowUUID": workflow_id} | more


async def answer_family(executor: FakeExecutor, replies: dict[str, Any]) -> list[dict[str, Any]]:
    """Answer the workflow's get_workflow, then the rest by what each asks for."""
    asked: list[dict[str, Any]] = []
    for _ in range(len(replies)):
        request = await executor.receive()
        asked.append(request)
        if request["type"] == "get_workflow":
            key = f"get {request['workflow_id']}"
        else:
            body = request["body"]
            key = "forks" if body.get("forked_from") else f"kids {body['parent_workflow_id'][0]}"
        await executor.send(
            {"type": request["type"], "request_id": request["request_id"]} | replies[key]
        )
    return asked


@pytest.mark.django_db(transaction=True)
async def test_through_an_executor_the_family_is_listed_and_more_is_said_without_a_count(
    orders: Application, executor: FakeExecutor
) -> None:
    ok = {"error_message": None}
    replies = {
        "get wf-kid": ok | {"output": row("wf-kid", Status="ERROR", ParentWorkflowID="wf-mum")},
        "get wf-mum": ok | {"output": row("wf-mum")},
        # Seven siblings and itself: more than the six shown.
        "kids wf-mum": ok | {"output": [row(f"wf-sib-{n}") for n in range(7)] + [row("wf-kid")]},
        "kids wf-kid": ok | {"output": [row("wf-grandkid")]},
        "forks": ok | {"output": [row("wf-fork", Status="PENDING", CompletedAt=None)]},
    }
    viewer = await sync_to_async(make_user)(username="vera", role="viewer")
    client = AsyncClient()
    await client.aforce_login(viewer)
    page = asyncio.create_task(
        client.get(
            "/apps/orders/workflows/wf-kid/", {"part": "family"}, headers={"HX-Request": "true"}
        )
    )
    asked = await answer_family(executor, replies)
    response = await page
    assert response.status_code == 200
    assert asked[0]["type"] == "get_workflow"
    bodies = {tuple(r["body"].get("parent_workflow_id") or ["fork"]): r["body"] for r in asked[2:]}
    assert bodies[("wf-mum",)]["limit"] == sources.SIBLINGS_SHOWN + 1 + 1
    assert bodies[("wf-kid",)]["sort_desc"] is False
    html = response.content.decode()
    for relative in ["wf-mum", "wf-sib-0", "wf-sib-5", "wf-grandkid", "wf-fork"]:
        assert f'href="/apps/orders/workflows/{relative}/"' in html, relative
    assert "wf-sib-6" not in html
    assert "More siblings…" in html
    assert "more children" not in html.lower()
    assert "Part of the family could not be fetched" not in html


@pytest.mark.django_db(transaction=True)
async def test_through_an_executor_what_failed_is_said_and_the_rest_still_shows(
    orders: Application, executor: FakeExecutor
) -> None:
    ok = {"error_message": None}
    replies = {
        "get wf-kid": ok | {"output": row("wf-kid", ForkedFrom="wf-old")},
        "get wf-old": {"error_message": "database is locked"},
        "kids wf-kid": ok | {"output": [row("wf-grandkid")]},
        "forks": ok | {"output": []},
    }
    viewer = await sync_to_async(make_user)(username="vera", role="viewer")
    client = AsyncClient()
    await client.aforce_login(viewer)
    page = asyncio.create_task(
        client.get(
            "/apps/orders/workflows/wf-kid/", {"part": "family"}, headers={"HX-Request": "true"}
        )
    )
    await answer_family(executor, replies)
    response = await page
    assert response.status_code == 200
    html = response.content.decode()
    assert "Part of the family could not be fetched" in html
    assert "database is locked" in html
    # The fork source is still named, as a card without status.
    assert 'href="/apps/orders/workflows/wf-old/"' in html
    assert 'href="/apps/orders/workflows/wf-grandkid/"' in html
