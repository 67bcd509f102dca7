"""Stories about an application's versions: what each runs and holds, the workflows
stranded on a version no executor runs, forking them onto a running one, and making a
version the latest, through the console and the API."""

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth.models import User
from django.test import AsyncClient, Client
from django.urls import reverse
from django.utils import timezone

from conductor.models import Executor
from stepchange.models import Application, AuditRecord
from stepchange.services import executor_key_create
from tests.conftest import make_user, signed_in
from tests.fake_executor import KEY, FakeExecutor, connect_executor
from tests.workflows.versions_data import APP, versions_database
from workflows import versions
from workflows.models import BulkJob, BulkJobItem
from workflows.versions import versions_read

SET_LATEST = "/api/v1/apps/orders/versions/latest"


@pytest.fixture(params=["sqlite", "postgres"])
def orders_versions(
    request: pytest.FixtureRequest,
    system_databases: None,
    sdk_fixtures: dict[str, dict[str, Any]],
    tmp_path: Path,
) -> Iterator[Application]:
    yield from versions_database(request.param, sdk_fixtures, tmp_path)


def live_executor(application: Application, executor_id: str, version: str) -> Executor:
    return Executor.objects.create(
        application=application,
        executor_id=executor_id,
        application_version=version,
        language="python",
        dbos_version="3.2.0",
        last_seen_at=timezone.now(),
    )


def by_name(found: versions.Versions) -> dict[str | None, versions.Version]:
    return {version.name: version for version in found.versions}


# Reading, from a system database of each kind.


def test_each_version_shows_its_executors_and_the_workflows_waiting_on_it(
    orders_versions: Application,
) -> None:
    live_executor(orders_versions, "exec-v2", "v2")
    found = async_to_sync(versions_read)(orders_versions)
    assert found.source == "system database"
    assert found.latest == "v2"
    # The latest first, then newest to oldest, then a version with no row, then none.
    assert [v.name for v in found.versions] == ["v2", "v1", "v0", "gone", None]
    shown = by_name(found)
    assert "theirs" not in shown
    counts = {name: (v.pending, v.enqueued) for name, v in shown.items()}
    assert counts == {"v2": (0, 1), "v1": (2, 1), "v0": (0, 0), "gone": (4, 1), None: (0, 2)}
    assert [e.executor_id for e in shown["v2"].executors] == ["exec-v2"]
    assert (shown["v2"].registered, shown["gone"].registered) == (True, False)
    # Unpinned workflows run on the latest version's executors: not stranded.
    assert [e.executor_id for e in shown[None].executors] == ["exec-v2"]
    assert [v.name for v in found.stranded] == ["v1", "gone"]
    assert found.counted
    assert found.capped == {"PENDING": False, "ENQUEUED": False}


def test_counts_past_the_cap_are_lower_bounds_and_say_so(
    orders_versions: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(versions, "COUNT_CAP", 5)
    found = async_to_sync(versions_read)(orders_versions)
    # Six PENDING rows, all read (the cap and one), so their counts are lower bounds; five
    # ENQUEUED ones, counted exactly.
    assert sum(v.pending for v in found.versions) == 6
    assert sum(v.enqueued for v in found.versions) == 5
    assert found.capped == {"PENDING": True, "ENQUEUED": False}
    assert found.notes == [
        "More than 5 PENDING workflows: each version's PENDING count is at least this."
    ]


def test_with_no_executor_on_the_latest_version_unpinned_workflows_are_stranded(
    orders_versions: Application,
) -> None:
    live_executor(orders_versions, "exec-v1", "v1")
    found = async_to_sync(versions_read)(orders_versions)
    assert [v.name for v in found.stranded] == ["v2", "gone", None]


def test_the_page_warns_of_stranded_workflows_with_a_list_and_a_fork_of_them(
    orders_versions: Application,
) -> None:
    live_executor(orders_versions, "exec-v2", "v2")
    operator = make_user(username="otto", role="operator")
    page = signed_in(operator).get(reverse("versions", args=[APP]))
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count('role="alert" data-stranded=') == 2
    assert "3 workflows stranded on version <code>v1</code>" in html
    assert "5 workflows stranded on version <code>gone</code>" in html
    listed = (
        "/apps/orders/workflows/?application_version=gone&amp;status=PENDING"
        "&amp;status=ENQUEUED&amp;all_levels=on"
    )
    assert f'href="{listed}"' in html
    assert "/apps/orders/bulk/new/?action=fork_to_version&amp;scope=filter" in html
    # The list it links to holds exactly the stranded workflows of that version.
    rows = signed_in(operator).get(listed.replace("&amp;", "&")).content.decode()
    assert rows.count('<td class="col-id id">') == 5
    # Make latest is offered on every registered version but the latest.
    assert html.count(">Make latest</button>") == 2
    assert 'aria-current="page">Versions</a>' in html


def test_a_viewer_sees_the_warning_but_neither_the_fork_nor_make_latest(
    orders_versions: Application,
) -> None:
    viewer = make_user(username="vera", role="viewer")
    html = signed_in(viewer).get(reverse("versions", args=[APP])).content.decode()
    assert "stranded on version <code>v1</code>" in html
    assert "Fork them onto" not in html
    assert "Make latest" not in html


def test_the_api_lists_the_versions_with_their_counts(orders_versions: Application) -> None:
    live_executor(orders_versions, "exec-v2", "v2")
    viewer = make_user(username="vera", role="viewer")
    answer = signed_in(viewer).get("/api/v1/apps/orders/versions")
    assert answer.status_code == 200
    body = answer.json()
    assert body["latest"] == "v2"
    items = {item["version_name"]: item for item in body["items"]}
    assert items["gone"] | {"version_timestamp": None} == {
        "version_name": "gone",
        "version_id": "",
        "latest": False,
        "registered": False,
        "version_timestamp": None,
        "created_at": None,
        "executor_ids": [],
        "pending": 4,
        "enqueued": 1,
        "stranded": True,
    }
    assert items["v2"]["executor_ids"] == ["exec-v2"]
    assert items["v2"]["version_timestamp"].startswith("1970-01-01T00:00:02")


# Acting, with an executor connected to a system database.


@pytest.fixture
async def wired(
    transactional_db: None,
    system_databases: None,
    sdk_fixtures: dict[str, dict[str, Any]],
    tmp_path: Path,
) -> AsyncIterator[tuple[Application, FakeExecutor]]:
    """orders, on a SQLite system database holding the versions, with a key and an
    executor of v2 connected."""
    made = versions_database("sqlite", sdk_fixtures, tmp_path)
    application = await sync_to_async(next)(made)
    await sync_to_async(executor_key_create)(application=application, key=KEY)
    executor = await connect_executor(version="v2")
    yield application, executor
    await executor.communicator.disconnect()
    await sync_to_async(_finish)(made)


def _finish(made: Iterator[Application]) -> None:
    """Run the generator's clean-up: forget the alias (the SQLite file goes with tmp_path)."""
    next(made, None)


async def client_of(role: str) -> AsyncClient:
    user = await sync_to_async(make_user)(username=role, role=role)
    client = AsyncClient()
    await client.aforce_login(user)
    return client


def post(client: AsyncClient, body: dict[str, Any]) -> Any:
    return client.post(SET_LATEST, body, content_type="application/json")


async def audits() -> list[AuditRecord]:
    return [
        record
        async for record in AuditRecord.objects.filter(action=versions.SET_LATEST_ACTION).order_by(
            "pk"
        )
    ]


async def test_an_operator_makes_a_version_the_latest_through_an_executor(
    wired: tuple[Application, FakeExecutor],
) -> None:
    _, executor = wired
    client = await client_of("operator")
    answering = asyncio.create_task(executor.answer("set_latest_application_version", success=True))
    answer = await post(client, {"version_name": "v1", "reason": "roll back"})
    request = await answering
    assert request["version_name"] == "v1"
    assert answer.status_code == 200, answer.content
    assert answer.json()["previous_latest"] == "v2"
    [record] = await audits()
    assert (record.result, record.target, record.reason) == ("ok", "v1", "roll back")
    assert record.parameters == {"version_name": "v1", "previous_latest": "v2"}
    assert record.request_id == request["request_id"]


@pytest.mark.parametrize(
    ("name", "status", "says"),
    [
        ("v9", 404, "orders has no version 'v9': the versions are v2, v1, v0."),
        ("gone", 404, "orders has no version 'gone'"),
        ("theirs", 404, "orders has no version 'theirs'"),
        ("v2", 409, "v2 is the latest version of orders already."),
    ],
)
async def test_a_version_that_is_unknown_or_latest_is_refused_and_nothing_sent(
    wired: tuple[Application, FakeExecutor], name: str, status: int, says: str
) -> None:
    _, executor = wired
    answer = await post(await client_of("operator"), {"version_name": name})
    assert answer.status_code == status
    assert answer.json()["detail"].startswith(says)
    assert await executor.communicator.receive_nothing(timeout=0.2)
    [record] = await audits()
    assert record.result == "failed"
    assert record.detail.startswith(says)


async def test_bad_bodies_get_a_400_and_nothing_is_sent(
    wired: tuple[Application, FakeExecutor],
) -> None:
    _, executor = wired
    client = await client_of("operator")
    for body in ({}, {"version_name": ""}, {"version_name": 3}, {"version_name": "x" * 256}):
        answer = await post(client, body)
        assert answer.status_code in (400, 422), body
        assert "detail" in answer.json()
    assert await executor.communicator.receive_nothing(timeout=0.2)


async def test_a_viewer_may_not_set_the_latest_version(
    wired: tuple[Application, FakeExecutor],
) -> None:
    _, executor = wired
    answer = await post(await client_of("viewer"), {"version_name": "v1"})
    assert answer.status_code == 403
    assert await executor.communicator.receive_nothing(timeout=0.2)
    assert await AuditRecord.objects.filter(result="denied").aexists()


async def test_an_executor_that_says_no_is_a_502_audited_with_its_answer(
    wired: tuple[Application, FakeExecutor],
) -> None:
    _, executor = wired
    answering = asyncio.create_task(
        executor.answer(
            "set_latest_application_version", success=False, error_message="database is locked"
        )
    )
    answer = await post(await client_of("operator"), {"version_name": "v1"})
    await answering
    assert answer.status_code == 502
    assert "database is locked" in answer.json()["detail"]
    [record] = await audits()
    assert record.result == "failed"
    assert record.response is not None
    assert record.response["error_message"] == "database is locked"


async def test_the_console_form_sets_the_latest_and_says_so(
    wired: tuple[Application, FakeExecutor],
) -> None:
    _, executor = wired
    client = await client_of("operator")
    answering = asyncio.create_task(executor.answer("set_latest_application_version", success=True))
    page = await client.post(
        reverse("version-set-latest", args=[APP]), {"version_name": "v0"}, follow=True
    )
    await answering
    assert "v0 made the latest version by executor" in page.content.decode()
    refused = await client.post(
        reverse("version-set-latest", args=[APP]), {"version_name": "nope"}, follow=True
    )
    assert "orders has no version &#x27;nope&#x27;" in refused.content.decode()


# Forking stranded workflows onto a running version.


@pytest.mark.usefixtures("background")
async def test_stranded_workflows_are_forked_onto_a_running_version_in_one_batch(
    wired: tuple[Application, FakeExecutor],
) -> None:
    _, executor = wired
    client = await client_of("operator")
    stranded = {"application_version": "v1", "status": "PENDING,ENQUEUED"}
    body = {"action": "fork_to_version", "filters": stranded, "mode": "last_step"}
    refused = await client.post(
        "/api/v1/apps/orders/bulk-actions", body, content_type="application/json"
    )
    assert refused.status_code == 400
    assert "needs application_version" in refused.json()["detail"]
    not_running = await client.post(
        "/api/v1/apps/orders/bulk-actions",
        body | {"application_version": "v1"},
        content_type="application/json",
    )
    assert not_running.status_code == 409
    assert "No connected executor runs version 'v1'" in not_running.json()["detail"]
    assert not await BulkJob.objects.aexists()
    answering = asyncio.create_task(executor.receive(timeout=5))
    made = await client.post(
        "/api/v1/apps/orders/bulk-actions",
        body | {"application_version": "v2", "reason": "v1 is retired"},
        content_type="application/json",
    )
    assert made.status_code == 201, made.content
    request = await answering
    assert request["type"] == "fork_from_failure"
    sent = request["body"]
    assert sorted(sent["workflow_ids"]) == [
        "wf-v1-enqueued-0",
        "wf-v1-pending-0",
        "wf-v1-pending-1",
    ]
    assert (sent["application_version"], sent["from_last_step"]) == ("v2", True)
    forks = [f"fork-{n}" for n in range(3)]
    await executor.send(
        {"type": "fork_from_failure", "request_id": request["request_id"]}
        | {"error_message": None, "forked_workflow_ids": forks}
    )
    job_id = made.json()["id"]
    for _ in range(200):
        job = await BulkJob.objects.aget(pk=job_id)
        if job.finished:
            break
        await asyncio.sleep(0.02)
    assert job.state == "done"
    states = [item.state async for item in BulkJobItem.objects.filter(job_id=job_id)]
    assert states == ["ok"] * 3
    assert await AuditRecord.objects.filter(action="workflow.fork", result="ok").acount() == 3


async def test_the_bulk_page_offers_the_running_versions_to_fork_onto(
    wired: tuple[Application, FakeExecutor],
) -> None:
    client = await client_of("operator")
    filters = "application_version=gone&status=PENDING&status=ENQUEUED&all_levels=on"
    page = await client.get(
        reverse("bulk-new", args=[APP]),
        {"action": "fork_to_version", "scope": "filter", "filter": filters},
    )
    html = page.content.decode()
    assert "<strong>5</strong> workflows match" in html
    assert '<select name="application_version" required><option value="v2">v2</option>' in html


# Through an executor, without a system database.


@pytest.mark.django_db(transaction=True)
async def test_without_a_system_database_the_executor_lists_versions_and_a_sample(
    orders: Application, executor: FakeExecutor
) -> None:
    client = await client_of("viewer")
    page = asyncio.create_task(client.get("/api/v1/apps/orders/versions"))
    await executor.answer(
        "list_application_versions",
        output=[
            {"version_id": "a", "version_name": "v1", "version_timestamp": 5, "created_at": 5},
            {"version_id": "b", "version_name": "v0", "version_timestamp": 1, "created_at": 1},
        ],
    )
    listed = await executor.answer(
        "list_workflows",
        output=[
            {"WorkflowUUID": "a", "Status": "PENDING", "ApplicationVersion": "v0"},
            {"WorkflowUUID": "b", "Status": "ENQUEUED", "ApplicationVersion": "v0"},
        ],
    )
    assert listed["body"]["status"] == ["PENDING", "ENQUEUED"]
    body = json.loads((await page).content)
    assert body["source"] == "executor"
    items = {item["version_name"]: item for item in body["items"]}
    assert (items["v1"]["latest"], items["v1"]["executor_ids"]) == (True, [executor.executor_id])
    assert (items["v0"]["pending"], items["v0"]["enqueued"], items["v0"]["stranded"]) == (
        1,
        1,
        True,
    )


def test_the_page_says_so_when_no_executor_can_list_the_versions(db: None) -> None:
    Application.objects.create(name="lonely")
    viewer: User = make_user(username="vera", role="viewer")
    html = Client()
    html.force_login(viewer)
    page = html.get(reverse("versions", args=["lonely"])).content.decode()
    assert "The versions could not be read." in page
    assert "No executor of lonely is connected." in page
