"""The upload guard decides from the request line and headers alone: an import upload
declared larger than EXPORT_FILE_MAX_BYTES is answered without its body being read (the
live server's side is tests/e2e/test_upload_guard.py)."""

import asyncio
import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import override_settings

from stepchange import upload_guard
from tests.conftest import make_app, signed_in

LIMIT = 1024


@override_settings(EXPORT_FILE_MAX_BYTES=LIMIT)
@pytest.mark.parametrize(
    ("method", "path", "length", "status"),
    [
        ("POST", "/api/v1/apps/orders/imports", LIMIT + 1, 413),
        ("POST", "/api/v1/apps/orders/imports?new_ids=true", LIMIT + 1, 413),
        ("post", "/api/v1/apps/orders/imports", 10 * LIMIT, 413),
        ("POST", "/api/v1/apps/orders/imports", LIMIT, None),
        ("POST", "/api/v1/apps/orders/imports", None, None),
        ("GET", "/api/v1/apps/orders/imports", LIMIT + 1, None),
        ("POST", "/api/v1/apps/orders/workflows", LIMIT + 1, None),
        ("POST", "/api/v1/apps/orders/imports/extra", LIMIT + 1, None),
        # The console form has room for its other fields and boundaries.
        ("POST", "/apps/orders/import/", LIMIT + upload_guard.FORM_OVERHEAD, None),
        ("POST", "/apps/orders/import/", LIMIT + upload_guard.FORM_OVERHEAD + 1, 303),
    ],
)
def test_only_an_oversized_post_to_an_import_endpoint_is_refused(
    method: str, path: str, length: int | None, status: int | None
) -> None:
    refused = upload_guard.refusal(method, path, length)
    assert (refused.status if refused else None) == status


@override_settings(EXPORT_FILE_MAX_BYTES=LIMIT)
def test_the_api_refusal_is_a_413_with_the_reason_and_the_console_goes_back_to_its_page() -> None:
    api = upload_guard.refusal("POST", "/api/v1/apps/orders/imports", 5000)
    assert api is not None
    assert json.loads(api.body) == {
        "detail": "The file is 5,000 bytes; an export file may be at most 1,024 bytes."
    }
    raw = upload_guard.raw_response(api)
    assert raw.startswith(b"HTTP/1.1 413 Content Too Large\r\n")
    assert b"\r\nconnection: close\r\n" in raw
    assert raw.endswith(b"\r\n\r\n" + api.body)
    console = upload_guard.refusal("POST", "/apps/orders/import/", 500_000)
    assert console is not None
    assert console.headers == [(b"location", b"/apps/orders/import/?too_large=500000")]


def run_guarded(path: str, headers: list[tuple[bytes, bytes]]) -> tuple[list[dict[str, Any]], bool]:
    """What the guarded application sends, and whether the inner one was called."""
    sent: list[dict[str, Any]] = []
    called = False

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal called
        called = True

    async def receive() -> dict[str, Any]:
        raise AssertionError("the body was read")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "headers": headers}

    async def main() -> None:
        await upload_guard.guard_http(inner)(scope, receive, send)

    asyncio.run(main())
    return sent, called


@override_settings(EXPORT_FILE_MAX_BYTES=LIMIT)
def test_the_asgi_wrapper_answers_from_the_headers_without_reading_the_body() -> None:
    sent, called = run_guarded("/api/v1/apps/orders/imports", [(b"content-length", b"2048")])
    assert not called
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["detail"].startswith("The file is 2,048 bytes")


@override_settings(EXPORT_FILE_MAX_BYTES=LIMIT)
@pytest.mark.parametrize(
    "headers",
    [[(b"content-length", b"1024")], [], [(b"content-length", b"lots")]],
    ids=["within", "none", "not-a-number"],
)
def test_the_asgi_wrapper_lets_other_requests_through(headers: list[tuple[bytes, bytes]]) -> None:
    sent, called = run_guarded("/api/v1/apps/orders/imports", headers)
    assert called
    assert sent == []


@pytest.mark.django_db
@override_settings(EXPORT_FILE_MAX_BYTES=LIMIT)
def test_the_import_page_says_why_an_upload_was_sent_back(admin: User) -> None:
    make_app(name="orders")
    client = signed_in(admin)
    response = client.get("/apps/orders/import/?too_large=500000")
    assert response.status_code == 200
    assert b"The file is 500,000 bytes; an export file may be at most 1,024 bytes." in (
        response.content
    )
    # A size within the limit, or not a number, says nothing.
    for value in ("10", "x", "²"):
        page = client.get(f"/apps/orders/import/?too_large={value}")
        assert b"may be at most" not in page.content
