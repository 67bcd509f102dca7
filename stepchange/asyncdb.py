"""Database work from async code: run it on Django's worker thread, then hand pooled
connections back to their pool.

Like Channels' `database_sync_to_async`, which cannot be used inside an atomic block
(it closes the connection there, and Django cannot reopen one in a transaction). Async
views and consumers call this before waiting on an executor, possibly for long, so that
no pooled connection is held meanwhile. A connection without a pool (SQLite) stays open
for the rest of the request, which Django closes when it ends.
"""

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.db import connection, connections
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def _call(function: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
    try:
        return function(*args, **kwargs)
    finally:
        if not connection.in_atomic_block:
            release_pooled_connections()


def release_pooled_connections() -> None:
    """Hand this thread's pooled connections back (Django's pool for Postgres): closing
    one returns it to its pool. Others are left to Django's end of the request."""
    for conn in connections.all(initialized_only=True):
        if getattr(conn, "pool", None) is not None:
            conn.close_if_unusable_or_obsolete()


_on_the_thread = sync_to_async(_call, thread_sensitive=True)


def db_async(function: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """`function`, run on the request's database thread (thread-sensitive, as Django's
    `sync_to_async`), with pooled connections handed back after it unless a transaction
    is open."""

    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        found: R = await _on_the_thread(function, args, kwargs)
        return found

    return run


@contextlib.asynccontextmanager
async def own_thread() -> AsyncIterator[None]:
    """`db_async` work inside runs on a thread of its own, with its own connections (closed
    at the end), instead of the one thread every background loop shares otherwise: a long
    pass through a system database (a retention sweep, a recovery of thousands of
    workflows) must not hold up the loops that keep this process's beat and its executors'
    heartbeats, or other processes would take it for dead."""
    async with ThreadSensitiveContext():
        try:
            yield
        finally:
            await db_async(_close_outside_transactions)()


def _close_outside_transactions() -> None:
    # A caller's open transaction (a test's, run through `async_to_sync`) is visible here
    # and is not this thread's to end.
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close()


async def arender(
    request: HttpRequest, template: str, context: dict[str, Any], status: int = 200
) -> HttpResponse:
    """`render`, from async code: the layout's context processors query the database."""
    response: HttpResponse = await db_async(render)(request, template, context, status=status)
    return response
