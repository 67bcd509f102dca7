"""ORM queries compiled once and run many times with new values.

Building and compiling a queryset costs more than running it when the SQL is small: a
workflow's status row with its three payload subqueries took 1.7 ms through the ORM here,
0.3 ms of it in the database, and each of the few queries that authenticate a request
cost 0.3-0.5 ms to compile for tenths of that to run. `prepared` compiles a queryset
shape once, with markers where the values go, and keeps the SQL beside what turns its rows
into model instances (or plain rows, for `values_list`); each run fills in the values and
sends the SQL. The queryset stays the one definition of what is read.

A shape is named by its key, which must tell apart everything that changes the SQL: the
database alias, the fields deferred, a slice's bounds. Values go only where a marker was
given: a string marker for text, an integer one for numbers, compared as Django passes
them to the driver (so only for lookups Django hands over unchanged: exact, gt, in).
"""

import hashlib
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connections
from django.db.models import Model, QuerySet
from django.db.models.query import ModelIterable, ValuesListIterable

# Values that stand for the real ones while a shape is compiled; they only need to differ
# from the constants a query carries of its own. Numbers within 32 bits, which Django
# checks an integer field's lookups against.
TEXT_MARKERS = tuple(f"\x00stepchange-value-{i}\x00" for i in range(4))
NUMBER_MARKERS = tuple(-2_000_000_000 - i for i in range(4))
CACHE_SIZE = 512
# SQL and the values for its placeholders.
Statement = tuple[str, list[Any]]
# Server-side prepared statements kept on one Postgres connection, at most.
KEPT_PER_CONNECTION = 64
# Postgres's error codes: a prepared statement that is not there (a pooler in front, or a
# DISCARD), one whose plan a schema change made stale ("cached plan must not change
# result type"), one already there; class 42, errors in the statement itself.
STATEMENT_MISSING = "26000"
PLAN_CHANGED = "0A000"
STATEMENT_EXISTS = "42P05"
STATEMENT_REFUSED_CLASS = "42"


class PrepareError(RuntimeError):
    """A marker did not reach the compiled parameters (a lookup that transforms it)."""


@dataclass(frozen=True)
class Prepared:
    alias: str
    sql: str
    params: tuple[Any, ...]
    # (position in params, index of the value that goes there, the type Django gave it)
    slots: tuple[tuple[int, int, type], ...]
    # For model instances: the model, its fields' attnames and where they sit in a row, and
    # the annotations' names and positions. None for plain rows.
    model: type[Model] | None
    fields: tuple[str, ...]
    start: int
    end: int
    annotations: tuple[tuple[str, int], ...]
    converters: tuple[tuple[int, tuple[Any, ...], Any], ...]
    # How many columns a row keeps: DISTINCT adds the ordering's columns after them.
    width: int | None = None

    def fetch(self, *values: Any) -> list[Any]:
        return self.results(run_together(self.alias, [self.bind(*values)])[0])

    def bind(self, *values: Any) -> Statement:
        """The SQL with these values, to run alone or `run_together` with others."""
        params = list(self.params)
        for position, index, kind in self.slots:
            # As Django passes it (psycopg's Int4 for an integer field, say).
            params[position] = kind(values[index])
        return self.sql, params

    def results(self, rows: list[Any]) -> list[Any]:
        """The statement's rows as model instances (or converted plain rows)."""
        return self._results(rows, connections[self.alias])

    def _results(self, rows: list[Any], connection: Any) -> list[Any]:
        if self.width is not None:
            rows = [row[: self.width] for row in rows]
        if self.converters:
            rows = [self._convert(row, connection) for row in rows]
        if self.model is None:
            return rows
        found = []
        for row in rows:
            instance = self.model.from_db(self.alias, self.fields, row[self.start : self.end])
            for name, position in self.annotations:
                setattr(instance, name, row[position])
            found.append(instance)
        return found

    def first(self, *values: Any) -> Any:
        rows = self.fetch(*values)
        return rows[0] if rows else None

    def _convert(self, row: tuple[Any, ...], connection: Any) -> tuple[Any, ...]:
        converted = list(row)
        for position, functions, expression in self.converters:
            value = converted[position]
            for function in functions:
                value = function(value, expression, connection)
            converted[position] = value
        return tuple(converted)


_cache: OrderedDict[Hashable, Prepared] = OrderedDict()
_lock = threading.Lock()


def prepared(key: Hashable, build: Callable[..., QuerySet[Any]], *kinds: type) -> Prepared:
    """The compiled form of `build(*markers)`, one marker per kind (str or int) in `kinds`,
    compiled on the first call with this key."""
    with _lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
            return found
    found = compile_queryset(build(*_markers(kinds)), kinds)
    with _lock:
        _cache[key] = found
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return found


def _markers(kinds: tuple[type, ...]) -> list[Any]:
    markers: list[Any] = []
    for kind in kinds:
        pool = TEXT_MARKERS if kind is str else NUMBER_MARKERS
        markers.append(pool[sum(1 for k in kinds[: len(markers)] if k is kind)])
    return markers


def compile_queryset(queryset: QuerySet[Any], kinds: tuple[type, ...] = ()) -> Prepared:
    alias = queryset.db
    if queryset.query.is_empty():
        return Prepared(alias, "", (), (), None, (), 0, 0, (), ())
    compiler = queryset.query.get_compiler(using=alias)
    sql, params = compiler.as_sql()
    markers = _markers(kinds)
    slots = []
    for index, marker in enumerate(markers):
        positions = [p for p, value in enumerate(params) if _same(value, marker)]
        if not positions:
            raise PrepareError(f"value {index} does not reach the SQL of {queryset.model}")
        slots += [(position, index, type(params[position])) for position in positions]
    columns = [expression for expression, _, _ in compiler.select[: compiler.col_count]]
    converters = tuple(
        (position, tuple(functions), expression)
        for position, (functions, expression) in compiler.get_converters(columns).items()
    )
    klass_info = compiler.klass_info
    model = None
    fields: tuple[str, ...] = ()
    start = end = 0
    annotations: tuple[tuple[str, int], ...] = ()
    if klass_info is not None and queryset._iterable_class is ModelIterable:
        if compiler.query.select_related:
            raise PrepareError("select_related is not supported")
        selected = klass_info["select_fields"]
        start, end = selected[0], selected[-1] + 1
        fields = tuple(column.target.attname for column in columns[start:end])
        model = klass_info["model"]
        annotations = tuple(compiler.annotation_col_map.items())
    elif queryset._iterable_class is not ValuesListIterable:
        raise PrepareError("only model instances and values_list rows are supported")
    return Prepared(
        alias,
        sql,
        tuple(params),
        tuple(slots),
        model,
        fields,
        start,
        end,
        annotations,
        converters,
        compiler.col_count if compiler.has_extra_select else None,
    )


def run_together(
    alias: str, statements: Sequence[Statement], *, keep_plans: bool = False
) -> list[list[Any]]:
    """Each statement's rows. On Postgres the statements go as one query, in one round
    trip: Django's psycopg cursors bind values on the client (OPTIONS has no
    server_side_binding), which lets a query hold several statements, and their results
    come back together (a psycopg pipeline measured slower here). Elsewhere (SQLite) they
    run one after another. A statement with no SQL (a queryset that can match nothing) has
    no rows.

    `keep_plans`, for statements whose plan does not depend on their values (reads by
    primary key) and whose values are all compared with columns (Postgres infers their
    types from them): each statement is prepared once per connection and then executed by
    name, which spares Postgres planning it every time; planning a workflow's three reads
    cost more than running them (the read 1.9 -> 1.2 ms p50 here, decoding included).
    Statements Postgres cannot prepare run as they are; one gone from the connection (a
    DISCARD) or made stale by a schema change is prepared again.
    settings.SERVER_PREPARED_STATEMENTS turns this off, for a pooler in transaction mode
    (PgBouncer), which would lose them between transactions."""
    sent = [(sql, params) for sql, params in statements if sql]
    found: list[list[Any]] = []
    connection = connections[alias]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql" and sent and (len(sent) > 1 or keep_plans):
            query = None
            if keep_plans and settings.SERVER_PREPARED_STATEMENTS:
                query = _by_name(connection, cursor, [sql for sql, _ in sent])
            values = [v for _, ps in sent for v in ps]
            try:
                cursor.execute(query or "; ".join(sql for sql, _ in sent), values)
            except DatabaseError as exc:
                if query is None or _sqlstate(exc) not in (STATEMENT_MISSING, PLAN_CHANGED):
                    raise
                _forget_statements(connection, cursor)
                cursor.execute("; ".join(sql for sql, _ in sent), values)
            found.append(cursor.fetchall())
            while cursor.nextset():
                found.append(cursor.fetchall())
        else:
            for sql, params in sent:
                cursor.execute(sql, params)
                found.append(cursor.fetchall())
    rows = iter(found)
    return [next(rows) if sql else [] for sql, _ in statements]


# The statements prepared on each Postgres connection (the driver's own connection
# object), by SQL text, least recently used first; and the SQL Postgres would not prepare.
_kept: weakref.WeakKeyDictionary[Any, OrderedDict[str, str]] = weakref.WeakKeyDictionary()
_refused: set[str] = set()
_placeholders = re.compile(r"%[%s]")


def _by_name(connection: Any, cursor: Any, sqls: list[str]) -> str | None:
    """The query that executes these statements by name, preparing those this connection
    lacks; None if one cannot be prepared, or inside a transaction (where a failed
    statement would abort it)."""
    if connection.in_atomic_block or any(sql in _refused for sql in sqls):
        return None
    with _lock:
        kept = _kept.setdefault(connection.connection, OrderedDict())
    executes = []
    for sql in sqls:
        name = kept.get(sql)
        if name is None:
            name = _prepare(cursor, sql)
            if name is None:
                return None
            kept[sql] = name
            while len(kept) > KEPT_PER_CONNECTION:
                cursor.execute(f"DEALLOCATE {kept.popitem(last=False)[1]}")
        kept.move_to_end(sql)
        count = _placeholder_count(sql)
        executes.append(
            f"EXECUTE {name}({', '.join(['%s'] * count)})" if count else f"EXECUTE {name}"
        )
    return "; ".join(executes)


def _placeholder_count(sql: str) -> int:
    # "%%s" is a percent sign and an s, not a placeholder.
    return sum(1 for match in _placeholders.finditer(sql) if match.group() == "%s")


def _prepare(cursor: Any, sql: str) -> str | None:
    name = "stepchange_" + hashlib.blake2b(sql.encode(), digest_size=8).hexdigest()
    numbers = iter(range(1, _placeholder_count(sql) + 1))
    text = _placeholders.sub(lambda m: "%" if m.group() == "%%" else f"${next(numbers)}", sql)
    try:
        # No values: the driver sends the text as it is.
        cursor.execute(f"PREPARE {name} AS {text}")
    except DatabaseError as exc:
        state = _sqlstate(exc) or ""
        if state == STATEMENT_EXISTS:
            return name  # prepared on this connection by an earlier registry of it
        if state.startswith(STATEMENT_REFUSED_CLASS):
            # A value whose type Postgres cannot infer, say: this SQL runs planned.
            with _lock:
                if len(_refused) < CACHE_SIZE:
                    _refused.add(sql)
            return None
        raise
    return name


def forget_statements(alias: str) -> None:
    """Drop the statements prepared on this thread's connection to `alias`."""
    connection = connections[alias]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            _forget_statements(connection, cursor)


def _forget_statements(connection: Any, cursor: Any) -> None:
    """Drop this connection's prepared statements, gone or stale: they are prepared again
    when next needed."""
    with _lock:
        _kept.pop(connection.connection, None)
    cursor.execute("DEALLOCATE ALL")


def _sqlstate(exc: BaseException) -> str | None:
    state: str | None = getattr(exc.__cause__, "sqlstate", None)
    return state


def _same(value: Any, marker: Any) -> bool:
    return isinstance(value, type(marker)) and value == marker


def clear() -> None:
    with _lock:
        _cache.clear()
        _refused.clear()
