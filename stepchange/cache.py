"""The Redis cache's connections: one pool per process.

Django's Redis cache makes a cache object, and with it a client and a connection pool,
per thread and per async context, so a process serving a fleet opened a pool (and its
sockets) in every worker thread. `pool_class` is the option Django offers for this:
this class hands every client of a process the same pool for the same server; redis-py's
pools are safe to share between threads.
"""

import threading
from typing import Any

import redis

_pools: dict[tuple[str, str], "SharedConnectionPool"] = {}
_lock = threading.Lock()


class SharedConnectionPool(redis.ConnectionPool):
    @classmethod
    def from_url(cls, url: str, **options: Any) -> "SharedConnectionPool":
        key = (url, repr(sorted(options.items())))
        with _lock:
            pool = _pools.get(key)
            if pool is None:
                pool = _pools[key] = super().from_url(url, **options)
            return pool
