"""Every filter of the workflow list, read from the system database (Postgres and SQLite),
in the API and in the console: exactly the workflows that match, newest first, page after
page."""

import re
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from stepchange.models import Application
from stepchange.services import api_token_create
from tests.conftest import make_user, signed_in
from tests.sdk_fixtures import empty_schema_copy
from workflows import systemdb

# (id, status, name, queue, executor, version, forked from, parent, created ms)
Row = tuple[str, str, str, str | None, str, str, str | None, str | None, int]
BASE_MS = 1_700_000_000_000
STATUSES = ("SUCCESS", "ERROR", "PENDING", "ENQUEUED", "CANCELLED")


def varied_rows() -> list[Row]:
    rows = []
    for n in range(240):
        rows.append(
            (
                f"wf-{n:04d}",
                STATUSES[n % 5],
                f"job-{n % 3}",
                ("mail", "bill", None, None)[n % 4],
                f"exec-{n % 3}",
                f"v{n % 4}",
                "wf-0001" if n % 11 == 0 else None,
                "wf-0002" if n % 13 == 0 else None,
                BASE_MS + (n // 2) * 60_000,  # two to a minute: ties on created_at
            )
        )
    return rows


INSERT = (
    "INSERT INTO {table} (workflow_uuid, status, name, queue_name, executor_id,"
    " application_version, forked_from, parent_workflow_id, created_at, updated_at)"
    " VALUES ({marks})"
)


@pytest.fixture(params=["postgres", "sqlite"])
def varied(
    request: pytest.FixtureRequest,
    sdk_fixtures: dict[str, dict[str, Any]],
    system_databases: None,
    tmp_path: Path,
) -> Iterator[tuple[Application, list[Row]]]:
    """A real DBOS 3.2 system database holding only the rows above: a schema copied from the
    Postgres fixture's, or a copy of the SQLite fixture's file emptied."""
    rows = varied_rows()
    values = [(*row, row[-1]) for row in rows]
    if request.param == "postgres":
        import psycopg

        fixture = sdk_fixtures["py320-pg-default"]
        schema = "varied_copy"
        empty_schema_copy(fixture["url"], schema)
        sql = INSERT.format(table=f"{schema}.workflow_status", marks=", ".join(["%s"] * 10))
        with psycopg.connect(fixture["url"], autocommit=True) as conn, conn.cursor() as cursor:
            cursor.executemany(sql, values)
        application = Application.objects.create(
            name="varied", system_database_url=fixture["url"], system_database_schema=schema
        )
        yield application, rows
        systemdb.forget(application)
        with psycopg.connect(fixture["url"], autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
        return
    fixture = sdk_fixtures["py320-sqlite-default"]
    path = tmp_path / "varied.sqlite"
    shutil.copy(fixture["path"], path)
    with sqlite3.connect(path) as db:
        for table in ("operation_outputs", "workflow_events", "notifications", "streams"):
            db.execute(f"DELETE FROM {table}")
        for table in ("workflow_input", "workflow_output"):
            db.execute(f"DELETE FROM {table}")
        db.execute("DELETE FROM workflow_status")
        db.executemany(INSERT.format(table="workflow_status", marks=", ".join("?" * 10)), values)
    application = Application.objects.create(name="varied", system_database_url=f"sqlite:///{path}")
    yield application, rows
    systemdb.forget(application)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")


# Each filter as the API takes it, and which rows it keeps.
FILTERS: list[tuple[dict[str, str], Callable[[Row], bool]]] = [
    ({"status": "ERROR,ENQUEUED"}, lambda r: r[1] in ("ERROR", "ENQUEUED")),
    ({"workflow_name": "job-2"}, lambda r: r[2] == "job-2"),
    ({"queue_name": "mail"}, lambda r: r[3] == "mail"),
    ({"queue_name": "mail,bill"}, lambda r: r[3] in ("mail", "bill")),
    ({"executor_id": "exec-1"}, lambda r: r[4] == "exec-1"),
    ({"application_version": "v2,v3"}, lambda r: r[5] in ("v2", "v3")),
    ({"forked_from": "wf-0001"}, lambda r: r[6] == "wf-0001"),
    ({"parent_workflow_id": "wf-0002"}, lambda r: r[7] == "wf-0002"),
    ({"workflow_id_prefix": "wf-01"}, lambda r: r[0].startswith("wf-01")),
    (
        {"start_time": iso(BASE_MS + 30 * 60_000), "end_time": iso(BASE_MS + 50 * 60_000)},
        lambda r: BASE_MS + 30 * 60_000 <= r[8] <= BASE_MS + 50 * 60_000,
    ),
    (
        {"status": "SUCCESS", "executor_id": "exec-0", "application_version": "v0,v2"},
        lambda r: r[1] == "SUCCESS" and r[4] == "exec-0" and r[5] in ("v0", "v2"),
    ),
]


def newest_first(rows: list[Row], keep: Callable[[Row], bool]) -> list[str]:
    kept = sorted((row for row in rows if keep(row)), key=lambda r: (r[8], r[0]), reverse=True)
    return [row[0] for row in kept]


@pytest.mark.parametrize(
    ("query", "keep"), FILTERS, ids=lambda f: "-".join(f) if isinstance(f, dict) else ""
)
def test_the_api_lists_exactly_what_each_filter_keeps_page_after_page(
    varied: tuple[Application, list[Row]], query: dict[str, str], keep: Callable[[Row], bool]
) -> None:
    application, rows = varied
    viewer = make_user(username="vic", role="viewer")
    _, token = api_token_create(user=viewer, name="t")
    client = Client(headers={"Authorization": f"Bearer {token}"})
    expected = newest_first(rows, keep)
    assert expected, "a filter that keeps nothing shows nothing"
    seen: list[str] = []
    cursor = None
    while True:
        asked: dict[str, Any] = {**query, "limit": 7}
        if cursor:
            asked["cursor"] = cursor
        page = client.get(f"/api/v1/apps/{application.name}/workflows", asked)
        assert page.status_code == 200, page.content
        body = page.json()
        assert body["source"] == "system database"
        seen += [item["workflow_id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == expected


@pytest.mark.parametrize(
    ("query", "keep"), FILTERS, ids=lambda f: "-".join(f) if isinstance(f, dict) else ""
)
def test_the_console_list_shows_exactly_what_each_filter_keeps(
    varied: tuple[Application, list[Row]],
    query: dict[str, str],
    keep: Callable[[Row], bool],
) -> None:
    application, rows = varied
    vera: User = make_user(username="vera", role="viewer")
    form = dict(query)
    # The form's statuses are boxes, one parameter each; children are listed as rows too
    # (they nest under their parents unless asked for: test_workflow_list.py).
    statuses = form.pop("status").split(",") if "status" in form else []
    asked: dict[str, Any] = {**form, "status": statuses, "limit": 200, "all_levels": "on"}
    page = signed_in(vera).get(f"/apps/{application.name}/workflows/", asked)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'role="alert"' not in html, html
    shown = re.findall(
        rf'<td class="col-id id"><a href="/apps/{application.name}/workflows/([^/]+)/"', html
    )
    assert shown == newest_first(rows, keep)


def test_the_queued_page_counts_what_each_queue_holds(
    varied: tuple[Application, list[Row]],
) -> None:
    """Per queue: enqueued, running and delayed, beside its configuration when the queues
    table has one (this database has no such table: the page says the queues are not in
    it); then the queued workflows themselves."""
    application, rows = varied
    vera: User = make_user(username="vera", role="viewer")
    page = signed_in(vera).get(f"/apps/{application.name}/queued/", {"limit": 200})
    assert page.status_code == 200
    html = page.content.decode()
    for queue in ("bill", "mail"):
        counts = [
            sum(1 for r in rows if r[3] == queue and r[1] == status)
            for status in ("ENQUEUED", "PENDING")
        ]
        cells = "".join(f'<td class="num">{count}</td>' for count in [*counts, 0])
        assert f">{queue}</a></td>\n    {cells}" in html, queue
    assert html.count("not in the queues table") == 2
    shown = re.findall(
        rf'<td class="col-id id"><a href="/apps/{application.name}/workflows/([^/]+)/"', html
    )
    assert shown == newest_first(
        rows, lambda r: r[3] is not None and r[1] in ("ENQUEUED", "PENDING")
    )


@pytest.mark.parametrize(
    ("query", "keep"), FILTERS[:4], ids=lambda f: "-".join(f) if isinstance(f, dict) else ""
)
def test_the_console_list_counts_what_each_filter_keeps(
    varied: tuple[Application, list[Row]],
    query: dict[str, str],
    keep: Callable[[Row], bool],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The rows come first; their count is asked after them, each time they come (their
    refresh too): exact up to a cap, then "over" it."""
    from workflows import sources

    application, rows = varied
    client = signed_in(make_user(username="vera", role="viewer"))
    url = f"/apps/{application.name}/workflows/"
    form = dict(query)
    statuses = form.pop("status").split(",") if "status" in form else []
    asked: dict[str, Any] = {**form, "status": statuses, "all_levels": "on"}
    page = client.get(url, asked).content.decode()
    again = client.get(url, asked, headers={"HX-Request": "true"}).content.decode()
    for shown in (page, again):
        [counting] = re.findall(r'<span class="row-count" hx-get="\?([^"]*)"', shown)
        assert counting.endswith("count=1")
    expected = len(newest_first(rows, keep))
    counted = client.get(url, {**asked, "count": "1"}, headers={"HX-Request": "true"})
    assert counted.content.decode() == f"· {expected:,} in all "
    monkeypatch.setattr(sources, "COUNT_CAP", expected - 1)
    over = client.get(url, {**asked, "count": "1"}, headers={"HX-Request": "true"})
    assert over.content.decode() == f"· over {expected - 1:,} in all "


@pytest.mark.parametrize("varied", ["postgres"], indirect=True)
def test_a_count_that_would_take_long_is_given_up(
    varied: tuple[Application, list[Row]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counting stops at COUNT_TIMEOUT_MS on Postgres (its own statement timeout, shorter
    than the lists'): the line says it was not counted, and why."""
    from workflows import sources

    application, _ = varied
    filtered = sources.DatabaseSource._filtered

    def slow(source: Any, query: Any) -> Any:
        # Every row takes 5 ms to look at: 240 rows, over a second.
        return filtered(source, query).extra(where=["pg_sleep(0.005) IS NOT NULL"])

    monkeypatch.setattr(sources.DatabaseSource, "_filtered", slow)
    client = signed_in(make_user(username="vera", role="viewer"))
    counted = client.get(
        f"/apps/{application.name}/workflows/", {"count": "1"}, headers={"HX-Request": "true"}
    )
    assert counted.content.decode() == "· not counted: it would take too long "
