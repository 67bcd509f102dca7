"""An operator steers a real dynamic schedule from the Schedules page: pauses and resumes
it, counts a backfill's runs before sending it, and confirms a large one."""

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshot
from tests.browser.test_live_console import sign_in
from tests.e2e.servers import Executor, StepChange, SystemDatabase, eventually
from tests.e2e.test_schedules import create_schedule

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_an_operator_pauses_resumes_and_backfills_a_schedule_from_its_page(
    page: Page,
    stepchange: StepChange,
    new_app: Callable[..., tuple[str, str]],
    executors: Callable[..., Executor],
    tmp_path: Path,
) -> None:
    stepchange.user("ossie", "operator", "ossie-pass-5521")
    url = f"sqlite:///{tmp_path / 'system.sqlite'}"
    app, key = new_app("sched", system_database_url=url)
    executors("python", app=app, key=key, system_database_url=url)
    stepchange.wait_executors(app, 1)
    name = f"daily-{uuid.uuid4().hex[:6]}"
    create_schedule(url, app, name, cron="0 3 * * *")
    system = SystemDatabase(url)

    sign_in(page, stepchange, "ossie", "ossie-pass-5521")
    page.goto(f"{stepchange.url}/apps/{app}/")
    page.get_by_role("link", name="Schedules", exact=True).click()
    row = page.locator(f"tr[data-schedule='{name}']")
    expect(row).to_contain_text("0 3 * * *")
    expect(row.locator(".badge")).to_have_text("active")
    # Its next three fire times, at 03:00.
    expect(row).to_contain_text("03:00:00 +0000")
    expect(row.get_by_role("link", name="Workflows it started")).to_have_attribute(
        "href", f"/apps/{app}/workflows/?schedule_name={name}"
    )
    screenshot(page, "schedules")

    row.get_by_role("button", name="Pause").click()
    expect(page.get_by_text(f"Pause {name}: done by executor")).to_be_visible()
    expect(row.locator(".badge")).to_have_text("paused")
    assert system.rows("SELECT status FROM workflow_schedules")[0]["status"] == "PAUSED"
    row.get_by_role("button", name="Resume").click()
    expect(row.locator(".badge")).to_have_text("active")

    row.get_by_role("link", name="Backfill…").click()
    page.get_by_label("From (UTC, exclusive)").fill("2025-01-01T00:00")
    page.get_by_label("To (UTC, exclusive)").fill("2025-06-01T00:00")
    page.get_by_role("button", name="Count the runs").click()
    # January to May: 151 days at 03:00, above a hundred, so it asks.
    expect(page.locator("#backfill-plan")).to_contain_text("151 runs")
    screenshot(page, "schedule-backfill")
    page.get_by_role("button", name="Backfill 151 runs").click()
    expect(page.get_by_role("alert")).to_contain_text("151 runs: tick “I mean it”")
    assert not system.rows("SELECT workflow_uuid FROM workflow_status")
    page.get_by_label("I mean it").check()
    page.get_by_role("button", name="Backfill").click()
    expect(page.get_by_text(f"Backfill {name}: done by executor")).to_be_visible()
    expect(page).to_have_url(f"{stepchange.url}/apps/{app}/workflows/?schedule_name={name}")

    def runs() -> int | None:
        [row] = system.rows(
            "SELECT count(*) AS n FROM workflow_status WHERE schedule_name = %s", name
        )
        return int(row["n"]) if row["n"] == 151 else None

    assert eventually(runs, timeout=30, what="the 151 backfilled runs") == 151
