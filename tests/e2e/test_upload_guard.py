"""An oversized import upload through the live server (Daphne): answered from its headers,
its body never stored, the server's memory flat (stepchange.upload_guard).

Without the guard Daphne received the whole body, then queued all of it for the
application at once: a 100 MB body took 0.8 s to be refused and raised the server's peak
RSS by about 105 MB. These tests fail if that comes back.
"""

import http.client
import select
import socket
import time
import uuid
from pathlib import Path

import pytest

from tests.e2e.servers import StepChange

pytestmark = pytest.mark.e2e

MB = 1024 * 1024
BODY = 100 * MB


def peak_rss_kb(server: StepChange) -> int:
    """The server process's peak resident memory (VmHWM) so far."""
    assert server.process is not None
    status = Path(f"/proc/{server.process.popen.pid}/status").read_text()
    [line] = [line for line in status.splitlines() if line.startswith("VmHWM:")]
    return int(line.split()[1])


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


def test_a_100_mb_upload_to_the_import_api_is_refused_at_once_and_nothing_is_kept(
    stepchange: StepChange, app: str
) -> None:
    body = b"x" * BODY
    before = peak_rss_kb(stepchange)
    connection = http.client.HTTPConnection("127.0.0.1", stepchange.port, timeout=60)
    started = time.monotonic()
    connection.request(
        "POST",
        f"/api/v1/apps/{app}/imports",
        body=body,
        headers={
            "Authorization": f"Bearer {stepchange.token()}",
            "Content-Type": "application/json",
        },
    )
    response = connection.getresponse()
    answer = response.read()
    elapsed = time.monotonic() - started
    connection.close()

    assert response.status == 413, answer
    assert answer.startswith(b'{"detail": "The file is 104,857,600 bytes;'), answer
    assert elapsed < 5, elapsed
    # The body was dropped as it came: not held by Daphne, not handed to Django.
    grown = peak_rss_kb(stepchange) - before
    assert grown < 30 * 1024, f"peak RSS grew by {grown} kB"
    assert uploads_held(stepchange) == 0


def test_a_client_that_waits_for_100_continue_is_answered_before_it_sends_a_byte(
    stepchange: StepChange, app: str
) -> None:
    head = (
        f"POST /api/v1/apps/{app}/imports HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nContent-Length: {BODY}\r\nExpect: 100-continue\r\n"
        f"Authorization: Bearer {stepchange.token()}\r\nContent-Type: application/json\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", stepchange.port), timeout=10) as sock:
        sock.sendall(head.encode())
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk

    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line == b"HTTP/1.1 413 Content Too Large", answer
    # No "100 Continue" first: the body is not wanted.
    assert b" 100 " not in answer
    assert b'"detail": "The file is 104,857,600 bytes;' in answer


def test_a_chunked_upload_is_cut_off_once_it_passes_the_limit(
    stepchange: StepChange, app: str
) -> None:
    head = (
        f"POST /api/v1/apps/{app}/imports HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Transfer-Encoding: chunked\r\nAuthorization: Bearer {stepchange.token()}\r\n"
        "Content-Type: application/json\r\n\r\n"
    )
    chunk = b"y" * MB
    sent = 0
    with socket.create_connection(("127.0.0.1", stepchange.port), timeout=10) as sock:
        sock.sendall(head.encode())
        answer = b""
        while sent < BODY and not answer:
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                answer = sock.recv(65536)

    assert answer.startswith(b"HTTP/1.1 413 Content Too Large"), answer[:200]
    # Answered once past the limit (32 MiB by default), long before 100 MB were sent.
    assert sent < 60 * MB, sent


def test_an_oversized_console_upload_is_sent_back_to_the_import_page_which_says_why(
    stepchange: StepChange, app: str
) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", stepchange.port, timeout=60)
    connection.request(
        "POST",
        f"/apps/{app}/import/",
        body=b"z" * BODY,
        headers={"Content-Type": "multipart/form-data; boundary=xyz"},
    )
    response = connection.getresponse()
    response.read()
    connection.close()

    assert response.status == 303
    assert response.getheader("Location") == f"/apps/{app}/import/?too_large={BODY}"


def test_an_upload_within_the_limit_reaches_the_application(
    stepchange: StepChange, app: str
) -> None:
    status, answer = stepchange.api("POST", f"/apps/{app}/imports?preview=true", {"x": 1})
    # Django read it: not an export file, said by the import's own check.
    assert status == 400, answer
    assert "not a StepChange export" in answer["detail"], answer
