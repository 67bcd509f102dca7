"""The offline viewer over real executors' workflows: greet (steps, an event set twice, a
child audit_greeting) run on dbos 3.2.0 and on @dbos-inc/dbos-sdk 5.0.2, its rows read from
their system databases into an export file signed with the server's key, opened by a
viewer in a browser: decoded values, the child within the file, the family, the step
panel; and a copy whose event names a callable to run shows it refused, never run. axe
finds nothing serious on the viewer's pages; `offline-viewer` is the README's picture.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.test import override_settings
from playwright.sync_api import Browser, Page, expect
from psycopg.rows import dict_row

from forks import exports
from tests.browser.conftest import screenshot
from tests.browser.test_accessibility import assert_accessible
from tests.browser.test_live_console import sign_in
from tests.e2e.servers import Executor, PostgresDatabases, StepChange, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page axe can be injected into (an inline script, which the console's CSP forbids)."""
    context = browser.new_context(viewport={"width": 1360, "height": 860}, bypass_csp=True)
    yield context.new_page()
    context.close()


TABLES = (exports.STEPS, exports.EVENTS, exports.HISTORY, exports.STREAMS)


def _plain(value: Any) -> Any:
    """A column's value as JSON has it (ids and numbers stay; anything else is text)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _rows(conn: psycopg.Connection[Any], table: str, workflow_id: str) -> list[dict[str, Any]]:
    found = conn.execute(
        f"SELECT * FROM dbos.{table} WHERE workflow_uuid = %s",
        [workflow_id],
    ).fetchall()
    return [{key: _plain(value) for key, value in row.items()} for row in found]


def export_of(url: str, root: str) -> list[exports.Element]:
    """The root and its descendants, their rows read from the system database as DBOS's
    export_workflow has them (the inputs, output and error folded into the status row)."""
    elements: list[exports.Element] = []
    with psycopg.connect(url, row_factory=dict_row) as conn:
        waiting = [root]
        while waiting:
            workflow_id = waiting.pop(0)
            [status] = _rows(conn, "workflow_status", workflow_id)
            [inputs] = _rows(conn, "workflow_input", workflow_id)
            outputs = _rows(conn, "workflow_output", workflow_id)
            status["inputs"] = inputs["inputs"]
            if outputs:
                status["output"], status["error"] = outputs[0]["output"], outputs[0]["error"]
            tables = {table: _rows(conn, table, workflow_id) for table in TABLES}
            elements.append(exports.Element(status, *tables.values()))
            children = conn.execute(
                "SELECT workflow_uuid FROM dbos.workflow_status WHERE parent_workflow_id = %s",
                [workflow_id],
            ).fetchall()
            waiting += [child["workflow_uuid"] for child in children]
    return elements


def signed_file(server: StepChange, language: str, elements: list[exports.Element]) -> bytes:
    """The export file, signed under the server's own key (as its export would be)."""
    key = (server.data_dir / "secret_key").read_text().strip()
    with override_settings(SECRET_KEY=key, SECRET_KEY_FALLBACKS=[]):
        doc = exports.document(
            application="shop",
            language=language,
            schema_version=None,
            source=exports.FROM_DATABASE,
            root_id=elements[0].workflow_id,
            elements=elements,
            exported_by="otto",
            exported_at=datetime.now(tz=UTC),
        )
    return exports.dumps(doc)


def run_greet(
    language: str,
    *,
    stepchange: StepChange,
    new_app: Callable[..., tuple[str, str]],
    executors: Callable[..., Executor],
    databases: PostgresDatabases,
) -> tuple[str, str]:
    """Greet run to its end on a real executor; its system database URL and id."""
    url = databases.new(f"sc_offline_{language[:2]}")
    app, key = new_app(f"offline-{language[:2]}", system_database_url=url)
    executor = executors(language, app=app, key=key, system_database_url=url)
    stepchange.wait_executors(app, 1)
    greeted = f"greet-{uuid.uuid4().hex[:8]}"
    executor.get(f"/?name=ada&workflow_id={greeted}")

    def done() -> bool:
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT status FROM dbos.workflow_status WHERE workflow_uuid = %s", [greeted]
            ).fetchone()
        return row is not None and row[0] == "SUCCESS"

    eventually(done, timeout=60, what=f"{greeted} ends")
    return url, greeted


def open_file(page: Page, stepchange: StepChange, path: Path) -> None:
    page.goto(f"{stepchange.url}/exports/")
    page.get_by_label("Export file").set_input_files(str(path))
    page.get_by_role("button", name="Open").click()
    expect(page.get_by_role("heading", name="Offline:")).to_be_visible()


@pytest.mark.parametrize("language", ["python", "typescript"])
def test_a_viewer_opens_a_real_executors_export_offline(
    page: Page,
    stepchange: StepChange,
    new_app: Callable[..., tuple[str, str]],
    executors: Callable[..., Executor],
    databases: PostgresDatabases,
    tmp_path: Path,
    language: str,
) -> None:
    url, greeted = run_greet(
        language,
        stepchange=stepchange,
        new_app=new_app,
        executors=executors,
        databases=databases,
    )
    elements = export_of(url, greeted)
    assert len(elements) == 2, [e.workflow_id for e in elements]
    child = elements[1].workflow_id
    path = tmp_path / f"shop-{greeted}.stepchange.json"
    path.write_bytes(signed_file(stepchange, language, elements))

    stepchange.user("vic", "viewer", "vic-pass-4417")
    sign_in(page, stepchange, "vic", "vic-pass-4417")
    page.get_by_role("link", name="Open an export").click()
    open_file(page, stepchange, path)
    banner = page.locator(".offline-banner")
    expect(banner).to_contain_text("signed by this StepChange")
    expect(banner).to_contain_text(f"({language})")
    expect(banner).to_contain_text("exported by otto")
    expect(page.locator("header.wf-head h2")).to_contain_text(greeted)
    # The values decoded: greet's input names ada; its output greets her, loudly.
    expect(page.locator("section.values")).to_contain_text('"ada"')
    expect(page.locator("section.values")).to_contain_text("HELLO ADA!!")
    expect(page.locator("#view-timeline").get_by_role("link", name="shout")).to_be_visible()
    events = page.locator("table.grid", has_text="Key")
    expect(events.get_by_role("cell", name="stage", exact=True)).to_be_visible()
    expect(events).to_contain_text("done")
    # No action, no live header: nothing here reaches an application.
    expect(page.locator("section.actions")).to_have_count(0)
    expect(page.locator("main a[href^='/apps/']")).to_have_count(0)
    if language == "python":
        screenshot(page, "offline-viewer")
    assert_accessible(page, f"offline viewer ({language})")

    # The step panel, then the family's child card, which stays in the viewer.
    page.get_by_role("tab", name="Steps").click()
    page.locator("table.steps a[data-step]").first.click()
    expect(page.locator("#step-panel")).to_be_visible()
    expect(page.locator("#step-panel")).to_contain_text("ada")
    page.locator("#family a.fam-card").first.click()
    expect(page.locator("header.wf-head h2")).to_contain_text(child)
    assert "/exports/" in page.url
    expect(page.locator("header.wf-head")).to_contain_text("audit_greeting")
    expect(page.locator("section.values")).to_contain_text("HELLO ADA!!")

    page.goto(f"{stepchange.url}/exports/")
    expect(page.get_by_role("link", name=path.name)).to_be_visible()
    assert_accessible(page, "open an export")


def test_a_pickle_that_would_run_code_is_shown_refused_and_never_run(
    page: Page,
    stepchange: StepChange,
    new_app: Callable[..., tuple[str, str]],
    executors: Callable[..., Executor],
    databases: PostgresDatabases,
    tmp_path: Path,
) -> None:
    url, greeted = run_greet(
        "python",
        stepchange=stepchange,
        new_app=new_app,
        executors=executors,
        databases=databases,
    )
    root, *others = export_of(url, greeted)
    sentinel = tmp_path / "ran"
    # A pickle that would run a shell command if it were ever unpickled.
    evil = base64.b64encode(f"cos\nsystem\n(S'touch {sentinel}'\ntR.".encode()).decode()
    events = [{**event, "value": evil} for event in root.events]
    tampered = exports.Element(root.status, root.steps, events, root.history, root.streams)
    doc = exports.document(
        application="shop",
        language="python",
        schema_version=None,
        source=exports.FROM_DATABASE,
        root_id=greeted,
        elements=[tampered, *others],
        exported_by="mallory",
        exported_at=datetime.now(tz=UTC),
    )
    doc.pop("signature")
    path = tmp_path / "tampered.stepchange.json"
    path.write_bytes(exports.dumps(doc))

    stepchange.user("vic", "viewer", "vic-pass-4417")
    sign_in(page, stepchange, "vic", "vic-pass-4417")
    open_file(page, stepchange, path)
    expect(page.locator(".offline-banner")).to_contain_text(
        "unsigned: The file carries no signature."
    )
    shown = page.locator("table.grid", has_text="Key")
    expect(shown).to_contain_text("unreadable")
    expect(shown).to_contain_text("globals that are never allowed: os.system")
    assert not sentinel.exists()
