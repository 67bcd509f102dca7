"""The list's filters beyond names and queues (the rest of what `list_workflows` takes): who
started a workflow, its schedule, when it completed and left its queue, whether it was
forked or has a parent, and its attributes. Read from a real DBOS 3.2 system database of
each kind, in the API, the console and a saved view; and every bad value said, not
guessed at."""

import json
import re
import shutil
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import User
from django.test import Client

from stepchange.models import Application, SavedView
from stepchange.services import api_token_create
from tests.conftest import make_user, signed_in
from tests.sdk_fixtures import RUN, empty_schema_copy
from workflows import systemdb

BASE_MS = 1_700_000_000_000
STATUSES = ("SUCCESS", "ERROR", "PENDING", "ENQUEUED", "CANCELLED")
ODD_TEXT = "o'brien \"%_\\ ünïcode ☃"
ODD_KEY = "we'ird \"key%_"
COLUMNS = (
    "workflow_uuid",
    "status",
    "name",
    "authenticated_user",
    "schedule_name",
    "completed_at",
    "started_at_epoch_ms",
    "was_forked_from",
    "parent_workflow_id",
    "attributes",
    "created_at",
    "updated_at",
)


def _attributes(n: int) -> str | None:
    """Attributes as DBOS stores them: JSON text, the JSON literal null, or none at all."""
    kinds: list[Any] = [
        {"tenant": "acme", "tier": 3},
        {"tenant": "acme", "tier": "3"},
        {"tenant": ODD_TEXT, "tier": 1.0, ODD_KEY: True},
        None,
        {"tenant": "globex", "nested": {"a": 1}, "flag": False, "gone": None},
    ]
    kind = kinds[n % 5]
    if kind is None:
        return "null" if n % 2 else None
    return json.dumps(kind)


def rows() -> list[dict[str, Any]]:
    found = []
    for n in range(120):
        created = BASE_MS + n * 60_000
        found.append(
            {
                "workflow_uuid": f"wf-{n:04d}",
                "status": STATUSES[n % 5],
                "name": f"job-{n % 3}",
                "authenticated_user": ("alice", "bob", None)[n % 3],
                "schedule_name": "nightly" if n % 8 == 0 else ("hourly" if n % 7 == 0 else None),
                # Completed, and dequeued, in another order than created (a list with
                # either range is ordered by that time).
                "completed_at": None if n % 4 == 3 else created + (n * 7 % 5) * 180_000,
                "started_at_epoch_ms": created + (n * 3 % 4) * 150_000 if n % 2 == 0 else None,
                "was_forked_from": n % 6 == 0,
                "parent_workflow_id": "wf-0000" if n % 9 == 1 else None,
                "attributes": _attributes(n),
                "created_at": created,
                "updated_at": created,
            }
        )
    # Completed, by its executor's clock, half an hour before its client's clock created it.
    skewed = BASE_MS + 200 * 60_000
    found.append(
        {
            **found[1],
            "workflow_uuid": "wf-skewed",
            "completed_at": skewed - 30 * 60_000,
            "created_at": skewed,
            "updated_at": skewed,
        }
    )
    return found


def _held(row: dict[str, Any]) -> dict[str, Any]:
    value = json.loads(row["attributes"]) if row["attributes"] else None
    return value if isinstance(value, dict) else {}


def _has(**wanted: Any) -> Callable[[dict[str, Any]], bool]:
    """A row whose attributes hold each key with the value (of the same JSON kind)."""

    def keep(row: dict[str, Any]) -> bool:
        held = _held(row)
        return all(
            key in held and held[key] == value and type(held[key]) is type(value)
            for key, value in wanted.items()
        )

    return keep


@pytest.fixture(params=["postgres", "sqlite"])
def lived(
    request: pytest.FixtureRequest,
    sdk_fixtures: dict[str, dict[str, Any]],
    system_databases: None,
    tmp_path: Path,
) -> Iterator[tuple[Application, list[dict[str, Any]]]]:
    """A real DBOS 3.2 system database holding only the rows above."""
    made = rows()
    values = [tuple(row[c] for c in COLUMNS) for row in made]
    names = ", ".join(COLUMNS)
    if request.param == "postgres":
        import psycopg

        fixture = sdk_fixtures["py320-pg-default"]
        schema = f"more_filters_{RUN}_{uuid.uuid4().hex[:6]}"
        empty_schema_copy(fixture["url"], schema)
        marks = ", ".join("%s::jsonb" if c == "attributes" else "%s" for c in COLUMNS)
        sql = f"INSERT INTO {schema}.workflow_status ({names}) VALUES ({marks})"
        with psycopg.connect(fixture["url"], autocommit=True) as conn, conn.cursor() as cursor:
            cursor.executemany(sql, values)
        application = Application.objects.create(
            name="lived", system_database_url=fixture["url"], system_database_schema=schema
        )
        yield application, made
        systemdb.forget(application)
        with psycopg.connect(fixture["url"], autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
        return
    path = tmp_path / "lived.sqlite"
    shutil.copy(sdk_fixtures["py320-sqlite-default"]["path"], path)
    with sqlite3.connect(path) as db:
        for table in ("operation_outputs", "workflow_events", "notifications", "streams"):
            db.execute(f"DELETE FROM {table}")
        for table in ("workflow_input", "workflow_output", "workflow_status"):
            db.execute(f"DELETE FROM {table}")
        marks = ", ".join("?" * len(COLUMNS))
        db.executemany(f"INSERT INTO workflow_status ({names}) VALUES ({marks})", values)
    application = Application.objects.create(name="lived", system_database_url=f"sqlite:///{path}")
    yield application, made
    systemdb.forget(application)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")


FROM, TO = BASE_MS + 20 * 60_000, BASE_MS + 70 * 60_000
SKEWED_FROM, SKEWED_TO = BASE_MS + 165 * 60_000, BASE_MS + 175 * 60_000

# Each filter as the API takes it (a list: `attribute` repeats), and which rows it keeps.
FILTERS: list[tuple[list[tuple[str, str]], Callable[[dict[str, Any]], bool]]] = [
    ([("authenticated_user", "alice")], lambda r: r["authenticated_user"] == "alice"),
    (
        [("authenticated_user", "alice,bob")],
        lambda r: r["authenticated_user"] in ("alice", "bob"),
    ),
    ([("schedule_name", "nightly")], lambda r: r["schedule_name"] == "nightly"),
    (
        [("completed_after", iso(FROM)), ("completed_before", iso(TO))],
        lambda r: r["completed_at"] is not None and FROM <= r["completed_at"] <= TO,
    ),
    (
        [("completed_after", iso(FROM))],
        lambda r: r["completed_at"] is not None and r["completed_at"] >= FROM,
    ),
    (
        [("dequeued_after", iso(FROM)), ("dequeued_before", iso(TO))],
        lambda r: r["started_at_epoch_ms"] is not None and FROM <= r["started_at_epoch_ms"] <= TO,
    ),
    (
        [("completed_after", iso(SKEWED_FROM)), ("completed_before", iso(SKEWED_TO))],
        lambda r: r["workflow_uuid"] == "wf-skewed",
    ),
    ([("was_forked_from", "true")], lambda r: r["was_forked_from"]),
    ([("was_forked_from", "false")], lambda r: not r["was_forked_from"]),
    ([("has_parent", "true")], lambda r: r["parent_workflow_id"] is not None),
    ([("has_parent", "false")], lambda r: r["parent_workflow_id"] is None),
    ([("attribute", "tenant=acme")], _has(tenant="acme")),
    ([("attribute", "tenant=acme"), ("attribute", "tier=3")], _has(tenant="acme", tier=3)),
    ([("attribute", 'tier="3"')], _has(tier="3")),
    ([("attribute", "flag=false")], _has(flag=False)),
    ([("attribute", "gone=null")], lambda r: "gone" in _held(r)),
    ([("attribute", f"tenant={ODD_TEXT}")], _has(tenant=ODD_TEXT)),
    ([("attribute", f"{ODD_KEY}=true")], _has(**{ODD_KEY: True})),
    (
        [
            ("authenticated_user", "alice"),
            ("attribute", "tenant=acme"),
            ("completed_after", iso(FROM)),
        ],
        lambda r: (
            r["authenticated_user"] == "alice"
            and _has(tenant="acme")(r)
            and r["completed_at"] is not None
            and r["completed_at"] >= FROM
        ),
    ),
]
# Text that would be a pattern anywhere LIKE were used: here it is only itself.
MATCHING_NOTHING = [
    [("attribute", "tenant=acm%")],
    [("attribute", "tenant=_cme")],
    [("attribute", "tenant=o'brien%")],
    [("attribute", "tenant=' OR '1'='1")],
    [("attribute", "tier=3.5")],
    [("schedule_name", "nightl%")],
    [("authenticated_user", "ali_e")],
]


def newest_first(
    made: list[dict[str, Any]], keep: Callable[[dict[str, Any]], bool], column: str = "created_at"
) -> list[str]:
    kept = [row for row in made if keep(row)]
    kept.sort(key=lambda r: (r[column], r["workflow_uuid"]), reverse=True)
    return [row["workflow_uuid"] for row in kept]


def listed(
    made: list[dict[str, Any]], keep: Callable[[dict[str, Any]], bool], query: list[tuple[str, str]]
) -> list[str]:
    """What a list shows for `query`: newest first by creation, or, with a completion (else
    a dequeue) range, by that time, through DBOS's index of it."""
    asked = {name for name, _ in query}
    if asked & {"completed_after", "completed_before"}:
        return newest_first(made, keep, "completed_at")
    if asked & {"dequeued_after", "dequeued_before"}:
        return newest_first(made, keep, "started_at_epoch_ms")
    return newest_first(made, keep)


def _label(value: Any) -> str:
    return "&".join(f"{k}={v}" for k, v in value) if isinstance(value, list) else ""


def api_client() -> Client:
    viewer = make_user(username=f"vic-{uuid.uuid4().hex[:6]}", role="viewer")
    _, token = api_token_create(user=viewer, name="t")
    return Client(headers={"Authorization": f"Bearer {token}"})


def api_list(client: Client, app: str, query: list[tuple[str, str]]) -> list[str]:
    """Every workflow the API lists for `query`, page after page."""
    seen: list[str] = []
    cursor = None
    while True:
        asked = [*query, ("limit", "7")] + ([("cursor", cursor)] if cursor else [])
        page = client.get(f"/api/v1/apps/{app}/workflows?{_encode(asked)}")
        assert page.status_code == 200, page.content
        body = page.json()
        assert body["source"] == "system database"
        seen += [item["workflow_id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen


def _encode(pairs: list[tuple[str, str]]) -> str:
    return urlencode(pairs)


def shown_ids(html: str, app: str) -> list[str]:
    return re.findall(rf'<td class="col-id id"><a href="/apps/{app}/workflows/([^/]+)/"', html)


@pytest.mark.parametrize(("query", "keep"), FILTERS, ids=_label)
def test_the_api_lists_exactly_what_each_new_filter_keeps_page_after_page(
    lived: tuple[Application, list[dict[str, Any]]],
    query: list[tuple[str, str]],
    keep: Callable[[dict[str, Any]], bool],
) -> None:
    application, made = lived
    expected = listed(made, keep, query)
    assert expected, "a filter that keeps nothing shows nothing"
    assert len(expected) < len(made), "a filter that keeps everything shows nothing"
    assert api_list(api_client(), application.name, query) == expected


@pytest.mark.parametrize(("query", "keep"), FILTERS, ids=_label)
def test_the_console_shows_exactly_what_each_new_filter_keeps_with_a_chip_for_it(
    lived: tuple[Application, list[dict[str, Any]]],
    query: list[tuple[str, str]],
    keep: Callable[[dict[str, Any]], bool],
) -> None:
    application, made = lived
    vera: User = make_user(username="vera", role="viewer")
    asked = _encode([*query, ("limit", "200"), ("all_levels", "on")])
    page = signed_in(vera).get(f"/apps/{application.name}/workflows/?{asked}")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'role="alert"' not in html, html
    assert shown_ids(html, application.name) == listed(made, keep, query)
    chips = html[html.index('class="filter-chips"') :]
    chips = chips[: chips.index("</ul>")]
    # One chip a parameter, and one saying children are rows, unless a parent filter is set.
    levels = 0 if any(name == "has_parent" for name, _ in query) else 1
    assert chips.count('class="chip-remove"') == len(query) + levels


@pytest.mark.parametrize("query", MATCHING_NOTHING, ids=_label)
def test_odd_characters_in_a_filter_match_only_themselves(
    lived: tuple[Application, list[dict[str, Any]]], query: list[tuple[str, str]]
) -> None:
    application, _ = lived
    assert api_list(api_client(), application.name, query) == []


def test_an_attribute_chip_removes_that_attribute_only(
    lived: tuple[Application, list[dict[str, Any]]],
) -> None:
    application, made = lived
    vera: User = make_user(username="vera", role="viewer")
    asked = _encode([("attribute", "tenant=acme"), ("attribute", "tier=3")])
    html = signed_in(vera).get(f"/apps/{application.name}/workflows/?{asked}").content.decode()
    remove = re.search(
        r'<li class="chip">Attribute: <strong>tier=3</strong> <a href="([^"]+)"', html
    )
    assert remove is not None, html
    url = remove.group(1).replace("&amp;", "&")
    assert "tier" not in url
    assert "attribute=tenant%3Dacme" in url
    html = signed_in(vera).get(url).content.decode()
    top_level = [r for r in made if r["parent_workflow_id"] is None]
    assert shown_ids(html, application.name) == newest_first(top_level, _has(tenant="acme"))[:50]
    # The form shows the attribute still set, and a box for another.
    assert 'name="attribute" value="tenant=acme"' in html
    assert 'name="attribute" value=""' in html


def test_a_saved_view_keeps_the_new_filters(
    lived: tuple[Application, list[dict[str, Any]]],
) -> None:
    application, made = lived
    vera: User = make_user(username="vera", role="viewer")
    client = signed_in(vera)
    query = _encode(
        [("attribute", f"tenant={ODD_TEXT}"), ("was_forked_from", "false"), ("has_parent", "false")]
    )
    saved = client.post(f"/apps/{application.name}/views/", {"name": "odd", "query": query})
    assert saved.status_code == 302
    view = SavedView.objects.get(name="odd")
    assert view.query == query
    page = client.get(f"/apps/{application.name}/workflows/")
    link = re.search(r'<a href="\?([^"]+)">odd</a>', page.content.decode())
    assert link is not None
    saved_query = link.group(1).replace("&amp;", "&")
    opened = client.get(f"/apps/{application.name}/workflows/?{saved_query}")
    expected = newest_first(
        made,
        lambda r: (
            _has(tenant=ODD_TEXT)(r)
            and not r["was_forked_from"]
            and r["parent_workflow_id"] is None
        ),
    )
    assert expected
    assert shown_ids(opened.content.decode(), application.name) == expected


def said(detail: str | list[dict[str, Any]]) -> str:
    """A 400's detail as text: a sentence, or the rules of the document a value broke
    (each named by its parameter)."""
    if isinstance(detail, str):
        return detail
    return " ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in detail)


BAD_API: list[tuple[list[tuple[str, str]], str]] = [
    # Declared in the document (its pattern and length), so answered by its rules.
    ([("attribute", "tenant")], "attribute.0: String should match pattern"),
    ([("attribute", "=acme")], "attribute.0: String should match pattern"),
    ([("attribute", " \t=acme")], "attribute.0: String should match pattern"),
    ([("attribute", "tenant=" + "x" * 1000)], "attribute.0: String should have at most 1000"),
    ([("attribute", "tier=3"), ("attribute", "tier=4")], "given twice"),
    (
        [("completed_after", "2026-01-02T00:00:00"), ("completed_before", "2026-01-01T00:00:00")],
        "The completed range ends (2026-01-01T00:00:00+00:00) before it starts",
    ),
    (
        [("dequeued_after", "2026-01-02T00:00:00"), ("dequeued_before", "2026-01-01T00:00:00")],
        "The dequeued range ends",
    ),
    (
        [("start_time", "2026-01-02T00:00:00"), ("end_time", "2026-01-01T00:00:00")],
        "The created range ends",
    ),
    ([("completed_after", "last tuesday")], "completed_after must be an ISO 8601 time"),
    ([("dequeued_before", "soon")], "dequeued_before must be an ISO 8601 time"),
]


@pytest.mark.parametrize(("query", "detail"), BAD_API, ids=_label)
def test_bad_new_filters_are_a_400_that_says_why(
    lived: tuple[Application, list[dict[str, Any]]], query: list[tuple[str, str]], detail: str
) -> None:
    application, _ = lived
    answer = api_client().get(f"/api/v1/apps/{application.name}/workflows?{_encode(query)}")
    assert answer.status_code == 400
    assert detail in said(answer.json()["detail"])


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query",
    [
        [("was_forked_from", "maybe")],
        [("has_parent", "sometimes")],
        [("attribute", f"k{n}=v") for n in range(11)],
    ],
    ids=["was_forked_from", "has_parent", "eleven attributes"],
)
def test_values_the_api_declares_are_checked_before_any_read(
    query: list[tuple[str, str]],
) -> None:
    """No application is needed to refuse them: they never reach a database."""
    answer = api_client().get(f"/api/v1/apps/nowhere/workflows?{_encode(query)}")
    assert answer.status_code == 400
    assert answer.json()["detail"]


BAD_CONSOLE: list[tuple[list[tuple[str, str]], str]] = [
    ([("attribute", "tenant")], "An attribute filter is key=value, such as tenant=acme"),
    (
        [("completed_after", "2026-01-02T00:00"), ("completed_before", "2026-01-01T00:00")],
        "The completed range ends",
    ),
    (
        [("dequeued_after", "2026-01-02T00:00"), ("dequeued_before", "2026-01-01T00:00")],
        "The dequeued range ends",
    ),
    ([("has_parent", "sometimes")], "Select a valid choice"),
    ([("attribute", f"k{n}=v") for n in range(11)], "At most 10 attribute filters"),
]


@pytest.mark.parametrize(("query", "message"), BAD_CONSOLE, ids=_label)
def test_the_console_says_what_is_wrong_with_a_filter_and_lists_nothing(
    lived: tuple[Application, list[dict[str, Any]]], query: list[tuple[str, str]], message: str
) -> None:
    application, _ = lived
    vera: User = make_user(username="vera", role="viewer")
    page = signed_in(vera).get(f"/apps/{application.name}/workflows/?{_encode(query)}")
    assert page.status_code == 400
    html = page.content.decode()
    assert message in html.replace("&quot;", '"').replace("&#x27;", "'")
    assert shown_ids(html, application.name) == []
    assert '<details class="more-filters" open>' in html


def test_an_object_attribute_is_matched_by_containment_on_postgres_and_refused_on_sqlite(
    lived: tuple[Application, list[dict[str, Any]]],
) -> None:
    """DBOS's own list matches attributes by JSONB containment on Postgres and refuses the
    filter on SQLite. StepChange matches single values on SQLite too, and says so where
    it cannot: an object or a list."""
    application, made = lived
    query = [("attribute", 'nested={"a": 1}')]
    url = f"/api/v1/apps/{application.name}/workflows?{_encode(query)}"
    answer = api_client().get(url)
    if "sqlite" in application.system_database_url:
        assert answer.status_code == 400
        assert answer.json()["detail"].startswith("attributes: On SQLite an attribute is matched")
        vera: User = make_user(username="vera", role="viewer")
        page = signed_in(vera).get(f"/apps/{application.name}/workflows/?{_encode(query)}")
        assert page.status_code == 400
        assert "On SQLite an attribute is matched to one value" in page.content.decode()
        return
    assert answer.status_code == 200
    found = [item["workflow_id"] for item in answer.json()["items"]]
    assert found == newest_first(made, lambda r: _held(r).get("nested") == {"a": 1})


@pytest.fixture
def without_attributes(
    sdk_fixtures: dict[str, dict[str, Any]], system_databases: None
) -> Iterator[Application]:
    """A Postgres system database whose workflow_status has no attributes, schedule_name or
    completed_at column (as DBOS schemas older than these columns)."""
    import psycopg

    fixture = sdk_fixtures["py320-pg-default"]
    schema = f"older_{RUN}_{uuid.uuid4().hex[:6]}"
    empty_schema_copy(fixture["url"], schema)
    with psycopg.connect(fixture["url"], autocommit=True) as conn:
        for column in ("attributes", "schedule_name", "completed_at"):
            conn.execute(f"ALTER TABLE {schema}.workflow_status DROP COLUMN {column} CASCADE")
        conn.execute(
            f"INSERT INTO {schema}.workflow_status (workflow_uuid, status, created_at, updated_at)"
            " VALUES ('wf-old', 'SUCCESS', 1, 1)"
        )
    application = Application.objects.create(
        name="older", system_database_url=fixture["url"], system_database_schema=schema
    )
    yield application
    systemdb.forget(application)
    with psycopg.connect(fixture["url"], autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ([("attribute", "tenant=acme")], "attributes: This system database has no attributes"),
        ([("schedule_name", "nightly")], "schedule_name: This system database has no schedule"),
        ([("completed_after", "2026-01-01T00:00:00")], "has no completed_at column"),
    ],
    ids=["attributes", "schedule_name", "completed_after"],
)
def test_a_filter_on_a_column_the_schema_lacks_is_refused_not_ignored(
    without_attributes: Application, query: list[tuple[str, str]], detail: str
) -> None:
    app = without_attributes.name
    unfiltered = api_client().get(f"/api/v1/apps/{app}/workflows")
    assert [item["workflow_id"] for item in unfiltered.json()["items"]] == ["wf-old"]
    answer = api_client().get(f"/api/v1/apps/{app}/workflows?{_encode(query)}")
    assert answer.status_code == 400
    assert detail in answer.json()["detail"]
    vera: User = make_user(username="vera", role="viewer")
    page = signed_in(vera).get(f"/apps/{app}/workflows/?{_encode(query)}")
    assert page.status_code == 400
    html = page.content.decode()
    assert "so the list cannot be filtered by" in html
    assert shown_ids(html, app) == []


def test_a_bulk_action_previews_exactly_the_workflows_the_new_filters_keep(
    lived: tuple[Application, list[dict[str, Any]]],
) -> None:
    application, made = lived
    olga = make_user(username="olga", role="operator")
    _, token = api_token_create(user=olga, name="t")
    client = Client(headers={"Authorization": f"Bearer {token}"})
    url = f"/api/v1/apps/{application.name}/bulk-actions/preview"
    filters = {"attribute": ["tenant=acme"], "was_forked_from": False, "has_parent": False}
    answer = client.post(url, {"action": "cancel", "filters": filters}, "application/json")
    assert answer.status_code == 200, answer.content
    expected = newest_first(
        made,
        lambda r: (
            _held(r).get("tenant") == "acme"
            and not r["was_forked_from"]
            and r["parent_workflow_id"] is None
        ),
    )
    assert answer.json()["count"] == len(expected) > 0
    bad = {"action": "cancel", "filters": {"attribute": ["tenant"]}}
    refused = client.post(url, bad, "application/json")
    assert refused.status_code == 400
    assert "attribute.0: String should match pattern" in said(refused.json()["detail"])


@pytest.mark.parametrize(
    ("range_names", "column", "label"),
    [
        (("completed_after", "completed_before"), "completed_at", "Completed"),
        (("dequeued_after", "dequeued_before"), "started_at_epoch_ms", "Dequeued"),
    ],
)
def test_a_range_of_completion_or_dequeue_lists_in_that_order_and_shows_that_time(
    lived: tuple[Application, list[dict[str, Any]]],
    range_names: tuple[str, str],
    column: str,
    label: str,
) -> None:
    application, made = lived
    query = [(range_names[0], iso(FROM)), (range_names[1], iso(TO))]
    asked = _encode([*query, ("limit", "200"), ("all_levels", "on")])
    page = signed_in(make_user(username="vera", role="viewer")).get(
        f"/apps/{application.name}/workflows/?{asked}"
    )
    html = page.content.decode()
    expected = newest_first(
        made, lambda r: r[column] is not None and FROM <= r[column] <= TO, column
    )
    assert shown_ids(html, application.name) == expected
    assert expected != newest_first(made, lambda r: r["workflow_uuid"] in expected)
    assert f">{label}</th>" in html
    first = next(r for r in made if r["workflow_uuid"] == expected[0])
    shown = datetime.fromtimestamp(first[column] / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
    assert f'title="{shown} UTC"' in html


def test_a_cursor_of_one_order_is_refused_by_a_list_in_another(
    lived: tuple[Application, list[dict[str, Any]]],
) -> None:
    application, _ = lived
    client = api_client()
    base = f"/api/v1/apps/{application.name}/workflows?limit=3"
    by_creation = client.get(base).json()["next_cursor"]
    completed = _encode([("completed_after", iso(FROM)), ("completed_before", iso(TO))])
    by_completion = client.get(f"{base}&{completed}").json()["next_cursor"]
    assert by_creation
    assert by_completion
    for url in (
        f"{base}&{completed}&cursor={by_creation}",
        f"{base}&cursor={by_completion}",
        f"{base}&dequeued_after={iso(FROM)}&cursor={by_completion}",
    ):
        refused = client.get(url)
        assert refused.status_code == 400, url
        assert refused.json()["detail"] == "cursor is not one this API gave out"
    assert client.get(f"{base}&{completed}&cursor={by_completion}").status_code == 200
