"""The pooled SQLite backend: a connection closed on one thread is the next thread's."""

import threading
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.db.utils import ConnectionHandler

from stepchange.env import SQLITE_ENGINE
from stepchange.sqlite import base


@pytest.fixture
def handler(tmp_path: Path, django_db_blocker: Any) -> Any:
    base.close_idle()
    with django_db_blocker.unblock():
        yield ConnectionHandler(
            {"default": {"ENGINE": SQLITE_ENGINE, "NAME": str(tmp_path / "pool.sqlite3")}}
        )
    base.close_idle()


def on_a_new_thread(handler: ConnectionHandler, work: Any) -> Any:
    """Run `work(connection)` on a thread of its own, as Django runs each request's
    database work, and close the connection at the end as Django does."""
    found: list[Any] = []

    def run() -> None:
        conn = handler["default"]
        try:
            found.append(work(conn))
        finally:
            conn.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return found[0]


def raw_connection(conn: Any) -> Any:
    conn.ensure_connection()
    return conn.connection


def test_a_closed_connection_is_taken_by_the_next_thread(handler: ConnectionHandler) -> None:
    first = on_a_new_thread(handler, raw_connection)
    second = on_a_new_thread(handler, raw_connection)
    assert second is first

    def query(conn: Any) -> Any:
        with conn.cursor() as cursor:
            # Django's own SQL functions stay registered on a pooled connection.
            cursor.execute("SELECT django_format_dtdelta('+', 1000000, 1000000), 41 + 1")
            return cursor.fetchone()

    assert on_a_new_thread(handler, query)[1] == 42


def test_a_connection_in_a_transaction_is_not_pooled(handler: ConnectionHandler) -> None:
    def left_open(conn: Any) -> Any:
        conn.ensure_connection()
        with conn.cursor() as cursor:
            cursor.execute("CREATE TABLE t (x INTEGER)")
        conn.set_autocommit(False)
        with conn.cursor() as cursor:
            cursor.execute("INSERT INTO t VALUES (1)")
        assert conn.connection.in_transaction
        return conn.connection

    stale = on_a_new_thread(handler, left_open)
    fresh = on_a_new_thread(handler, raw_connection)
    assert fresh is not stale

    def count(conn: Any) -> Any:
        with conn.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM t")
            return cursor.fetchone()[0]

    # The uncommitted row went with the closed connection.
    assert on_a_new_thread(handler, count) == 0


def test_the_pool_is_bounded(handler: ConnectionHandler) -> None:
    barrier = threading.Barrier(base.POOL_SIZE + 2)
    opened: list[Any] = []

    def hold(_: int) -> None:
        conn = handler["default"]
        opened.append(raw_connection(conn))
        barrier.wait()  # all open at once, so none is reused
        conn.close()

    threads = [threading.Thread(target=hold, args=(i,)) for i in range(base.POOL_SIZE + 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(c) for c in opened}) == base.POOL_SIZE + 2
    assert sum(len(pool) for pool in base._pools.values()) == base.POOL_SIZE


def test_the_app_database_uses_it() -> None:
    assert connections["default"].__class__ is base.DatabaseWrapper or (
        connections["default"].vendor == "postgresql"
    )
