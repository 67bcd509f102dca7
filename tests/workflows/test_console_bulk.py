"""Stories about bulk actions in the console: choose on the list, confirm a preview, follow
the job."""

from typing import Any

import pytest
from django.contrib.auth.models import User

from stepchange.models import AuditRecord
from tests.conftest import make_user, signed_in
from tests.sdk_fixtures import registered
from workflows.models import BulkJob


@pytest.fixture
def otto(system_databases: None) -> User:
    return make_user(username="otto", role="operator")


def with_status(fixture: dict[str, Any], status: str) -> list[str]:
    return [w["workflow_id"] for w in fixture["workflows"] if w["status"] == status]


def test_only_operators_get_the_bulk_bar_and_row_boxes(
    vera: User, otto: User, sdk_fixtures: dict[str, dict[str, Any]]
) -> None:
    app = registered(sdk_fixtures["py320-sqlite-default"]).name
    as_viewer = signed_in(vera).get(f"/apps/{app}/workflows/").content.decode()
    assert 'id="bulk"' not in as_viewer
    assert 'name="ids"' not in as_viewer
    as_operator = signed_in(otto).get(f"/apps/{app}/workflows/").content.decode()
    assert 'id="bulk"' in as_operator
    assert 'name="ids" value="py-default-error"' in as_operator


def test_acting_on_a_filter_shows_a_preview_before_anything_starts(
    otto: User, sdk_fixtures: dict[str, dict[str, Any]]
) -> None:
    fixture = sdk_fixtures["py320-sqlite-default"]
    app = registered(fixture).name
    page = signed_in(otto).get(
        f"/apps/{app}/bulk/new/",
        {
            "action": "resume",
            "scope": "filter",
            "filter": "status=ERROR&status=SUCCESS&all_levels=on",
        },
    )
    assert page.status_code == 200
    text = page.content.decode()
    errors, successes = with_status(fixture, "ERROR"), with_status(fixture, "SUCCESS")
    total = len(errors) + len(successes)
    assert f"<strong>{total}</strong> workflows match" in text
    # Resume makes no sense for either status: every one of them would be skipped.
    assert f"<strong>{total}</strong> will be skipped" in text
    assert " disabled>Start" in text
    assert not BulkJob.objects.exists()


def test_starting_a_bulk_job_records_it_and_leads_to_its_page(
    otto: User, sdk_fixtures: dict[str, dict[str, Any]]
) -> None:
    fixture = sdk_fixtures["py320-sqlite-default"]
    app = registered(fixture).name
    errors = with_status(fixture, "ERROR")
    client = signed_in(otto)
    response = client.post(
        f"/apps/{app}/bulk/new/",
        {"action": "delete", "scope": "selected", "ids": errors, "reason": "test data"},
    )
    job = BulkJob.objects.get()
    assert response["Location"] == f"/apps/{app}/jobs/{job.pk}/"
    assert (job.action, job.reason, job.created_by_name) == ("delete", "test data", "otto")
    assert sorted(job.items.values_list("workflow_id", flat=True)) == sorted(errors)
    assert AuditRecord.objects.filter(action="bulk.create", actor_name="otto").count() == 1
    page = client.get(response["Location"]).content.decode()
    for workflow_id in errors:
        assert workflow_id in page
    listing = client.get(f"/apps/{app}/jobs/").content.decode()
    assert f"#{job.pk}" in listing


def test_choosing_nothing_is_sent_back_with_a_hint(
    otto: User, sdk_fixtures: dict[str, dict[str, Any]]
) -> None:
    app = registered(sdk_fixtures["py320-sqlite-default"]).name
    response = signed_in(otto).get(
        f"/apps/{app}/bulk/new/", {"action": "cancel", "scope": "selected"}, follow=True
    )
    assert "Select some workflows first" in response.content.decode()


def test_a_viewer_cannot_start_a_bulk_job(
    vera: User, sdk_fixtures: dict[str, dict[str, Any]]
) -> None:
    app = registered(sdk_fixtures["py320-sqlite-default"]).name
    response = signed_in(vera).post(
        f"/apps/{app}/bulk/new/", {"action": "cancel", "scope": "filter", "filter": ""}
    )
    assert response.status_code == 403
    assert AuditRecord.objects.filter(action="access.denied", actor_name="vera").count() == 1
    assert not BulkJob.objects.exists()
