"""Stories about the request log: batched writes, clipped bodies, pruning by age."""

import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import OperationalError
from django.utils import timezone

from conductor import requestlog
from conductor.models import RequestLog
from stepchange.models import Application


def entry(application: Application, request_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "application": application,
        "request_id": request_id,
        "message_type": "get_workflow",
        "sent_at": timezone.now(),
        "outcome": "ok",
        **fields,
    }


@pytest.mark.django_db(transaction=True)
def test_entries_are_written_in_batches_by_the_writer_thread(
    orders: Application, settings: Any
) -> None:
    settings.REQUEST_LOG_INLINE = False
    requestlog.request_log_start()
    try:
        for number in range(30):
            requestlog.request_log_add(**entry(orders, f"r{number}"))
        deadline = time.monotonic() + 5
        while written() < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert written() == 30
    finally:
        requestlog.request_log_stop()


def written() -> int:
    # The test database is SQLite's shared in-memory cache, whose table locks do not wait:
    # a read that meets the writer thread's insert just tries again.
    try:
        return RequestLog.objects.count()
    except OperationalError:
        return -1


def test_bodies_are_clipped_to_the_configured_size(settings: Any) -> None:
    settings.REQUEST_LOG_BODY_BYTES = 10
    assert requestlog.clip("0123456789abc") == ("0123456789", True)
    assert requestlog.clip("short") == ("short", False)


def test_entries_older_than_the_retention_are_pruned(db: None, settings: Any) -> None:
    settings.REQUEST_LOG_RETENTION_DAYS = 7
    orders = Application.objects.create(name="orders")
    now = timezone.now()
    RequestLog.objects.create(**entry(orders, "old", sent_at=now - timedelta(days=8)))
    RequestLog.objects.create(**entry(orders, "recent", sent_at=now - timedelta(days=6)))
    assert requestlog.request_log_prune(now=now) == 1
    assert list(RequestLog.objects.values_list("request_id", flat=True)) == ["recent"]
