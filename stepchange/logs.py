"""Log lines and the request id they carry (README "Logs").

Every HTTP request gets an id: the caller's `X-Request-ID` when it is short and plain,
else a new one. It is answered back in `X-Request-ID`, travels with a relayed request to
the process holding the executor (so the line logging the executor's answer names it),
lands in the audit record, and is on every log line written while the request is served.
`LOG_FORMAT=json` writes those lines as one JSON object each.
"""

import json
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

from django.http import HttpRequest
from django.http.response import HttpResponseBase

HEADER = "X-Request-ID"
# Short, and nothing a log line or a header could be bent with.
VALID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

_request_id: ContextVar[str] = ContextVar("stepchange_request_id", default="")


def request_id_get() -> str:
    """The id of the request being served here, or ""."""
    return _request_id.get()


def request_id_from(header: str | None) -> str:
    """The caller's id when it is acceptable, else a new one (a bad one is not an error:
    the request is served, under an id of ours)."""
    if header and VALID.fullmatch(header):
        return header
    return uuid.uuid4().hex


@contextmanager
def request_id_set(request_id: str) -> Iterator[None]:
    """Lines logged inside carry `request_id` (a relayed request's, in its consumer)."""
    token = _request_id.set(request_id)
    try:
        yield
    finally:
        _request_id.reset(token)


class RequestIdMiddleware:
    """First in the chain, so that whatever answers (a redirect, a refusal) answers the id.
    Synchronous like the rest of the chain (see AuditRefusalsMiddleware)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        request_id = request_id_from(request.headers.get(HEADER))
        with request_id_set(request_id):
            response = self.get_response(request)
        response[HEADER] = request_id
        return response


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record, for either format."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, and the
    exception (with its traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", ""),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        # default=str: a message argument that is not JSON (an exception, a path) is text.
        return json.dumps(line, ensure_ascii=False, default=str)
