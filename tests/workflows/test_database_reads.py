"""Stories about reading workflows straight from the system database through the API:
no executor needed, values decoded, keyset pages, and a fallback when it is down."""

import dataclasses
import re
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext

from stepchange.models import Application
from tests.conftest import signed_in
from tests.sdk_fixtures import by_role, empty_schema_copy, registered
from workflows import systemdb


def api(client: Client, path: str, **query: Any) -> tuple[int, Any]:
    response = client.get(f"/api/v1{path}", query)
    return response.status_code, response.json()


@pytest.mark.parametrize("name", ["py320-sqlite-default", "ts502-pg-default", "py2311-pg-portable"])
def test_a_viewer_reads_decoded_workflows_with_no_executor_connected(
    vera: User, sdk_fixtures: dict[str, dict[str, Any]], name: str
) -> None:
    fixture = sdk_fixtures[name]
    app = registered(fixture).name
    client = signed_in(vera)
    status, page = api(client, f"/apps/{app}/workflows", limit=50, load_input="true")
    assert status == 200, page
    assert page["source"] == "system database"
    ids = [item["workflow_id"] for item in page["items"]]
    assert set(ids) == {w["workflow_id"] for w in fixture["workflows"]}
    success = next(
        item for item in page["items"] if item["workflow_id"] == by_role(fixture, "success")
    )
    assert success["input"]["args"][0] == "alice"
    status, one = api(client, f"/apps/{app}/workflows/{by_role(fixture, 'error')}")
    assert status == 200, one
    assert one["status"] == "ERROR"
    assert "bad input fail1" in one["error"]["message"]
    status, steps = api(client, f"/apps/{app}/workflows/{by_role(fixture, 'success')}/steps")
    assert status == 200, steps
    assert steps["items"][0]["function_id"] == (0 if fixture["sdk"] == "typescript" else 1)
    status, missing = api(client, f"/apps/{app}/workflows/nope/steps")
    assert (status, missing) == (404, {"detail": f"No workflow nope in {app}."})


def test_filters_and_keyset_pages_cover_the_list_exactly_once(
    vera: User, sdk_fixtures: dict[str, dict[str, Any]]
) -> None:
    fixture = sdk_fixtures["py320-pg-default"]
    app = registered(fixture).name
    client = signed_in(vera)
    seen: list[str] = []
    cursor = None
    while True:
        query: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        status, page = api(client, f"/apps/{app}/workflows", **query)
        assert status == 200, page
        seen += [item["workflow_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(w["workflow_id"] for w in fixture["workflows"])
    assert len(seen) == len(set(seen))
    status, failed = api(client, f"/apps/{app}/workflows", status="error,cancelled")
    assert {item["status"] for item in failed["items"]} == {"ERROR", "CANCELLED"}
    status, queued = api(client, f"/apps/{app}/queued-workflows")
    assert [item["workflow_id"] for item in queued["items"]] == [by_role(fixture, "enqueued")]
    status, bad = api(client, f"/apps/{app}/workflows", cursor="not-a-cursor")
    assert status == 400
    assert bad["detail"] == "cursor is not one this API gave out"


def test_an_unknown_workflow_is_a_404(vera: User, sdk_fixtures: dict[str, dict[str, Any]]) -> None:
    app = registered(sdk_fixtures["py320-sqlite-default"]).name
    status, body = api(signed_in(vera), f"/apps/{app}/workflows/no-such-workflow")
    assert status == 404
    assert "No workflow no-such-workflow" in body["detail"]


def test_a_database_that_is_down_falls_back_to_the_executors_and_says_so(vera: User) -> None:
    Application.objects.create(
        name="orders", system_database_url="postgresql://nobody@127.0.0.1:1/gone"
    )
    status, body = api(signed_in(vera), "/apps/orders/workflows")
    # No executor is connected either: a clear 503, never a traceback.
    assert status == 503
    assert body["detail"] == "No executor of orders is connected."


def test_steps_come_in_pages_when_asked(
    vera: User, sdk_fixtures: dict[str, dict[str, Any]]
) -> None:
    fixture = sdk_fixtures["py320-sqlite-default"]
    app = registered(fixture).name
    client = signed_in(vera)
    success = by_role(fixture, "success")
    _, everything = api(client, f"/apps/{app}/workflows/{success}/steps")
    assert everything["next_cursor"] is None
    pages: list[int] = []
    cursor = None
    while True:
        query: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        status, page = api(client, f"/apps/{app}/workflows/{success}/steps", **query)
        assert status == 200, page
        pages += [step["function_id"] for step in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [step["function_id"] for step in everything["items"]]
    status, _ = api(client, f"/apps/{app}/workflows/{success}/steps", limit=0)
    assert status == 400
    more = client.get(
        f"/apps/{app}/workflows/{success}/", {"steps_cursor": "1"}, HTTP_HX_REQUEST="true"
    )
    assert more.status_code == 200
    assert b"<html" not in more.content
    assert b'<tr id="step-2"' in more.content


def test_a_query_that_would_load_the_database_for_long_is_stopped_with_advice(
    vera: User, sdk_fixtures: dict[str, dict[str, Any]], settings: Any
) -> None:
    from asgiref.sync import async_to_sync
    from django.db import connections

    from workflows import systemdb
    from workflows.sources import SlowQuery, _on_thread

    settings.SYSTEM_DB_STATEMENT_TIMEOUT_MS = 50
    application = registered(sdk_fixtures["py320-pg-default"])
    alias = systemdb.alias_for(application)

    def slow() -> None:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT pg_sleep(2)")

    with pytest.raises(SlowQuery, match="stopped this query after 50 ms"):
        async_to_sync(_on_thread(slow))()


@pytest.mark.parametrize("name", ["py320-sqlite-default", "py320-pg-default"])
def test_an_id_prefix_finds_exactly_the_workflows_that_start_with_it(
    vera: User, sdk_fixtures: dict[str, dict[str, Any]], name: str
) -> None:
    fixture = sdk_fixtures[name]
    app = registered(fixture).name
    _, page = api(signed_in(vera), f"/apps/{app}/workflows", workflow_id_prefix="py-default-s")
    found = {item["workflow_id"] for item in page["items"]}
    assert found == {
        w["workflow_id"]
        for w in fixture["workflows"]
        if w["workflow_id"].startswith("py-default-s")
    }
    assert found == {"py-default-success", "py-default-sender"}
    # Where text compares byte by byte, the prefix is a primary-key range and no LIKE,
    # which would mislead the planner (see WorkflowQuerySet.id_prefix).
    application = Application.objects.get(name=app)
    alias = systemdb.alias_for(application)
    with CaptureQueriesContext(connections[alias]) as queries:
        api(signed_in(vera), f"/apps/{app}/workflows", workflow_id_prefix="py-default-s")
    listed = [q["sql"] for q in queries if "workflow_status" in q["sql"]]
    assert listed
    uses_like = any("LIKE" in sql for sql in listed)
    assert uses_like is not systemdb.schema_of(application).bytewise_text


def test_the_successor_of_a_prefix_bounds_exactly_the_strings_that_start_with_it() -> None:
    from workflows.models import _successor

    assert _successor("ab") == "ac"
    assert _successor("a\U0010ffff") == "b"
    assert _successor("\U0010ffff") is None
    assert _successor("a\ud7ff") == "a\ue000"  # past the surrogates, which text cannot hold
    for word in ["ab", "ab0", "abz", "ab\U0010ffff", "ab\U0010ffffz"]:
        assert "ab" <= word < "ac"


def test_a_long_workflow_is_paged_a_hundred_steps_at_a_time(
    vera: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """250 recorded steps: the API answers 100 unless asked for more (up to 1,000), the
    console shows 100 with "More steps", and nothing is lost across the pages."""
    fixture = sdk_fixtures["py320-sqlite-default"]
    path = tmp_path / "system.sqlite"
    shutil.copy(fixture["path"], path)
    success = by_role(fixture, "success")
    with sqlite3.connect(path) as db:
        (last,) = db.execute(
            "SELECT max(function_id) FROM operation_outputs WHERE workflow_uuid = ?", (success,)
        ).fetchone()
        db.executemany(
            "INSERT INTO operation_outputs (workflow_uuid, function_id, function_name, output)"
            " VALUES (?, ?, ?, NULL)",
            [(success, last + n, f"extra_step_{n}") for n in range(1, 251 - last)],
        )
    app = Application.objects.create(
        name=fixture["app_name"], system_database_url=f"sqlite:///{path}"
    )
    client = signed_in(vera)
    status, first = api(client, f"/apps/{app.name}/workflows/{success}/steps")
    assert status == 200, first
    assert len(first["items"]) == 100
    assert first["next_cursor"] is not None
    status, rest = api(
        client, f"/apps/{app.name}/workflows/{success}/steps", cursor=first["next_cursor"]
    )
    assert [s["function_id"] for s in first["items"] + rest["items"]][:200] == list(
        range(first["items"][0]["function_id"], first["items"][0]["function_id"] + 200)
    )
    status, everything = api(client, f"/apps/{app.name}/workflows/{success}/steps", limit=1000)
    assert len(everything["items"]) == 250
    assert everything["next_cursor"] is None
    status, _ = api(client, f"/apps/{app.name}/workflows/{success}/steps", limit=1001)
    assert status == 400
    # The console draws them all from one outline: the table folds what does not fit,
    # and each fold opens in place, 100 rows at a time.
    page = client.get(f"/apps/{app.name}/workflows/{success}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "250 steps" in html
    shown = set(re.findall(r'<tr id="step-(\d+)"', html))
    folds = re.findall(r"steps_cursor=(\d+)&amp;until=(\d+)", html)
    assert len(shown) <= 60
    assert folds
    while folds:
        after, until = folds.pop()
        url = f"/apps/{app.name}/workflows/{success}/"
        query = {"steps_cursor": after, "until": until}
        opened = client.get(url, query, HTTP_HX_REQUEST="true").content.decode()
        found = re.findall(r'<tr id="step-(\d+)"', opened)
        assert len(found) <= 100
        assert all(int(after) < int(n) <= int(until) for n in found)
        shown |= set(found)
        folds += re.findall(r"steps_cursor=(\d+)&amp;until=(\d+)", opened)
    assert len(shown) == 250


@pytest.mark.parametrize("name", ["py2311-pg-portable", "py320-sqlite-default"])
def test_a_list_reads_only_the_columns_it_shows_in_one_query(
    vera: User, sdk_fixtures: dict[str, dict[str, Any]], name: str
) -> None:
    """A 2.31.1 schema keeps every payload in the status row: a list page must not drag
    them along (nor fetch a deferred column row by row)."""
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    from workflows import systemdb

    fixture = sdk_fixtures[name]
    app = registered(fixture)
    client = signed_in(vera)
    api(client, f"/apps/{app.name}/workflows")  # the schema is introspected once
    with CaptureQueriesContext(connections[systemdb.alias_for(app)]) as reads:
        status, page = api(client, f"/apps/{app.name}/workflows", limit=50)
    assert status == 200, page
    assert page["items"]
    assert all(item["created_at"] for item in page["items"])
    (query,) = [q["sql"] for q in reads.captured_queries]
    for payload in ('"inputs"', '"output"', '"error"', '"request"'):
        assert payload not in query
    status, loaded = api(client, f"/apps/{app.name}/workflows", limit=50, load_input="true")
    assert any(item["input"] is not None for item in loaded["items"])


@pytest.mark.parametrize(
    "name",
    ["py320-sqlite-default", "py320-pg-portable", "py2311-sqlite-default", "ts502-pg-default"],
)
def test_a_workflows_extras_are_read_on_every_schema(
    vera: User, sdk_fixtures: dict[str, dict[str, Any]], name: str
) -> None:
    """Events with their history, messages, streams, children and forks: one statement over
    whatever tables and columns each SDK's schema has."""
    from asgiref.sync import async_to_sync

    from workflows.sources import DatabaseSource, Detail, source_for

    fixture = sdk_fixtures[name]
    source = async_to_sync(source_for)(registered(fixture))
    assert isinstance(source, DatabaseSource)

    def extras(workflow_id: str) -> Any:
        return source._detail(workflow_id).extras

    events = extras(by_role(fixture, "events"))
    assert "stage" in {e.key for e in events.events}
    if source.schema.has("streams"):
        assert events.streams["progress"]
    assert all(e.value.format for e in events.events)
    if source.schema.has("workflow_events_history"):
        history = events.history
        assert history
        assert history == sorted(history, key=lambda h: (h.function_id, h.key))
    messages = extras(by_role(fixture, "recv")).notifications
    assert {m.topic for m in messages} == {"greeting", "unread", None}
    assert {m.topic: m.consumed for m in messages}["greeting"] is True
    assert {m.topic: m.consumed for m in messages}["unread"] is False
    assert all(m.created_at is not None for m in messages)
    assert [m.created_at for m in messages] == sorted(m.created_at for m in messages)
    # Its relatives are its family, read apart.
    parent = source._family(by_role(fixture, "parent")).children.shown
    assert [c.workflow_id for c in parent] == [by_role(fixture, "parent-child")]
    assert parent[0].status
    fork = next(w for w in fixture["workflows"] if w["role"] == "fork")
    forked = source._family(str(fork.get("forked_from") or by_role(fixture, "success")))
    assert fork["workflow_id"] in [f.workflow_id for f in forked.forks.shown]
    assert source._detail("no-such-workflow") == Detail(None)


@pytest.mark.parametrize("name", ["py320-pg-default", "py320-sqlite-default"])
def test_a_workflows_page_reads_it_in_one_round_trip_and_the_same_as_one_read_at_a_time(
    vera: User, sdk_fixtures: dict[str, dict[str, Any]], name: str
) -> None:
    """The status row, the outline of every step and the extras go to a Postgres server as
    one query (one after another to SQLite); what comes back is what the reads return one
    at a time, except that no step's output is read: a step's panel asks for its own."""
    from asgiref.sync import async_to_sync

    from workflows.sources import DatabaseSource, outline_step, source_for

    fixture = sdk_fixtures[name]
    source = async_to_sync(source_for)(registered(fixture))
    assert isinstance(source, DatabaseSource)
    alias = systemdb.alias_for(source.application)
    postgres = connections[alias].vendor == "postgresql"
    parent = by_role(fixture, "parent")
    with CaptureQueriesContext(connections[alias]) as queries:
        detail = source._detail(parent)
    assert len(queries) == (1 if postgres else 3)
    assert queries[0]["sql"].count("; ") == (2 if postgres else 0)
    statements = [sql for q in queries for sql in q["sql"].split("; ")]
    steps_sql = [sql for sql in statements if "operation_outputs" in sql]
    assert steps_sql
    assert all('."output"' not in sql for sql in steps_sql)
    assert detail.workflow == source._get(parent)
    assert detail.outline is not None
    one_by_one = source._steps(parent, None, 1000).items
    assert detail.outline.steps == [outline_step(step) for step in one_by_one]
    assert any(step.output is not None for step in one_by_one)
    assert detail.outline.cut is False
    assert detail.workflow is not None
    assert detail.workflow.workflow_id == parent
    assert detail.workflow.input is not None
    family = source._family(parent)
    assert [c.workflow_id for c in family.children.shown] == [by_role(fixture, "parent-child")]
    assert source._detail("no-such-workflow").workflow is None


def test_statements_run_together_keep_their_own_rows_and_a_timeout_among_them_says_so(
    vera: User, sdk_fixtures: dict[str, dict[str, Any]], settings: Any
) -> None:
    """Each statement's rows come back in order; a statement stopped by the statement
    timeout in the middle fails the read with the same advice as one sent alone, and the
    connection is usable after."""
    from asgiref.sync import async_to_sync

    from workflows.sources import SlowQuery, _on_thread, _together

    settings.SYSTEM_DB_STATEMENT_TIMEOUT_MS = 50
    application = registered(sdk_fixtures["py320-pg-default"])
    alias = systemdb.alias_for(application)
    rows = _together(
        alias, [("SELECT %s", [1]), ("SELECT %s UNION ALL SELECT %s", [2, 3]), ("SELECT 4", [])]
    )
    assert rows == [[(1,)], [(2,), (3,)], [(4,)]]

    def slow_in_the_middle() -> None:
        _together(alias, [("SELECT 1", []), ("SELECT pg_sleep(2)", []), ("SELECT 3", [])])

    with pytest.raises(SlowQuery, match="stopped this query after 50 ms"):
        async_to_sync(_on_thread(slow_in_the_middle))()
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT 42")
        assert cursor.fetchone() == (42,)


def test_list_rows_read_without_models_match_the_model_instances_of_every_sdk(
    vera: User, sdk_fixtures: dict[str, dict[str, Any]]
) -> None:
    """A list without payloads builds its rows from the columns alone; every field it shows
    is what the same rows read as model instances (with their payloads) show, for every
    SDK's schema, its older ones (columns missing) included, and for the ENQUEUED list."""
    from asgiref.sync import async_to_sync

    from workflows.sources import DatabaseSource, ListQuery, source_for

    for name, fixture in sdk_fixtures.items():
        source = async_to_sync(source_for)(registered(fixture))
        assert isinstance(source, DatabaseSource), name
        for status in (None, ["ENQUEUED"], ["SUCCESS", "ERROR"]):
            plain = source._list(ListQuery(status=status, limit=4))
            full = source._list(
                ListQuery(status=status, limit=4, load_input=True, load_output=True)
            )
            assert plain.items, (name, status)
            assert plain.next_cursor == full.next_cursor, (name, status)
            for shown, whole in zip(plain.items, full.items, strict=True):
                assert shown == dataclasses.replace(whole, input=None, output=None, error=None)
                assert shown.created_at is not None
        systemdb.forget(source.application)
        source.application.delete()


Row = tuple[str, str, str, str | None, int, int]


@pytest.fixture
def enqueued_copy(
    sdk_fixtures: dict[str, dict[str, Any]],
) -> Iterator[tuple[Application, list[Row]]]:
    """A copy of a real DBOS 3.2 workflow_status table (its indexes with it) in a schema of
    its own, filled with ENQUEUED workflows over three queues, two priorities and none, with
    ties on created_at, among others; dropped afterwards."""
    import psycopg

    fixture = sdk_fixtures["py320-pg-default"]
    schema = "enqueued_copy"
    rows: list[Row] = []
    for n in range(400):
        status = "ENQUEUED" if n % 3 else ("PENDING", "SUCCESS", "ERROR")[n % 9 // 3]
        queue = ("alpha", "beta", "gamma", None)[n % 7 % 4] if n != 13 else None
        created = 1_700_000_000_000 + (n // 4) * 1000  # four rows to a millisecond
        rows.append((f"wf-{n:04d}", status, f"job-{n % 2}", queue, n % 2 * 3, created))
    empty_schema_copy(fixture["url"], schema)
    with psycopg.connect(fixture["url"], autocommit=True) as conn, conn.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {schema}.workflow_status (workflow_uuid, status, name, queue_name,"
            " priority, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, 0)",
            rows,
        )
    application = Application.objects.create(
        name="enqueued", system_database_url=fixture["url"], system_database_schema=schema
    )
    yield application, rows
    systemdb.forget(application)
    with psycopg.connect(fixture["url"], autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.mark.parametrize("name", [None, ["job-1"]])
def test_the_newest_enqueued_workflows_are_found_queue_by_queue_exactly_as_one_query_would(
    vera: User,
    enqueued_copy: tuple[Application, list[Row]],
    name: list[str] | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through DBOS's in-flight index, queue by queue and priority by priority (and the
    few with no queue), page after page: the same rows in the same order as the plain
    newest-first query, each once."""
    from asgiref.sync import async_to_sync

    from workflows.sources import DatabaseSource, ListQuery, source_for

    application, rows = enqueued_copy
    source = async_to_sync(source_for)(application)
    assert isinstance(source, DatabaseSource)
    assert source.schema.queue_index
    newest_first = sorted(rows, key=lambda row: (row[5], row[0]), reverse=True)
    expected = [
        wid
        for wid, status, job, *_ in newest_first
        if status == "ENQUEUED" and (name is None or job in name)
    ]
    assert any(queue is None and status == "ENQUEUED" for _, status, _, queue, _, _ in rows)
    seen: list[str] = []
    cursor = None
    alias = systemdb.alias_for(application)
    with CaptureQueriesContext(connections[alias]) as queries:
        while True:
            page = source._list(
                ListQuery(status=["ENQUEUED"], workflow_name=name, limit=7, cursor=cursor)
            )
            seen += [item.workflow_id for item in page.items]
            cursor = page.next_cursor
            if cursor is None:
                break
    assert seen == expected
    assert all("WITH RECURSIVE" in q["sql"] for q in queries if "workflow_status" in q["sql"])
    pages = sum(1 for q in queries if "WITH RECURSIVE" in q["sql"])
    assert pages >= 3
    plain = DatabaseSource(application, dataclasses.replace(source.schema, queue_index=False))
    first = plain._list(ListQuery(status=["ENQUEUED"], workflow_name=name, limit=7))
    assert [item.workflow_id for item in first.items] == expected[:7]


def test_a_schema_says_whether_it_has_the_in_flight_index(
    sdk_fixtures: dict[str, dict[str, Any]], system_databases: None
) -> None:
    for name, has_it in (("py320-pg-default", True), ("ts502-pg-default", True)):
        schema = systemdb.schema_of(registered(sdk_fixtures[name]))
        assert schema.queue_index is has_it, name
    sqlite = systemdb.schema_of(registered(sdk_fixtures["py320-sqlite-default"]))
    assert sqlite.queue_index is False


def test_forgetting_an_application_closes_its_pooled_connections(
    vera: User, sdk_fixtures: dict[str, dict[str, Any]]
) -> None:
    """A changed URL or schema (or a gone application) closes the old pool: its idle
    connections would hold server slots until the process ends."""
    import psycopg

    from workflows.sources import DatabaseSource

    fixture = sdk_fixtures["py320-pg-default"]
    application = registered(fixture)
    source = DatabaseSource(application, systemdb.schema_of(application))
    assert source._get(by_role(fixture, "success")) is not None
    alias = systemdb.alias_for(application)
    count = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid() AND query LIKE %s"
    )
    with psycopg.connect(fixture["url"], autocommit=True) as conn:

        def pooled() -> int:
            # Our pool's connections are idle, their last statement one of ours.
            row = conn.execute(count, ("%workflow_status%",)).fetchone()
            return int(row[0]) if row else 0

        assert pooled() >= 1
        systemdb.forget(application)
        assert alias not in connections.settings
        assert pooled() == 0
