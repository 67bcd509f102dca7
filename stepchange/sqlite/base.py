"""Django's SQLite backend, with the connections of a database file kept in a small pool.

Django's ASGI handler gives every request a thread of its own for database work, and Django
keeps connections per thread: with SQLite, each request opened a connection (registering
Django's SQL functions and running the PRAGMAs), about 0.8 ms of a 10 ms page here, and
closed it when the request ended. Here a closed connection goes back to a pool of its
file instead, and the next thread to connect takes it. Django already opens SQLite
connections with `check_same_thread=False`: a connection may move between threads as long
as one thread uses it at a time, which the pool guarantees.

Only idle connections are pooled: not one inside a transaction, nor an in-memory database
(Django never closes those).
"""

import threading
from typing import Any

from django.db.backends.sqlite3 import base

POOL_SIZE = 8

_pools: dict[str, list[Any]] = {}
_lock = threading.Lock()


def _key(params: dict[str, Any]) -> str:
    return repr(sorted(params.items()))


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        if not self.is_in_memory_db():
            with _lock:
                idle = _pools.get(_key(conn_params))
                if idle:
                    return idle.pop()
        return super().get_new_connection(conn_params)

    def _close(self) -> None:
        raw = self.connection
        if raw is None or self.in_atomic_block or raw.in_transaction or self.is_in_memory_db():
            super()._close()  # type: ignore[misc]
            return
        with _lock:
            idle = _pools.setdefault(_key(self.get_connection_params()), [])
            if len(idle) < POOL_SIZE:
                idle.append(raw)
                return
        super()._close()  # type: ignore[misc]


def close_idle() -> None:
    """Close every pooled connection (a database file is about to go away)."""
    with _lock:
        idle = [raw for pool in _pools.values() for raw in pool]
        _pools.clear()
    for raw in idle:
        raw.close()
