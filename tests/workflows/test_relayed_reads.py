"""Stories about reading workflows through a connected executor (no system database)."""

import asyncio
import re
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from stepchange.models import Application
from tests.conftest import make_user
from tests.fake_executor import FakeExecutor, connect_executor

pytestmark = pytest.mark.django_db(transaction=True)

PY_ROW = {
    "WorkflowUUID": "wf-alice",
    "Status": "SUCCESS",
    "WorkflowName": "greet",
    "Input": "{'args': ('alice',), 'kwargs': {'times': 2}}",
    "Output": "HELLO ALICE",
    "Error": None,
    "CreatedAt": "1795300787000",
    "UpdatedAt": "1795300787000",
    "CompletedAt": "1795300787000",
    "ApplicationVersion": "v1",
    "WasForkedFrom": False,
}


async def viewer_client() -> AsyncClient:
    viewer = await sync_to_async(make_user)(username="vera", role="viewer")
    client = AsyncClient()
    await client.aforce_login(viewer)
    return client


async def served(executor: FakeExecutor, call: Any, **reply: Any) -> tuple[Any, dict[str, Any]]:
    """Run an API call while the fake executor answers its one request."""
    calling = asyncio.create_task(call)
    request = await executor.answer(**reply)
    return await calling, request


async def test_the_list_asks_the_executor_with_the_filters_given(
    orders: Application, executor: FakeExecutor
) -> None:
    client = await viewer_client()
    response, request = await served(
        executor,
        client.get(
            "/api/v1/apps/orders/workflows",
            {
                "status": "success,error",
                "workflow_name": "greet",
                "limit": "1",
                "start_time": "2026-11-21T10:00:00",
                "load_input": "true",
            },
        ),
        output=[PY_ROW, {**PY_ROW, "WorkflowUUID": "wf-bob"}],
    )
    assert request["type"] == "list_workflows"
    body = request["body"]
    assert body["status"] == ["SUCCESS", "ERROR"]
    assert body["workflow_name"] == ["greet"]
    assert body["start_time"] == "2026-11-21T10:00:00+00:00"
    assert (body["limit"], body["sort_desc"], body["load_input"]) == (2, True, True)
    page = response.json()
    assert page["source"] == "executor"
    assert page["next_cursor"] == "1"
    [item] = page["items"]
    assert item["workflow_id"] == "wf-alice"
    assert item["input"] == PY_ROW["Input"]
    assert item["input_format"] == "python-display"
    assert item["created_at"].startswith("2026-11-21") or item["created_at"].startswith("2026")


async def test_one_workflow_and_its_steps(orders: Application, executor: FakeExecutor) -> None:
    client = await viewer_client()
    response, _ = await served(
        executor, client.get("/api/v1/apps/orders/workflows/wf-alice"), output=PY_ROW
    )
    assert response.json()["output"] == "HELLO ALICE"
    response, request = await served(
        executor,
        client.get("/api/v1/apps/orders/workflows/wf-alice/steps"),
        output=[
            {
                "function_id": 1,
                "function_name": "fetch",
                "output": "{'n': 5}",
                "child_workflow_id": None,
                "started_at_epoch_ms": "1795300787041",
            }
        ],
    )
    assert request == {**request, "type": "list_steps", "workflow_id": "wf-alice"}
    [step] = response.json()["items"]
    assert (step["function_id"], step["function_name"], step["output"]) == (1, "fetch", "{'n': 5}")


async def test_an_unknown_workflow_is_a_404(orders: Application, executor: FakeExecutor) -> None:
    client = await viewer_client()
    response, _ = await served(
        executor, client.get("/api/v1/apps/orders/workflows/nope"), output=None
    )
    assert response.status_code == 404
    assert response.json()["detail"] == "No workflow nope in orders."


async def test_the_steps_of_an_unknown_workflow_are_a_404(
    orders: Application, executor: FakeExecutor
) -> None:
    client = await viewer_client()
    calling = asyncio.create_task(client.get("/api/v1/apps/orders/workflows/nope/steps"))
    steps = await executor.answer(output=[])
    lookup = await executor.answer(output=None)
    response = await calling
    assert (steps["type"], lookup["type"]) == ("list_steps", "get_workflow")
    assert response.status_code == 404
    assert response.json()["detail"] == "No workflow nope in orders."


async def test_a_workflow_with_no_steps_yet_has_an_empty_list(
    orders: Application, executor: FakeExecutor
) -> None:
    client = await viewer_client()
    calling = asyncio.create_task(client.get("/api/v1/apps/orders/workflows/wf-alice/steps"))
    await executor.answer(output=[])
    await executor.answer(output=PY_ROW)
    response = await calling
    assert response.status_code == 200
    assert response.json()["items"] == []


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ({"status": "DONE"}, "status"),
        ({"start_time": "yesterday"}, "start_time must be an ISO 8601 time"),
        ({"limit": "0"}, "limit"),
        ({"cursor": "abc"}, "cursor is not one"),
    ],
)
async def test_bad_filters_get_400_before_anything_is_sent(
    orders: Application, executor: FakeExecutor, query: dict[str, str], detail: str
) -> None:
    client = await viewer_client()
    response = await client.get("/api/v1/apps/orders/workflows", query)
    assert response.status_code == 400
    # A rule the document declares is named by its parameter; the others by a sentence.
    answer = response.json()["detail"]
    assert detail in (answer if isinstance(answer, str) else answer[0]["loc"][-1])
    assert await executor.communicator.receive_nothing(timeout=0.1)


async def test_no_executor_is_a_503_and_a_silent_one_a_504(
    orders: Application, settings: Any
) -> None:
    client = await viewer_client()
    response = await client.get("/api/v1/apps/orders/workflows/wf-1")
    assert response.status_code == 503
    assert response.json()["detail"] == "No executor of orders is connected."
    settings.RELAY_TIMEOUT_SECONDS = 0.2
    silent = await connect_executor()
    response = await client.get("/api/v1/apps/orders/workflows/wf-1")
    assert response.status_code == 504
    assert "did not answer get_workflow" in response.json()["detail"]
    await silent.communicator.disconnect()


async def test_an_application_the_user_may_not_see_is_a_404(orders: Application) -> None:
    other = await sync_to_async(Application.objects.create)(name="billing")
    limited = await sync_to_async(make_user)(username="lena", role="viewer", apps=[other])
    client = AsyncClient()
    await client.aforce_login(limited)
    response = await client.get("/api/v1/apps/orders/workflows")
    assert response.status_code == 404
    assert "No application named 'orders'" in response.json()["detail"]


async def test_the_dashboard_asks_the_executor_to_count_and_for_the_recent_failures(
    orders: Application, executor: FakeExecutor
) -> None:
    """Without a system database: the executor counts the workflows in flight per queue and
    the failed ones of the day (get_workflow_aggregates) and lists the recent failures, the
    three asked at once; its metadata and its connection show."""
    from workflows.sources import RECENT_FAILURES

    client = await viewer_client()
    page_task = asyncio.create_task(client.get("/apps/orders/"))
    asked = []
    for _ in range(3):
        request = await executor.receive()
        asked.append(request)
        body = request["body"]
        if request["type"] == "list_workflows":
            output: list[dict[str, Any]] = [
                {**PY_ROW, "WorkflowUUID": "wf-broke", "Status": "ERROR"}
            ]
        elif body.get("group_by_queue_name"):
            output = [
                {"group": {"queue_name": "mail", "status": "ENQUEUED"}, "count": 3},
                {"group": {"queue_name": "mail", "status": "PENDING"}, "count": 1},
                {"group": {"queue_name": None, "status": "PENDING"}, "count": 250},
            ]
        else:
            output = [
                {"group": {"status": "ERROR"}, "count": 6},
                {"group": {"status": "MAX_RECOVERY_ATTEMPTS_EXCEEDED"}, "count": 1},
            ]
        await executor.reply(request, output=output)
    page = await page_task
    assert page.status_code == 200
    html = page.content.decode()
    kinds = sorted(request["type"] for request in asked)
    assert kinds == ["get_workflow_aggregates", "get_workflow_aggregates", "list_workflows"]
    listed = next(r["body"] for r in asked if r["type"] == "list_workflows")
    assert listed["limit"] == RECENT_FAILURES + 1
    assert listed["status"] == ["ERROR", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"]
    counts = [r["body"] for r in asked if r["type"] == "get_workflow_aggregates"]
    in_flight = next(body for body in counts if body.get("group_by_queue_name"))
    assert (in_flight["group_by_status"], in_flight["select_count"]) == (True, True)
    assert in_flight["status"] == ["PENDING", "ENQUEUED", "DELAYED"]
    assert "start_time" not in in_flight
    failed = next(body for body in counts if not body.get("group_by_queue_name"))
    assert failed["status"] == ["ERROR", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"]
    assert failed["start_time"]
    assert "wf-broke" in html
    assert (
        '>mail</a></td><td class="num">3</td><td class="num">1</td><td class="num">0</td>' in html
    )
    tiles = {
        label: count
        for count, label in re.findall(
            r'<span class="tile-count">([^<]*)</span><span class="tile-label">([^<]*)<', html
        )
    }
    assert (tiles["in flight"], tiles["queued"], tiles["failed in the last 24 h"]) == (
        "251",
        "3",
        "7",
    )
    assert "Counted by a connected executor." in html
    assert "Counted from the newest" not in html
    assert "does not count them" not in html
    assert "<code>role=test</code>" in html
    assert "test-host" in html
    assert "Executors came and went" in html
    assert executor.executor_id[:10] in html
    assert '<span class="badge ok">connected</span>' in html


async def test_a_count_the_executor_fails_is_said_and_the_rest_shows(
    orders: Application, executor: FakeExecutor
) -> None:
    """An executor that knows get_workflow_aggregates but fails it: the numbers read "not
    counted", the page says why, the recent failures still show, and nothing is listed
    instead (a sample would hide the failure)."""
    client = await viewer_client()
    page_task = asyncio.create_task(client.get("/apps/orders/"))
    for _ in range(3):
        request = await executor.receive()
        if request["type"] == "list_workflows":
            await executor.reply(
                request, output=[{**PY_ROW, "WorkflowUUID": "wf-broke", "Status": "ERROR"}]
            )
        else:
            failed = "Exception encountered when getting workflow aggregates: disk full"
            await executor.reply(request, error_message=failed)
    page = await page_task
    assert page.status_code == 200
    html = page.content.decode()
    assert 'class="alert danger" role="alert"' in html
    assert "could not get_workflow_aggregates" in html
    assert "disk full" in html
    assert html.count('<span class="tile-unknown">not counted</span>') == 3
    assert "Queue depths could not be read." in html
    assert "wf-broke" in html
    assert await executor.communicator.receive_nothing(timeout=0.2)


async def test_the_dashboard_lists_where_the_executor_cannot_count(
    orders: Application, executor: FakeExecutor
) -> None:
    """An SDK without get_workflow_aggregates answers it as an unknown message: the
    dashboard then lists bounded samples to count from, and says so."""
    from workflows.sources import RELAYED_QUEUE_SAMPLE

    client = await viewer_client()
    page_task = asyncio.create_task(client.get("/apps/orders/"))
    bodies = []
    # Failures (and the two counts refused); then failures, queue depths and the three
    # headline numbers.
    for _ in range(6):
        request = await executor.receive_not_counting()
        body = request["body"]
        bodies.append(body)
        output = []
        if body.get("queues_only"):
            output = [
                {**PY_ROW, "WorkflowUUID": f"wf-q{i}", "Status": "ENQUEUED", "QueueName": "mail"}
                for i in range(3)
            ] + [{**PY_ROW, "WorkflowUUID": "wf-run", "Status": "PENDING", "QueueName": "mail"}]
        await executor.reply(request, output=output)
    page = await page_task
    assert page.status_code == 200
    html = page.content.decode()
    queued = next(body for body in bodies if body.get("queues_only"))
    assert (queued["limit"], queued["load_input"]) == (RELAYED_QUEUE_SAMPLE + 1, False)
    assert (
        '>mail</a></td><td class="num">3</td><td class="num">1</td><td class="num">0</td>' in html
    )
    assert "does not count them" in html
    assert "Counted by a connected executor." not in html
    assert "Unknown message type" not in html
    assert await executor.communicator.receive_nothing(timeout=0.2)


async def test_the_dashboard_says_what_a_silent_executor_did_not_answer(
    orders: Application, executor: FakeExecutor, settings: Any
) -> None:
    settings.RELAY_TIMEOUT_SECONDS = 0.3
    client = await viewer_client()
    page = await client.get("/apps/orders/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'class="alert danger" role="alert"' in html
    assert "Queue depths could not be read." in html
    assert "test-host" in html  # the executors card still shows


async def test_a_value_as_the_executor_shows_it_comes_on_demand(
    orders: Application, executor: FakeExecutor
) -> None:
    client = await viewer_client()
    response, request = await served(
        executor,
        client.get(
            "/apps/orders/workflows/wf-alice/", {"raw": "input"}, headers={"HX-Request": "true"}
        ),
        output=PY_ROW,
    )
    assert request["type"] == "get_workflow"
    assert response.status_code == 200
    text = response.content.decode()
    assert "{&#x27;args&#x27;: (&#x27;alice&#x27;,)" in text
    assert f"python-display · {len(str(PY_ROW['Input'])):,} characters" in text
    gone, _ = await served(
        executor, client.get("/apps/orders/workflows/nope/", {"raw": "input"}), output=None
    )
    assert gone.status_code == 404


async def _answer_all(executor: FakeExecutor, replies: dict[str, Any]) -> list[str]:
    """Answer the five requests a workflow's page sends (the workflow, then its steps and
    the three extras at once; its family is a part of its own), by type; the types asked,
    in order."""
    asked: list[str] = []
    for _ in range(5):
        request = await executor.receive()
        kind = request["type"]
        asked.append(kind)
        await executor.send(
            {"type": request["type"], "request_id": request["request_id"]} | replies[kind]
        )
    return asked


async def test_a_workflows_page_through_the_executor_shows_what_it_can_tell(
    orders: Application, executor: FakeExecutor
) -> None:
    """Its steps, events, messages and streams, asked of the executor at once after the
    workflow; the page says the events' history cannot be asked for, and asks for its
    family apart."""
    ok = {"error_message": None}
    replies = {
        "get_workflow": ok | {"output": PY_ROW},
        "list_steps": ok
        | {"output": [{"function_id": 1, "function_name": "fetch", "output": "{'n': 5}"}]},
        "get_workflow_events": ok | {"events": [{"key": "stage", "value": "'packing'"}]},
        "get_workflow_notifications": ok
        | {"notifications": [{"topic": "greeting", "message": "'hi'", "consumed": False}]},
        "get_workflow_streams": ok | {"streams": [{"key": "progress", "values": ["1", "2"]}]},
    }
    client = await viewer_client()
    page = asyncio.create_task(client.get("/apps/orders/workflows/wf-alice/"))
    asked = await _answer_all(executor, replies)
    response = await page
    assert response.status_code == 200
    html = response.content.decode()
    assert asked[0] == "get_workflow"
    extras = ["get_workflow_events", "get_workflow_notifications", "get_workflow_streams"]
    assert sorted(asked[1:]) == sorted(["list_steps", *extras])
    assert "read from the executor" in html
    assert "fetch" in html
    assert "<code>stage</code>" in html
    assert "greeting" in html
    assert "<code>progress</code>" in html
    assert 'hx-get="?part=family"' in html
    assert "an executor cannot be asked for it" in html
    assert "Part of this page could not be fetched" not in html


async def test_a_workflows_page_shows_the_workflow_when_its_extras_fail(
    orders: Application, executor: FakeExecutor
) -> None:
    ok = {"error_message": None}
    replies: dict[str, Any] = {
        kind: ok | {"output": []} for kind in ("list_steps", "get_workflow_streams")
    }
    replies |= {
        "get_workflow": ok | {"output": PY_ROW},
        "get_workflow_events": {"error_message": "events table is locked"},
        "get_workflow_notifications": ok | {"notifications": []},
        "get_workflow_streams": ok | {"streams": []},
    }
    client = await viewer_client()
    page = asyncio.create_task(client.get("/apps/orders/workflows/wf-alice/"))
    await _answer_all(executor, replies)
    response = await page
    assert response.status_code == 200
    html = response.content.decode()
    assert "Part of this page could not be fetched" in html
    assert "events table is locked" in html
    assert "wf-alice" in html


async def test_the_queued_page_through_the_executor_counts_and_configures_each_queue(
    orders: Application, executor: FakeExecutor
) -> None:
    """Its rows, the queues' configuration and the executor's counts per queue and status,
    asked at once; the list without inputs."""
    queued = [
        {**PY_ROW, "WorkflowUUID": "wf-a", "Status": "ENQUEUED", "QueueName": "mail"},
        {**PY_ROW, "WorkflowUUID": "wf-b", "Status": "PENDING", "QueueName": "mail"},
        {**PY_ROW, "WorkflowUUID": "wf-c", "Status": "DELAYED", "QueueName": "bulk"},
    ]
    client = await viewer_client()
    page = asyncio.create_task(client.get("/apps/orders/queued/"))
    limits = []
    for _ in range(3):
        request = await executor.receive()
        reply: dict[str, Any] = {"output": queued}
        if request["type"] == "list_queues":
            reply = {"output": [{"name": "mail", "concurrency": 4, "worker_concurrency": 2}]}
        elif request["type"] == "get_workflow_aggregates":
            assert request["body"]["group_by_queue_name"] is True
            reply = {
                "output": [
                    {"group": {"queue_name": "mail", "status": "ENQUEUED"}, "count": 1},
                    {"group": {"queue_name": "mail", "status": "PENDING"}, "count": 1},
                    {"group": {"queue_name": "bulk", "status": "DELAYED"}, "count": 1},
                    {"group": {"queue_name": None, "status": "PENDING"}, "count": 9},
                ]
            }
        else:
            body = request["body"]
            assert body["queues_only"] is True
            assert body["load_input"] is False
            limits.append(body["limit"])
        await executor.send(
            {"type": request["type"], "request_id": request["request_id"], "error_message": None}
            | reply
        )
    response = await page
    assert response.status_code == 200
    html = response.content.decode()
    assert limits == [51]
    mail = '>mail</a></td>\n    <td class="num">1</td><td class="num">1</td><td class="num">0</td>'
    assert mail in html
    assert '<td class="num">4</td><td class="num">2</td>' in html
    bulk = '>bulk</a></td>\n    <td class="num">0</td><td class="num">0</td><td class="num">1</td>'
    assert bulk in html
    assert "not in the queues table" in html  # bulk has workflows but no configuration
    assert "wf-c" in html


@pytest.mark.parametrize("page", ["list", "workflow"])
async def test_a_silent_executor_is_said_and_the_rest_of_the_page_renders(
    orders: Application, executor: FakeExecutor, settings: Any, page: str
) -> None:
    """An executor that does not answer in time: the list keeps its filter form and says
    so; the workflow's page says so with a way back (504)."""
    settings.RELAY_TIMEOUT_SECONDS = 0.3
    client = await viewer_client()
    path = "/apps/orders/workflows/" if page == "list" else "/apps/orders/workflows/wf-alice/"
    response = await client.get(path)
    html = response.content.decode()
    assert 'class="alert danger" role="alert"' in html
    asked = "list_workflows" if page == "list" else "get_workflow"
    assert f"did not answer {asked} within 0.3 s" in html
    if page == "list":
        assert response.status_code == 200
        assert 'name="workflow_name"' in html
    else:
        assert response.status_code == 504
        assert "Back to the workflows" in html


async def test_the_queued_rows_show_when_the_queues_cannot_be_read(
    orders: Application, executor: FakeExecutor
) -> None:
    """The executor fails list_queues: the queued workflows still show, and the page says
    what could not be read; the rows' own refresh asks for the rows alone."""
    client = await viewer_client()
    page = asyncio.create_task(client.get("/apps/orders/queued/"))
    for _ in range(3):
        request = await executor.receive()
        reply: dict[str, Any] = {"error_message": None, "output": [PY_ROW]}
        if request["type"] == "list_queues":
            reply = {"error_message": "no queues here"}
        elif request["type"] == "get_workflow_aggregates":
            reply = {"error_message": None, "output": []}
        await executor.send({"type": request["type"], "request_id": request["request_id"]} | reply)
    response = await page
    html = response.content.decode()
    assert response.status_code == 200
    assert "The queues could not be read" in html
    assert "no queues here" in html
    assert "wf-alice" in html
    assert await executor.communicator.receive_nothing(timeout=0.2)
    rows = asyncio.create_task(client.get("/apps/orders/queued/", headers={"HX-Request": "true"}))
    request = await executor.answer("list_workflows", output=[PY_ROW])
    assert request["body"]["queues_only"] is True
    assert "wf-alice" in (await rows).content.decode()
    assert await executor.communicator.receive_nothing(timeout=0.2)


async def test_the_list_through_the_executor_says_children_are_not_nested_and_notes_names(
    orders: Application, executor: FakeExecutor
) -> None:
    """No request of the protocol keeps top-level workflows only or counts children: the
    page says so rather than failing, and the names it showed are offered from then on;
    a search then reads a name it knows as that name."""
    from workflows.models import SeenName

    client = await viewer_client()
    response, request = await served(
        executor,
        client.get("/apps/orders/workflows/"),
        output=[PY_ROW, {**PY_ROW, "WorkflowUUID": "wf-kid", "ParentWorkflowID": "wf-alice"}],
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "child workflows are listed among the others and are not counted" in html
    assert "wf-kid" in html
    assert "parent_workflow_id" not in request["body"] or not request["body"]["parent_workflow_id"]
    names = [
        n async for n in SeenName.objects.filter(application=orders).values_list("name", flat=True)
    ]
    assert names == ["greet"]
    searched, asked = await served(
        executor, client.get("/apps/orders/workflows/", {"q": "gr"}), output=[PY_ROW]
    )
    assert asked["body"]["workflow_name"] == ["greet"]
    assert "Names starting with “gr”: <code>greet</code>" in searched.content.decode()


async def _steps_by_position(
    executor: FakeExecutor, ids: list[int], asked: list[tuple[int, int | None]]
) -> None:
    """Answer list_steps as an executor does, by position (offset, limit) over steps with
    these function ids, noting each (offset, limit) asked; until cancelled."""
    rows = [{"function_id": i, "function_name": f"s{i}", "output": str(i)} for i in ids]
    while True:
        request = await executor.receive(timeout=10)
        assert request["type"] == "list_steps", request
        offset, limit = request.get("offset") or 0, request.get("limit")
        asked.append((offset, limit))
        page = rows[offset:] if limit is None else rows[offset : offset + limit]
        await executor.send(
            {"type": "list_steps", "request_id": request["request_id"], "output": page}
        )


@pytest.mark.parametrize(
    ("ids", "wanted", "found", "requests"),
    [
        (list(range(1, 3001)), 2500, True, 1),
        (list(range(3000)), 2500, True, 1),
        (list(range(1, 3001)), 1, True, 1),
        (list(range(3000)), 0, True, 1),
        (list(range(1, 3001)), 3001, False, 2),
        (list(range(10)), 10, False, 1),
        ([1, 2, 3, 7, 8, 9], 8, True, 2),
        ([1, 2, 3, 7, 8, 9], 5, False, 2),
        ([], 1, False, 2),
    ],
    ids=[
        "1-based",
        "0-based",
        "first of 1-based",
        "first of 0-based",
        "past the end",
        "just past the end",
        "after skipped ids",
        "a skipped id",
        "no steps",
    ],
)
async def test_one_step_through_the_executor_is_asked_for_where_it_would_be(
    orders: Application,
    executor: FakeExecutor,
    ids: list[int],
    wanted: int,
    found: bool,
    requests: int,
) -> None:
    from workflows.sources import ExecutorSource

    asked: list[tuple[int, int | None]] = []
    answering = asyncio.create_task(_steps_by_position(executor, ids, asked))
    try:
        step = await ExecutorSource(orders).step("wf-alice", wanted)
    finally:
        answering.cancel()
    assert (step is not None) == found
    if step is not None:
        assert (step.function_id, step.function_name) == (wanted, f"s{wanted}")
    assert len(asked) == requests, asked
    # The first ask reads at most three rows (two and one to tell if there are more).
    assert asked[0][1] == 3
