"""The request log: every request relayed to an executor, written in batches.

One INSERT per relayed request would cap a process at what one database commit per
request allows (a few hundred a second on SQLite). Entries instead go to an in-process
queue that a writer thread drains every `FLUSH_SECONDS` with one bulk insert. A crash
loses at most that much of the log, never a request. The thread starts and stops with the
server (`stepchange.background`), and writes what it holds before it ends.
"""

import atexit
import logging
import queue
import threading
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from conductor.models import RequestLog

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 0.2
BATCH_SIZE = 500
PRUNE_EVERY_SECONDS = 3600
WRITER_NAME = "request-log"

# Plain dicts: model instances are built in the writer thread, off the event loop.
_queue: "queue.SimpleQueue[dict[str, Any]]" = queue.SimpleQueue()
_writer: threading.Thread | None = None
_writer_lock = threading.Lock()
# Entries taken off the queue and not yet written: only the writer thread touches it.
_pending: list[dict[str, Any]] = []
MAX_PENDING = 50_000
_stop = threading.Event()
_last_prune = 0.0


def clip(text: str) -> tuple[str, bool]:
    """A body kept up to REQUEST_LOG_BODY_BYTES, and whether it was cut."""
    limit = settings.REQUEST_LOG_BODY_BYTES
    if len(text) <= limit:
        return text, False
    return text[:limit], True


def request_log_add(**fields: Any) -> None:
    """Queue one entry; with REQUEST_LOG_INLINE it is written at once (tests)."""
    if settings.REQUEST_LOG_INLINE:
        RequestLog.objects.create(**fields)
        return
    _queue.put(fields)


def request_log_flush() -> int:
    """Write everything queued so far, in this thread. Returns how many entries.

    A batch the database refuses (locked, briefly down) stays queued for the next flush;
    past MAX_PENDING entries the oldest are dropped, with a warning, rather than memory.
    """
    while True:
        try:
            _pending.append(_queue.get_nowait())
        except queue.Empty:
            break
    if len(_pending) > MAX_PENDING:
        dropped = len(_pending) - MAX_PENDING
        del _pending[:dropped]
        logger.warning(
            "Dropped the %d oldest request-log entries: the database refuses them", dropped
        )
    written = 0
    while _pending:
        batch = _pending[:BATCH_SIZE]
        RequestLog.objects.bulk_create([RequestLog(**fields) for fields in batch])
        del _pending[: len(batch)]
        written += len(batch)
    return written


def request_log_prune(*, now: Any = None) -> int:
    """Delete entries older than REQUEST_LOG_RETENTION_DAYS."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.REQUEST_LOG_RETENTION_DAYS)
    deleted, _ = RequestLog.objects.filter(sent_at__lt=cutoff).delete()
    return deleted


def request_log_start() -> None:
    """Start the writer thread, unless it runs."""
    global _writer
    if _writer is not None and _writer.is_alive():
        return
    with _writer_lock:
        if _writer is None or not _writer.is_alive():
            _writer = threading.Thread(target=_write_forever, name=WRITER_NAME, daemon=True)
            _writer.start()


def request_log_running() -> bool:
    return _writer is not None and _writer.is_alive()


def request_log_stop() -> None:
    """Stop the writer thread after a last flush (process shutdown, tests)."""
    global _writer
    with _writer_lock:
        if _writer is not None:
            _stop.set()
            _writer.join(timeout=10)
            _writer = None
            _stop.clear()


def _write_forever() -> None:
    global _last_prune
    while not _stop.wait(FLUSH_SECONDS):
        try:
            request_log_flush()
            if timezone.now().timestamp() - _last_prune > PRUNE_EVERY_SECONDS:
                _last_prune = timezone.now().timestamp()
                request_log_prune()
        except Exception:
            # The log must never take relaying down with it; say so and keep going.
            logger.exception("Writing the request log failed")
        finally:
            close_old_connections()
    try:
        request_log_flush()
    finally:
        close_old_connections()


@atexit.register
def _flush_at_exit() -> None:
    """Write what came after the writer stopped (requests that failed as the server shut
    down), or in a process that never started it."""
    try:
        request_log_stop()
        request_log_flush()
    except Exception:
        logger.exception("Flushing the request log at exit failed")
