"""The Redis cache's connection pool: one per process, whichever thread asks."""

import threading
from typing import Any

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

from stepchange.cache import SharedConnectionPool

REDIS = "redis://127.0.0.1:6379/9"
SHARED = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS,
        "OPTIONS": {"pool_class": "stepchange.cache.SharedConnectionPool"},
    }
}


def pool_seen_in_a_new_thread() -> object:
    seen: list[object] = []

    def look() -> None:
        cache = caches["default"]
        assert isinstance(cache, RedisCache)
        # Django's client, private: the pool is what this pins.
        seen.append(cache._cache._get_connection_pool(write=True))  # type: ignore[attr-defined]

    thread = threading.Thread(target=look)
    thread.start()
    thread.join()
    return seen[0]


def test_every_thread_of_a_process_shares_one_pool(settings: Any) -> None:
    settings.CACHES = SHARED
    first, second = pool_seen_in_a_new_thread(), pool_seen_in_a_new_thread()
    assert isinstance(first, SharedConnectionPool)
    assert first is second


def test_each_server_and_each_set_of_options_has_its_own_pool() -> None:
    one = SharedConnectionPool.from_url(REDIS)
    assert SharedConnectionPool.from_url(REDIS) is one
    assert SharedConnectionPool.from_url("redis://127.0.0.1:6379/10") is not one
    assert SharedConnectionPool.from_url(REDIS, max_connections=5) is not one


def test_without_the_option_django_makes_a_pool_per_thread(settings: Any) -> None:
    # What the option is for: Django's own default, pinned so the test above means something.
    settings.CACHES = {"default": {**SHARED["default"], "OPTIONS": {}}}
    assert pool_seen_in_a_new_thread() is not pool_seen_in_a_new_thread()
