"""An admin exports a real dbos 3.2.0 workflow, cancelled mid-way, from its page (the file
downloads and reads back signed), then imports it into a second application from the
Import page: upload, the preview (axe-checked; the README's `import-preview` picture),
confirm, and the workflow runs to SUCCESS on that application's own executor."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings
from playwright.sync_api import Browser, Page, expect

from forks import exports
from tests.browser.conftest import screenshot
from tests.browser.test_accessibility import assert_accessible
from tests.browser.test_live_console import sign_in
from tests.e2e.servers import StepChange
from tests.e2e.test_exports import (  # noqa: F401  (the fixture)
    EXPECTED,
    PYTHON,
    Apps,
    apps,
    cancelled_mid_way,
    steps_named,
)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ADMIN, PASSWORD = "imogen", "imogen-pass-5521"


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page axe can be injected into (an inline script, which the console's CSP forbids)."""
    context = browser.new_context(
        viewport={"width": 1360, "height": 860}, bypass_csp=True, accept_downloads=True
    )
    yield context.new_page()
    context.close()


def read_signed(server: StepChange, raw: bytes) -> exports.ExportFile:
    """The file as this server reads it (its own SECRET_KEY)."""
    key = (server.data_dir / "secret_key").read_text().strip()
    with override_settings(SECRET_KEY=key, SECRET_KEY_FALLBACKS=[]):
        return exports.read(raw)


def test_an_admin_exports_a_workflow_and_imports_it_into_another_application(
    page: Page,
    stepchange: StepChange,
    apps: Apps,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
) -> None:
    a, b = apps.deploy(PYTHON), apps.deploy(PYTHON)
    workflow_id = cancelled_mid_way(a)
    stepchange.user(ADMIN, "admin", PASSWORD)
    sign_in(page, stepchange, ADMIN, PASSWORD)

    # Export from the workflow's page: a download, signed by this StepChange.
    page.goto(f"{stepchange.url}/apps/{a.name}/workflows/{workflow_id}/")
    with page.expect_download() as downloading:
        page.get_by_role("link", name="Export", exact=True).click()
    download = downloading.value
    assert download.suggested_filename == exports.filename(a.name, workflow_id)
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    file = read_signed(stepchange, path.read_bytes())
    assert file.signature == exports.SIGNED
    assert file.application == a.name
    assert file.root_id == workflow_id
    assert file.exported_by == ADMIN
    assert [e.status["status"] for e in file.workflows] == ["CANCELLED"]

    # Import into B: upload, preview, confirm.
    page.goto(f"{stepchange.url}/apps/{b.name}/import/")
    expect(page.get_by_role("heading", name="Import a workflow")).to_be_visible()
    assert_accessible(page, "import a workflow")
    page.get_by_label("Export file").set_input_files(str(path))
    page.get_by_label("Keep the ids").check()
    expect(page.get_by_label("Resume workflows that did not finish")).to_be_checked()
    page.get_by_role("button", name="Preview").click()
    preview = page.locator("section.import-preview")
    expect(preview).to_be_visible()
    expect(preview).to_contain_text(a.name)
    expect(preview.locator(".badge", has_text="signed")).to_be_visible()
    row = preview.get_by_role("row", name=workflow_id)
    expect(row).to_contain_text("slow_task")
    expect(row).to_contain_text("cancelled")
    expect(row).to_contain_text("new")
    assert b.db is not None
    assert b.db.workflow(workflow_id) is None  # a preview writes nothing
    screenshot(page, "import-preview")
    assert_accessible(page, "import preview")

    page.get_by_role("button", name="Import 1 workflow").click()
    expect(page.get_by_text("Imported 1 workflow(s).")).to_be_visible()
    assert f"/apps/{b.name}/workflows/{workflow_id}/" in page.url
    done = b.finished(workflow_id)
    assert done["status"] == "SUCCESS", f"{done}\n{b.log()}"
    assert EXPECTED in str(done["output"])
    assert len(steps_named(b, workflow_id, "nap")) == 1

    # The same file again, keeping the ids: refused on the preview, naming the id.
    page.goto(f"{stepchange.url}/apps/{b.name}/import/")
    page.get_by_label("Export file").set_input_files(str(path))
    page.get_by_label("Keep the ids").check()
    page.get_by_role("button", name="Preview").click()
    expect(page.get_by_role("alert")).to_contain_text(f"already has workflow {workflow_id}")
    expect(page.get_by_role("button", name="Import 1 workflow")).to_have_count(0)
