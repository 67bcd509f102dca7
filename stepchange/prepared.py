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

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connections
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


def run_together(alias: str, statements: Sequence[Statement]) -> list[list[Any]]:
    """Each statement's rows. On Postgres the statements go as one query, in one round
    trip: Django's psycopg cursors bind values on the client (OPTIONS has no
    server_side_binding), which lets a query hold several statements, and their results
    come back together. Three reads took 0.6-0.7 ms so against 0.6-1.5 one after another
    and 2.0-2.4 in a psycopg pipeline, here. Elsewhere (SQLite) they run one after another.
    A statement with no SQL (a queryset that can match nothing) has no rows."""
    sent = [(sql, params) for sql, params in statements if sql]
    found: list[list[Any]] = []
    connection = connections[alias]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql" and len(sent) > 1:
            cursor.execute("; ".join(sql for sql, _ in sent), [v for _, ps in sent for v in ps])
            found.append(cursor.fetchall())
            while cursor.nextset():
                found.append(cursor.fetchall())
        else:
            for sql, params in sent:
                cursor.execute(sql, params)
                found.append(cursor.fetchall())
    rows = iter(found)
    return [next(rows) if sql else [] for sql, _ in statements]


def _same(value: Any, marker: Any) -> bool:
    return isinstance(value, type(marker)) and value == marker


def clear() -> None:
    with _lock:
        _cache.clear()
