"""The API's reads of workflows check their credentials in the trip that reads (deferred
authentication): every answer is the one the other endpoints give for the same
credentials, read by read."""

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from stepchange.models import AuditRecord
from stepchange.services import api_token_create, api_token_revoke
from tests.conftest import make_user, signed_in
from tests.sdk_fixtures import by_role, registered

FIXTURE = "py320-sqlite-default"


@pytest.fixture
def reads(system_databases: None, sdk_fixtures: dict[str, dict[str, Any]]) -> list[str]:
    """Each deferred read of a registered application, and an endpoint that checks its
    credentials itself (the applications list), to answer alike."""
    fixture = sdk_fixtures[FIXTURE]
    app = registered(fixture).name
    workflow_id = by_role(fixture, "success")
    base = f"/api/v1/apps/{app}"
    return [
        f"{base}/workflows",
        f"{base}/queued-workflows",
        f"{base}/workflows/{workflow_id}",
        f"{base}/workflows/{workflow_id}/steps",
        "/api/v1/apps",
    ]


def bearer(raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}


def test_a_good_token_or_session_reads_and_nothing_else_does(
    reads: list[str], viewer: User
) -> None:
    _, raw = api_token_create(user=viewer, name="script")
    session = signed_in(viewer)
    for path in reads:
        assert Client().get(path, headers=bearer(raw)).status_code == 200, path
        assert session.get(path).status_code == 200, path
        # A token that is not good, with the session beside it: the session, as before.
        assert session.get(path, headers=bearer("sc_wrong")).status_code == 200, path
        nothing = Client().get(path)
        assert nothing.status_code == 401, path
        assert "detail" in nothing.json()
        wrong = Client().get(path, headers=bearer("sc_wrong"))
        assert wrong.status_code == 401, path
        assert wrong.json()["detail"].startswith("Authentication required")
    # Each refused token once on record (those with a session beside them too), and no
    # other refusal.
    rejected = AuditRecord.objects.filter(action="api_token.rejected")
    assert rejected.count() == 2 * len(reads)
    assert not AuditRecord.objects.filter(result="denied").exclude(pk__in=rejected).exists()


def test_a_revoked_token_or_an_inactive_user_is_refused_on_every_read(
    reads: list[str], viewer: User
) -> None:
    token, raw = api_token_create(user=viewer, name="deploy")
    api_token_revoke(token=token, actor=viewer)
    other = make_user(username="ivy", role="viewer")
    _, inactive = api_token_create(user=other, name="script")
    other.is_active = False
    other.save()
    for path in reads:
        assert Client().get(path, headers=bearer(raw)).status_code == 401, path
        assert Client().get(path, headers=bearer(inactive)).status_code == 401, path
    details = AuditRecord.objects.filter(action="api_token.rejected").values_list(
        "detail", flat=True
    )
    assert sorted(set(details)) == ["the user is inactive", "unknown or revoked token"]


def test_a_token_reads_only_what_its_user_may_see(
    reads: list[str], sdk_fixtures: dict[str, dict[str, Any]]
) -> None:
    from tests.conftest import make_app

    limited = make_user(username="lena", role="viewer", apps=[make_app(name="billing")])
    _, raw = api_token_create(user=limited, name="script")
    for path in reads[:-1]:
        missing = Client().get(path, headers=bearer(raw))
        assert missing.status_code == 404, path
        assert "that you may see" in missing.json()["detail"]


def test_only_the_reads_tested_here_defer_their_credentials(reads: list[str]) -> None:
    """An endpoint that defers its credentials must check them (through `caller`) before
    anything else; the reads above are shown to. Another one deferring is caught here, to
    be added to them."""
    import stepchange.urls  # noqa: F401  (it adds every router to the API)
    from stepchange.api import api

    deferring = {
        (path, method)
        for _, router in api._routers
        for path, operations in router.path_operations.items()
        for operation in operations.operations
        for method in operation.methods
        if any(getattr(auth, "deferred", False) for auth in operation.auth_callbacks)
    }
    assert deferring == {
        ("/apps/{app}/workflows", "GET"),
        ("/apps/{app}/queued-workflows", "GET"),
        ("/apps/{app}/workflows/{workflow_id}", "GET"),
        ("/apps/{app}/workflows/{workflow_id}/steps", "GET"),
    }
