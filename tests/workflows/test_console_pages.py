"""Stories about the workflow pages of the console, over databases real SDKs wrote."""

import re
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connections
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.html import escape

from metrics import rollups
from stepchange.models import Application
from tests.conftest import make_user, signed_in
from tests.sdk_fixtures import by_role, registered
from workflows import systemdb
from workflows.sources import DatabaseSource, SlowQuery


def test_the_list_shows_workflows_and_filters_by_status_in_the_url(
    vera: User, sdk_fixtures: dict[str, dict[str, Any]]
) -> None:
    fixture = sdk_fixtures["py320-sqlite-default"]
    app = registered(fixture).name
    client = signed_in(vera)
    page = client.get(f"/apps/{app}/workflows/").content.decode()
    assert "read from the system database" in page
    # Children nest under their parent, which says how many it has; listed as rows on ask.
    child = by_role(fixture, "parent-child")
    for workflow in fixture["workflows"]:
        assert (workflow["workflow_id"] in page) == (workflow["workflow_id"] != child)
    assert f"?parent={by_role(fixture, 'parent')}&amp;depth=1" in page
    assert ">1 child</a>" in page
    every = client.get(f"/apps/{app}/workflows/", {"all_levels": "on"}).content.decode()
    for workflow in fixture["workflows"]:
        assert workflow["workflow_id"] in every
    failed = client.get(f"/apps/{app}/workflows/", {"status": ["ERROR"]}).content.decode()
    assert by_role(fixture, "error") in failed
    assert by_role(fixture, "success") + "<" not in failed
    rows = client.get(f"/apps/{app}/workflows/", {"status": ["ERROR"]}, HTTP_HX_REQUEST="true")
    assert b"<html" not in rows.content
    assert by_role(fixture, "error").encode() in rows.content


def test_an_invalid_filter_is_reported_on_the_form(
    vera: User, sdk_fixtures: dict[str, dict[str, Any]]
) -> None:
    app = registered(sdk_fixtures["py320-sqlite-default"]).name
    client = signed_in(vera)
    page = client.get(f"/apps/{app}/workflows/", {"start_time": "yesterday"})
    assert page.status_code == 400
    assert b"Enter a valid date/time" in page.content
    # The live filter form asks for the rows alone: the error comes with them (the form
    # opts in to swapping an error answer: data-swap-errors).
    assert b"data-list-filters data-swap-errors" in page.content
    for bad in ({"start_time": "yesterday"}, {"cursor": "not-a-cursor"}, {"limit": "0"}):
        rows = client.get(f"/apps/{app}/workflows/", bad, HTTP_HX_REQUEST="true")
        assert rows.status_code == 400
        html = rows.content.decode()
        assert html.lstrip().startswith('<div id="workflow-rows"'), html[:80]
        assert 'role="alert"' in html, bad
        assert f"<p>{next(iter(bad))}: " in html, html


def test_the_detail_shows_decoded_values_steps_lineage_events_messages_and_streams(
    vera: User, sdk_fixtures: dict[str, dict[str, Any]]
) -> None:
    fixture = sdk_fixtures["ts502-pg-default"]
    app = registered(fixture).name
    client = signed_in(vera)
    success = client.get(f"/apps/{app}/workflows/{by_role(fixture, 'success')}/").content.decode()
    assert "&quot;alice&quot;" in success  # the decoded input
    assert "js_superjson" in success
    assert "<code>profile</code>" in success
    parent = client.get(f"/apps/{app}/workflows/{by_role(fixture, 'parent')}/").content.decode()
    assert by_role(fixture, "parent-child") in parent
    events = client.get(f"/apps/{app}/workflows/{by_role(fixture, 'events')}/").content.decode()
    assert "<code>stage</code>" in events
    assert "<code>progress</code>" in events
    recv = client.get(f"/apps/{app}/workflows/{by_role(fixture, 'recv')}/").content.decode()
    assert "greeting" in recv
    assert "unread" in recv


@pytest.mark.parametrize("name", ["py320-sqlite-default", "ts502-pg-default"])
def test_a_value_as_stored_comes_on_demand(
    vera: User, sdk_fixtures: dict[str, dict[str, Any]], name: str
) -> None:
    """Each of the workflow's values has a "Raw, as stored" box, filled when opened: the
    stored text, escaped, with its serialization named and its length."""
    import html as html_module

    import psycopg

    fixture = sdk_fixtures[name]
    app = registered(fixture).name
    client = signed_in(vera)
    workflow_id = by_role(fixture, "error")
    url = f"/apps/{app}/workflows/{workflow_id}/"
    page = client.get(url).content.decode()
    for key in ("input", "error"):
        assert f'hx-get="?raw={key}" hx-trigger="toggle"' in page
    stored = client.get(url, {"raw": "error"}, HTTP_HX_REQUEST="true")
    assert stored.status_code == 200
    text = stored.content.decode()
    if fixture["url"].startswith("postgres"):
        schema = fixture["schema"] or "dbos"
        with psycopg.connect(fixture["url"]) as conn:
            row = conn.execute(
                f"SELECT COALESCE(o.error, s.error), s.serialization FROM {schema}.workflow_status"
                f" s LEFT JOIN {schema}.workflow_output o USING (workflow_uuid)"
                " WHERE workflow_uuid = %s",
                (workflow_id,),
            ).fetchone()
        assert row is not None
        error, serialization = row
        assert html_module.escape(error, quote=True) in text
        assert f"{serialization} · {len(error):,} characters" in text
    else:
        assert " characters</span>" in text
        assert "py_pickle" in text
    assert client.get(url, {"raw": "nope"}).status_code == 400
    # Asked beside a steps cursor (a made-up URL), still the value as stored.
    beside = client.get(url, {"raw": "error", "steps_cursor": "1"}, HTTP_HX_REQUEST="true")
    assert beside.content == stored.content
    gone = client.get(f"/apps/{app}/workflows/no-such-one/", {"raw": "input"})
    assert gone.status_code == 404
    assert b"no longer there" in gone.content


def test_an_unknown_workflow_is_a_404_page_with_a_way_back(
    vera: User, sdk_fixtures: dict[str, dict[str, Any]]
) -> None:
    app = registered(sdk_fixtures["py320-sqlite-default"]).name
    page = signed_in(vera).get(f"/apps/{app}/workflows/nope/")
    assert page.status_code == 404
    assert b"Back to the workflows" in page.content


@pytest.mark.parametrize("page", ["detail", "list"])
def test_a_read_stopped_by_the_statement_timeout_says_so(
    vera: User,
    sdk_fixtures: dict[str, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    page: str,
) -> None:
    """The workflow's page says so in place of the workflow (504); the list says so above
    its rows, its filter form still there to narrow it."""
    fixture = sdk_fixtures["py320-sqlite-default"]
    app = registered(fixture).name

    def too_slow(*args: Any) -> Any:
        raise SlowQuery("The system database stopped this query after 2000 ms.")

    monkeypatch.setattr(DatabaseSource, "_detail" if page == "detail" else "_list", too_slow)
    client = signed_in(vera)
    if page == "detail":
        shown = client.get(f"/apps/{app}/workflows/{by_role(fixture, 'success')}/")
        assert shown.status_code == 504
        assert b"Back to the workflows" in shown.content
    else:
        shown = client.get(f"/apps/{app}/workflows/", {"workflow_name": "x"})
        assert shown.status_code == 200
        assert b'name="workflow_name"' in shown.content
    assert b"stopped this query after 2000 ms" in shown.content


def test_more_steps_that_cannot_be_read_say_why_in_the_row_and_offer_a_retry(
    vera: User,
    sdk_fixtures: dict[str, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The htmx "more steps" row: a bad cursor answers 400, a statement timeout 504; either
    way the answer is the row again, saying why, with a button that asks once more."""
    fixture = sdk_fixtures["py320-sqlite-default"]
    app = registered(fixture).name
    url = f"/apps/{app}/workflows/{by_role(fixture, 'success')}/"
    client = signed_in(vera)
    bad = client.get(url, {"steps_cursor": "x1"}, HTTP_HX_REQUEST="true")
    assert bad.status_code == 400
    assert b'role="alert"' in bad.content
    assert b"<html" not in bad.content

    def too_slow(*args: Any) -> Any:
        raise SlowQuery("The system database stopped this query after 2000 ms.")

    monkeypatch.setattr(DatabaseSource, "_outline", too_slow)
    slow = client.get(url, {"steps_cursor": "1"}, HTTP_HX_REQUEST="true")
    assert slow.status_code == 504
    html = slow.content.decode()
    assert html.startswith('<tr class="more">')
    assert "stopped this query after 2000 ms" in html
    assert f'hx-get="{url}?steps_cursor=1"' in html
    assert "data-swap-errors>Try again</button>" in html


def test_without_database_or_executor_the_page_says_so_and_still_renders(vera: User) -> None:
    Application.objects.create(name="orders")
    page = signed_in(vera).get("/apps/orders/workflows/")
    assert page.status_code == 200
    assert b"No executor of orders is connected." in page.content
    assert b"read from the executor" in page.content


def test_the_dashboard_charts_statuses_and_lists_failures_and_queues(
    vera: User, sdk_fixtures: dict[str, dict[str, Any]]
) -> None:
    fixture = sdk_fixtures["py320-pg-default"]
    application = registered(fixture)
    app = application.name
    # The charts are drawn from the metric roll-ups, which the background job writes.
    rollups.rollup_application(application)
    page = signed_in(vera).get(f"/apps/{app}/").content.decode()
    assert "Workflows, last hour" in page
    assert "Workflows, last day" in page
    assert 'class="seg seg-success"' in page
    assert by_role(fixture, "error") in page  # a recent failure
    assert "fixture-parked" in page  # the queue with a waiting workflow


def test_the_dashboard_shows_executors_their_comings_and_goings_requests_and_notices(
    vera: User, sdk_fixtures: dict[str, dict[str, Any]]
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from conductor.models import (
        Executor,
        ExecutorConnection,
        PoisonWorkflow,
        RecoveryAttempt,
        RequestLog,
    )

    application = registered(sdk_fixtures["py320-pg-default"])
    now = timezone.now()
    live = Executor.objects.create(
        application=application,
        executor_id="exec-live",
        application_version="v7",
        language="python",
        dbos_version="3.2.0",
        hostname="box-1",
        metadata={"region": "eu-west"},
    )
    ExecutorConnection.objects.create(executor=live, connected_at=now)
    ExecutorConnection.objects.create(
        executor=live,
        connected_at=now - timedelta(minutes=5),
        disconnected_at=now - timedelta(minutes=1),
        ended_by="closed",
    )
    PoisonWorkflow.objects.create(
        application=application, workflow_id="wf-deadly", executors_killed=2
    )
    RecoveryAttempt.objects.create(
        application=application, dead_executor_id="exec-gone", outcome="sent"
    )
    RequestLog.objects.create(
        application=application,
        request_id="r1",
        message_type="list_workflows",
        sent_at=now,
        outcome="ok",
        actor_name="vera",
    )
    client = signed_in(vera)
    html = client.get(f"/apps/{application.name}/").content.decode()
    assert "box-1" in html
    assert "<code>v7</code>" in html
    assert "<code>region=eu-west</code>" in html
    assert "Executors came and went" in html
    assert "left " in html
    assert "(closed)" in html
    assert '<span class="badge ok">connected</span>' in html
    assert "Poison workflow" in html
    assert "wf-deadly" in html
    assert "exec-gone" in html  # the recovery
    assert "<code>list_workflows</code>" in html
    # The live refresh asks for the dashboard alone.
    part = client.get(f"/apps/{application.name}/", HTTP_HX_REQUEST="true").content.decode()
    assert part.lstrip().startswith('<div id="dashboard"')
    assert "<html" not in part
    assert "box-1" in part


def test_a_dashboard_stopped_by_the_statement_timeout_says_so_and_shows_the_rest(
    vera: User, sdk_fixtures: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import OperationalError

    class Canceled(Exception):
        sqlstate = "57014"

    def canceled(*args: Any) -> Any:
        raise OperationalError("canceling statement due to statement timeout") from Canceled()

    application = registered(sdk_fixtures["py320-pg-default"])
    monkeypatch.setattr(DatabaseSource, "_overview", canceled)
    page = signed_in(vera).get(f"/apps/{application.name}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "stopped this query after" in html
    assert "<h3>Executors" in html
    assert "Recent requests" in html
    assert "Queue depths could not be read." in html


def test_the_dashboard_without_a_system_database_still_renders(vera: User) -> None:
    Application.objects.create(name="orders")
    page = signed_in(vera).get("/apps/orders/")
    assert page.status_code == 200
    assert b"from the per-minute roll-ups (through a connected executor)" in page.content
    assert b"No executor of orders is connected." in page.content


def test_a_saved_view_is_a_named_link_an_operator_can_share(
    vera: User, sdk_fixtures: dict[str, dict[str, Any]]
) -> None:
    app = registered(sdk_fixtures["py320-sqlite-default"]).name
    otto = make_user(username="otto", role="operator")
    client = signed_in(otto)
    response = client.post(
        f"/apps/{app}/views/", {"name": "failures", "query": "status=ERROR", "shared": "on"}
    )
    assert response.status_code == 302
    assert response["Location"].endswith("?status=ERROR")
    client.post(f"/apps/{app}/views/", {"name": "mine only", "query": "status=PENDING"})
    page = signed_in(vera).get(f"/apps/{app}/workflows/").content.decode()
    assert 'href="?status=ERROR">failures</a>' in page
    assert "mine only" not in page
    # A viewer is not offered to share a view.
    assert 'name="shared"' not in page
    assert 'name="shared"' in client.get(f"/apps/{app}/workflows/").content.decode()
    from stepchange.models import SavedView

    view = SavedView.objects.get(name="failures")
    assert signed_in(vera).post(f"/apps/{app}/views/{view.pk}/delete/").status_code == 404
    assert client.post(f"/apps/{app}/views/{view.pk}/delete/").status_code == 302
    assert not SavedView.objects.filter(name="failures").exists()


def test_the_queued_page_shows_waiting_workflows_and_queue_configuration(
    vera: User, sdk_fixtures: dict[str, dict[str, Any]]
) -> None:
    fixture = sdk_fixtures["py320-pg-default"]
    app = registered(fixture).name
    page = signed_in(vera).get(f"/apps/{app}/queued/").content.decode()
    assert by_role(fixture, "enqueued") in page
    assert by_role(fixture, "success") + "<" not in page
    assert "fixture-queue" in page  # from the queues table, though nothing waits on it


def test_every_read_page_is_a_404_for_an_application_outside_ones_access(
    sdk_fixtures: dict[str, dict[str, Any]], system_databases: None
) -> None:
    """A viewer limited to another application learns nothing of this one: its dashboard,
    lists, a workflow's page (and its parts) answer 404, as for no such application; the
    switcher names only what they may see."""
    from tests.conftest import make_app

    fixture = sdk_fixtures["py320-sqlite-default"]
    app = registered(fixture).name
    lena = make_user(username="lena", role="viewer", apps=[make_app(name="billing")])
    client = signed_in(lena)
    workflow = f"/apps/{app}/workflows/{by_role(fixture, 'success')}/"
    for path, query in (
        (f"/apps/{app}/", {}),
        (f"/apps/{app}/workflows/", {}),
        (f"/apps/{app}/queued/", {}),
        (workflow, {}),
        (workflow, {"raw": "input"}),
        (workflow, {"steps_cursor": "1"}),
        (workflow, {"part": "head", "was": "SUCCESS"}),
        (workflow, {"part": "steps", "q": "s"}),
        (workflow, {"part": "panel", "step": "1"}),
        (workflow, {"step": "1", "raw": "output"}),
        (workflow, {"step": "1"}),
        (workflow, {"part": "lane", "child": "c", "from": "1", "to": "2", "under": "lane-1"}),
    ):
        for htmx in (False, True):
            headers = {"HX-Request": "true"} if htmx else {}
            page = client.get(path, query, headers=headers)
            assert page.status_code == 404, (path, query, htmx)
            assert by_role(fixture, "success").encode() not in page.content
    home = client.get("/").content.decode()
    assert "billing" in home
    assert app not in home


def test_a_running_workflows_header_follows_it_live_and_reloads_when_it_moves_on(
    vera: User, sdk_fixtures: dict[str, dict[str, Any]]
) -> None:
    """An active workflow's header asks for itself every 2 s; while the status is the one
    the page shows it answers the header alone, and once it moved on it asks the browser to
    reload the page (steps, output and actions changed with it)."""
    fixture = sdk_fixtures["py320-sqlite-default"]
    app = registered(fixture).name
    client = signed_in(vera)
    active = f"/apps/{app}/workflows/{by_role(fixture, 'enqueued')}/"
    done = f"/apps/{app}/workflows/{by_role(fixture, 'success')}/"
    assert 'hx-trigger="every 2s"' in client.get(active).content.decode()
    assert 'hx-trigger="every 2s"' not in client.get(done).content.decode()
    application = Application.objects.get(name=app)
    with CaptureQueriesContext(connections[systemdb.alias_for(application)]) as queries:
        head = client.get(active, {"part": "head", "was": "ENQUEUED"}, HTTP_HX_REQUEST="true")
    # Its status row and its steps' outline: no payloads, no extras.
    read = " ".join(q["sql"] for q in queries)
    assert "operation_outputs" in read
    assert "notifications" not in read
    assert "workflow_inputs" not in read
    html = head.content.decode()
    assert html.lstrip().startswith('<header class="wf-head"')
    assert "following live" in html
    assert "<table" not in html
    moved = client.get(done, {"part": "head", "was": "ENQUEUED"}, HTTP_HX_REQUEST="true")
    assert moved.headers["HX-Refresh"] == "true"
    assert moved.content == b""


@pytest.mark.parametrize("name", ["py320-pg-default", "ts502-pg-default"])
def test_the_queued_page_shows_each_queues_configuration_and_depth(
    vera: User, sdk_fixtures: dict[str, dict[str, Any]], name: str
) -> None:
    fixture = sdk_fixtures[name]
    app = registered(fixture).name
    html = signed_in(vera).get(f"/apps/{app}/queued/").content.decode()
    # Both queues of the queues table, unbounded; the parked one holds the enqueued workflow.
    assert '>fixture-queue</a></td>\n    <td class="num">0</td>' in html
    parked = '>fixture-parked</a></td>\n    <td class="num">1</td><td class="num">0</td>'
    assert parked in html
    assert html.count('<td class="num">∞</td><td class="num">∞</td>') == 2
    assert "not in the queues table" not in html
    assert by_role(fixture, "enqueued") in html


NASTY = '<script>alert("x")</script>'
NASTY_ID = "tenant/7 <b>&'x'"
NASTY_CHILD = "child <i>&</i>/of-the-nasty-one"
CREATED_MS = 1795334401000  # 2026-11-22 08:00:01 UTC


@pytest.fixture
def nasty(system_databases: None, sdk_fixtures: dict[str, dict[str, Any]], tmp_path: Path) -> str:
    """The SQLite fixture's system database with a copy of its failed workflow whose id,
    name, queue and version are markup, and whose first step started a child with markup in
    its id and name; the application's name."""
    fixture = sdk_fixtures["py320-sqlite-default"]
    path = tmp_path / "nasty.sqlite"
    shutil.copy(fixture["path"], path)
    model = by_role(fixture, "error")
    status = {
        "workflow_uuid": NASTY_ID,
        "status": "MAX_RECOVERY_ATTEMPTS_EXCEEDED",
        "name": NASTY,
        "queue_name": NASTY,
        "application_version": NASTY,
        "executor_id": "executor-with-a-long-name",
        "forked_from": "source-workflow-id-that-is-long",
        "parent_workflow_id": None,
        "created_at": CREATED_MS,
        "completed_at": CREATED_MS + 2500,
    }
    times = {"started_at_epoch_ms": CREATED_MS + 123, "completed_at_epoch_ms": CREATED_MS + 223}
    first = {"function_name": NASTY, "child_workflow_id": NASTY_CHILD}
    with sqlite3.connect(path) as db:
        _copy(db, "workflow_status", model, lambda row: row | status)
        _copy(db, "workflow_input", model, lambda row: row | {"workflow_uuid": NASTY_ID})
        _copy(
            db,
            "operation_outputs",
            model,
            lambda row: (
                row | {"workflow_uuid": NASTY_ID} | times | first
                if row["function_id"] == 1
                else row | {"workflow_uuid": NASTY_ID} | times
            ),
        )
    app = Application.objects.create(name="nasty", system_database_url=f"sqlite:///{path}")
    return app.name


def _copy(
    db: sqlite3.Connection,
    table: str,
    workflow_id: str,
    change: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    """Copies `table`'s rows of `workflow_id`, each changed by `change`."""
    db.row_factory = sqlite3.Row
    rows = db.execute(f"SELECT * FROM {table} WHERE workflow_uuid = ?", (workflow_id,))
    for row in rows.fetchall():
        new = change(dict(row))
        marks = ", ".join("?" * len(new))
        db.execute(f"INSERT INTO {table} ({', '.join(new)}) VALUES ({marks})", list(new.values()))


def _row_of(page: str, marker: str) -> str:
    [row] = [row for row in page.split("<tr") if marker in row]
    return row


def test_a_workflow_row_escapes_every_value_and_links_the_workflow(nasty: str) -> None:
    """Markup in a workflow's id, name, queue or version is shown, never run; the row links
    the workflow's page as `{% url %}` would, and only an operator gets its checkbox."""
    operator = make_user(username="otto", role="operator")
    page = signed_in(operator).get(f"/apps/{nasty}/workflows/").content.decode()
    assert NASTY not in page
    row = _row_of(page, f"<code>{escape(NASTY_ID)}</code>")
    assert row.count(escape(NASTY)) == 3
    assert f'href="{escape(reverse("workflow-detail", args=[nasty, NASTY_ID]))}"' in row
    assert f'name="ids" value="{escape(NASTY_ID)}" form="bulk"' in row
    assert 'data-status="MAX_RECOVERY_ATTEMPTS_EXCEEDED">max recovery attempts exceeded<' in row
    assert "executor-wit…" in row
    assert "fork of <code>source-workflow-i…</code>" in row
    assert "child of" not in row
    # How long ago, with the exact time on hover.
    assert '<time datetime="2026-11-22T08:00:01+00:00" title="2026-11-22 08:00:01 UTC">' in row
    assert "2.50 s" in row
    as_viewer = signed_in(make_user(username="vic", role="viewer"))
    rows = as_viewer.get(f"/apps/{nasty}/workflows/", HTTP_HX_REQUEST="true").content.decode()
    assert escape(NASTY_ID) in rows
    assert 'name="ids"' not in rows


def test_a_step_row_escapes_its_values_and_links_the_child_it_started(nasty: str) -> None:
    client = signed_in(make_user(username="vic", role="viewer"))
    url = reverse("workflow-detail", args=[nasty, NASTY_ID])
    page = client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert NASTY not in html
    assert f"<h2><code>{escape(NASTY_ID)}</code>" in html
    first = _row_of(html, f"<td><code>{escape(NASTY)}</code>")
    assert "08:00:01.123" in first
    assert "100 ms" in first
    child = escape(reverse("workflow-detail", args=[nasty, NASTY_CHILD]))
    assert f'<a href="{child}"><code>{escape(NASTY_CHILD[:23])}…</code></a>' in first
    failed = _row_of(html, "<td><code>shout</code>")
    assert failed.startswith(' id="step-2" class="failed">')
    assert '<span class="error">ValueError: bad input fail1</span>' in failed
    assert 'href="/' not in failed
    # Its bar on the timeline, named (escaped) in the title a pointer shows.
    assert f"<title>{escape(NASTY)} #1 · 100 ms</title>" in html
    # The next steps alone, as opening a fold asks for them.
    more = client.get(url, {"steps_cursor": "1"}, HTTP_HX_REQUEST="true").content.decode()
    assert more.lstrip().startswith('<tr id="step-2" class="failed">')
    assert "<code>shout</code>" in more
    assert escape(NASTY) not in more


def test_the_dashboard_counts_a_fleet_and_shows_only_its_newest_executors(
    vera: User, sdk_fixtures: dict[str, dict[str, Any]]
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from conductor.models import Executor

    application = registered(sdk_fixtures["py320-pg-default"])
    start = timezone.now() - timedelta(hours=1)
    Executor.objects.bulk_create(
        Executor(
            application=application,
            executor_id=f"exec-{n:03d}",
            connected_at=start + timedelta(seconds=n),
        )
        for n in range(40)
    )
    html = signed_in(vera).get(f"/apps/{application.name}/").content.decode()
    assert '<span class="tile-count">40</span>' in html
    assert '<h3>Executors <span class="count">40</span></h3>' in html
    shown = re.findall(r'href="/apps/[^/]+/executors/(exec-\d+)/"', html)
    assert shown == ["exec-039", "exec-038", "exec-037", "exec-036", "exec-035"]
    assert "The newest 5 of 40: all on the Executors page" in html
