"""An oversized import upload through the live server (Daphne): refused with the reason,
nothing kept. Daphne receives a whole body before the application starts, so the refusal
comes once it is in (README: cap bodies at the proxy); Django never parses it."""

import http.client
import uuid

import pytest

from tests.e2e.servers import StepChange

pytestmark = pytest.mark.e2e

BODY = 100 * 1024 * 1024


def uploads_held(server: StepChange) -> int:
    out = server.manage(
        "shell", "-c", "from forks.models import ImportUpload; print(ImportUpload.objects.count())"
    )
    return int(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def app(stepchange: StepChange) -> str:
    name = f"guard-{uuid.uuid4().hex[:6]}"
    stepchange.manage("register_app", name, "--key", f"key-{uuid.uuid4().hex}")
    return name


def test_a_100_mb_upload_to_the_import_api_is_refused_with_the_reason_and_nothing_is_kept(
    stepchange: StepChange, app: str
) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", stepchange.port, timeout=120)
    connection.request(
        "POST",
        f"/api/v1/apps/{app}/imports",
        body=b"x" * BODY,
        headers={
            "Authorization": f"Bearer {stepchange.token()}",
            "Content-Type": "application/json",
        },
    )
    response = connection.getresponse()
    answer = response.read()
    connection.close()

    assert response.status == 413, answer
    assert answer.startswith(b'{"detail": "The file is 104,857,600 bytes;'), answer
    assert uploads_held(stepchange) == 0
    # The server is still there and answering.
    status, _ = stepchange.api("GET", f"/apps/{app}/workflows")
    assert status in (200, 503)


def test_an_upload_within_the_limit_reaches_the_application(
    stepchange: StepChange, app: str
) -> None:
    status, answer = stepchange.api("POST", f"/apps/{app}/imports?preview=true", {"x": 1})
    # Django read it: not an export file, said by the import's own check.
    assert status == 400, answer
    assert "not a StepChange export" in answer["detail"], answer
