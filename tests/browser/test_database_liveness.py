"""An admin gives a database-managed application a liveness URL in its settings form, and
the Executors page shows what the probes found: one executor alive, one killed and
recovered through the system database."""

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from stepchange.models import LIVENESS_NO_PLACEHOLDER
from tests.browser.conftest import screenshot
from tests.browser.test_live_console import sign_in
from tests.e2e.servers import (
    Executor,
    PostgresDatabases,
    StepChange,
    SystemDatabase,
    eventually,
)
from tests.e2e.test_database_managed import PYTHON_340, HealthRouter, new_id

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_an_admin_sets_a_liveness_url_and_sees_a_killed_executor_recovered(
    page: Page,
    stepchange: StepChange,
    new_app: Callable[..., tuple[str, str]],
    databases: PostgresDatabases,
    tmp_path: Path,
) -> None:
    if not PYTHON_340.exists():
        pytest.skip("no .venv-dbos340 (dbos 3.4.0): run `make install`")
    url = databases.new("sc_live")
    app, _ = new_app("probed", system_database_url=url, recovery_grace_seconds=2)
    stepchange.user("ada", "admin", "ada-pass-7731")
    router = HealthRouter()
    started: list[Executor] = []

    def start(executor_id: str) -> Executor:
        executor = Executor(
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
        started.append(executor)
        router.ports[executor_id] = executor.http_port
        return executor

    try:
        doomed_id, survivor_id = new_id("doomed"), new_id("survivor")
        doomed, survivor = start(doomed_id), start(survivor_id)
        sign_in(page, stepchange, "ada", "ada-pass-7731")
        page.goto(f"{stepchange.url}/admin/stepchange/application/")
        page.get_by_role("link", name=app, exact=True).click()
        field = page.get_by_label("Liveness URL template")
        # A template with no place for the executor id is refused, with the reason.
        field.fill("http://127.0.0.1:1/healthz")
        page.get_by_role("button", name="Save", exact=True).click()
        expect(page.get_by_text(LIVENESS_NO_PLACEHOLDER)).to_be_visible()
        screenshot(page, "liveness-setting-refused")
        page.get_by_label("Liveness URL template").fill(router.template)
        page.get_by_role("button", name="Save", exact=True).click()
        expect(page.get_by_text("was changed successfully")).to_be_visible()

        system = SystemDatabase(url)
        first = new_id("slow")
        doomed.get(f"/slow?seconds=12&workflow_id={first}")
        system.wait_status(first, "PENDING")

        def probed_alive() -> bool:
            found = stepchange.api("GET", f"/apps/{app}/liveness")[1]["executors"]
            return any(e["executor_id"] == doomed_id and e["state"] == "alive" for e in found)

        # Recovery waits until the URL has answered for an executor at least once.
        eventually(probed_alive, timeout=20, what=f"{doomed_id} probed alive")
        doomed.kill()
        row = system.wait_status(first, "SUCCESS", timeout=60)
        assert row["executor_id"] == survivor_id
        second = new_id("slow")
        survivor.get(f"/slow?seconds=20&workflow_id={second}")
        page.goto(f"{stepchange.url}/apps/{app}/executors/")
        probed = page.locator("table", has=page.get_by_text("Failing since"))
        expect(probed.locator("tr", has_text=survivor_id)).to_contain_text("Alive", timeout=15_000)
        expect(probed.locator("tr", has_text=doomed_id)).to_contain_text("Recovered")
        recovery = page.locator("table", has=page.get_by_text("Recovered onto"))
        expect(recovery).to_contain_text("system database")
        expect(recovery).to_contain_text("stepchange (automatic recovery)")
        screenshot(page, "database-liveness")
    finally:
        for executor in started:
            executor.stop()
        router.close()
