"""An operator finds workflows stranded on versions no executor runs, lists them, opens
their fork onto the running version, and makes an older version the latest, with a real
dbos 3.2.0 executor of v2 connected."""

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshot
from tests.browser.test_live_console import sign_in
from tests.e2e.servers import Executor, StepChange
from tests.workflows.versions_data import APP, _insert, version_rows, workflow_rows

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

OCTOBER_2025 = 1_759_300_000_000


def stranded_database(fixture: dict[str, Any], path: Path, app: str) -> str:
    """A copy of a real dbos 3.2.0 SQLite system database holding the versions stories'
    versions (owned by `app`) and waiting workflows."""
    shutil.copy(fixture["path"], path)
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM workflow_status")
        db.execute("DELETE FROM application_versions")
        _insert(db.execute, "application_versions", version_rows(), "?")
        _insert(db.execute, "workflow_status", workflow_rows(), "?")
        owned = "UPDATE application_versions SET application_name = ? WHERE application_name = ?"
        db.execute(owned, [app, APP])
        # Days apart in October 2025 rather than milliseconds after 1970, for the picture;
        # the order, which is all the stories read, stays.
        dated = (
            "UPDATE application_versions SET version_timestamp = ?, created_at = ?"
            " WHERE version_id = ?"
        )
        for row in version_rows():
            stamp = OCTOBER_2025 + row["version_timestamp"] * 172_800
            db.execute(dated, [stamp, stamp, row["version_id"]])
    return f"sqlite:///{path}"


def test_an_operator_sees_stranded_workflows_and_makes_an_older_version_the_latest(
    page: Page,
    stepchange: StepChange,
    new_app: Callable[..., tuple[str, str]],
    executors: Callable[..., Executor],
    sdk_fixtures: dict[str, dict[str, Any]],
    tmp_path: Path,
) -> None:
    stepchange.user("olive", "operator", "olive-pass-7310")
    name = "versions"
    app, key = new_app(name)
    url = stranded_database(sdk_fixtures["py320-sqlite-default"], tmp_path / "v.sqlite", app)
    stepchange.manage("register_app", app, "--system-database-url", url)
    executors("python", app=app, key=key, system_database_url=url, version="v2")
    stepchange.wait_executors(app, 1)

    sign_in(page, stepchange, "olive", "olive-pass-7310")
    page.goto(f"{stepchange.url}/apps/{app}/")
    page.get_by_role("navigation", name=app).get_by_role("link", name="Versions").click()
    expect(page.get_by_role("heading", name="Application versions")).to_be_visible()
    warnings = page.locator("[data-stranded]")
    expect(warnings).to_have_count(2)
    gone = page.locator('[data-stranded="gone"]')
    expect(gone).to_contain_text("5 workflows stranded on version gone")
    expect(gone).to_contain_text("4 pending, 1 enqueued")
    table = page.get_by_role("table", name=f"Versions of {app}")
    expect(table.get_by_role("row", name="v2 latest")).to_contain_text("python 3.2.0")
    screenshot(page, "versions-stranded")

    gone.get_by_role("link", name="List them").click()
    expect(page.locator("td.col-id")).to_have_count(5)
    page.go_back()

    page.locator('[data-stranded="v1"]').get_by_role("link", name="Fork them onto").click()
    expect(page.get_by_role("heading", name="Fork onto a version in bulk")).to_be_visible()
    expect(page.get_by_text("3 workflows match")).to_be_visible()
    expect(page.get_by_label("Fork onto version")).to_have_value("v2")
    page.go_back()

    table.get_by_role("button", name="Make v1 the latest version").click()
    expect(page.get_by_text("v1 made the latest version by executor")).to_be_visible()
    expect(table.get_by_role("row", name="v1 latest")).to_be_visible()
    # The unpinned workflows now wait on v1, which nobody runs.
    expect(warnings).to_have_count(3)
    expect(page.locator('[data-stranded=""]')).to_contain_text("2 unpinned workflows stranded")
    screenshot(page, "versions-latest-set")
