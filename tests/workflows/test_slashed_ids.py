"""Workflow ids are the application's to choose, slashes and spaces included: every page,
link and endpoint of one works as for any other id."""

import re
import shutil
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import resolve, reverse

from stepchange.converters import workflow_urls
from stepchange.models import Application
from stepchange.services import api_token_create
from tests.conftest import signed_in
from tests.sdk_fixtures import by_role

PARENT = "tenant/7/order 1"
CHILD = "tenant/7/order 1/audit"
INPUTS = "gAWVGwAAAAAAAAB9lCiMBGFyZ3OUSweFlIwGa3dhcmdzlH2UdS4="  # {"args": (7,), "kwargs": {}}


@pytest.fixture
def slashed(
    system_databases: None, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> Application:
    """The SQLite fixture's system database with a parent and a child whose ids hold
    slashes, copied from a real workflow's rows."""
    fixture = sdk_fixtures["py320-sqlite-default"]
    path = tmp_path / "slashed.sqlite"
    shutil.copy(fixture["path"], path)
    model = by_role(fixture, "success")
    with sqlite3.connect(path) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(workflow_status)")]
        others = ", ".join(c for c in columns if c not in ("workflow_uuid", "parent_workflow_id"))
        for workflow_id, parent in ((PARENT, None), (CHILD, PARENT)):
            db.execute(
                f"INSERT INTO workflow_status (workflow_uuid, parent_workflow_id, {others})"
                f" SELECT ?, ?, {others} FROM workflow_status WHERE workflow_uuid = ?",
                (workflow_id, parent, model),
            )
            db.execute(
                "INSERT INTO workflow_input (workflow_uuid, inputs) VALUES (?, ?)",
                (workflow_id, INPUTS),
            )
        db.execute(
            "INSERT INTO operation_outputs (workflow_uuid, function_id, function_name,"
            " child_workflow_id) VALUES (?, 1, 'audit', ?)",
            (PARENT, CHILD),
        )
    return Application.objects.create(name="slashed", system_database_url=f"sqlite:///{path}")


def test_a_workflow_whose_id_holds_slashes_is_listed_linked_and_shown(
    slashed: Application, viewer: User
) -> None:
    client = signed_in(viewer)
    listed = client.get("/apps/slashed/workflows/", {"workflow_id_prefix": "tenant/"})
    links = re.findall(r'<td class="col-id id"><a href="([^"]+)"', listed.content.decode())
    assert [unquote(link) for link in links] == [
        f"/apps/slashed/workflows/{CHILD}/",
        f"/apps/slashed/workflows/{PARENT}/",
    ]
    for link in links:
        page = client.get(link)
        assert page.status_code == 200, link
    parent = client.get(links[1]).content.decode()
    assert "<code>tenant/7/order 1</code>" in parent
    # Its child, linked from the lineage and the step, and the way back from the child.
    child_links = set(re.findall(r'href="(/apps/slashed/workflows/tenant[^"]*audit/)"', parent))
    assert child_links
    for link in child_links:
        child = client.get(link).content.decode()
        assert "<code>tenant/7/order 1/audit</code>" in child
        [back] = re.findall(r'Parent</dt><dd><a href="([^"]+)"', child)
        assert client.get(back).status_code == 200
    stored = client.get(links[1], {"raw": "input"}, headers={"HX-Request": "true"})
    assert INPUTS in stored.content.decode()
    steps = client.get(links[1], {"steps_cursor": "0"}, headers={"HX-Request": "true"})
    assert steps.status_code == 200
    assert "audit" in steps.content.decode()


def test_the_api_reads_a_workflow_whose_id_holds_slashes(
    slashed: Application, viewer: User
) -> None:
    _, raw = api_token_create(user=viewer, name="script")
    client = Client(headers={"Authorization": f"Bearer {raw}"})
    for spelled in (PARENT, quote(PARENT, safe="")):
        one = client.get(f"/api/v1/apps/slashed/workflows/{spelled}")
        assert one.status_code == 200, spelled
        assert one.json()["workflow_id"] == PARENT
        assert one.json()["input"] == {"args": [7], "kwargs": {}}
        steps = client.get(f"/api/v1/apps/slashed/workflows/{spelled}/steps")
        assert steps.status_code == 200, spelled
        assert [s["child_workflow_id"] for s in steps.json()["items"]] == [CHILD]
    missing = client.get("/api/v1/apps/slashed/workflows/tenant/7/nope")
    assert missing.status_code == 404


@pytest.mark.parametrize(
    "workflow_id",
    [
        PARENT,
        "wf&1 ?#x",
        "line\nbreak\ttab",
        "100% sure",
        "ünï/çødé",
        "a+b=c;d,e!$'()*",
        "<s>",
        "~u:p@h",
        "/lead",
        "end/",
    ],
)
def test_a_listed_workflow_is_linked_as_reverse_links_it(workflow_id: str) -> None:
    """The lists reverse a workflow's URL once and quote each id into it: the same URL."""
    for app_name in ("shop", "orders & co", "workflow-id-goes-here"):
        expected = reverse("workflow-detail", args=[app_name, workflow_id])
        assert workflow_urls(app_name)(workflow_id) == expected


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("workflow-detail", {}),
        ("workflow-action", {"action": "cancel"}),
        ("edit-fork", {}),
        ("poison-action", {"action": "dismiss"}),
    ],
)
def test_every_route_under_a_workflow_takes_an_id_with_slashes(
    name: str, kwargs: dict[str, str]
) -> None:
    """Each route resolves back to itself and the whole id, whatever routes come first."""
    url = reverse(name, kwargs={"app_name": "shop", "workflow_id": CHILD, **kwargs})
    match = resolve(unquote(url))  # as a request sees it: decoded
    assert match.url_name == name
    assert match.kwargs == {"app_name": "shop", "workflow_id": CHILD, **kwargs}


def test_an_operator_dismisses_the_poison_flag_of_a_workflow_whose_id_holds_slashes(
    operator: User,
) -> None:
    from conductor.models import PoisonWorkflow
    from tests.conftest import make_app

    orders = make_app(name="orders")
    PoisonWorkflow.objects.create(application=orders, workflow_id=CHILD, executors_killed=2)
    url = reverse("poison-action", args=["orders", CHILD, "dismiss"])
    response = signed_in(operator).post(url, {"reason": "the disk, not the workflow"})
    assert response.status_code == 302
    assert PoisonWorkflow.objects.get().resolution == "dismiss"
