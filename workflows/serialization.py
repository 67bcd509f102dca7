"""Decoding and encoding of the values DBOS stores in its system database.

Mirrors PROTOCOL.md §4 (Serialization) and the edited-fork rules of §5.4. Every payload
column (inputs, outputs, errors, events, messages, streams) sits next to a
`serialization` column that names its format:

* `py_pickle`: base64 of a Python pickle. Read by a restricted decoder that walks the
  opcodes itself and never imports or calls anything (`pickle.loads` is never used).
* `portable_json`: plain JSON, written by every SDK when asked for the portable format.
* `js_superjson`: the TypeScript default, a superjson envelope with a marker key.
* `DBOS_JSON`: the Go default, base64 of JSON (dbos-transact-golang `dbos/serialization.go`).
* `java_jackson`: the Java default, Jackson JSON with type information
  (dbos-transact-java `transact/src/main/java/dev/dbos/transact/json/`).
* NULL (or empty): legacy rows, recognised from the value itself.
* Anything else (a user's custom serializer): opaque, returned raw with a note.

`decode` never raises: a value it cannot read comes back with `ok=False`, a note and
the stored text. `encode` writes edited plain-JSON values in the three formats an edited
fork may write (`portable_json`, `py_pickle`, `js_superjson`).
"""

from __future__ import annotations

import _compat_pickle
import base64
import binascii
import json
import math
import pickle
import pickletools
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Literal, TypeAlias

JSONValue: TypeAlias = "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None"
Kind: TypeAlias = Literal["value", "inputs", "error"]
WriteKind: TypeAlias = Literal["value", "inputs"]

# Values of the `serialization` column.
PY_PICKLE = "py_pickle"
PORTABLE_JSON = "portable_json"
JS_SUPERJSON = "js_superjson"
GO_JSON = "DBOS_JSON"
GO_GOB = "DBOS_GOB"
JAVA_JACKSON = "java_jackson"

# Values of `Decoded.format`: the decoder actually used.
FORMAT_PY_PICKLE = "py_pickle"
FORMAT_PORTABLE_JSON = "portable_json"
FORMAT_JS_SUPERJSON = "js_superjson"
FORMAT_TS_LEGACY_JSON = "ts_legacy_json"
FORMAT_GO_JSON = "go_json"
FORMAT_JAVA_JACKSON = "java_jackson"
FORMAT_RAW = "raw"

WRITABLE_SERIALIZATIONS = (PORTABLE_JSON, PY_PICKLE, JS_SUPERJSON)

SUPERJSON_MARKER_KEY = "__dbos_serializer"
SUPERJSON_MARKER_VALUE = "superjson"
GO_NIL_MARKER = "__DBOS_NIL"
# Key of the inert objects that stand in for what a pickle would have built.
PICKLE_PLACEHOLDER_KEY = "__pickle__"

# Work bounds. Payload columns are unbounded TEXT and written by executors we do not control.
MAX_STORED_CHARS = 32 * 1024 * 1024
MAX_PICKLE_BYTES = 8 * 1024 * 1024
MAX_PICKLE_OPCODES = 1_000_000
MAX_PICKLE_STACK = 100_000
MAX_DEPTH = 200
MAX_OUTPUT_NODES = 1_000_000
MAX_NOTES = 40
MAX_LISTED_NAMES = 20
# Larger integers cannot be written as JSON numbers by Python (int max str digits).
MAX_INT_BITS = 12_000

# Error messages and notes, kept here so tests can assert them.
NOT_WRITABLE = (
    "Cannot write values with serialization {serialization!r}: only "
    "portable_json, py_pickle and js_superjson can be written."
)
NOT_PLAIN_JSON = "Value at {path} is not plain JSON data ({type_name})."
NOT_FINITE = "Value at {path} is not a finite number."
NON_STRING_KEY = "Object key at {path} is not a string."
NESTED_TOO_DEEPLY = "Value is nested more than {limit} levels deep."
INPUTS_SHAPE = 'Inputs must be an object {"args": [...], "kwargs": {...}}.'
SUPERJSON_NO_KWARGS = "js_superjson inputs hold positional arguments only; kwargs must be empty."
UNKNOWN_KIND = "Unknown kind {kind!r}."

DECODE_FAILED = "could not decode {format}: {reason}"
# A failure the decoders did not anticipate: a bug here, never the stored value's fault.
UNEXPECTED_FAILURE = "unexpected failure decoding {format}: {reason}"
TOO_LARGE = "stored value is larger than the {limit} limit"
NOT_BASE64 = "not valid base64"
NOT_JSON = "not valid JSON ({detail})"
NOT_UTF8 = "base64 payload is not UTF-8 text"
UNRECOGNISED = "serialization column is empty and the value matches no known encoding"
UNKNOWN_SERIALIZATION = (
    "serialization {name!r} is a custom serializer: only that application can decode it"
)
GOB_NOT_DECODABLE = "Go gob encoding (DBOS_GOB) cannot be decoded here"
GO_GOB_ERROR = "Go error stored gob-encoded; cannot be decoded here"
RECOGNISED_AS = "serialization column is empty; recognised as {what}"
EMPTY_VALUE = "no stored value"

PICKLE_TOO_LARGE = "pickle is larger than {limit} bytes"
PICKLE_TOO_MANY_OPCODES = "pickle has more than {limit} opcodes"
PICKLE_STACK_TOO_DEEP = "pickle stack grows beyond {limit} items"
PICKLE_UNSUPPORTED_OPCODE = "unsupported pickle opcode {name}"
PICKLE_UNSUPPORTED_PROTOCOL = "unsupported pickle protocol {protocol}"
PICKLE_MALFORMED = "malformed pickle ({detail})"
PICKLE_REFUSED = "refused global {name}"
PICKLE_REFUSED_SUMMARY = "pickle references globals that are never allowed: {names}"
PICKLE_CUSTOM_TYPE = "custom type {name} shown as a placeholder"
PICKLE_PLACEHOLDER = "{name} shown as a placeholder"
PICKLE_EXCEPTION = "exception {name}: {message}"
PICKLE_GLOBAL_VALUE = "reference to {name} shown as a placeholder"
PICKLE_TZ_NOT_APPLIED = "timezone {name} not applied; local time shown"
PICKLE_UNPARSED_ARGS = "could not read the arguments of {name}; shown as a placeholder"
PICKLE_RECURSIVE = "recursive reference shown as a placeholder"
PICKLE_OUTPUT_TOO_LARGE = "pickle expands to more than {limit} values"
PICKLE_CALL_OF_VALUE = "call of a computed callable shown as a placeholder"

NOTE_TUPLE = "tuple shown as list"
NOTE_SET = "set shown as list"
NOTE_BYTES = "bytes shown as base64"
NOTE_NON_STRING_KEYS = "non-string dict keys converted to strings"
NOTE_DUPLICATE_KEYS = "some dict keys collided after conversion to strings"
NOTE_NON_FINITE = "non-finite number shown as a string"
NOTE_BIG_INT = "integer too large for JSON shown as a hex string"
NOTE_DATETIME = "{name} shown as an ISO 8601 string"
NOTE_TIMEDELTA = "datetime.timedelta shown as seconds"
NOTE_DECIMAL = "decimal.Decimal shown as a string"
NOTE_UUID = "uuid.UUID shown as a string"
NOTE_COMPLEX = "complex shown as a string"
NOTE_ORDERED_DICT = "collections.OrderedDict shown as an object"
NOTE_NOT_INPUTS = "inputs are not in the expected shape; shown as stored"
NOTE_NOT_ERROR = "error is not an error object; shown as stored"
NOTE_PLAIN_ERROR_TEXT = "error stored as plain text"
NOTE_GO_ERROR_TEXT = "Go stores only the error text for DBOS_JSON workflows"
NOTE_GO_SINGLE_INPUT = "Go workflows take a single input"
NOTE_SUPERJSON_NO_MARKER = "superjson envelope without the DBOS marker"
NOTE_SUPERJSON_PLAIN = "no superjson envelope; read as plain JSON"
NOTE_SUPERJSON_META_SHAPE = "superjson meta has an unexpected shape and was ignored"
NOTE_SUPERJSON_META_PATH = "superjson meta refers to a missing path and was partly ignored"
NOTE_SUPERJSON_REFERENCES = "superjson shared references shown as copies"
NOTE_SUPERJSON_TYPE = "{annotation} {how}"
NOTE_TS_DATE = "Date (dbos_Date) shown as an ISO 8601 string"
NOTE_TS_BIGINT = "BigInt (dbos_BigInt) shown as a string"
NOTE_TS_BUFFER = "Buffer shown as a list of bytes"
NOTE_JAVA_TYPES = "Jackson type information removed ({names})"
NOTE_JAVA_BOXED = "Java boxed format (older SDK)"
NOTE_JAVA_EXCEPTION_BYTES = "Java-serialized exception bytes are not decoded"
NOTE_EXTRA_KEYS = "unexpected keys kept out of the normalised value: {names}"

_SUPERJSON_TYPE_NOTES = {
    "undefined": "shown as null",
    "bigint": "shown as a string",
    "Date": "converted to an ISO 8601 string",
    "regexp": "shown as a string",
    "set": "shown as a list",
    "map": "shown as an object or a list of pairs",
    "number": "(NaN, Infinity or -0) shown as a string",
    "Error": "shown as an object",
    "URL": "shown as a string",
}

_BUILTIN_EXCEPTIONS = frozenset(
    {
        "BaseException",
        "Exception",
        "KeyboardInterrupt",
        "SystemExit",
        "GeneratorExit",
        "StopIteration",
        "StopAsyncIteration",
        "BaseExceptionGroup",
        "ExceptionGroup",
    }
)
# builtins that only name data types; every other builtin (eval, getattr, ...) is refused.
_SAFE_BUILTINS = frozenset(
    {
        "set",
        "frozenset",
        "complex",
        "bytearray",
        "bytes",
        "object",
        "str",
        "int",
        "float",
        "list",
        "dict",
        "tuple",
        "bool",
        "slice",
        "range",
    }
)
# Modules whose globals are refused outright: they name code, not data. Nothing is ever
# imported or called either way; refusing makes the whole value a decode failure.
_REFUSED_MODULES = frozenset(
    {
        "os",
        "posix",
        "nt",
        "posixpath",
        "ntpath",
        "subprocess",
        "_posixsubprocess",
        "sys",
        "importlib",
        "imp",
        "zipimport",
        "pkgutil",
        "runpy",
        "site",
        "sysconfig",
        "pickle",
        "_pickle",
        "pickletools",
        "marshal",
        "shelve",
        "dbm",
        "shutil",
        "tempfile",
        "pathlib",
        "glob",
        "io",
        "_io",
        "socket",
        "ssl",
        "select",
        "selectors",
        "http",
        "urllib",
        "ftplib",
        "smtplib",
        "telnetlib",
        "webbrowser",
        "ctypes",
        "cffi",
        "mmap",
        "fcntl",
        "resource",
        "signal",
        "pty",
        "tty",
        "termios",
        "pwd",
        "grp",
        "code",
        "codeop",
        "compileall",
        "py_compile",
        "types",
        "inspect",
        "operator",
        "_operator",
        "functools",
        "itertools",
        "gc",
        "weakref",
        "threading",
        "_thread",
        "multiprocessing",
        "concurrent",
        "asyncio",
        "timeit",
        "pdb",
        "bdb",
        "trace",
        "platform",
        "logging",
        "zipfile",
        "tarfile",
        "sqlite3",
        "codecs",
        "_codecs",
        "copyreg",
        "commands",
        "popen2",
        "nturl2path",
    }
)
_SAFE_REFUSED_MODULE_GLOBALS = frozenset(
    {
        "_codecs.encode",
        "copyreg._reconstructor",
        "copyreg.__newobj__",
        "copyreg.__newobj_ex__",
        "types.SimpleNamespace",
    }
)
# Pickle names bound methods (e.g. zoneinfo.ZoneInfo._unpickle) as getattr(class, "name").
# That call is resolved here into a longer name, which is then judged like any other.
_GETATTR = "builtins.getattr"
# Placeholders for well-known types that need no "custom type" note.
_KNOWN_PLACEHOLDERS = frozenset(
    {"uuid.UUID", "zoneinfo.ZoneInfo._unpickle", "types.SimpleNamespace"}
)

_DECIMAL_TEXT = re.compile(
    r"\s*[+-]?((\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|inf(inity)?|s?nan\d*)\s*", re.IGNORECASE
)
_JAVA_CLASS_NAME = re.compile(
    r"\[+([BCDFIJSZ]|L[\w$]+(\.[\w$]+)*;)|[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)+"
)


@dataclass(frozen=True)
class Decoded:
    """A stored value rendered as JSON-able data.

    `raw` keeps the stored text whenever the value could not be decoded (`ok` is false)
    or was decoded with some loss (types changed, placeholders, notes about it). It is
    None only for values that decoded fully and losslessly.
    """

    value: JSONValue
    format: str
    ok: bool
    notes: list[str] = field(default_factory=list)
    raw: str | None = None


class NotWritable(ValueError):
    """Raised by `encode` for a format StepChange does not write."""


def decode(
    stored: str | None,
    serialization: str | None,
    *,
    kind: Kind = "value",
    pickle_limit: int | None = None,
) -> Decoded:
    """Decode one stored payload, choosing the decoder from the `serialization` column.

    `kind` says which column the text comes from: "inputs" normalises workflow arguments to
    `{"args": [...], "kwargs": {...}}` and "error" normalises errors to
    `{"name": ..., "message": ..., ...}` where the format allows. `pickle_limit` replaces
    MAX_PICKLE_BYTES for this one payload. Never raises.
    """
    notes = _Notes(pickle_limit=pickle_limit)
    column = serialization or None
    guessed = _FORMAT_OF_COLUMN.get(column, FORMAT_RAW)
    try:
        if kind not in ("value", "inputs", "error"):
            raise _DecodeError(guessed, UNKNOWN_KIND.format(kind=kind))
        if stored is None:
            return Decoded(value=None, format=guessed, ok=True, notes=[EMPTY_VALUE])
        if len(stored) > MAX_STORED_CHARS:
            raise _DecodeError(guessed, TOO_LARGE.format(limit=f"{MAX_STORED_CHARS} characters"))
        if column is None:
            fmt, value = _recognise(stored, kind, notes)
        elif column in _DECODERS:
            fmt = _FORMAT_OF_COLUMN[column]
            value = _DECODERS[column](stored, kind, notes)
        elif column == GO_GOB:
            raise _DecodeError(FORMAT_RAW, GOB_NOT_DECODABLE, bare=True)
        else:
            raise _DecodeError(FORMAT_RAW, UNKNOWN_SERIALIZATION.format(name=column), bare=True)
    except _DecodeError as exc:
        failed = (
            exc.message if exc.bare else DECODE_FAILED.format(format=exc.fmt, reason=exc.message)
        )
        return Decoded(
            value=exc.value, format=exc.fmt, ok=False, notes=[failed, *notes.notes], raw=stored
        )
    except Exception as exc:  # the contract is "never raises": report, keep the text
        reason = f"{type(exc).__name__}: {exc}"[:200]
        return Decoded(
            value=None,
            format=guessed,
            ok=False,
            notes=[UNEXPECTED_FAILURE.format(format=guessed, reason=reason), *notes.notes],
            raw=stored,
        )
    return Decoded(
        value=value, format=fmt, ok=True, notes=notes.notes, raw=stored if notes.lossy else None
    )


def editable(decoded: Decoded) -> bool:
    """True when the value may be edited in place and written back in its own format.

    That is: it decoded fully and losslessly (no placeholders, no converted types) from
    JSON or the restricted pickle, in a format `encode` can write (PROTOCOL.md §5.4).
    """
    return decoded.ok and decoded.raw is None and decoded.format in _WRITABLE_FORMATS


def encode(value: object, serialization: str, *, kind: WriteKind = "value") -> str:
    """Encode plain JSON data for an edited fork, in the format a DBOS executor reads.

    Inputs are given as `{"args": [...], "kwargs": {...}}`. Raises `NotWritable` for any
    format other than portable_json, py_pickle and js_superjson, and ValueError for data
    that is not plain JSON (dict with string keys, list, str, int, finite float, bool, None).
    """
    if serialization not in WRITABLE_SERIALIZATIONS:
        raise NotWritable(NOT_WRITABLE.format(serialization=serialization))
    if kind not in ("value", "inputs"):
        raise ValueError(UNKNOWN_KIND.format(kind=kind))
    _require_plain_json(value)
    if kind == "inputs":
        args, kwargs = _split_inputs(value)
        if serialization == PORTABLE_JSON:
            return _dump_json({"positionalArgs": args, "namedArgs": kwargs})
        if serialization == JS_SUPERJSON:
            if kwargs:
                raise NotWritable(SUPERJSON_NO_KWARGS)
            return _dump_json({"json": args, SUPERJSON_MARKER_KEY: SUPERJSON_MARKER_VALUE})
        # The args must be a tuple: DBOS prepends self/cls to it by tuple concatenation.
        return _dump_pickle({"args": tuple(args), "kwargs": kwargs})
    if serialization == PORTABLE_JSON:
        return _dump_json(value)
    if serialization == JS_SUPERJSON:
        return _dump_json({"json": value, SUPERJSON_MARKER_KEY: SUPERJSON_MARKER_VALUE})
    return _dump_pickle(value)


# ---------------------------------------------------------------------------------------
# Shared plumbing


class _DecodeError(Exception):
    def __init__(self, fmt: str, message: str, value: JSONValue = None, *, bare: bool = False):
        super().__init__(message)
        self.fmt = fmt
        self.message = message
        self.value = value
        self.bare = bare


class _Notes:
    """Notes for the reader, and whether the rendering lost anything."""

    def __init__(self, *, pickle_limit: int | None = None) -> None:
        self.notes: list[str] = []
        self.lossy = False
        # The largest pickle this decode reads; MAX_PICKLE_BYTES unless the caller says.
        self.pickle_limit = pickle_limit

    def add(self, note: str, *, lossy: bool = True) -> None:
        if lossy:
            self.lossy = True
        if note in self.notes:
            return
        if len(self.notes) < MAX_NOTES:
            self.notes.append(note)
        elif len(self.notes) == MAX_NOTES:
            self.notes.append("more notes omitted")


def _dump_json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _dump_pickle(value: object) -> str:
    # Safe to produce: our own plain data, checked by _require_plain_json.
    return base64.b64encode(pickle.dumps(value, protocol=4)).decode("ascii")


def _require_plain_json(value: object) -> None:
    stack: list[tuple[object, str, int]] = [(value, "$", 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ValueError(NESTED_TOO_DEEPLY.format(limit=MAX_DEPTH))
        if item is None or isinstance(item, (bool, int, str)):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError(NOT_FINITE.format(path=path))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item))
        elif isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise ValueError(NON_STRING_KEY.format(path=path))
                stack.append((child, f"{path}.{key}", depth + 1))
        else:
            raise ValueError(NOT_PLAIN_JSON.format(path=path, type_name=type(item).__name__))


def _split_inputs(value: object) -> tuple[list[Any], dict[str, Any]]:
    if not isinstance(value, dict) or not set(value) <= {"args", "kwargs"}:
        raise ValueError(INPUTS_SHAPE)
    args = value.get("args", [])
    kwargs = value.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ValueError(INPUTS_SHAPE)
    return args, kwargs


def _b64decode(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def _loads_json(text: str, fmt: str, notes: _Notes) -> JSONValue:
    non_finite: list[str] = []

    def constant(name: str) -> float:
        non_finite.append(name)
        return float(name)

    try:
        value: JSONValue = json.loads(text, parse_constant=constant)
    except (ValueError, RecursionError) as exc:
        raise _DecodeError(fmt, NOT_JSON.format(detail=str(exc)[:120])) from None
    if _depth_exceeds(value):
        raise _DecodeError(fmt, NESTED_TOO_DEEPLY.format(limit=MAX_DEPTH))
    if non_finite:
        notes.add(NOTE_NON_FINITE)
        value = _finite_only(value)
    return value


def _depth_exceeds(value: JSONValue) -> bool:
    stack: list[tuple[JSONValue, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
    return False


def _finite_only(value: JSONValue) -> JSONValue:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list):
        return [_finite_only(item) for item in value]
    if isinstance(value, dict):
        return {key: _finite_only(item) for key, item in value.items()}
    return value


def _args_kwargs(args: JSONValue, kwargs: JSONValue) -> dict[str, JSONValue]:
    return {"args": args, "kwargs": kwargs}


def _normalise_error(value: JSONValue, notes: _Notes) -> JSONValue:
    """Errors from JSON formats: portable `{name, message, code, data}`, serialize-error."""
    if isinstance(value, dict) and isinstance(value.get("message"), str):
        if "name" not in value:
            return {"name": "Error", **value}
        return value
    if isinstance(value, str):
        notes.add(NOTE_PLAIN_ERROR_TEXT, lossy=False)
        return {"name": "Error", "message": value}
    notes.add(NOTE_NOT_ERROR)
    return value


# ---------------------------------------------------------------------------------------
# portable_json


def _decode_portable(text: str, kind: Kind, notes: _Notes) -> JSONValue:
    return _portable_from_parsed(_loads_json(text, FORMAT_PORTABLE_JSON, notes), kind, notes)


def _portable_from_parsed(value: JSONValue, kind: Kind, notes: _Notes) -> JSONValue:
    if kind == "error":
        return _normalise_error(value, notes)
    if kind == "value":
        return value
    if not isinstance(value, dict):
        notes.add(NOTE_NOT_INPUTS)
        return value
    args = value.get("positionalArgs")
    kwargs = value.get("namedArgs")
    extra = sorted(set(value) - {"positionalArgs", "namedArgs"})
    if not isinstance(args, (list, type(None))) or not isinstance(kwargs, (dict, type(None))):
        notes.add(NOTE_NOT_INPUTS)
        return value
    if extra:
        notes.add(NOTE_EXTRA_KEYS.format(names=", ".join(extra[:MAX_LISTED_NAMES])))
    return _args_kwargs(args or [], kwargs or {})


# ---------------------------------------------------------------------------------------
# js_superjson (TypeScript 5.x default) and legacy TypeScript JSON


def _decode_superjson(text: str, kind: Kind, notes: _Notes) -> JSONValue:
    return _superjson_from_parsed(_loads_json(text, FORMAT_JS_SUPERJSON, notes), kind, notes)


def _is_superjson_envelope(value: JSONValue) -> bool:
    return (
        isinstance(value, dict)
        and value.get(SUPERJSON_MARKER_KEY) == SUPERJSON_MARKER_VALUE
        and "json" in value
    )


def _is_unmarked_superjson(value: JSONValue) -> bool:
    return (
        isinstance(value, dict)
        and "json" in value
        and set(value) <= {"json", "meta"}
        and isinstance(value.get("meta", {}), dict)
    )


def _superjson_from_parsed(value: JSONValue, kind: Kind, notes: _Notes) -> JSONValue:
    if _is_superjson_envelope(value) or _is_unmarked_superjson(value):
        assert isinstance(value, dict)
        if not _is_superjson_envelope(value):
            notes.add(NOTE_SUPERJSON_NO_MARKER, lossy=False)
        payload = _apply_superjson_meta(value["json"], value.get("meta"), notes)
    else:
        notes.add(NOTE_SUPERJSON_PLAIN)
        payload = value
    if kind == "error":
        return _normalise_error(payload, notes)
    if kind == "inputs":
        if isinstance(payload, list):
            return _args_kwargs(payload, {})
        notes.add(NOTE_NOT_INPUTS)
    return payload


def _apply_superjson_meta(payload: JSONValue, meta: JSONValue, notes: _Notes) -> JSONValue:
    """Apply the superjson type annotations that JSON can represent (superjson 1.x/2.x)."""
    if meta is None:
        return payload
    if not isinstance(meta, dict):
        notes.add(NOTE_SUPERJSON_META_SHAPE)
        return payload
    if meta.get("referentialEqualities"):
        notes.add(NOTE_SUPERJSON_REFERENCES)
    tree = meta.get("values")
    if tree is None:
        return payload
    holder: list[JSONValue] = [payload]
    for annotation, path in _superjson_annotations(tree, [], notes):
        if not _superjson_set(holder, path, annotation, notes):
            notes.add(NOTE_SUPERJSON_META_PATH)
    return holder[0]


def _superjson_annotations(
    tree: JSONValue, origin: list[str], notes: _Notes
) -> Iterator[tuple[JSONValue, list[str]]]:
    # Children first, then the node itself, exactly as superjson's own walker does.
    if isinstance(tree, dict):
        for key, subtree in tree.items():
            yield from _superjson_annotations(subtree, [*origin, *_superjson_path(key)], notes)
        return
    if not isinstance(tree, list) or not tree or len(origin) > MAX_DEPTH:
        notes.add(NOTE_SUPERJSON_META_SHAPE)
        return
    if len(tree) > 1 and isinstance(tree[1], dict):
        for key, child in tree[1].items():
            yield from _superjson_annotations(child, [*origin, *_superjson_path(key)], notes)
    yield tree[0], origin


def _superjson_path(key: str) -> list[str]:
    segments: list[str] = []
    segment = ""
    index = 0
    while index < len(key):
        char = key[index]
        if char == "\\" and key[index + 1 : index + 2] == ".":
            segment += "."
            index += 2
            continue
        if char == ".":
            segments.append(segment)
            segment = ""
        else:
            segment += char
        index += 1
    segments.append(segment)
    return segments


def _superjson_set(
    holder: list[JSONValue], path: list[str], annotation: JSONValue, notes: _Notes
) -> bool:
    # Walk to the container that holds the annotated value, then replace it there.
    parent: list[JSONValue] | dict[str, JSONValue] = holder
    key = "0"
    for segment in path:
        current = _child(parent, key)
        if not isinstance(current, (list, dict)) or _child(current, segment) is _MISSING:
            return False
        parent, key = current, segment
    if isinstance(parent, list):
        parent[int(key)] = _superjson_untransform(parent[int(key)], annotation, notes)
    else:
        parent[key] = _superjson_untransform(parent[key], annotation, notes)
    return True


_MISSING = object()


def _child(container: list[JSONValue] | dict[str, JSONValue], key: str) -> object:
    if isinstance(container, dict):
        return container.get(key, _MISSING)
    if key.isdigit() and int(key) < len(container):
        return container[int(key)]
    return _MISSING


def _superjson_untransform(value: JSONValue, annotation: JSONValue, notes: _Notes) -> JSONValue:
    if isinstance(annotation, str):
        how = _SUPERJSON_TYPE_NOTES.get(annotation, "kept as stored")
        notes.add(NOTE_SUPERJSON_TYPE.format(annotation=annotation, how=how))
        if annotation == "undefined":
            return None
        if annotation == "map" and isinstance(value, list):
            return _pairs_to_object(value)
        if annotation == "number" and value == "-0":
            return -0.0
        return value
    if isinstance(annotation, list) and len(annotation) == 2:
        category, name = annotation
        how = {
            "class": "instance shown as a plain object",
            "symbol": "symbol shown as its description",
            "custom": "custom value shown as stored",
            "typed-array": "typed array shown as a list",
        }.get(str(category), "kept as stored")
        notes.add(NOTE_SUPERJSON_TYPE.format(annotation=f"{category} {name}", how=how))
        return value
    notes.add(NOTE_SUPERJSON_META_SHAPE)
    return value


def _pairs_to_object(pairs: list[JSONValue]) -> JSONValue:
    if all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in pairs):
        out: dict[str, JSONValue] = {}
        for pair in pairs:
            assert isinstance(pair, list)
            assert isinstance(pair[0], str)
            out[pair[0]] = pair[1]
        if len(out) == len(pairs):
            return out
    return pairs


def _ts_legacy_from_parsed(value: JSONValue, kind: Kind, notes: _Notes) -> JSONValue:
    """TypeScript ≤ 4.x DBOSJSON: plain JSON with `dbos_type` wrappers for Date and BigInt."""
    value = _ts_revive(value, notes)
    if kind == "error":
        return _normalise_error(value, notes)
    if kind == "inputs":
        if isinstance(value, list):
            return _args_kwargs(value, {})
        notes.add(NOTE_NOT_INPUTS)
    return value


def _ts_revive(value: JSONValue, notes: _Notes) -> JSONValue:
    if isinstance(value, list):
        return [_ts_revive(item, notes) for item in value]
    if not isinstance(value, dict):
        return value
    wrapped = value.get("dbos_type")
    if wrapped in ("dbos_Date", "dbos_BigInt") and isinstance(value.get("dbos_data"), str):
        notes.add(NOTE_TS_DATE if wrapped == "dbos_Date" else NOTE_TS_BIGINT)
        return value["dbos_data"]
    data = value.get("data")
    if value.get("type") == "Buffer" and set(value) == {"type", "data"} and isinstance(data, list):
        notes.add(NOTE_TS_BUFFER)
        return data
    return {key: _ts_revive(item, notes) for key, item in value.items()}


# ---------------------------------------------------------------------------------------
# DBOS_JSON (Go): base64 of JSON; nil is "__DBOS_NIL"; errors are the plain error text


def _decode_go(text: str, kind: Kind, notes: _Notes) -> JSONValue:
    if kind == "error":
        return _go_error(text, notes)
    if text == GO_NIL_MARKER:
        value: JSONValue = None
    else:
        value = _go_base64_json(text, notes)
    if kind == "inputs":
        notes.add(NOTE_GO_SINGLE_INPUT, lossy=False)
        return _args_kwargs([value], {})
    return value


def _go_base64_json(text: str, notes: _Notes) -> JSONValue:
    data = _b64decode(text)
    if data is None:
        raise _DecodeError(FORMAT_GO_JSON, NOT_BASE64)
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _DecodeError(FORMAT_GO_JSON, NOT_UTF8) from None
    return _loads_json(decoded, FORMAT_GO_JSON, notes)


def _go_error(text: str, notes: _Notes) -> JSONValue:
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
        return _normalise_error(parsed, notes)
    if _looks_like_gob(text):
        raise _DecodeError(FORMAT_GO_JSON, GO_GOB_ERROR)
    notes.add(NOTE_GO_ERROR_TEXT, lossy=False)
    return {"name": "error", "message": text}


def _looks_like_gob(text: str) -> bool:
    # Some Go SDK versions gob-encode errors (base64). Plain error texts are not base64
    # of binary, except by accident for short ones, hence the length floor.
    if len(text) < 24 or any(char.isspace() for char in text):
        return False
    data = _b64decode(text)
    if data is None:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


# ---------------------------------------------------------------------------------------
# java_jackson (Java): Jackson JSON with type information


def _decode_java(text: str, kind: Kind, notes: _Notes) -> JSONValue:
    return _java_from_parsed(_loads_json(text, FORMAT_JAVA_JACKSON, notes), kind, notes)


def _is_java_boxed(value: JSONValue) -> bool:
    return isinstance(value, dict) and set(value) == {"args"} and isinstance(value["args"], list)


def _java_from_parsed(value: JSONValue, kind: Kind, notes: _Notes) -> JSONValue:
    types: set[str] = set()
    if _is_java_boxed(value):
        # Older SDKs: {"args": [...]} with type information on each element only.
        assert isinstance(value, dict)
        assert isinstance(value["args"], list)
        notes.add(NOTE_JAVA_BOXED, lossy=False)
        elements = [_jackson_strip(item, types, deep=False) for item in value["args"]]
        if kind == "inputs":
            result: JSONValue = _args_kwargs(elements, {})
        else:
            result = elements[0] if elements else None
    else:
        # Current SDKs: default typing everywhere; the inputs are a typed Object[].
        result = _jackson_strip(value, types, deep=True)
        if kind == "inputs":
            if isinstance(result, list):
                result = _args_kwargs(result, {})
            else:
                notes.add(NOTE_NOT_INPUTS)
    if types:
        names = ", ".join(sorted(types)[:MAX_LISTED_NAMES])
        notes.add(NOTE_JAVA_TYPES.format(names=names))
    if kind == "error":
        return _java_error(result, notes)
    return result


def _jackson_strip(value: JSONValue, types: set[str], *, deep: bool) -> JSONValue:
    # Jackson writes type ids as an "@class" property on objects and as a
    # ["type", value] wrapper array around everything else that needs one.
    if (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and _JAVA_CLASS_NAME.fullmatch(value[0])
    ):
        types.add(value[0])
        value = value[1]
    elif isinstance(value, dict) and isinstance(value.get("@class"), str):
        types.add(str(value["@class"]))
        value = {key: item for key, item in value.items() if key != "@class"}
    if not deep:
        return value
    if isinstance(value, list):
        return [_jackson_strip(item, types, deep=True) for item in value]
    if isinstance(value, dict):
        return {key: _jackson_strip(item, types, deep=True) for key, item in value.items()}
    return value


def _java_error(value: JSONValue, notes: _Notes) -> JSONValue:
    """WireThrowable: {v, type, message, causeType, stackPreview, base64bytes, node, extra}."""
    if not (isinstance(value, dict) and isinstance(value.get("type"), str) and "message" in value):
        return _normalise_error(value, notes)
    type_name = str(value["type"])
    out: dict[str, JSONValue] = {
        "name": type_name.rsplit(".", 1)[-1],
        "message": value.get("message"),
        "type": type_name,
    }
    for key in ("causeType", "stackPreview", "suppressedCount", "node", "extra"):
        if value.get(key) not in (None, 0, {}, []):
            out[key] = value[key]
    if value.get("base64bytes"):
        notes.add(NOTE_JAVA_EXCEPTION_BYTES)
    return out


# ---------------------------------------------------------------------------------------
# NULL serialization: recognise the encoding from the value


def _recognise(text: str, kind: Kind, notes: _Notes) -> tuple[str, JSONValue]:
    if text == GO_NIL_MARKER:
        notes.add(RECOGNISED_AS.format(what="Go DBOS_JSON nil"), lossy=False)
        return FORMAT_GO_JSON, _decode_go(text, kind, notes)
    scratch = _Notes()
    try:
        parsed = _loads_json(text, FORMAT_RAW, scratch)
    except _DecodeError:
        pass
    else:
        for note in scratch.notes:
            notes.add(note, lossy=scratch.lossy)
        return _recognise_json(parsed, kind, notes)
    data = _b64decode(text) if text.strip() else None
    if data and data[:1] == b"\x80" and len(data) > 1 and data[1] <= 5:
        notes.add(RECOGNISED_AS.format(what="a Python pickle"), lossy=False)
        return FORMAT_PY_PICKLE, _pickle_from_bytes(data, kind, notes)
    if data and kind != "error":
        try:
            inner = data.decode("utf-8")
            json.loads(inner)
        except (UnicodeDecodeError, ValueError, RecursionError):
            pass
        else:
            notes.add(RECOGNISED_AS.format(what="base64 JSON (Go DBOS_JSON)"), lossy=False)
            return FORMAT_GO_JSON, _decode_go(text, kind, notes)
    if kind == "error" and text.strip() and (data is None or not _looks_like_gob(text)):
        notes.add(NOTE_PLAIN_ERROR_TEXT, lossy=False)
        return FORMAT_RAW, {"name": "Error", "message": text}
    raise _DecodeError(FORMAT_RAW, UNRECOGNISED)


def _recognise_json(value: JSONValue, kind: Kind, notes: _Notes) -> tuple[str, JSONValue]:
    if _is_superjson_envelope(value) or _is_unmarked_superjson(value):
        notes.add(RECOGNISED_AS.format(what="superjson (TypeScript)"), lossy=False)
        return FORMAT_JS_SUPERJSON, _superjson_from_parsed(value, kind, notes)
    if kind == "inputs" and isinstance(value, dict) and "positionalArgs" in value:
        notes.add(RECOGNISED_AS.format(what="portable JSON inputs"), lossy=False)
        return FORMAT_PORTABLE_JSON, _portable_from_parsed(value, kind, notes)
    if _is_java_boxed(value):
        notes.add(RECOGNISED_AS.format(what="Java Jackson (boxed)"), lossy=False)
        return FORMAT_JAVA_JACKSON, _java_from_parsed(value, kind, notes)
    notes.add(RECOGNISED_AS.format(what="plain JSON (TypeScript ≤ 4.x)"), lossy=False)
    return FORMAT_TS_LEGACY_JSON, _ts_legacy_from_parsed(value, kind, notes)


# ---------------------------------------------------------------------------------------
# py_pickle: a restricted decoder that walks the opcodes and never imports or calls


@dataclass(eq=False)
class _Global:
    module: str
    name: str

    @property
    def dotted(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(eq=False)
class _Placeholder:
    """What a pickle would have built by calling or instantiating `type_name`. Inert."""

    type_name: str
    args: tuple[object, ...] = ()
    kwargs: dict[object, object] | None = None
    state: object = None
    has_state: bool = False
    list_items: list[object] = field(default_factory=list)
    dict_items: list[tuple[object, object]] = field(default_factory=list)
    exception: bool = False


@dataclass(frozen=True)
class _DecimalText:
    text: str


class _PickleError(Exception):
    pass


def _decode_pickle(text: str, kind: Kind, notes: _Notes) -> JSONValue:
    limit = notes.pickle_limit or MAX_PICKLE_BYTES
    if len(text) > limit * 4 // 3 + 4:
        raise _DecodeError(FORMAT_PY_PICKLE, PICKLE_TOO_LARGE.format(limit=limit))
    data = _b64decode(text)
    if data is None:
        raise _DecodeError(FORMAT_PY_PICKLE, NOT_BASE64)
    return _pickle_from_bytes(data, kind, notes)


def _pickle_from_bytes(data: bytes, kind: Kind, notes: _Notes) -> JSONValue:
    limit = notes.pickle_limit or MAX_PICKLE_BYTES
    if len(data) > limit:
        raise _DecodeError(FORMAT_PY_PICKLE, PICKLE_TOO_LARGE.format(limit=limit))
    machine = _PickleMachine(notes)
    try:
        result = machine.run(data)
    except _PickleError as exc:
        raise _DecodeError(FORMAT_PY_PICKLE, str(exc), machine.summary(str(exc))) from None
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError) as exc:
        reason = PICKLE_MALFORMED.format(detail=str(exc)[:120])
        raise _DecodeError(FORMAT_PY_PICKLE, reason, machine.summary(reason)) from None
    if machine.refused:
        names = ", ".join(machine.refused[:MAX_LISTED_NAMES])
        reason = PICKLE_REFUSED_SUMMARY.format(names=names)
        raise _DecodeError(FORMAT_PY_PICKLE, reason, machine.summary(reason))
    converter = _PickleToJSON(notes)
    try:
        if kind == "inputs":
            return converter.inputs(result)
        if kind == "error":
            return converter.error(result)
        return converter.convert(result)
    except _PickleError as exc:
        raise _DecodeError(FORMAT_PY_PICKLE, str(exc), machine.summary(str(exc))) from None


class _PickleMachine:
    """A stack machine for the opcodes that build plain data, after pickle's own loader.

    GLOBAL/STACK_GLOBAL only record a module and a name; REDUCE, NEWOBJ, INST, OBJ and
    BUILD produce inert placeholders, except for a small allow-list of value types whose
    arguments are parsed here (datetime, Decimal, UUID, OrderedDict, set, complex, bytes).
    """

    def __init__(self, notes: _Notes) -> None:
        self.notes = notes
        self.stack: list[object] = []
        self.marks: list[int] = []
        self.memo: dict[int, object] = {}
        self.protocol = 0
        self.globals: list[str] = []
        self.refused: list[str] = []

    def summary(self, reason: str) -> JSONValue:
        return {
            PICKLE_PLACEHOLDER_KEY: "unreadable",
            "reason": reason,
            "globals": list(self.globals[:MAX_LISTED_NAMES]),
        }

    def run(self, data: bytes) -> object:
        for count, (opcode, arg, _pos) in enumerate(pickletools.genops(data)):
            if count >= MAX_PICKLE_OPCODES:
                raise _PickleError(PICKLE_TOO_MANY_OPCODES.format(limit=MAX_PICKLE_OPCODES))
            if opcode.name == "STOP":
                return self.pop()
            handler = _PICKLE_OPS.get(opcode.name)
            if handler is None:
                raise _PickleError(PICKLE_UNSUPPORTED_OPCODE.format(name=opcode.name))
            handler(self, arg)
            if len(self.stack) > MAX_PICKLE_STACK or len(self.marks) > MAX_PICKLE_STACK:
                raise _PickleError(PICKLE_STACK_TOO_DEEP.format(limit=MAX_PICKLE_STACK))
        raise _PickleError(PICKLE_MALFORMED.format(detail="no STOP opcode"))

    # -- stack helpers ------------------------------------------------------------------

    def floor(self) -> int:
        return self.marks[-1] if self.marks else 0

    def push(self, value: object) -> None:
        self.stack.append(value)

    def pop(self) -> object:
        if len(self.stack) <= self.floor():
            raise _PickleError(PICKLE_MALFORMED.format(detail="stack underflow"))
        return self.stack.pop()

    def top(self) -> object:
        if len(self.stack) <= self.floor():
            raise _PickleError(PICKLE_MALFORMED.format(detail="stack underflow"))
        return self.stack[-1]

    def pop_mark(self) -> list[object]:
        if not self.marks:
            raise _PickleError(PICKLE_MALFORMED.format(detail="no MARK"))
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    # -- opcodes ------------------------------------------------------------------------

    @staticmethod
    def _dispatch() -> dict[str, Callable[[Any, Any], None]]:
        """Each opcode's handler, called with the machine and the opcode's argument (built
        once: a table per machine cost more than decoding a small value)."""
        machine = _PickleMachine
        ops: dict[str, Callable[[Any, Any], None]] = {}
        for name in _SCALAR_OPCODES:
            ops[name] = machine.push
        for name in ("BINBYTES", "SHORT_BINBYTES", "BINBYTES8"):
            ops[name] = lambda m, arg: m.push(bytes(arg))
        table: dict[str, Callable[[Any, Any], None]] = {
            "BYTEARRAY8": lambda m, arg: m.push(bytearray(arg)),
            "NONE": lambda m, _: m.push(None),
            "NEWTRUE": lambda m, _: m.push(True),
            "NEWFALSE": lambda m, _: m.push(False),
            "EMPTY_LIST": lambda m, _: m.push([]),
            "EMPTY_DICT": lambda m, _: m.push({}),
            "EMPTY_SET": lambda m, _: m.push(set()),
            "EMPTY_TUPLE": lambda m, _: m.push(()),
            "LIST": lambda m, _: m.push(m.pop_mark()),
            "TUPLE": lambda m, _: m.push(tuple(m.pop_mark())),
            "TUPLE1": lambda m, _: m.push_tuple(1),
            "TUPLE2": lambda m, _: m.push_tuple(2),
            "TUPLE3": lambda m, _: m.push_tuple(3),
            "DICT": lambda m, _: m.push(m.build_dict(m.pop_mark())),
            "FROZENSET": lambda m, _: m.push(frozenset(m.pop_mark())),
            "APPEND": lambda m, _: m.append([m.pop()]),
            "APPENDS": lambda m, _: m.append(m.pop_mark()),
            "SETITEM": lambda m, _: m.setitems(m.pop_pair()),
            "SETITEMS": lambda m, _: m.setitems(m.pop_mark()),
            "ADDITEMS": lambda m, _: m.additems(m.pop_mark()),
            "MARK": lambda m, _: m.marks.append(len(m.stack)),
            "POP": machine.op_pop,
            "POP_MARK": machine.op_pop_mark,
            "DUP": lambda m, _: m.push(m.top()),
            "GET": machine.op_get,
            "BINGET": machine.op_get,
            "LONG_BINGET": machine.op_get,
            "PUT": machine.op_put,
            "BINPUT": machine.op_put,
            "LONG_BINPUT": machine.op_put,
            "MEMOIZE": lambda m, _: m.op_put(len(m.memo)),
            "PROTO": machine.op_proto,
            "FRAME": lambda m, _: None,
            "GLOBAL": machine.op_global,
            "STACK_GLOBAL": machine.op_stack_global,
            "REDUCE": machine.op_reduce,
            "NEWOBJ": machine.op_newobj,
            "NEWOBJ_EX": machine.op_newobj_ex,
            "OBJ": machine.op_obj,
            "INST": machine.op_inst,
            "BUILD": machine.op_build,
        }
        return ops | table

    def push_tuple(self, size: int) -> None:
        items = [self.pop() for _ in range(size)]
        self.push(tuple(reversed(items)))

    def pop_pair(self) -> list[object]:
        value = self.pop()
        key = self.pop()
        return [key, value]

    def build_dict(self, items: list[object]) -> dict[object, object]:
        if len(items) % 2:
            raise _PickleError(PICKLE_MALFORMED.format(detail="odd number of dict items"))
        return {items[i]: items[i + 1] for i in range(0, len(items), 2)}

    def append(self, items: list[object]) -> None:
        target = self.top()
        if isinstance(target, list):
            target.extend(items)
        elif isinstance(target, _Placeholder):
            target.list_items.extend(items)
        else:
            detail = f"append to {type(target).__name__}"
            raise _PickleError(PICKLE_MALFORMED.format(detail=detail))

    def setitems(self, items: list[object]) -> None:
        if len(items) % 2:
            raise _PickleError(PICKLE_MALFORMED.format(detail="odd number of dict items"))
        target = self.top()
        pairs = [(items[i], items[i + 1]) for i in range(0, len(items), 2)]
        if isinstance(target, dict):
            for key, value in pairs:
                target[key] = value
        elif isinstance(target, _Placeholder):
            target.dict_items.extend(pairs)
        else:
            detail = f"set items on {type(target).__name__}"
            raise _PickleError(PICKLE_MALFORMED.format(detail=detail))

    def additems(self, items: list[object]) -> None:
        target = self.top()
        if isinstance(target, set):
            target.update(items)
        elif isinstance(target, _Placeholder):
            target.list_items.extend(items)
        else:
            detail = f"add items to {type(target).__name__}"
            raise _PickleError(PICKLE_MALFORMED.format(detail=detail))

    def op_pop(self, _: object) -> None:
        if len(self.stack) > self.floor():
            self.stack.pop()
        else:
            self.pop_mark()

    def op_pop_mark(self, _: object) -> None:
        self.pop_mark()

    def op_get(self, index: int) -> None:
        if index not in self.memo:
            raise _PickleError(PICKLE_MALFORMED.format(detail=f"memo {index} is missing"))
        self.push(self.memo[index])

    def op_put(self, index: int) -> None:
        self.memo[index] = self.top()

    def op_proto(self, protocol: int) -> None:
        if not 0 <= protocol <= pickle.HIGHEST_PROTOCOL:
            raise _PickleError(PICKLE_UNSUPPORTED_PROTOCOL.format(protocol=protocol))
        self.protocol = protocol

    def op_global(self, arg: str) -> None:
        module, _, name = arg.partition(" ")
        self.push(self.make_global(module, name))

    def op_stack_global(self, _: object) -> None:
        name = self.pop()
        module = self.pop()
        if not isinstance(module, str) or not isinstance(name, str):
            raise _PickleError(PICKLE_MALFORMED.format(detail="STACK_GLOBAL needs two strings"))
        self.push(self.make_global(module, name))

    def op_reduce(self, _: object) -> None:
        args = self.pop()
        func = self.pop()
        if not isinstance(args, tuple):
            raise _PickleError(PICKLE_MALFORMED.format(detail="REDUCE arguments not a tuple"))
        self.push(self.call(func, args))

    def op_newobj(self, _: object) -> None:
        args = self.pop()
        cls = self.pop()
        if not isinstance(args, tuple):
            raise _PickleError(PICKLE_MALFORMED.format(detail="NEWOBJ arguments not a tuple"))
        self.push(self.instance(cls, args, None))

    def op_newobj_ex(self, _: object) -> None:
        kwargs = self.pop()
        args = self.pop()
        cls = self.pop()
        if not isinstance(args, tuple) or not isinstance(kwargs, dict):
            raise _PickleError(PICKLE_MALFORMED.format(detail="NEWOBJ_EX arguments"))
        self.push(self.instance(cls, args, kwargs))

    def op_obj(self, _: object) -> None:
        items = self.pop_mark()
        if not items:
            raise _PickleError(PICKLE_MALFORMED.format(detail="OBJ without a class"))
        self.push(self.call(items[0], tuple(items[1:])))

    def op_inst(self, arg: str) -> None:
        module, _, name = arg.partition(" ")
        cls = self.make_global(module, name)
        self.push(self.call(cls, tuple(self.pop_mark())))

    def op_build(self, _: object) -> None:
        state = self.pop()
        target = self.top()
        if isinstance(target, _Placeholder):
            if target.has_state and isinstance(target.state, dict) and isinstance(state, dict):
                target.state.update(state)
            else:
                target.state = state
                target.has_state = True
        elif state not in (None, {}):
            detail = f"BUILD on {type(target).__name__}"
            raise _PickleError(PICKLE_MALFORMED.format(detail=detail))

    # -- globals and calls: nothing here imports or calls what the pickle names ---------

    def make_global(self, module: str, name: str) -> _Global:
        # Protocols 0-2 name Python 2 modules (exceptions, __builtin__, copy_reg).
        if self.protocol < 3:
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        found = _Global(module, name)
        if found.dotted not in self.globals:
            self.globals.append(found.dotted)
            if _is_refused(module, name):
                self.refuse(found.dotted)
        return found

    def call(self, func: object, args: tuple[object, ...]) -> object:
        if not isinstance(func, _Global):
            self.notes.add(PICKLE_CALL_OF_VALUE)
            return _Placeholder("<call>", (func, *args))
        if func.dotted == _GETATTR:
            return self.resolve_getattr(func, args)
        builder = _VALUE_BUILDERS.get(func.dotted)
        if builder is not None:
            try:
                return builder(args, self.notes)
            except (_PickleError, ValueError, TypeError, OverflowError, UnicodeError):
                self.notes.add(PICKLE_UNPARSED_ARGS.format(name=func.dotted))
        if func.dotted == "copyreg._reconstructor" and len(args) == 3:
            cls, _base, base_state = args
            if isinstance(cls, _Global):
                return self.instance(cls, () if base_state is None else (base_state,), None)
        return self.placeholder(func, args, None)

    def resolve_getattr(self, func: _Global, args: tuple[object, ...]) -> object:
        if len(args) == 2 and isinstance(args[0], _Global) and isinstance(args[1], str):
            return self.make_global(args[0].module, f"{args[0].name}.{args[1]}")
        # getattr on a computed value: code, not data.
        self.refuse(func.dotted)
        return _Placeholder(func.dotted, args)

    def refuse(self, dotted: str) -> None:
        if dotted not in self.refused:
            self.refused.append(dotted)
            self.notes.add(PICKLE_REFUSED.format(name=dotted))

    def instance(
        self, cls: object, args: tuple[object, ...], kwargs: dict[object, object] | None
    ) -> object:
        if not isinstance(cls, _Global):
            self.notes.add(PICKLE_CALL_OF_VALUE)
            return _Placeholder("<new>", (cls, *args), kwargs)
        if cls.dotted in _EMPTY_CONTAINERS and not args and not kwargs:
            # NEWOBJ of a builtin container itself: still plain data.
            return _EMPTY_CONTAINERS[cls.dotted]()
        return self.placeholder(cls, args, kwargs)

    def placeholder(
        self, cls: _Global, args: tuple[object, ...], kwargs: dict[object, object] | None
    ) -> _Placeholder:
        is_exception = _is_exception_name(cls.name)
        known = cls.dotted in _KNOWN_PLACEHOLDERS or (is_exception and _is_known_module(cls.module))
        if not known and cls.dotted not in self.refused:
            self.notes.add(PICKLE_CUSTOM_TYPE.format(name=cls.dotted))
        return _Placeholder(cls.dotted, args, kwargs, exception=is_exception)


_SCALAR_OPCODES = (
    "INT",
    "BININT",
    "BININT1",
    "BININT2",
    "LONG",
    "LONG1",
    "LONG4",
    "FLOAT",
    "BINFLOAT",
    "STRING",
    "BINSTRING",
    "SHORT_BINSTRING",
    "UNICODE",
    "SHORT_BINUNICODE",
    "BINUNICODE",
    "BINUNICODE8",
)
_PICKLE_OPS = _PickleMachine._dispatch()
_EMPTY_CONTAINERS: dict[str, Callable[[], object]] = {
    "builtins.set": set,
    "builtins.frozenset": frozenset,
    "builtins.dict": dict,
}


def _is_exception_name(qualname: str) -> bool:
    last = qualname.rsplit(".", 1)[-1]
    return last.endswith(("Error", "Exception", "Warning")) or last in _BUILTIN_EXCEPTIONS


def _is_known_module(module: str) -> bool:
    return module == "builtins" or module == "dbos" or module.startswith("dbos.")


def _is_refused(module: str, name: str) -> bool:
    if module == "builtins":
        if name == "getattr":
            return False
        return name not in _SAFE_BUILTINS and not _is_exception_name(name)
    if f"{module}.{name}" in _SAFE_REFUSED_MODULE_GLOBALS:
        return False
    return module.split(".", 1)[0] in _REFUSED_MODULES


# -- allow-listed value types: parse the pickled arguments, never call the type ---------


def _state_bytes(value: object, size: int) -> bytes:
    if isinstance(value, str):
        value = value.encode("latin-1")
    if not isinstance(value, bytes) or len(value) != size:
        raise _PickleError("unexpected state")
    return value


def _ints(args: tuple[object, ...], low: int, high: int) -> list[int]:
    if not low <= len(args) <= high or not all(
        isinstance(a, int) and not isinstance(a, bool) for a in args
    ):
        raise _PickleError("unexpected arguments")
    return [a for a in args if isinstance(a, int)]


def _tzinfo(value: object, notes: _Notes) -> timezone | None:
    if value is None or isinstance(value, timezone):
        return value
    name = value.type_name if isinstance(value, _Placeholder) else type(value).__name__
    if isinstance(value, _Placeholder) and value.args and isinstance(value.args[0], str):
        name = f"{name} {value.args[0]}"
    notes.add(PICKLE_TZ_NOT_APPLIED.format(name=name))
    return None


def _build_datetime(args: tuple[object, ...], notes: _Notes) -> object:
    if args and isinstance(args[0], (bytes, str)) and len(args) <= 2:
        b = _state_bytes(args[0], 10)
        tz = _tzinfo(args[1], notes) if len(args) == 2 else None
        micro = (b[7] << 16) | (b[8] << 8) | b[9]
        fold = 1 if b[2] & 0x80 else 0
        return datetime(
            b[0] * 256 + b[1], b[2] & 0x7F, b[3], b[4], b[5], b[6], micro, tz, fold=fold
        )
    raise _PickleError("unexpected arguments")


def _build_date(args: tuple[object, ...], notes: _Notes) -> object:
    if len(args) == 1 and isinstance(args[0], (bytes, str)):
        b = _state_bytes(args[0], 4)
        return date(b[0] * 256 + b[1], b[2], b[3])
    return date(*_ints(args, 3, 3))


def _build_time(args: tuple[object, ...], notes: _Notes) -> object:
    if args and isinstance(args[0], (bytes, str)) and len(args) <= 2:
        b = _state_bytes(args[0], 6)
        tz = _tzinfo(args[1], notes) if len(args) == 2 else None
        fold = 1 if b[0] & 0x80 else 0
        return time(b[0] & 0x7F, b[1], b[2], (b[3] << 16) | (b[4] << 8) | b[5], tz, fold=fold)
    raise _PickleError("unexpected arguments")


def _build_timedelta(args: tuple[object, ...], notes: _Notes) -> object:
    days, seconds, micro = [*_ints(args, 0, 3), 0, 0, 0][:3]
    return timedelta(days=days, seconds=seconds, microseconds=micro)


def _build_timezone(args: tuple[object, ...], notes: _Notes) -> object:
    if len(args) == 1 and isinstance(args[0], timedelta):
        return timezone(args[0])
    if len(args) == 2 and isinstance(args[0], timedelta) and isinstance(args[1], str):
        return timezone(args[0], args[1])
    raise _PickleError("unexpected arguments")


def _build_decimal(args: tuple[object, ...], notes: _Notes) -> object:
    if len(args) == 1 and isinstance(args[0], str) and _DECIMAL_TEXT.fullmatch(args[0]):
        return _DecimalText(args[0].strip())
    raise _PickleError("unexpected arguments")


def _build_ordered_dict(args: tuple[object, ...], notes: _Notes) -> object:
    notes.add(NOTE_ORDERED_DICT)
    if not args:
        return {}
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        pairs = args[0]
        if all(isinstance(p, (list, tuple)) and len(p) == 2 for p in pairs):
            return {p[0]: p[1] for p in pairs if isinstance(p, (list, tuple))}
    raise _PickleError("unexpected arguments")


def _set_items(args: tuple[object, ...]) -> list[object]:
    if not args:
        return []
    if len(args) == 1 and isinstance(args[0], (list, tuple, set, frozenset)):
        return list(args[0])
    raise _PickleError("unexpected arguments")


def _build_set(args: tuple[object, ...], notes: _Notes) -> object:
    return set(_set_items(args))


def _build_frozenset(args: tuple[object, ...], notes: _Notes) -> object:
    return frozenset(_set_items(args))


def _build_complex(args: tuple[object, ...], notes: _Notes) -> object:
    if 1 <= len(args) <= 2 and all(
        isinstance(a, (int, float)) and not isinstance(a, bool) for a in args
    ):
        real, imag = [*args, 0.0][:2]
        assert isinstance(real, (int, float))
        assert isinstance(imag, (int, float))
        return complex(real, imag)
    raise _PickleError("unexpected arguments")


def _build_bytes(args: tuple[object, ...], notes: _Notes) -> object:
    if not args:
        return b""
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
        return bytes(args[0])
    if len(args) == 1 and isinstance(args[0], list) and all(isinstance(i, int) for i in args[0]):
        return bytes([i for i in args[0] if isinstance(i, int)])
    if len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin1", "latin-1"):
        return args[0].encode("latin-1")
    raise _PickleError("unexpected arguments")


def _build_bytearray(args: tuple[object, ...], notes: _Notes) -> object:
    value = _build_bytes(args, notes)
    assert isinstance(value, bytes)
    return bytearray(value)


def _build_codecs_encode(args: tuple[object, ...], notes: _Notes) -> object:
    # Protocols 0-2 write bytes as _codecs.encode(latin-1 text, "latin1").
    if len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin1", "latin-1"):
        return args[0].encode("latin-1")
    raise _PickleError("unexpected arguments")


_VALUE_BUILDERS: dict[str, Callable[[tuple[object, ...], _Notes], object]] = {
    "datetime.datetime": _build_datetime,
    "datetime.date": _build_date,
    "datetime.time": _build_time,
    "datetime.timedelta": _build_timedelta,
    "datetime.timezone": _build_timezone,
    "decimal.Decimal": _build_decimal,
    "collections.OrderedDict": _build_ordered_dict,
    "builtins.set": _build_set,
    "builtins.frozenset": _build_frozenset,
    "builtins.complex": _build_complex,
    "builtins.bytes": _build_bytes,
    "builtins.bytearray": _build_bytearray,
    "_codecs.encode": _build_codecs_encode,
}


class _PickleToJSON:
    """Render what the pickle machine built as JSON-able data, noting every loss."""

    def __init__(self, notes: _Notes) -> None:
        self.notes = notes
        self.nodes = 0
        self.active: set[int] = set()

    def inputs(self, result: object) -> JSONValue:
        if (
            isinstance(result, dict)
            and set(result) == {"args", "kwargs"}
            and isinstance(result["args"], (tuple, list))
            and isinstance(result["kwargs"], dict)
        ):
            # The args tuple is how DBOS stores positional arguments: not a loss.
            args = [self.convert(item, 1) for item in result["args"]]
            return _args_kwargs(args, self.convert(result["kwargs"], 1))
        self.notes.add(NOTE_NOT_INPUTS)
        return self.convert(result)

    def error(self, result: object) -> JSONValue:
        if isinstance(result, _Placeholder):
            # Whatever its class is called, the object in an error column was raised.
            result.exception = True
            value = self.convert(result)
            assert isinstance(value, dict)
            state = value.get("state")
            out: dict[str, JSONValue] = {
                "name": result.type_name.rsplit(".", 1)[-1],
                "message": _exception_message(result),
                "type": result.type_name,
                "args": value["args"],
            }
            if isinstance(state, dict):
                code = state.get("dbos_error_code", state.get("code"))
                if code is not None:
                    out["code"] = code
                out["state"] = state
            return out
        return _normalise_error(self.convert(result), self.notes)

    def convert(self, obj: object, depth: int = 0) -> JSONValue:
        self.nodes += 1
        if self.nodes > MAX_OUTPUT_NODES:
            raise _PickleError(PICKLE_OUTPUT_TOO_LARGE.format(limit=MAX_OUTPUT_NODES))
        if depth > MAX_DEPTH:
            raise _PickleError(NESTED_TOO_DEEPLY.format(limit=MAX_DEPTH))
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, int):
            if obj.bit_length() > MAX_INT_BITS:
                self.notes.add(NOTE_BIG_INT)
                return hex(obj)
            return obj
        if isinstance(obj, float):
            if math.isfinite(obj):
                return obj
            self.notes.add(NOTE_NON_FINITE)
            return str(obj)
        if id(obj) in self.active:
            self.notes.add(PICKLE_RECURSIVE)
            return {PICKLE_PLACEHOLDER_KEY: "recursive reference"}
        self.active.add(id(obj))
        try:
            return self.convert_compound(obj, depth)
        finally:
            self.active.discard(id(obj))

    def convert_compound(self, obj: object, depth: int) -> JSONValue:
        if isinstance(obj, list):
            return [self.convert(item, depth + 1) for item in obj]
        if isinstance(obj, tuple):
            self.notes.add(NOTE_TUPLE)
            return [self.convert(item, depth + 1) for item in obj]
        if isinstance(obj, dict):
            return self.convert_dict(obj, depth)
        if isinstance(obj, (set, frozenset)):
            self.notes.add(NOTE_SET)
            return [self.convert(item, depth + 1) for item in obj]
        if isinstance(obj, (bytes, bytearray)):
            self.notes.add(NOTE_BYTES)
            name = "builtins.bytes" if isinstance(obj, bytes) else "builtins.bytearray"
            return {PICKLE_PLACEHOLDER_KEY: name, "base64": base64.b64encode(obj).decode()}
        if isinstance(obj, (datetime, date, time)):
            self.notes.add(NOTE_DATETIME.format(name=f"datetime.{type(obj).__name__}"))
            return obj.isoformat()
        if isinstance(obj, timedelta):
            self.notes.add(NOTE_TIMEDELTA)
            return obj.total_seconds()
        if isinstance(obj, timezone):
            return str(obj)
        if isinstance(obj, _DecimalText):
            self.notes.add(NOTE_DECIMAL)
            return obj.text
        if isinstance(obj, complex):
            self.notes.add(NOTE_COMPLEX)
            return str(obj)
        if isinstance(obj, _Global):
            self.notes.add(PICKLE_GLOBAL_VALUE.format(name=obj.dotted))
            return {PICKLE_PLACEHOLDER_KEY: "global", "name": obj.dotted}
        if isinstance(obj, _Placeholder):
            return self.convert_placeholder(obj, depth)
        raise _PickleError(PICKLE_MALFORMED.format(detail=f"unexpected {type(obj).__name__}"))

    def convert_dict(self, obj: dict[object, object], depth: int) -> JSONValue:
        out: dict[str, JSONValue] = {}
        for key, item in obj.items():
            if isinstance(key, str):
                text = key
            else:
                self.notes.add(NOTE_NON_STRING_KEYS)
                converted = self.convert(key, depth + 1)
                text = converted if isinstance(converted, str) else _dump_key(converted)
            if text in out:
                self.notes.add(NOTE_DUPLICATE_KEYS)
            out[text] = self.convert(item, depth + 1)
        return out

    def convert_placeholder(self, obj: _Placeholder, depth: int) -> JSONValue:
        if obj.type_name == "uuid.UUID" and isinstance(obj.state, dict):
            number = obj.state.get("int")
            if isinstance(number, int) and 0 <= number < 1 << 128 and not obj.args:
                self.notes.add(NOTE_UUID)
                return str(uuid.UUID(int=number))
        # A placeholder is never editable: it stands for something JSON cannot hold.
        self.notes.lossy = True
        if obj.type_name in _KNOWN_PLACEHOLDERS:
            self.notes.add(PICKLE_PLACEHOLDER.format(name=obj.type_name))
        if obj.exception:
            message = _exception_message(obj)
            self.notes.add(PICKLE_EXCEPTION.format(name=obj.type_name, message=message[:200]))
        out: dict[str, JSONValue] = {
            PICKLE_PLACEHOLDER_KEY: obj.type_name,
            "args": [self.convert(item, depth + 1) for item in obj.args],
        }
        if obj.kwargs:
            out["kwargs"] = self.convert_dict(obj.kwargs, depth)
        if obj.has_state:
            out["state"] = self.convert(obj.state, depth + 1)
        if obj.list_items:
            out["items"] = [self.convert(item, depth + 1) for item in obj.list_items]
        if obj.dict_items:
            out["dict_items"] = [
                [self.convert(key, depth + 1), self.convert(value, depth + 1)]
                for key, value in obj.dict_items
            ]
        return out


def _dump_key(value: JSONValue) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _exception_message(exc: _Placeholder) -> str:
    state = exc.state if exc.has_state else None
    if isinstance(state, dict) and isinstance(state.get("message"), str):
        return str(state["message"])
    if len(exc.args) == 1 and isinstance(exc.args[0], str):
        return exc.args[0]
    short = exc.type_name.rsplit(".", 1)[-1]
    return f"{short}({', '.join(_brief(arg) for arg in exc.args)})"


def _brief(value: object) -> str:
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    if isinstance(value, _Placeholder):
        return value.type_name
    return type(value).__name__


# ---------------------------------------------------------------------------------------
# Dispatch tables

_DECODERS: dict[str, Callable[[str, Kind, _Notes], JSONValue]] = {
    PY_PICKLE: _decode_pickle,
    PORTABLE_JSON: _decode_portable,
    JS_SUPERJSON: _decode_superjson,
    GO_JSON: _decode_go,
    JAVA_JACKSON: _decode_java,
}
_FORMAT_OF_COLUMN: dict[str | None, str] = {
    PY_PICKLE: FORMAT_PY_PICKLE,
    PORTABLE_JSON: FORMAT_PORTABLE_JSON,
    JS_SUPERJSON: FORMAT_JS_SUPERJSON,
    GO_JSON: FORMAT_GO_JSON,
    JAVA_JACKSON: FORMAT_JAVA_JACKSON,
}
_WRITABLE_FORMATS = frozenset({FORMAT_PY_PICKLE, FORMAT_PORTABLE_JSON, FORMAT_JS_SUPERJSON})
