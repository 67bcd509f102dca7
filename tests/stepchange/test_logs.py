"""Stories about log lines and the request id they carry."""

import json
import logging
import re
import sys

import pytest
from django.test import Client

from stepchange.logs import HEADER, JsonFormatter, RequestIdFilter, request_id_set
from stepchange.models import AuditRecord

NEW_ID = re.compile(r"[0-9a-f]{32}")


@pytest.mark.django_db
def test_a_callers_request_id_is_answered_back() -> None:
    response = Client().get("/healthz", headers={HEADER: "lb-7f3a:1"})
    assert response[HEADER] == "lb-7f3a:1"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "offered", ["", "x" * 65, "a b", "id\r\nSet-Cookie: x", "ünïcode", "<script>"]
)
def test_an_unusable_request_id_is_replaced_by_one_of_ours(offered: str) -> None:
    response = Client().get("/healthz", headers={HEADER: offered} if offered else {})
    assert NEW_ID.fullmatch(response[HEADER])


@pytest.mark.django_db
def test_the_audit_record_keeps_the_request_id() -> None:
    # Someone not signed in posts to a console form: refused, and audited.
    response = Client().post("/tokens/", {"name": "x"}, headers={HEADER: "trace-123"})
    assert response.status_code == 302
    record = AuditRecord.objects.get(action="access.denied")
    assert record.http_request_id == "trace-123"
    assert response[HEADER] == "trace-123"


def _line(message: str, *args: object, exc: bool = False) -> dict[str, object]:
    record = logging.LogRecord("conductor.relay", logging.WARNING, __file__, 1, message, args, None)
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            record.exc_info = sys.exc_info()
    RequestIdFilter().filter(record)
    text = JsonFormatter().format(record)
    assert "\n" not in text
    parsed: dict[str, object] = json.loads(text)
    return parsed


def test_a_json_line_has_time_level_logger_message_and_request_id() -> None:
    with request_id_set("req-1"):
        line = _line("Executor %s did not answer", "e-1")
    assert set(line) == {"time", "level", "logger", "message", "request_id"}
    assert line["level"] == "WARNING"
    assert line["logger"] == "conductor.relay"
    assert line["message"] == "Executor e-1 did not answer"
    assert line["request_id"] == "req-1"
    assert str(line["time"]).endswith("+00:00")


def test_a_json_line_carries_the_exception_on_the_same_line() -> None:
    line = _line("it failed", exc=True)
    assert line["request_id"] == ""
    assert "ValueError: boom" in str(line["exception"])
    assert "Traceback" in str(line["exception"])
