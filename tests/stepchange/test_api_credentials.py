"""The API's reads of workflows answer every credential as the other endpoints do, read
by read, through the application as served: credentials are checked before the input."""

import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import HttpCommunicator
from django.conf import settings
from django.contrib.auth.models import User
from django.test import override_settings

from stepchange.asgi import application
from stepchange.models import AuditRecord
from stepchange.services import api_token_create, api_token_revoke
from tests.conftest import make_app, make_user, signed_in
from tests.sdk_fixtures import by_role, registered

pytestmark = pytest.mark.django_db(transaction=True)
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


async def get(path: str, *, token: str | None = None, session: str = "") -> tuple[int, Any]:
    headers = [(b"host", b"127.0.0.1")]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    if session:
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={session}".encode()))
    communicator = HttpCommunicator(application, "GET", path, headers=headers)
    response = await communicator.get_response(timeout=10)
    await communicator.wait()
    return response["status"], json.loads(response["body"] or b"null")


def session_of(user: User) -> str:
    return str(signed_in(user).cookies[settings.SESSION_COOKIE_NAME].value)


def rejected() -> list[str]:
    return list(
        AuditRecord.objects.filter(action="api_token.rejected").values_list("detail", flat=True)
    )


# Ten wrong tokens from one address would be a lockout (test_throttle.py tells that).
@override_settings(THROTTLE_FAILURE_LIMIT=100)
async def test_a_good_token_or_session_reads_and_nothing_else_does(
    reads: list[str], viewer: User
) -> None:
    _, raw = await sync_to_async(api_token_create)(user=viewer, name="script")
    session = await sync_to_async(session_of)(viewer)
    for path in reads:
        assert (await get(path, token=raw))[0] == 200, path
        assert (await get(path, session=session))[0] == 200, path
        # A token that is not good, with the session beside it: the session, as before.
        assert (await get(path, token="sc_wrong", session=session))[0] == 200, path
        status, body = await get(path)
        assert status == 401, path
        assert "detail" in body
        status, body = await get(path, token="sc_wrong")
        assert status == 401, path
        assert body["detail"].startswith("Authentication required")
    # Each refused token once on record (those with a session beside them too), and no
    # other refusal.
    assert len(await sync_to_async(rejected)()) == 2 * len(reads)
    denied = AuditRecord.objects.filter(result="denied").exclude(action="api_token.rejected")
    assert not await denied.aexists()


async def test_a_revoked_token_or_an_inactive_user_is_refused_on_every_read(
    reads: list[str], viewer: User
) -> None:
    token, raw = await sync_to_async(api_token_create)(user=viewer, name="deploy")
    await sync_to_async(api_token_revoke)(token=token, actor=viewer)
    other = await sync_to_async(make_user)(username="ivy", role="viewer")
    _, inactive = await sync_to_async(api_token_create)(user=other, name="script")
    other.is_active = False
    await other.asave()
    for path in reads:
        assert (await get(path, token=raw))[0] == 401, path
        assert (await get(path, token=inactive))[0] == 401, path
    details = set(await sync_to_async(rejected)())
    assert sorted(details) == ["the user is inactive", "unknown or revoked token"]


async def test_bad_credentials_with_bad_input_are_refused_as_bad_credentials(
    reads: list[str], viewer: User
) -> None:
    """Credentials are checked before the input: not good, 401 and the token on record,
    whatever the input; good, the input's 400."""
    _, raw = await sync_to_async(api_token_create)(user=viewer, name="script")
    workflows, queued, one, steps, _ = reads
    bad_inputs = [
        f"{workflows}?limit=abc",
        f"{workflows}?limit=0",
        f"{workflows}?status=NOPE",
        f"{queued}?start_time=yesterday",
        f"{steps}?limit=0",
        f"{one}/steps?cursor=x",
    ]
    for path in bad_inputs:
        status, body = await get(path, token="sc_wrong")
        assert status == 401, (path, body)
        assert (await get(path))[0] == 401, path
        assert (await get(path, token=raw))[0] == 400, path
    assert len(await sync_to_async(rejected)()) == len(bad_inputs)
    # A bearer header with no token in it is a rejected token too, as anywhere else.
    assert (await get(workflows, token=" "))[0] == 401
    assert (await get("/api/v1/apps", token=" "))[0] == 401
    assert len(await sync_to_async(rejected)()) == len(bad_inputs) + 2


async def test_a_token_reads_only_what_its_user_may_see(reads: list[str]) -> None:
    billing = await sync_to_async(make_app)(name="billing")
    limited = await sync_to_async(make_user)(username="lena", role="viewer", apps=[billing])
    _, raw = await sync_to_async(api_token_create)(user=limited, name="script")
    for path in reads[:-1]:
        status, body = await get(path, token=raw)
        assert status == 404, path
        assert "that you may see" in body["detail"]
