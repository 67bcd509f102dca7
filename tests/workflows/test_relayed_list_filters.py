"""The list's newer filters read through a connected executor (no system database): each
goes out in the `list_workflows` body under DBOS's name, as DBOS's own types have it,
from the API and from the console alike; a bad one is refused before anything is sent."""

import json
from urllib.parse import urlencode

import pytest

from stepchange.models import Application
from tests.fake_executor import FakeExecutor
from tests.workflows.test_relayed_reads import PY_ROW, served, viewer_client

pytestmark = pytest.mark.django_db(transaction=True)

ODD = "o'brien \"%_\\ ünï"
ASKED = [
    ("authenticated_user", "alice,bob"),
    ("schedule_name", "nightly"),
    ("completed_after", "2026-11-21T10:00:00"),
    ("completed_before", "2026-11-22T10:00:00+01:00"),
    ("dequeued_after", "2026-11-21T09:00:00+00:00"),
    ("dequeued_before", "2026-11-21T11:00:00+00:00"),
    ("was_forked_from", "false"),
    ("has_parent", "true"),
    ("attribute", "tenant=acme"),
    ("attribute", "tier=3"),
    ("attribute", f"who={ODD}"),
    ("attribute", 'code="3"'),
]
SENT = {
    "authenticated_user": ["alice", "bob"],
    "schedule_name": ["nightly"],
    "completed_after": "2026-11-21T10:00:00+00:00",
    "completed_before": "2026-11-22T09:00:00+00:00",
    "dequeued_after": "2026-11-21T09:00:00+00:00",
    "dequeued_before": "2026-11-21T11:00:00+00:00",
    "was_forked_from": False,
    "has_parent": True,
    "attributes": {"tenant": "acme", "tier": 3, "who": ODD, "code": "3"},
}


async def test_the_api_sends_every_new_filter_in_the_list_body(
    orders: Application, executor: FakeExecutor
) -> None:
    client = await viewer_client()
    response, request = await served(
        executor,
        client.get(f"/api/v1/apps/orders/workflows?{urlencode(ASKED)}"),
        output=[PY_ROW],
    )
    assert response.status_code == 200, response.content
    assert request["type"] == "list_workflows"
    body = request["body"]
    assert {name: body.get(name) for name in SENT} == SENT
    # The text sent is JSON as DBOS reads it: the odd characters go as themselves.
    assert json.loads(json.dumps(body["attributes"]))["who"] == ODD
    assert [item["workflow_id"] for item in response.json()["items"]] == ["wf-alice"]


async def test_the_console_sends_the_same_filters_and_shows_a_chip_for_each(
    orders: Application, executor: FakeExecutor
) -> None:
    client = await viewer_client()
    # The console's time boxes are datetime-local: no offset, read as UTC.
    asked = [
        (name, value.removesuffix("+00:00").removesuffix("+01:00")[:16])
        if name.endswith(("_after", "_before"))
        else (name, value)
        for name, value in ASKED
    ]
    response, request = await served(
        executor, client.get(f"/apps/orders/workflows/?{urlencode(asked)}"), output=[PY_ROW]
    )
    assert response.status_code == 200
    body = request["body"]
    assert body["attributes"] == SENT["attributes"]
    assert (body["was_forked_from"], body["has_parent"]) == (False, True)
    assert body["authenticated_user"] == ["alice", "bob"]
    assert body["schedule_name"] == ["nightly"]
    assert body["completed_before"] == "2026-11-22T10:00:00+00:00"
    assert body["dequeued_after"] == "2026-11-21T09:00:00+00:00"
    html = response.content.decode()
    assert "wf-alice" in html
    for label in ("User", "Schedule", "Completed after", "Dequeued before", "Was forked"):
        assert f'<li class="chip">{label}: ' in html, label
    assert html.count('<li class="chip">Attribute: ') == 4
    assert '<li class="chip">Has a parent: <strong>yes (children)</strong>' in html


@pytest.mark.parametrize(
    "query",
    [
        [("attribute", "no equals sign")],
        [("completed_after", "2026-01-02T00:00:00"), ("completed_before", "2026-01-01T00:00:00")],
        [("has_parent", "perhaps")],
    ],
    ids=["attribute", "backwards range", "has_parent"],
)
async def test_a_bad_new_filter_sends_nothing_to_the_executor(
    orders: Application, executor: FakeExecutor, query: list[tuple[str, str]]
) -> None:
    client = await viewer_client()
    api = await client.get(f"/api/v1/apps/orders/workflows?{urlencode(query)}")
    assert api.status_code == 400
    assert api.json()["detail"]
    console = await client.get(f"/apps/orders/workflows/?{urlencode(query)}")
    assert console.status_code == 400
    assert 'role="alert"' in console.content.decode()
    assert await executor.communicator.receive_nothing(timeout=0.1)
