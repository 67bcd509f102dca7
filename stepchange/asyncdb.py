"""Database work from async code: run it on Django's worker thread, then hand the
connection back.

Like Channels' `database_sync_to_async`, which cannot be used inside an atomic block
(it closes the connection there, and Django cannot reopen one in a transaction). Async
views and consumers call this before waiting on an executor, possibly for long, so that
no connection is held meanwhile.
"""

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connection

P = ParamSpec("P")
R = TypeVar("R")


def db_async(function: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        finally:
            if not connection.in_atomic_block:
                close_old_connections()

    return sync_to_async(run, thread_sensitive=True)
