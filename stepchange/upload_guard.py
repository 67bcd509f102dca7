"""Refusing an oversized import upload before its body is received.

An export file may be at most EXPORT_FILE_MAX_BYTES. Django sees a request only once its
whole body has been received, under every ASGI server (its handler reads the body before
it routes), and Daphne starts the ASGI application only after Twisted has received the
whole body (`WebRequest.process` runs from `requestReceived`), then queues it all at once:
a 100 MB upload was held in memory before the view could refuse it. So the refusal is
decided here from the request line and headers alone, and answered at once: by
`stepchange.server` from Twisted's `gotLength` under Daphne (the body is then counted and
dropped, never stored), and by `guard_http` around the ASGI application under servers that
start it with the headers. The views keep their own checks (and audit what they refuse)
for bodies that reach them.

The refusal comes before authentication: there is no actor to audit, and anyone may be
answered that the endpoint takes at most so many bytes (the limit is no secret). It is
logged.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

API_IMPORT = re.compile(r"^/api/v1/apps/([^/?#]+)/imports/?$")
CONSOLE_IMPORT = re.compile(r"^/apps/([^/?#]+)/import/$")
# Room for the console form's other fields and the multipart boundaries around the file.
FORM_OVERHEAD = 64 * 1024


@dataclass(frozen=True)
class Refusal:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    problem: str


def limit_for(method: str, path: str) -> int | None:
    """The most bytes a request body may have on this path, None when not guarded here."""
    from forks import exports

    if method.upper() != "POST":
        return None
    path = path.split("?", 1)[0]
    if API_IMPORT.match(path):
        return exports.max_bytes()
    if CONSOLE_IMPORT.match(path):
        return exports.max_bytes() + FORM_OVERHEAD
    return None


def refusal(method: str, path: str, length: int | None) -> Refusal | None:
    """The answer to a request whose body is `length` bytes, or None to let it through.
    The API gets a 413 with `{"detail": ...}`; the console form is sent back to the import
    page, which says why (a browser shows a page, not JSON)."""
    from forks import exports

    limit = limit_for(method, path)
    if limit is None or length is None or length <= limit:
        return None
    path = path.split("?", 1)[0]
    problem = exports.TOO_LARGE.format(size=length, limit=exports.max_bytes())
    console = CONSOLE_IMPORT.match(path)
    if console is not None:
        location = f"{path}?too_large={length}".encode()
        return Refusal(303, [(b"location", location)], b"", problem)
    body = json.dumps({"detail": problem}).encode()
    return Refusal(413, [(b"content-type", b"application/json")], body, problem)


def content_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def raw_response(refused: Refusal) -> bytes:
    """The whole HTTP/1.1 response; the connection closes after it."""
    reason = {303: b"See Other", 413: b"Content Too Large"}[refused.status]
    head = [b"HTTP/1.1 %d %s" % (refused.status, reason)]
    head += [name + b": " + value for name, value in refused.headers]
    head += [b"content-length: %d" % len(refused.body), b"connection: close"]
    return b"\r\n".join(head) + b"\r\n\r\n" + refused.body


def log_refusal(refused: Refusal, path: str, client: Any) -> None:
    logger.warning("upload refused before receipt: %s %s from %s", path, refused.problem, client)


ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def guard_http(app: ASGIApp) -> ASGIApp:
    """`app`, with oversized import uploads answered from their headers, the body unread."""

    async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        refused = refusal(scope["method"], scope["path"], content_length(scope["headers"]))
        if refused is None:
            await app(scope, receive, send)
            return
        log_refusal(refused, scope["path"], scope.get("client"))
        headers = [*refused.headers, (b"content-length", b"%d" % len(refused.body))]
        headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": refused.status, "headers": headers})
        await send({"type": "http.response.body", "body": refused.body})

    return guarded
