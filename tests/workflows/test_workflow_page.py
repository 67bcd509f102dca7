"""Stories about one workflow's page: its timeline, its folded step table, its step panel
and its failure header, over databases real SDKs wrote and a 1,000-step workflow written
into a copy of one."""

import re
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connections
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from stepchange.models import Application
from tests.conftest import make_user, signed_in
from tests.sdk_fixtures import by_role, registered
from workflows import systemdb

LONG_ID = "crawl-1000"
# 2026-11-22 08:00:00 UTC: the workflow was created then and waited 300 ms in its queue.
CREATED_MS = 1795334400000
QUEUED_MS = 300
FIRST_PAGE, LAST_PAGE = 2, 991  # 990 fetch_page steps
SLOWEST, FAILED = 700, 450
TAIL = [
    "DBOS.sleep",
    "merge",
    "summarize",
    "summarize",
    "store",
    "index",
    "report",
    "notify",
    "done",
]


def long_workflow(source: Path, path: Path, model: str) -> str:
    """A copy of the SQLite system database at `source` with a workflow of 1,000 steps:
    `load_list`, 990 `fetch_page` (50 ms each; #700 takes 900 ms, #450 failed and was
    caught), a durable sleep and eight more, made from the workflow `model`; its id."""
    shutil.copy(source, path)
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        output, serialization = db.execute(
            "SELECT output, serialization FROM operation_outputs WHERE workflow_uuid = ?"
            " AND output IS NOT NULL ORDER BY function_id LIMIT 1",
            (model,),
        ).fetchone()
        error, error_serialization = db.execute(
            "SELECT error, serialization FROM operation_outputs WHERE error IS NOT NULL LIMIT 1"
        ).fetchone()
        status = dict(
            db.execute("SELECT * FROM workflow_status WHERE workflow_uuid = ?", (model,)).fetchone()
        )
        names = ["load_list", *["fetch_page"] * (LAST_PAGE - FIRST_PAGE + 1), *TAIL]
        rows = []
        at = CREATED_MS + QUEUED_MS
        for function_id, name in enumerate(names, start=1):
            took = 900 if function_id == SLOWEST else 500 if name == "DBOS.sleep" else 50
            failed = function_id == FAILED
            rows.append(
                (
                    LONG_ID,
                    function_id,
                    name,
                    None if failed else output,
                    error if failed else None,
                    error_serialization if failed else serialization,
                    at,
                    at + took,
                )
            )
            at += took + 2
        status |= {
            "workflow_uuid": LONG_ID,
            "name": "crawl",
            "created_at": CREATED_MS,
            "updated_at": at,
            "completed_at": at,
            "started_at_epoch_ms": CREATED_MS + QUEUED_MS,
            "queue_name": "crawls",
        }
        marks = ", ".join("?" * len(status))
        db.execute(
            f"INSERT INTO workflow_status ({', '.join(status)}) VALUES ({marks})",
            list(status.values()),
        )
        for table in ("workflow_input", "workflow_output"):
            for row in db.execute(f"SELECT * FROM {table} WHERE workflow_uuid = ?", (model,)):
                copied = dict(row) | {"workflow_uuid": LONG_ID}
                marks = ", ".join("?" * len(copied))
                db.execute(
                    f"INSERT INTO {table} ({', '.join(copied)}) VALUES ({marks})",
                    list(copied.values()),
                )
        db.executemany(
            "INSERT INTO operation_outputs (workflow_uuid, function_id, function_name, output,"
            " error, serialization, started_at_epoch_ms, completed_at_epoch_ms)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return LONG_ID


@pytest.fixture
def crawl(
    vera: User, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path
) -> tuple[Application, str]:
    fixture = sdk_fixtures["py320-sqlite-default"]
    path = tmp_path / "system.sqlite"
    workflow_id = long_workflow(Path(fixture["path"]), path, by_role(fixture, "success"))
    app = Application.objects.create(name="crawler", system_database_url=f"sqlite:///{path}")
    return app, workflow_id


def _shown_steps(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr id="step-(\d+)"', html)]


def test_a_thousand_steps_are_drawn_at_once_and_folded_to_what_matters(
    vera: User, crawl: tuple[Application, str]
) -> None:
    """Every step is a bar on the timeline, from one read; the table folds the 990 alike
    steps to their first, last, failed and slowest, and says how many it folded."""
    app, workflow_id = crawl
    url = reverse("workflow-detail", args=[app.name, workflow_id])
    client = signed_in(vera)
    client.get(url)  # the schema is introspected once
    with CaptureQueriesContext(connections[systemdb.alias_for(app)]) as reads:
        page = client.get(url)
    assert page.status_code == 200
    # SQLite: the status row, the outline and the extras (one query to Postgres).
    assert len(reads.captured_queries) == 3
    html = page.content.decode()
    assert "1,000 steps" in html
    assert html.count('class="bar ') == 1000 + 2  # the workflow's bar and its queue wait
    assert "queued on crawls" in html
    assert re.search(r"fetch_page</code></a>\s*<span class=\"tl-count\">\u00d7990</span>", html)
    # One lane per run of alike steps: the workflow, its queue wait, and 10 runs.
    assert html.count('<div class="tl-lane ') == 12
    shown = _shown_steps(html)
    assert {1, FIRST_PAGE, FAILED, SLOWEST, LAST_PAGE, 1000} <= set(shown)
    assert len(shown) < 20
    assert "··· 447 more ···" in html  # 3..449
    assert f'<tr id="step-{SLOWEST}" class="ok slowest">' in html
    assert f'<tr id="step-{FAILED}" class="failed">' in html
    # No step's output is on the page (a step's panel fetches its own).
    assert "Output <span" in html  # the workflow's own
    assert html.count('<details class="value"') == 2


def test_a_fold_opens_in_place_a_hundred_rows_at_a_time(
    vera: User, crawl: tuple[Application, str]
) -> None:
    app, workflow_id = crawl
    url = reverse("workflow-detail", args=[app.name, workflow_id])
    client = signed_in(vera)
    rows = client.get(url, {"steps_cursor": FAILED, "until": SLOWEST - 1}, HTTP_HX_REQUEST="true")
    assert rows.status_code == 200
    html = rows.content.decode()
    assert _shown_steps(html) == list(range(FAILED + 1, FAILED + 101))
    assert f"steps_cursor={FAILED + 100}&amp;until={SLOWEST - 1}" in html
    assert "··· 149 more ···" in html
    bad = client.get(url, {"steps_cursor": "1", "until": "x"}, HTTP_HX_REQUEST="true")
    assert bad.status_code == 400
    assert b'role="alert"' in bad.content


def test_the_steps_are_filtered_by_name_in_both_views(
    vera: User, crawl: tuple[Application, str]
) -> None:
    app, workflow_id = crawl
    url = reverse("workflow-detail", args=[app.name, workflow_id])
    client = signed_in(vera)
    part = client.get(url, {"part": "steps", "q": "SUMM"}, HTTP_HX_REQUEST="true")
    assert part.status_code == 200
    html = part.content.decode()
    assert "<html" not in html
    assert "2 of 1,000 steps have “SUMM” in their name." in html
    assert _shown_steps(html) == [994, 995]
    assert html.count('class="bar ') == 2 + 2
    # Without JavaScript the same filter is a page of its own, the table chosen.
    page = client.get(url, {"q": "nothing-like-it", "view": "steps"}).content.decode()
    assert "No steps with “nothing-like-it” in their name." in page
    assert 'id="view-timeline" class="timeline-view" aria-labelledby="tab-timeline" hidden' in page


def test_a_steps_panel_shows_its_value_and_its_raw_form_on_demand(
    vera: User, crawl: tuple[Application, str]
) -> None:
    app, workflow_id = crawl
    url = reverse("workflow-detail", args=[app.name, workflow_id])
    client = signed_in(vera)
    panel = client.get(url, {"step": str(FAILED), "part": "panel"}, HTTP_HX_REQUEST="true")
    assert panel.status_code == 200
    html = panel.content.decode()
    assert html.lstrip().startswith('<div class="panel-head">')
    assert f"Step {FAILED} <code>fetch_page</code>" in html
    assert "bad input" in html
    assert f'hx-get="?step={FAILED}&amp;raw=error"' in html
    assert "data-copy" in html
    raw = client.get(url, {"step": str(FAILED), "raw": "error"}, HTTP_HX_REQUEST="true")
    assert raw.status_code == 200
    assert " characters</span>" in raw.content.decode()
    ok = client.get(url, {"step": "1", "part": "panel"}, HTTP_HX_REQUEST="true").content.decode()
    assert "Output <span" in ok
    assert "Took</dt><dd>50 ms" in ok
    # Without JavaScript, ?step= is the whole page with the panel open.
    whole = client.get(url, {"step": SLOWEST}).content.decode()
    assert '<div id="step-panel" class="step-panel" role="dialog"' in whole
    assert f"Step {SLOWEST} <code>fetch_page</code>" in whole
    assert "Took</dt><dd>900 ms" in whole
    cases: list[tuple[dict[str, str], int]] = [
        ({"step": "x", "part": "panel"}, 400),
        ({"step": "5000", "part": "panel"}, 404),
        ({"step": "x"}, 400),
        ({"step": "1", "raw": "input"}, 400),
        ({"step": "5000", "raw": "output"}, 404),
    ]
    for query, status in cases:
        answer = client.get(url, query, HTTP_HX_REQUEST="true")
        assert answer.status_code == status, query
        assert b"<html" not in answer.content


def test_a_failed_workflow_opens_on_its_error_the_step_it_came_from_and_what_to_do(
    sdk_fixtures: dict[str, dict[str, Any]], system_databases: None
) -> None:
    """A red header names the error and links the step that raised it, counts the
    recovery attempts, and offers an operator the fork from the failure and an edited
    fork beside it; a viewer sees the same header without the actions."""
    fixture = sdk_fixtures["py320-sqlite-default"]
    app = registered(fixture).name
    url = reverse("workflow-detail", args=[app, by_role(fixture, "error")])
    otto = signed_in(make_user(username="otto", role="operator"))
    html = otto.get(url).content.decode()
    header = html[html.index('<section class="failure"') : html.index('<section class="actions"')]
    assert "Failed:</span> ValueError: bad input fail1" in header
    assert re.search(r'data-step="(\d+)" data-jump>#\1 <code>shout</code></a>', header)
    assert "recovery attempts: 1" in header
    assert 'data-action="fork_from_failure"' in header
    assert "Edit and fork…" in header
    actions = html[html.index('<section class="actions"') :]
    assert 'data-action="fork_from_failure"' not in actions
    vic = signed_in(make_user(username="vic", role="viewer"))
    seen = vic.get(url).content.decode()
    assert "Failed:</span> ValueError: bad input fail1" in seen
    assert "fork_from_failure" not in seen
    fine = vic.get(reverse("workflow-detail", args=[app, by_role(fixture, "success")]))
    assert b'<section class="failure"' not in fine.content


def test_a_childs_lanes_come_on_its_parents_time_axis(
    vera: User, sdk_fixtures: dict[str, dict[str, Any]]
) -> None:
    fixture = sdk_fixtures["py320-sqlite-default"]
    app = registered(fixture).name
    parent = by_role(fixture, "parent")
    url = reverse("workflow-detail", args=[app, parent])
    client = signed_in(vera)
    html = client.get(url).content.decode()
    [lane_url] = re.findall(r'data-lane-url="([^"]+)"', html)[:1]
    lane = client.get(url + lane_url.replace("&amp;", "&"), HTTP_HX_REQUEST="true")
    assert lane.status_code == 200
    lanes = lane.content.decode()
    assert "<html" not in lanes
    assert 'class="tl-lane kind-workflow depth-1"' in lanes
    child = reverse("workflow-detail", args=[app, by_role(fixture, "parent-child")])
    assert f'href="{child}"' in lanes
    bad_lanes: list[dict[str, str]] = [
        {"child": "x", "from": "a", "to": "1", "under": "lane-1"},
        {"child": "x"},
        # Digits int() refuses, and more than a float or a database integer holds.
        {"child": "x", "from": "1", "to": "²", "under": "lane-1"},
        {"child": "x", "from": "1", "to": "9" * 400, "under": "lane-1"},
    ]
    for bad in bad_lanes:
        answer = client.get(url, {"part": "lane", **bad}, HTTP_HX_REQUEST="true")
        assert answer.status_code == 400
    gone = client.get(
        url,
        {"part": "lane", "child": "no-such", "from": "1", "to": "2", "under": "lane-1"},
        HTTP_HX_REQUEST="true",
    )
    assert gone.status_code == 404
    assert b"no longer there" in gone.content


def test_a_step_or_a_cursor_that_is_no_plain_number_is_refused(
    vera: User, sdk_fixtures: dict[str, dict[str, Any]]
) -> None:
    fixture = sdk_fixtures["py320-sqlite-default"]
    app = registered(fixture).name
    url = reverse("workflow-detail", args=[app, by_role(fixture, "parent")])
    client = signed_in(vera)
    for query in (
        {"part": "panel", "step": "²"},
        {"part": "panel", "step": "1" * 40},
        {"steps_cursor": "²"},
        {"steps_cursor": "0", "until": "1" * 400},
    ):
        answer = client.get(url, query, HTTP_HX_REQUEST="true")
        assert answer.status_code == 400, query
    listed = client.get(
        reverse("workflows", args=[app]), {"parent": "x", "depth": "²"}, HTTP_HX_REQUEST="true"
    )
    assert listed.status_code == 400
