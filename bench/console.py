"""Console views on a 1,000,000-workflow system database, side by side in one run.

    .venv/bin/python bench/seed.py          # once: seeds sc_bench_1m (about 75 s)
    .venv/bin/python bench/console.py [--url postgresql://postgres@127.0.0.1:5432/sc_bench_1m]
                                      [--runs 50] [--budget 3] [--argus | --argus-json FILE]
                                      [--json out.json]

For every view of the console (the workflow list, first page and page 1,000, unfiltered
and with each filter; the detail of a typical workflow and of one with 1,000 steps, whose
first 100 steps the page and API show, and which the API also gives all at once) it
measures, on the database `bench/seed.py` built:

- sql: the best hand-written SQL for the view, sent with psycopg straight to Postgres
  (wall time per view on one open connection, round trip and fetch included; p50/p95 over
  `--runs` runs after a warm-up, at most `--budget` seconds per view). Once per query,
  EXPLAIN (ANALYZE, BUFFERS) reports the indexes it uses and its planning + execution time.
- stepchange: StepChange's own list and detail pages (a viewer's session) and API (a
  viewer's token) through Daphne, on the same database.
- argus (`--argus`): dbos-argus on the same database, by running bench/console_argus.py
  with its own Python 3.12 virtualenv (var/argus-venv) and merging its figures.

Lists are newest first and paged by keyset, `ORDER BY created_at DESC, workflow_uuid DESC
LIMIT 50` with `(created_at, workflow_uuid) < (cursor)` for the next page: never OFFSET
(OFFSET is used once, at setup, to find the 50,000th row's cursor) and never COUNT(*).
"""

# SQL here is assembled from this file's own constants; values are bound as parameters.
# ruff: noqa: S608

import argparse
import base64
import functools
import http.client
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.console_argus import chosen  # noqa: E402

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/sc_bench_1m"
PAGE = 50
DEEP_PAGE = 1000  # "page 1,000": rows 49,951..50,000 of the (filtered) list

# What a list row shows: the status row's columns, no payloads.
LIST_COLUMNS = (
    "workflow_uuid, status, name, class_name, config_name, queue_name, executor_id,"
    " application_version, created_at, updated_at, completed_at, started_at_epoch_ms,"
    " recovery_attempts, parent_workflow_id, forked_from, authenticated_user"
)
ORDER = "ORDER BY created_at DESC, workflow_uuid DESC"
# `manage.py shell -c` this: a viewer named bench, signed in; prints the session key.
VIEWER_SESSION = (
    "from django.contrib.auth.models import User, Group\n"
    "from django.test import Client\n"
    "u = User.objects.create_user('bench', password='bench-pass-9912')\n"
    "u.groups.add(Group.objects.get(name='viewer'))\n"
    "c = Client(); c.force_login(u)\n"
    "print(c.cookies['sessionid'].value)"
)
KEYSET = "(created_at, workflow_uuid) < (%(c_at)s, %(c_id)s)"

DETAIL_STATUS_SQL = """
SELECT s.*, i.inputs AS input_payload, o.output AS output_payload, o.error AS error_payload
FROM dbos.workflow_status s
LEFT JOIN dbos.workflow_input i ON i.workflow_uuid = s.workflow_uuid
LEFT JOIN dbos.workflow_output o ON o.workflow_uuid = s.workflow_uuid
WHERE s.workflow_uuid = %(id)s
"""
DETAIL_STEPS_SQL = """
SELECT function_id, function_name, output, error, child_workflow_id,
       started_at_epoch_ms, completed_at_epoch_ms, serialization
FROM dbos.operation_outputs
WHERE workflow_uuid = %(id)s
ORDER BY function_id
LIMIT %(limit)s
"""
# A detail shows the first 100 steps (one more tells whether there are more), or all.
STEPS_SHOWN = 100


# --------------------------------------------------------------------------------------
# Views
# --------------------------------------------------------------------------------------


@dataclass
class Filter:
    """One list filter: its SQL predicate, and the same filter as query parameters."""

    key: str  # e.g. "status=ERROR"
    where: str  # SQL predicate on dbos.workflow_status, with %(name)s parameters
    params: dict[str, Any]  # values for `where`
    query: dict[str, str]  # the filter as a console URL would carry it (for StepChange)
    # The column the list is ordered by: creation, or the time a completion or dequeue
    # range filters on (StepChange orders such a list by it, through DBOS's index of it).
    order: str = "created_at"
    # StepChange's name of that order, which its cursors carry ("" for creation).
    cursor_order: str = ""

    def order_sql(self) -> str:
        return f"ORDER BY {self.order} DESC, workflow_uuid DESC"

    def keyset_sql(self) -> str:
        return f"({self.order}, workflow_uuid) < (%(c_at)s, %(c_id)s)"


@dataclass
class View:
    key: str  # stable name, shared with console_argus.py: "list/first", "detail/typical"
    kind: str  # "list", "detail" or "versions"
    filter: Filter | None = None
    # For lists: the keyset cursor (created_at, workflow_uuid) of the page's previous row,
    # None for the first page; `page` is the page number it stands for.
    cursor: tuple[int, str] | None = None
    page: int = 1
    workflow_id: str | None = None  # for details
    note: str = ""
    # A detail read with every step at once (the API's `limit=1000`); the page and the API
    # otherwise show the first 100 steps and page the rest.
    all_steps: bool = False


@dataclass
class Measurement:
    system: str  # "sql", "stepchange page", "stepchange api", "argus", ...
    p50_ms: float | None
    p95_ms: float | None
    runs: int
    rows: int | None = None
    size_bytes: int | None = None
    indexes: str = ""  # indexes the plan uses (sql)
    plan_ms: float | None = None  # EXPLAIN ANALYZE planning + execution (sql)
    note: str = ""


@dataclass
class Results:
    views: list[View] = field(default_factory=list)
    cells: dict[str, dict[str, Measurement]] = field(default_factory=dict)

    def add(self, view_key: str, measurement: Measurement) -> None:
        self.cells.setdefault(view_key, {})[measurement.system] = measurement


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def sample(run: Callable[[], Any], *, runs: int, budget: float, warmup: int = 3) -> list[float]:
    """Wall times (ms) of `run()`: after `warmup` calls, `runs` calls or `budget` seconds."""
    for _ in range(warmup):
        run()
    times: list[float] = []
    deadline = time.perf_counter() + budget
    while len(times) < runs and (len(times) < 5 or time.perf_counter() < deadline):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return times


# --------------------------------------------------------------------------------------
# Setup: the filters, the ids, the page-1,000 cursors
# --------------------------------------------------------------------------------------


def typical_workflow(url: str) -> str:
    """The id of the seeded database's typical workflow (bench/seed.py picked it)."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT typical_id FROM public.sc_bench_seed").fetchone()
    assert row is not None, "seed the database first: bench/seed.py"
    return str(row[0])


def seed_info(conn: psycopg.Connection) -> dict[str, Any]:
    row = conn.execute(
        "SELECT workflows, workflow_rows, step_rows, typical_id, thousand_steps_id"
        " FROM public.sc_bench_seed"
    ).fetchone()
    if row is None:
        raise SystemExit("not seeded: run .venv/bin/python bench/seed.py first")
    return dict(
        zip(("workflows", "workflow_rows", "step_rows", "typical", "thousand"), row, strict=True)
    )


def build_filters(conn: psycopg.Connection) -> list[Filter]:
    def one(query: str) -> Any:
        row = conn.execute(query).fetchone()
        assert row is not None, query
        return row[0]

    newest_version = one(
        "SELECT application_version FROM dbos.workflow_status ORDER BY created_at DESC LIMIT 1"
    )
    oldest_version = one(
        "SELECT application_version FROM dbos.workflow_status ORDER BY created_at LIMIT 1"
    )
    # A fork source and a parent from the middle of the range (ids from the indexes).
    fork_source = one(
        "SELECT forked_from FROM dbos.workflow_status WHERE forked_from IS NOT NULL"
        " ORDER BY forked_from LIMIT 1 OFFSET 5000"
    )
    parent = one(
        "SELECT parent_workflow_id FROM dbos.workflow_status"
        " WHERE parent_workflow_id IS NOT NULL ORDER BY parent_workflow_id LIMIT 1 OFFSET 25000"
    )
    newest = one("SELECT max(created_at) FROM dbos.workflow_status")
    day = 86_400_000
    range_from, range_to = newest - 11 * day, newest - 10 * day

    def f(key: str, where: str, query: dict[str, str], order: str = "", **params: Any) -> Filter:
        column = {"completed": "completed_at", "dequeued": "started_at_epoch_ms"}
        return Filter(key, where, params, query, column.get(order, "created_at"), order)

    return [
        f("status=ERROR", "status = %(status)s", {"status": "ERROR"}, status="ERROR"),
        f("status=PENDING", "status = %(status)s", {"status": "PENDING"}, status="PENDING"),
        f("status=ENQUEUED", "status = %(status)s", {"status": "ENQUEUED"}, status="ENQUEUED"),
        f(
            "name=order_workflow",
            "name = %(name)s",
            {"name": "order_workflow"},
            name="order_workflow",
        ),
        f(
            "name=rebuild_search_index (rare)",
            "name = %(name)s",
            {"name": "rebuild_search_index"},
            name="rebuild_search_index",
        ),
        f("queue=orders", "queue_name = %(queue)s", {"queue": "orders"}, queue="orders"),
        f(
            "executor=executor-3",
            "executor_id = %(executor)s",
            {"executor": "executor-3"},
            executor="executor-3",
        ),
        f(
            "version=newest",
            "application_version = %(version)s",
            {"version": newest_version},
            version=newest_version,
        ),
        f(
            "version=oldest",
            "application_version = %(version)s",
            {"version": oldest_version},
            version=oldest_version,
        ),
        # An id prefix as a range on the primary key: LIKE 'ab%' cannot use it under the
        # database's C.UTF-8 collation, a range can (hex digits sort the same in any).
        f(
            "id prefix=ab",
            "workflow_uuid >= %(lo)s AND workflow_uuid < %(hi)s",
            {"id_prefix": "ab"},
            lo="ab",
            hi="ac",
        ),
        f(
            "id prefix=abc",
            "workflow_uuid >= %(lo)s AND workflow_uuid < %(hi)s",
            {"id_prefix": "abc"},
            lo="abc",
            hi="abd",
        ),
        f(
            "forked_from=<id>",
            "forked_from = %(forked_from)s",
            {"forked_from": fork_source},
            forked_from=fork_source,
        ),
        f(
            "parent=<id>",
            "parent_workflow_id = %(parent)s",
            {"parent": parent},
            parent=parent,
        ),
        f(
            "created in a 1-day range",
            "created_at >= %(from_ms)s AND created_at < %(to_ms)s",
            {"created_after": str(range_from), "created_before": str(range_to)},
            from_ms=range_from,
            to_ms=range_to,
        ),
        # The filters list_workflows takes besides those. A completion or dequeue range
        # bounds creation too (as StepChange's list does: a workflow completes, and leaves
        # its queue, after it is created, give or take an hour of clocks). In the seeded
        # database alice started about 2 % of the workflows (no index: a scan), nightly
        # ran about 30 (DBOS's partial index) and tenant acme holds 5 % (its GIN index).
        f(
            "user=alice (no index)",
            "authenticated_user = %(user)s",
            {"user": "alice"},
            user="alice",
        ),
        f(
            "schedule=nightly",
            "schedule_name = %(schedule)s",
            {"schedule": "nightly"},
            schedule="nightly",
        ),
        f(
            "completed in a 1-day range",
            "completed_at >= %(from_ms)s AND completed_at <= %(to_ms)s"
            " AND created_at <= %(to_ms)s + 3600000",
            {"completed_after": str(range_from), "completed_before": str(range_to)},
            order="completed",
            from_ms=range_from,
            to_ms=range_to,
        ),
        f(
            "dequeued in a 1-day range",
            "started_at_epoch_ms >= %(from_ms)s AND started_at_epoch_ms <= %(to_ms)s"
            " AND created_at <= %(to_ms)s + 3600000",
            {"dequeued_after": str(range_from), "dequeued_before": str(range_to)},
            order="dequeued",
            from_ms=range_from,
            to_ms=range_to,
        ),
        f(
            "was_forked_from=true (no index)",
            "was_forked_from",
            {"was_forked_from": "true"},
        ),
        f("has_parent=true", "parent_workflow_id IS NOT NULL", {"has_parent": "true"}),
        f(
            "attribute tenant=acme",
            "attributes @> %(attributes)s::jsonb",
            {"attribute": "tenant=acme"},
            attributes='{"tenant": "acme"}',
        ),
    ]


SEARCH_NAME = Filter(
    "search=order_workflow",
    "name = %(name)s AND parent_workflow_id IS NULL",
    {"name": "order_workflow"},
    {"q": "order_workflow"},
)
SEARCH_ID = Filter(
    "search=ab",
    "workflow_uuid >= %(lo)s AND workflow_uuid < %(hi)s",
    {"lo": "ab", "hi": "ac"},
    {"q": "ab"},
)


def deep_cursor(conn: psycopg.Connection, flt: Filter | None) -> tuple[tuple[int, str], int] | None:
    """The cursor of page 1,000 (or of the last page if there are fewer), and its number.

    Setup only: this OFFSET query is never measured. None when there is a single page.
    """
    where = f"WHERE {flt.where}" if flt else ""
    params = flt.params if flt else {}
    column, order = (flt.order, flt.order_sql()) if flt else ("created_at", ORDER)
    row = conn.execute(
        f"SELECT {column}, workflow_uuid FROM dbos.workflow_status {where} {order}"
        f" LIMIT 1 OFFSET {(DEEP_PAGE - 1) * PAGE - 1}",
        params,
    ).fetchone()
    if row is not None:
        return (row[0], row[1]), DEEP_PAGE
    matching = conn.execute(f"SELECT count(*) FROM dbos.workflow_status {where}", params).fetchone()
    total = matching[0] if matching else 0
    pages = (total + PAGE - 1) // PAGE
    if pages <= 1:
        return None
    row = conn.execute(
        f"SELECT {column}, workflow_uuid FROM dbos.workflow_status {where} {order}"
        f" LIMIT 1 OFFSET {(pages - 1) * PAGE - 1}",
        params,
    ).fetchone()
    assert row is not None
    return (row[0], row[1]), pages


def build_views(conn: psycopg.Connection, info: dict[str, Any]) -> list[View]:
    views = [View("list/first", "list")]
    cursor = deep_cursor(conn, None)
    assert cursor is not None
    views.append(View("list/page1000", "list", cursor=cursor[0], page=cursor[1]))
    for flt in build_filters(conn):
        views.append(View(f"list/first?{flt.key}", "list", filter=flt))
        deep = deep_cursor(conn, flt)
        if deep is not None:
            (c, page) = deep
            note = "" if page == DEEP_PAGE else f"last page: {page}"
            views.append(
                View(f"list/page1000?{flt.key}", "list", filter=flt, cursor=c, page=page, note=note)
            )
    # The search box: a name it has seen (read as that name, top-level workflows only, as
    # the list is by default) and the start of an id (every level, as an id must find a
    # child). Their SQL is the same filter written by hand.
    views.append(View("list/first?search=order_workflow (a name)", "list", filter=SEARCH_NAME))
    views.append(View("list/first?search=ab (an id's start)", "list", filter=SEARCH_ID))
    views.append(View("detail/typical", "detail", workflow_id=info["typical"]))
    views.append(View("detail/1000-steps", "detail", workflow_id=info["thousand"]))
    views.append(
        View(
            "detail/1000-steps, all at once", "detail", workflow_id=info["thousand"], all_steps=True
        )
    )
    views.append(View("versions", "versions"))
    return views


# --------------------------------------------------------------------------------------
# The best hand-written SQL
# --------------------------------------------------------------------------------------


# The newest ENQUEUED workflows, queue by queue and priority by priority, through DBOS's
# index of in-flight workflows (queue_name, status, priority, created_at): the plain query
# walks the created_at index past every other status. Those with no queue (which DBOS
# never writes) behind a fence, so that they too are looked for through the index.
ENQUEUED_SQL = """
WITH RECURSIVE grp(queue_name, priority) AS (
    (SELECT queue_name, priority FROM dbos.workflow_status
     WHERE status = 'ENQUEUED' AND queue_name IS NOT NULL ORDER BY queue_name, priority LIMIT 1)
    UNION ALL
    SELECT probe.queue_name, probe.priority FROM grp CROSS JOIN LATERAL (
        SELECT w.queue_name, w.priority FROM dbos.workflow_status AS w
        WHERE w.status = 'ENQUEUED' AND w.queue_name >= grp.queue_name
          AND (w.queue_name, w.priority) > (grp.queue_name, grp.priority)
        ORDER BY w.queue_name, w.priority LIMIT 1
    ) AS probe
)
SELECT * FROM (
    SELECT page.* FROM grp CROSS JOIN LATERAL (
        SELECT {columns} FROM dbos.workflow_status
        WHERE status = 'ENQUEUED' AND queue_name = grp.queue_name AND priority = grp.priority
        {keyset} {order} LIMIT {page}
    ) AS page
    UNION ALL (
        SELECT * FROM (
            SELECT {columns} FROM dbos.workflow_status
            WHERE status = 'ENQUEUED' AND queue_name IS NULL {keyset} OFFSET 0
        ) AS no_queue {order} LIMIT {page}
    )
) AS found {order} LIMIT {page}
"""


def list_sql(view: View) -> tuple[str, dict[str, Any]]:
    if view.filter is not None and view.filter.key == "status=ENQUEUED":
        keyset, bounds = "", {}
        if view.cursor:
            keyset = f"AND {KEYSET}"
            bounds = {"c_at": view.cursor[0], "c_id": view.cursor[1]}
        sql = ENQUEUED_SQL.format(columns=LIST_COLUMNS, keyset=keyset, order=ORDER, page=PAGE)
        return sql, bounds
    conditions: list[str] = []
    params: dict[str, Any] = {}
    order, keyset = ORDER, KEYSET
    if view.filter:
        conditions.append(view.filter.where)
        params.update(view.filter.params)
        order, keyset = view.filter.order_sql(), view.filter.keyset_sql()
    if view.cursor:
        conditions.append(keyset)
        params.update(c_at=view.cursor[0], c_id=view.cursor[1])
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    return (
        f"SELECT {LIST_COLUMNS} FROM dbos.workflow_status {where} {order} LIMIT {PAGE}",
        params,
    )


def plan_facts(conn: psycopg.Connection, query: str, params: dict[str, Any]) -> tuple[str, float]:
    """Indexes used and planning + execution ms, from one EXPLAIN (ANALYZE, BUFFERS)."""
    row = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {query}", params).fetchone()
    assert row is not None
    doc = row[0][0]
    found: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        kind = node.get("Node Type", "")
        if "Index Name" in node:
            short = "only " if kind == "Index Only Scan" else ""
            label = f"{short}{node['Index Name']}"
            if label not in found:
                found.append(label)
        elif kind == "Seq Scan" and "Seq Scan" not in found:
            found.append(f"Seq Scan {node.get('Relation Name', '')}".strip())
        for child in node.get("Plans", []):
            walk(child)

    walk(doc["Plan"])
    return ", ".join(found), doc["Planning Time"] + doc["Execution Time"]


def payload_size(rows: list[tuple]) -> int:
    return sum(len(str(v)) for r in rows for v in r if v is not None)


# The Versions page: the registered versions, and the PENDING and ENQUEUED workflows pinned
# to each, at most COUNT_CAP + 1 of each status read through DBOS's partial indexes.
VERSIONS_SQL = """
SELECT version_id, version_name, version_timestamp, created_at FROM dbos.application_versions
WHERE application_name = %(app)s OR application_name IS NULL ORDER BY version_timestamp DESC
"""
PINNED_SQL = """
SELECT 'PENDING', application_version, COUNT(*) FROM (
    SELECT application_version FROM dbos.workflow_status WHERE status = 'PENDING' LIMIT 10001
) AS pending GROUP BY application_version
UNION ALL
SELECT 'ENQUEUED', application_version, COUNT(*) FROM (
    SELECT application_version FROM dbos.workflow_status WHERE status = 'ENQUEUED' LIMIT 10001
) AS enqueued GROUP BY application_version
"""


def sql_queries(view: View) -> list[tuple[str, dict[str, Any]]]:
    """The hand-written SQL of a view: the page of rows, or the workflow with its payloads
    and its first 100 steps (one more tells whether there are more; all 1,000 at once), or
    the versions with their pinned counts."""
    if view.kind == "list":
        return [list_sql(view)]
    if view.kind == "versions":
        return [(VERSIONS_SQL, {"app": "bench"}), (PINNED_SQL, {})]
    limit = 1000 if view.all_steps else STEPS_SHOWN + 1
    return [
        (DETAIL_STATUS_SQL, {"id": view.workflow_id}),
        (DETAIL_STEPS_SQL, {"id": view.workflow_id, "limit": limit}),
    ]


def sql_runner(
    conn: psycopg.Connection, view: View, fetched: list[list[tuple]]
) -> Callable[[], None]:
    queries = sql_queries(view)

    def run() -> None:
        fetched.clear()
        for query, params in queries:
            fetched.append(conn.execute(query, params, prepare=False).fetchall())

    return run


def measure_sql(conn: psycopg.Connection, views: list[View], results: Results, args) -> None:
    for view in views:
        queries = sql_queries(view)
        fetched: list[list[tuple]] = []
        run = sql_runner(conn, view, fetched)
        times = sample(run, runs=args.runs, budget=args.budget)
        facts = [plan_facts(conn, q, p) for q, p in queries]
        rows = sum(len(r) for r in fetched)
        results.add(
            view.key,
            Measurement(
                "sql",
                statistics.median(times),
                percentile(times, 0.95),
                len(times),
                rows=rows,
                size_bytes=sum(payload_size(r) for r in fetched),
                indexes=" + ".join(i for i, _ in facts),
                plan_ms=sum(ms for _, ms in facts),
                note=view.note,
            ),
        )
        print(
            f"  sql {view.key:<52} p95 {percentile(times, 0.95):8.2f} ms  {rows:5d} rows",
            flush=True,
        )


# --------------------------------------------------------------------------------------
# StepChange and argus
# --------------------------------------------------------------------------------------


# The benchmark's filter names, as StepChange's list page and API call them.
STEPCHANGE_PARAMS = {
    "status": "status",
    "name": "workflow_name",
    "queue": "queue_name",
    "executor": "executor_id",
    "version": "application_version",
    "id_prefix": "workflow_id_prefix",
    "forked_from": "forked_from",
    "parent": "parent_workflow_id",
    "q": "q",
    "user": "authenticated_user",
    "schedule": "schedule_name",
    "was_forked_from": "was_forked_from",
    "has_parent": "has_parent",
    "attribute": "attribute",
}
# A time range of a filter, as epoch ms in `Filter.query`, and the console's name for each end.
TIME_PARAMS = {
    "created_after": "start_time",
    "created_before": "end_time",
    "completed_after": "completed_after",
    "completed_before": "completed_before",
    "dequeued_after": "dequeued_after",
    "dequeued_before": "dequeued_before",
}


def stepchange_query(view: View) -> dict[str, str]:
    query: dict[str, str] = {}
    for name, value in (view.filter.query if view.filter else {}).items():
        if name in TIME_PARAMS:
            moment = datetime.fromtimestamp(int(value) / 1000, tz=UTC)
            query[TIME_PARAMS[name]] = moment.isoformat()
        else:
            query[STEPCHANGE_PARAMS[name]] = value
    if view.cursor is not None:
        at, workflow_id = view.cursor
        named = f"{view.filter.cursor_order}:" if view.filter and view.filter.cursor_order else ""
        key = f"{named}{at}~{workflow_id}"
        query["cursor"] = base64.urlsafe_b64encode(key.encode()).decode()
    return query


FLOOR = "floor: a static file through Daphne"
LEARN_NAMES = (
    "from stepchange.models import Application; from workflows.names import names_seen_refresh;"
    " names_seen_refresh(Application.objects.get(name={app!r}))"
)


def fetch_all(fetch: Callable[[str, str], int], urls: list[str], system: str) -> int:
    return sum(fetch(path, system) for path in urls)


def measure_stepchange(url: str, views: list[View], results: Results, args) -> None:
    """StepChange's list and detail pages (a viewer's session) and its API (a viewer's
    token), through Daphne on this machine, on the same database."""
    from tests.e2e.servers import StepChange

    work = Path(tempfile.mkdtemp(prefix="stepchange-console-bench-"))
    server = StepChange(work, name="stepchange")
    server.start()
    try:
        server.manage("register_app", "bench-1m", "--system-database-url", url, "--schema", "dbos")
        # The versions in the database are those of the application the seed named "bench".
        server.manage("register_app", "bench", "--system-database-url", url, "--schema", "dbos")
        # The search box reads a name it has seen as that name: learn them now, as the
        # server's background loop would within its first minute.
        server.manage("shell", "-c", LEARN_NAMES.format(app="bench-1m"))
        session = server.manage("shell", "-c", VIEWER_SESSION).strip().splitlines()[-1]
        token = server.manage("create_api_token", "bench").strip()
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        headers = {
            "page": {"Cookie": f"sessionid={session}", "Host": "127.0.0.1"},
            "api": {"Authorization": f"Bearer {token}", "Host": "127.0.0.1"},
            # A part of a page, as htmx asks for it once the page has loaded.
            "part": {"Cookie": f"sessionid={session}", "Host": "127.0.0.1", "HX-Request": "true"},
        }

        def fetch(path: str, system: str) -> int:
            connection.request("GET", path, headers=headers[system])
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"{path}: {response.status} {body[:300]!r}")
            return len(body)

        for view in views:
            query = urllib.parse.urlencode(stepchange_query(view))
            if view.kind == "list":
                paths = {
                    "page": [f"/apps/bench-1m/workflows/?{query}"],
                    "api": [f"/api/v1/apps/bench-1m/workflows?{query}"],
                }
            elif view.kind == "versions":
                # No executor is connected: every version holding workflows is stranded,
                # the page's longest form.
                paths = {
                    "page": ["/apps/bench/versions/"],
                    "api": ["/api/v1/apps/bench/versions"],
                }
            else:
                wid = urllib.parse.quote(str(view.workflow_id))
                paths = {
                    "page": [f"/apps/bench-1m/workflows/{wid}/"],
                    "api": [
                        f"/api/v1/apps/bench-1m/workflows/{wid}",
                        f"/api/v1/apps/bench-1m/workflows/{wid}/steps",
                    ],
                }
                if view.all_steps:
                    # The page draws every step from its outline; the API is asked for all.
                    paths["api"] = [paths["api"][0], f"{paths['api'][1]}?limit=1000"]
                else:
                    # Its family graph, which the page asks for once loaded.
                    paths["part"] = [f"/apps/bench-1m/workflows/{wid}/?part=family"]
            for system, urls in paths.items():
                size = sum(fetch(u, system) for u in urls)
                times = sample(
                    functools.partial(fetch_all, fetch, urls, system),
                    runs=args.runs,
                    budget=args.budget,
                )
                results.add(
                    view.key,
                    Measurement(
                        f"stepchange {system}",
                        statistics.median(times),
                        percentile(times, 0.95),
                        len(times),
                        size_bytes=size,
                    ),
                )
                print(
                    f"  stepchange {system:4} {view.key:<46} p95 {percentile(times, 0.95):8.2f} ms"
                    f"  {size / 1024:7.1f} KiB",
                    flush=True,
                )
        # The floor: Daphne and Django's handler serving a static file, with no view, no
        # session and no database (the console's middleware hands it back at once).
        floor = "/static/stepchange/console.css"
        times = sample(functools.partial(fetch, floor, "page"), runs=args.runs, budget=args.budget)
        results.add(
            FLOOR,
            Measurement(
                "stepchange page", statistics.median(times), percentile(times, 0.95), len(times)
            ),
        )
        print(f"  stepchange page {FLOOR:<46} p95 {percentile(times, 0.95):8.2f} ms", flush=True)
        connection.close()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def measure_database_time(url: str, views: list[View], results: Results, args) -> None:
    """Database time per view: the time StepChange's own reads of the system database
    spend in the database driver (each query sent, run and fetched), summed per view,
    timed in this process around the same code the list and detail read through
    (`DatabaseSource`), with the same filters and cursors as the pages. Comparable, query
    for query, with the hand-written SQL: for a list the page of rows, for a detail the
    workflow with its payloads and its first 100 steps (all 1,000 for "all at once"). A
    detail's reads also fetch its lineage, events, messages and streams, which the SQL
    does not, all three statements in one query.

    The hand-written SQL is timed again here, each run right beside one of StepChange's
    ("sql beside db"), and the ratio of this column is taken to that: on a machine whose
    speed drifts within minutes, figures measured minutes apart do not compare."""
    import os

    os.environ["STEPCHANGE_DATA_DIR"] = tempfile.mkdtemp(prefix="sc-bench-db-")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stepchange.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections
    from django.http import QueryDict

    from stepchange.models import Application
    from workflows import systemdb
    from workflows.names import names_seen_refresh
    from workflows.sources import DatabaseSource
    from workflows.versions import _database_read
    from workflows.views import WorkflowFilterForm, search_read

    call_command("migrate", verbosity=0)
    application = Application.objects.create(name="bench-db", system_database_url=url)
    source = DatabaseSource(application, systemdb.schema_of(application))
    # The versions in the database are those of the application the seed named "bench".
    versions_app = Application.objects.create(name="bench", system_database_url=url)
    alias = systemdb.alias_for(application)
    names_seen_refresh(application)
    spent: list[float] = []
    sql_conn = psycopg.connect(url, autocommit=True)

    def timed(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            spent.append((time.perf_counter() - started) * 1000)

    for view in views:
        read: Callable[[], Any]
        if view.kind == "list":
            form = WorkflowFilterForm(QueryDict(urllib.parse.urlencode(stepchange_query(view))))
            assert form.is_valid(), form.errors
            search = search_read(application, form.cleaned_data.get("q", ""))
            read = functools.partial(source._list, form.query(queued=False, search=search))
        elif view.kind == "versions":
            read = functools.partial(_database_read, versions_app)
        else:
            read = functools.partial(_detail_reads, source, str(view.workflow_id))

        reads_on = systemdb.alias_for(versions_app) if view.kind == "versions" else alias

        def run(read: Callable[[], Any] = read, reads_on: str = reads_on) -> float:
            spent.clear()
            with connections[reads_on].execute_wrapper(timed):
                read()
            return sum(spent)

        run_sql = sql_runner(sql_conn, view, [])
        for _ in range(3):
            run_sql()
            run()
        times: list[float] = []
        sql_times: list[float] = []
        deadline = time.perf_counter() + args.budget
        while len(times) < args.runs and (len(times) < 5 or time.perf_counter() < deadline):
            started = time.perf_counter()
            run_sql()
            sql_times.append((time.perf_counter() - started) * 1000)
            times.append(run())
        for system, samples in (("sql beside db", sql_times), ("stepchange db", times)):
            results.add(
                view.key,
                Measurement(
                    system, statistics.median(samples), percentile(samples, 0.95), len(samples)
                ),
            )
        print(
            f"  stepchange db {view.key:<42} p95 {percentile(times, 0.95):8.2f} ms"
            f"  (sql beside it {percentile(sql_times, 0.95):.2f} ms)",
            flush=True,
        )
    sql_conn.close()


def _detail_reads(source: Any, workflow_id: str) -> None:
    # The page's read: the status row, the outline of every step and the extras, in one
    # query.
    source._detail(workflow_id)


def measure_argus(url: str, info: dict[str, Any], results: Results, args) -> None:
    """Run bench/console_argus.py (which makes its virtualenv if need be and runs itself
    with that Python) and merge its figures."""
    out = ROOT / "var" / "bench-argus.json"
    command = [
        sys.executable,
        str(ROOT / "bench" / "console_argus.py"),
        "--url",
        url,
        "--json",
        str(out),
    ]
    if args.views:
        command += ["--views", args.views]
    print("  argus:", " ".join(command), flush=True)
    proc = subprocess.run(command, cwd=ROOT, timeout=1500, check=False)
    if proc.returncode != 0:
        print(f"  argus failed (exit {proc.returncode}); see its output above")
        return
    merge_argus(out, results)


def merge_argus(path: Path, results: Results) -> None:
    for key, cell in json.loads(path.read_text())["cells"].items():
        results.add(key, Measurement(**cell))


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


BASELINES = ("sql", "sql beside db")


def print_table(results: Results) -> None:
    systems: list[str] = []
    for cells in results.cells.values():
        for system in cells:
            if system not in systems:
                systems.append(system)
    keys = [v.key for v in results.views]
    keys += [k for k in results.cells if k not in keys]  # views only another system has
    width = max(len(k) for k in keys)
    print()
    print(
        "p50 / p95 in ms (wall time per view); x sql = p95 / sql p95"
        " (for stepchange db: / sql beside db p95)"
    )
    head = f"{'view':<{width}}"
    for system in systems:
        head += f" | {system + ' p50/p95':>24}"
        if system not in BASELINES:
            head += f" {'x sql':>7}"
    print(head)
    for key in keys:
        cells = results.cells.get(key, {})
        line = f"{key:<{width}}"
        sql_p95 = cells["sql"].p95_ms if "sql" in cells else None
        for system in systems:
            m = cells.get(system)
            if m is None:
                text = "-"
            elif m.p50_ms is None:
                text = "n/a"
            else:
                text = f"{fmt(m.p50_ms)} / {fmt(m.p95_ms)}"
            line += f" | {text:>24}"
            if system not in BASELINES:
                base = sql_p95
                if system == "stepchange db" and "sql beside db" in cells:
                    base = cells["sql beside db"].p95_ms
                ratio = f"{m.p95_ms / base:.1f}" if m and m.p95_ms is not None and base else "-"
                line += f" {ratio:>7}"
        print(line)
    print()
    print("hand-written SQL: EXPLAIN (ANALYZE, BUFFERS) planning+execution, indexes used")
    for key in keys:
        m = results.cells.get(key, {}).get("sql")
        if m is None:
            continue
        note = f"  [{m.note}]" if m.note else ""
        print(
            f"{key:<{width}}  {fmt(m.plan_ms, 3):>8} ms  {m.rows or 0:5d} rows  {m.indexes}{note}"
        )
    notes = [
        (key, system, m.note)
        for key, cells in results.cells.items()
        for system, m in cells.items()
        if system != "sql" and m.note
    ]
    if notes:
        print()
        for key, system, note in notes:
            print(f"{system} {key}: {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--runs", type=int, default=50, help="timed runs per view (max)")
    parser.add_argument("--budget", type=float, default=3.0, help="seconds per view (max)")
    parser.add_argument("--argus", action="store_true", help="also run bench/console_argus.py")
    parser.add_argument(
        "--argus-json", type=Path, help="merge figures console_argus.py --json wrote earlier"
    )
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    parser.add_argument(
        "--views",
        help="only these views, comma-separated keys; a key ending in * stands for those"
        " starting with it (e.g. 'list/first,list/first?search*,detail/*')",
    )
    args = parser.parse_args()

    results = Results()
    with psycopg.connect(args.url, autocommit=True) as conn:
        info = seed_info(conn)
        print(
            f"database: {info['workflow_rows']:,} workflows, {info['step_rows']:,} steps;"
            f" typical {info['typical']}, 1,000 steps {info['thousand']}"
        )
        started = time.perf_counter()
        results.views = build_views(conn, info)
        if args.views:
            results.views = [v for v in results.views if chosen(v.key, args.views)]
        print(f"setup (filters, page-1,000 cursors): {time.perf_counter() - started:.1f} s")
        measure_sql(conn, results.views, results, args)
    measure_stepchange(args.url, results.views, results, args)
    measure_database_time(args.url, results.views, results, args)
    if args.argus:
        measure_argus(args.url, info, results, args)
    elif args.argus_json:
        merge_argus(args.argus_json, results)
    print_table(results)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "views": [asdict(v) for v in results.views],
                    "cells": {
                        k: {s: asdict(m) for s, m in c.items()} for k, c in results.cells.items()
                    },
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
