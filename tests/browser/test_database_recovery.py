"""An operator recovers, from the console, an executor that never connected: a dbos 3.4.0
executor run with no conductor setting is killed with a workflow PENDING, and the
Executors page (reading the system database) previews and confirms its recovery; another
executor of the same version then finishes the workflow."""

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshot
from tests.browser.test_live_console import sign_in
from tests.e2e.servers import Executor, StepChange, SystemDatabase
from tests.e2e.test_database_managed import PYTHON_340, _require

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_an_operator_recovers_a_gone_executor_through_the_system_database(
    page: Page,
    stepchange: StepChange,
    new_app: Callable[..., tuple[str, str]],
    tmp_path: Path,
) -> None:
    _require(PYTHON_340.exists(), ".venv-dbos340 (dbos 3.4.0)")
    stepchange.user("ossie", "operator", "ossie-pass-5521")
    url = f"sqlite:///{tmp_path / 'system.sqlite'}"
    app, _ = new_app("dbrec", system_database_url=url)
    system = SystemDatabase(url)
    workflow_id = f"slow-{uuid.uuid4().hex[:8]}"

    def start(executor_id: str) -> Executor:
        # The SDK's own executor, with no conductor URL nor key.
        return Executor(
            "python",
            conductor_url="",
            app=app,
            key="",
            system_database_url=url,
            version="v1",
            log_dir=tmp_path,
            python=str(PYTHON_340),
            extra_env={"DBOS__VMID": executor_id},
        )

    doomed = start("doomed-host")
    try:
        doomed.get(f"/slow?seconds=6&workflow_id={workflow_id}")
        assert system.wait_status(workflow_id, "PENDING")["executor_id"] == "doomed-host"
    finally:
        doomed.kill()
    survivor = start("survivor-host")
    try:
        sign_in(page, stepchange, "ossie", "ossie-pass-5521")
        page.goto(f"{stepchange.url}/apps/{app}/executors/")
        section = page.locator("section.database-pending")
        row = section.locator("tr", has_text="doomed-host")
        expect(row).to_contain_text("v1")
        expect(row.locator("td.num")).to_have_text("1")
        row.get_by_role("link", name="Recover…").click()

        expect(page.get_by_role("heading", name="Recover executor doomed-host")).to_be_visible()
        expect(page.locator("[data-recover-count]")).to_have_text("1")
        expect(page.get_by_text("The executor must really be gone.")).to_be_visible()
        page.get_by_label("Reason").fill("host lost in the rack move")
        screenshot(page, "database-recovery-preview")
        page.get_by_role("button", name="Recover: re-enqueue 1 workflow").click()

        expect(page).to_have_url(f"{stepchange.url}/apps/{app}/executors/")
        expect(page.locator(".messages")).to_contain_text(
            "Re-enqueued 1 PENDING workflow(s) of executor doomed-host"
        )
        screenshot(page, "database-recovery-done")
        # The executor still running takes it from the queue and finishes it.
        done = system.wait_status(workflow_id, "SUCCESS", timeout=60)
        assert done["executor_id"] == "survivor-host"
        page.reload()
        expect(section.locator("tr", has_text="doomed-host")).to_have_count(0)
    finally:
        survivor.stop()
    status, records = stepchange.api("GET", f"/audit?application={app}&action=executor.recovery")
    assert status == 200, records
    [record] = records["items"]
    assert (record["result"], record["reason"]) == ("ok", "host lost in the rack move")
