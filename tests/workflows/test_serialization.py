"""Stories about reading what each DBOS SDK stores, and writing edited values back.

Python values are real: built with the stdlib pickler or with the installed dbos==3.2.0
serializer. TypeScript values are the examples of PROTOCOL.md §4.1. Go and Java values are
built to what their SDK sources write (dbos-transact-golang `dbos/serialization.go`,
dbos-transact-java `transact/src/main/java/dev/dbos/transact/json/`).
"""

import base64
import collections
import json
import os
import pickle
import posix
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from dbos._error import DBOSException, DBOSUnexpectedStepError
from dbos._serialization import (
    DBOSPortableJSON,
    DefaultSerializer,
    WorkflowSerializationFormat,
    deserialize_args,
    serialize_args,
    serialize_exception,
    serialize_value,
)

from workflows import serialization
from workflows.serialization import (
    NOT_WRITABLE,
    PICKLE_REFUSED,
    SUPERJSON_NO_KWARGS,
    UNKNOWN_SERIALIZATION,
    Decoded,
    NotWritable,
    decode,
    editable,
    encode,
)

PROTOCOLS = [0, 1, 2, 3, 4, 5]
PICKLER = DefaultSerializer()


class Point:
    """A custom class an application might return from a step."""

    def __init__(self, x: int, y: int) -> None:
        self.x = x
        self.y = y


@dataclass
class Invoice:
    number: str
    total: Decimal


class Timeout(Exception):
    """An application exception whose name does not end in Error."""


class Evil:
    """A pickle payload that would run a shell command when unpickled by `pickle.loads`."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, ("echo pwned",))


def b64_pickle(value: object, protocol: int = 4) -> str:
    return base64.b64encode(pickle.dumps(value, protocol=protocol)).decode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def go_json(value: object) -> str:
    """What dbos-transact-golang's DBOS_JSON serializer stores: base64 of json.Marshal."""
    return b64(json.dumps(value, separators=(",", ":")).encode())


# Pickled at import, while os.system is still the real one.
EVIL_PICKLES = {protocol: b64_pickle(Evil(), protocol) for protocol in PROTOCOLS}


@pytest.fixture
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Make every way of running code through a pickle record the attempt instead."""
    calls: list[str] = []

    def record(name: str) -> Any:
        def recorder(*args: object, **kwargs: object) -> None:
            calls.append(name)
            raise AssertionError(f"{name} was called")

        return recorder

    monkeypatch.setattr(os, "system", record("os.system"))
    monkeypatch.setattr(posix, "system", record("posix.system"))
    monkeypatch.setattr(subprocess, "Popen", record("subprocess.Popen"))
    monkeypatch.setattr(pickle, "loads", record("pickle.loads"))
    monkeypatch.setattr(pickle, "load", record("pickle.load"))
    monkeypatch.setattr(pickle, "Unpickler", record("pickle.Unpickler"))
    yield calls
    assert calls == []


# --- Python pickles: the restricted decoder ------------------------------------------


def test_it_reads_the_inputs_pickle_a_python_executor_writes() -> None:
    stored, name = serialize_args(("alice",), {"times": 2}, None, PICKLER)
    assert name == "py_pickle"
    assert stored.startswith("gASVLAAAAAAAAAB9lCiMBGFyZ3OU")  # PROTOCOL.md §4.1

    decoded = decode(stored, "py_pickle", kind="inputs")

    assert decoded == Decoded({"args": ["alice"], "kwargs": {"times": 2}}, "py_pickle", True)
    assert editable(decoded)


def test_it_reads_a_python_step_output() -> None:
    stored, _ = serialize_value({"greeting": "hello alice", "n": 5}, None, PICKLER)

    decoded = decode(stored, "py_pickle")

    assert decoded.value == {"greeting": "hello alice", "n": 5}
    assert decoded.ok
    assert decoded.raw is None


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_it_reads_plain_data_in_every_pickle_protocol(protocol: int) -> None:
    shared = ["same", "list"]
    value = {
        "text": "héllo ✓",
        "numbers": [0, -1, 255, 65536, 2**40, -(2**70), 1.5, -0.25],
        "flags": [True, False, None],
        "nested": {"a": [{"b": []}, {}]},
        "shared": [shared, shared],
    }

    decoded = decode(b64_pickle(value, protocol), "py_pickle")

    assert decoded.ok
    assert decoded.value == {**value, "shared": [["same", "list"], ["same", "list"]]}
    assert editable(decoded)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tuples_sets_and_bytes_become_json_with_a_note_and_the_raw_text(protocol: int) -> None:
    stored = b64_pickle({"pair": (1, "two"), "tags": {"x"}, "blob": b"\x00\xff"}, protocol)

    decoded = decode(stored, "py_pickle")

    assert decoded.value == {
        "pair": [1, "two"],
        "tags": ["x"],
        "blob": {"__pickle__": "builtins.bytes", "base64": "AP8="},
    }
    assert {"tuple shown as list", "set shown as list", "bytes shown as base64"} <= set(
        decoded.notes
    )
    assert decoded.raw == stored
    assert not editable(decoded)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_it_reads_dates_decimals_and_uuids_from_their_pickled_state(protocol: int) -> None:
    value = [
        datetime(2024, 1, 2, 3, 4, 5, 600, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59),  # noqa: DTZ001 - naive on purpose
        datetime(2024, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=-5), "EST")),
        date(2024, 2, 29),
        time(13, 14, 15, 16),
        timedelta(days=2, seconds=3, microseconds=500_000),
        Decimal("1234.5600"),
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
    ]

    decoded = decode(b64_pickle(value, protocol), "py_pickle")

    assert decoded.ok
    assert decoded.value == [
        "2024-01-02T03:04:05.000600+00:00",
        "1999-12-31T23:59:59",
        "2024-06-01T12:00:00-05:00",
        "2024-02-29",
        "13:14:15.000016",
        172803.5,
        "1234.5600",
        "12345678-1234-5678-1234-567812345678",
    ]
    assert "datetime.datetime shown as an ISO 8601 string" in decoded.notes
    assert "decimal.Decimal shown as a string" in decoded.notes
    assert decoded.raw is not None


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_a_zoneinfo_datetime_shows_local_time_and_names_its_zone(protocol: int) -> None:
    when = datetime(2024, 7, 1, 9, 30, tzinfo=ZoneInfo("Europe/Paris"))

    decoded = decode(b64_pickle(when, protocol), "py_pickle")

    # Pickle names ZoneInfo._unpickle through builtins.getattr; resolved, never called.
    assert decoded.ok
    assert decoded.value == "2024-07-01T09:30:00"
    assert (
        "timezone zoneinfo.ZoneInfo._unpickle Europe/Paris not applied; local time shown"
        in decoded.notes
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_it_reads_ordered_dicts_frozensets_complex_and_bytearrays(protocol: int) -> None:
    value = {
        "ordered": collections.OrderedDict([("b", 1), ("a", 2)]),
        "frozen": frozenset([7]),
        "z": complex(1, -2),
        "buffer": bytearray(b"ab"),
    }

    decoded = decode(b64_pickle(value, protocol), "py_pickle")

    assert decoded.ok
    assert decoded.value == {
        "ordered": {"b": 1, "a": 2},
        "frozen": [7],
        "z": "(1-2j)",
        "buffer": {"__pickle__": "builtins.bytearray", "base64": "YWI="},
    }
    assert json.dumps(decoded.value).startswith('{"ordered": {"b": 1, "a": 2}')


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_pickled_value_error_is_an_inert_placeholder_with_its_message(protocol: int) -> None:
    decoded = decode(b64_pickle(ValueError("bad input fail1"), protocol), "py_pickle")

    assert decoded.ok
    assert decoded.value == {"__pickle__": "builtins.ValueError", "args": ["bad input fail1"]}
    assert "exception builtins.ValueError: bad input fail1" in decoded.notes
    assert not editable(decoded)


def test_a_python_workflow_error_normalises_to_name_and_message() -> None:
    stored, name = serialize_exception(ValueError("bad input fail1"), None, PICKLER)
    assert name == "py_pickle"

    decoded = decode(stored, "py_pickle", kind="error")

    assert decoded.value == {
        "name": "ValueError",
        "message": "bad input fail1",
        "type": "builtins.ValueError",
        "args": ["bad input fail1"],
    }


def test_dbos_exceptions_keep_their_message_and_error_code() -> None:
    plain = decode(b64_pickle(DBOSException("boom", 3)), "py_pickle", kind="error")
    custom_reduce = decode(
        b64_pickle(DBOSUnexpectedStepError("wf-1", 2, "fetch", "other")), "py_pickle", kind="error"
    )

    assert plain.value == {
        "name": "DBOSException",
        "message": "boom",
        "type": "dbos._error.DBOSException",
        "args": ["boom"],
        "code": 3,
        "state": {"message": "boom", "dbos_error_code": 3},
    }
    assert custom_reduce.value == {
        "name": "DBOSUnexpectedStepError",
        "message": "DBOSUnexpectedStepError('wf-1', 2, 'fetch', 'other')",
        "type": "dbos._error.DBOSUnexpectedStepError",
        "args": ["wf-1", 2, "fetch", "other"],
    }
    assert not any("custom type" in note for note in custom_reduce.notes)


def test_any_object_in_an_error_column_is_read_as_an_exception() -> None:
    decoded = decode(b64_pickle(Timeout("took too long")), "py_pickle", kind="error")

    assert decoded.value == {
        "name": "Timeout",
        "message": "took too long",
        "type": "tests.workflows.test_serialization.Timeout",
        "args": ["took too long"],
    }
    assert "custom type tests.workflows.test_serialization.Timeout shown as a placeholder" in (
        decoded.notes
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_custom_class_becomes_a_placeholder_that_keeps_its_state(protocol: int) -> None:
    decoded = decode(b64_pickle({"where": Point(1, 2)}, protocol), "py_pickle")

    assert decoded.ok
    assert decoded.value == {
        "where": {
            "__pickle__": "tests.workflows.test_serialization.Point",
            "args": [],
            "state": {"x": 1, "y": 2},
        }
    }
    assert "custom type tests.workflows.test_serialization.Point shown as a placeholder" in (
        decoded.notes
    )
    assert not editable(decoded)


def test_a_dataclass_placeholder_keeps_its_allow_listed_fields_readable() -> None:
    decoded = decode(b64_pickle(Invoice("INV-7", Decimal("9.99"))), "py_pickle")

    assert decoded.value == {
        "__pickle__": "tests.workflows.test_serialization.Invoice",
        "args": [],
        "state": {"number": "INV-7", "total": "9.99"},
    }


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_pickle_that_would_call_os_system_is_refused_and_nothing_runs(
    protocol: int, no_unpickling: list[str]
) -> None:
    stored = EVIL_PICKLES[protocol]

    decoded = decode(stored, "py_pickle")

    assert not decoded.ok
    assert PICKLE_REFUSED.format(name="posix.system") in decoded.notes
    assert decoded.value == {
        "__pickle__": "unreadable",
        "reason": "pickle references globals that are never allowed: posix.system",
        "globals": ["posix.system"],
    }
    assert decoded.raw == stored
    assert no_unpickling == []


@pytest.mark.parametrize(
    ("payload", "refused"),
    [
        (b"cos\nsystem\n(S'echo pwned'\ntR.", "os.system"),
        (b"c__builtin__\neval\n(S'1+1'\ntR.", "builtins.eval"),
        (
            b"cbuiltins\ngetattr\n(cbuiltins\nobject\nS'__subclasses__'\ntR)R.",
            "builtins.object.__subclasses__",
        ),
        (b"cbuiltins\ngetattr\n(]S'append'\ntR.", "builtins.getattr"),
        (
            b"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(S'os'\ntRS'system'\ntR(S'id'\ntR.",
            "builtins.getattr",
        ),
        (b"csubprocess\nPopen\n((S'ls'\nltR.", "subprocess.Popen"),
        (b"\x80\x04\x8c\x08builtins\x8c\n__import__\x93\x8c\x02os\x85R.", "builtins.__import__"),
        (b"(S'id'\nios\npopen\n.", "os.popen"),
    ],
)
def test_hand_made_attack_pickles_are_refused(
    payload: bytes, refused: str, no_unpickling: list[str]
) -> None:
    decoded = decode(b64(payload), "py_pickle")

    assert not decoded.ok
    assert PICKLE_REFUSED.format(name=refused) in decoded.notes


def test_referenced_modules_are_never_imported(no_unpickling: list[str]) -> None:
    if "colorsys" in sys.modules:
        pytest.skip("colorsys was already imported by something else")
    stored = b64(b"ccolorsys\nrgb_to_hsv\n(I1\nI2\nI3\ntR.")

    decoded = decode(stored, "py_pickle")

    assert decoded.value == {"__pickle__": "colorsys.rgb_to_hsv", "args": [1, 2, 3]}
    assert "colorsys" not in sys.modules


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x80\x04",
        b"\x80\x04]\x94(K\x01K\x02e",  # no STOP
        b"\x80\x04a.",  # APPEND with nothing on the stack
        b"\x80\x04h\x07.",  # memo entry that was never stored
        b"\x80\x06N.",  # protocol 6 does not exist
        b"\x80\x04K\x01K\x02\x86\x94K\x03s.",  # SETITEM on a tuple
        b"\x80\x04P0\n.",  # persistent id
        b"\x80\x04\x82\x01.",  # extension registry code
        b"\x80\x04\x8c\x01a\x94K\x01\x93.",  # STACK_GLOBAL with a non-string name
        b"not a pickle at all",
    ],
)
def test_malformed_pickles_are_decode_failures_not_exceptions(payload: bytes) -> None:
    decoded = decode(b64(payload), "py_pickle")

    assert not decoded.ok
    assert decoded.format == "py_pickle"
    assert isinstance(decoded.value, dict)
    assert decoded.value["__pickle__"] == "unreadable"
    assert decoded.notes[0].startswith("could not decode py_pickle")


def test_text_that_is_not_base64_is_a_decode_failure() -> None:
    decoded = decode("this is not base64!", "py_pickle")

    assert not decoded.ok
    assert decoded.notes == ["could not decode py_pickle: not valid base64"]
    assert decoded.raw == "this is not base64!"


def test_oversized_pickles_are_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serialization, "MAX_PICKLE_BYTES", 64)

    decoded = decode(b64_pickle(list(range(100))), "py_pickle")

    assert not decoded.ok
    assert decoded.notes == ["could not decode py_pickle: pickle is larger than 64 bytes"]


def test_the_opcode_budget_bounds_the_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serialization, "MAX_PICKLE_OPCODES", 50)

    small = decode(b64_pickle(list(range(10))), "py_pickle")
    large = decode(b64_pickle([str(i) for i in range(100)]), "py_pickle")

    assert small.ok
    assert not large.ok
    assert "pickle has more than 50 opcodes" in large.notes[0]


def test_a_deeply_nested_pickle_fails_cleanly() -> None:
    deep = b"\x80\x04" + b"]" * 5000 + b"a" * 4999 + b"."

    decoded = decode(b64(deep), "py_pickle")

    assert not decoded.ok
    assert "nested more than 200 levels deep" in decoded.notes[0]


def test_a_self_referencing_list_is_shown_with_a_placeholder() -> None:
    loop: list[object] = [1]
    loop.append(loop)

    decoded = decode(b64_pickle(loop), "py_pickle")

    assert decoded.value == [1, {"__pickle__": "recursive reference"}]
    assert not editable(decoded)


# --- portable JSON -------------------------------------------------------------------


def test_portable_inputs_normalise_to_args_and_kwargs() -> None:
    decoded = decode(
        '{"positionalArgs":["bob"],"namedArgs":{"times":3}}', "portable_json", kind="inputs"
    )

    assert decoded == Decoded({"args": ["bob"], "kwargs": {"times": 3}}, "portable_json", True)
    assert editable(decoded)


def test_portable_inputs_the_python_sdk_writes_decode_the_same() -> None:
    stored, _ = serialize_args(
        ("bob",),
        {"when": datetime(2025, 6, 15, 10, 30, tzinfo=UTC), "amount": Decimal("2.50")},
        WorkflowSerializationFormat.PORTABLE,
        PICKLER,
    )

    decoded = decode(stored, "portable_json", kind="inputs")

    assert decoded.value == {
        "args": ["bob"],
        "kwargs": {"when": "2025-06-15T10:30:00.000Z", "amount": "2.50"},
    }


def test_java_portable_inputs_with_null_named_args_still_normalise() -> None:
    decoded = decode('{"positionalArgs":["a",1],"namedArgs":null}', "portable_json", kind="inputs")

    assert decoded.value == {"args": ["a", 1], "kwargs": {}}


def test_a_portable_output_is_a_json_string_literal() -> None:
    decoded = decode('"HELLO EDITED!!"', "portable_json")

    assert decoded.value == "HELLO EDITED!!"
    assert editable(decoded)


def test_a_portable_error_is_already_normalised() -> None:
    stored = '{"name":"DBOSUnexpectedStepError","message":"DBOS Error 11: ...","code":null}'

    decoded = decode(stored, "portable_json", kind="error")

    assert decoded.value == {
        "name": "DBOSUnexpectedStepError",
        "message": "DBOS Error 11: ...",
        "code": None,
    }


def test_broken_portable_json_is_a_decode_failure() -> None:
    decoded = decode('{"positionalArgs": [', "portable_json", kind="inputs")

    assert not decoded.ok
    assert decoded.notes[0].startswith("could not decode portable_json: not valid JSON")
    assert decoded.raw == '{"positionalArgs": ['


# --- TypeScript: superjson and legacy JSON --------------------------------------------


def test_typescript_inputs_are_the_positional_array() -> None:
    decoded = decode(
        '{"json":["alice",2],"__dbos_serializer":"superjson"}', "js_superjson", kind="inputs"
    )

    assert decoded == Decoded({"args": ["alice", 2], "kwargs": {}}, "js_superjson", True)
    assert editable(decoded)


def test_a_typescript_output_string() -> None:
    stored = '{"json":"HELLO ALICE!!!!!HELLO ALICE!!!!!","__dbos_serializer":"superjson"}'

    assert decode(stored, "js_superjson").value == "HELLO ALICE!!!!!HELLO ALICE!!!!!"


def test_a_typescript_date_is_an_iso_string_with_a_note() -> None:
    stored = (
        '{"json":{"greeting":"hello alice","n":5,"when":"1970-01-01T00:00:00.000Z"},'
        '"meta":{"values":{"when":["Date"]}},"__dbos_serializer":"superjson"}'
    )

    decoded = decode(stored, "js_superjson")

    assert decoded.value == {"greeting": "hello alice", "n": 5, "when": "1970-01-01T00:00:00.000Z"}
    assert decoded.notes == ["Date converted to an ISO 8601 string"]
    assert decoded.raw == stored
    assert not editable(decoded)


def test_a_typescript_error() -> None:
    stored = (
        '{"json":{"name":"Error","message":"bad input fail1","stack":"Error: ..."},'
        '"__dbos_serializer":"superjson"}'
    )

    decoded = decode(stored, "js_superjson", kind="error")

    assert decoded.value == {"name": "Error", "message": "bad input fail1", "stack": "Error: ..."}


def test_superjson_maps_sets_bigints_and_undefined_become_json() -> None:
    stored = json.dumps(
        {
            "json": {
                "byName": [["a", 1], ["b", {"at": "2020-01-01T00:00:00.000Z"}]],
                "byId": [[1, "one"]],
                "tags": ["x", "y"],
                "big": "9007199254740993",
                "gone": None,
                "nan": "NaN",
            },
            "meta": {
                "values": {
                    "byName": ["map", {"1.1.at": ["Date"]}],
                    "byId": ["map"],
                    "tags": ["set"],
                    "big": ["bigint"],
                    "gone": ["undefined"],
                    "nan": ["number"],
                },
                "v": 1,
            },
            "__dbos_serializer": "superjson",
        }
    )

    decoded = decode(stored, "js_superjson")

    assert decoded.value == {
        "byName": {"a": 1, "b": {"at": "2020-01-01T00:00:00.000Z"}},
        "byId": [[1, "one"]],
        "tags": ["x", "y"],
        "big": "9007199254740993",
        "gone": None,
        "nan": "NaN",
    }
    assert "bigint shown as a string" in decoded.notes
    assert "set shown as a list" in decoded.notes


def test_a_superjson_root_date_is_annotated_at_the_root() -> None:
    stored = (
        '{"json":"2020-01-01T00:00:00.000Z","meta":{"values":["Date"]},'
        '"__dbos_serializer":"superjson"}'
    )

    decoded = decode(stored, "js_superjson")

    assert decoded.value == "2020-01-01T00:00:00.000Z"
    assert decoded.notes == ["Date converted to an ISO 8601 string"]


def test_legacy_typescript_date_and_bigint_wrappers_are_unwrapped() -> None:
    stored = (
        '["alice",{"when":{"dbos_type":"dbos_Date","dbos_data":"2024-01-02T03:04:05.000Z"},'
        '"big":{"dbos_type":"dbos_BigInt","dbos_data":"123456789012345"}}]'
    )

    decoded = decode(stored, None, kind="inputs")

    assert decoded.format == "ts_legacy_json"
    assert decoded.value == {
        "args": ["alice", {"when": "2024-01-02T03:04:05.000Z", "big": "123456789012345"}],
        "kwargs": {},
    }
    assert "Date (dbos_Date) shown as an ISO 8601 string" in decoded.notes
    assert "BigInt (dbos_BigInt) shown as a string" in decoded.notes


# --- Go: DBOS_JSON ---------------------------------------------------------------------


def test_go_values_are_base64_json() -> None:
    decoded = decode(go_json({"greeting": "hello", "n": 5}), "DBOS_JSON")

    assert decoded == Decoded({"greeting": "hello", "n": 5}, "go_json", True)
    assert not editable(decoded)  # StepChange does not write DBOS_JSON


def test_go_nil_is_a_marker() -> None:
    assert decode("__DBOS_NIL", "DBOS_JSON").value is None


def test_a_go_workflow_input_is_its_single_argument() -> None:
    decoded = decode(go_json({"name": "bob", "times": 3}), "DBOS_JSON", kind="inputs")

    assert decoded.value == {"args": [{"name": "bob", "times": 3}], "kwargs": {}}


def test_a_go_error_is_the_plain_error_text() -> None:
    decoded = decode("step fetch failed: connection refused", "DBOS_JSON", kind="error")

    assert decoded.value == {"name": "error", "message": "step fetch failed: connection refused"}
    assert decoded.ok


def test_a_gob_encoded_go_error_is_not_decoded_but_kept() -> None:
    gob_like = b64(b"\x1f\xff\x81\x03\x01\x01\x0e*dbos.DBOSError\x01\xff\x82\x00\x01\x02")

    decoded = decode(gob_like, "DBOS_JSON", kind="error")

    assert not decoded.ok
    assert decoded.raw == gob_like


def test_go_gob_values_are_returned_raw() -> None:
    decoded = decode("Dv+BBAEC/4IAAQwBEAAA", "DBOS_GOB")

    assert decoded.format == "raw"
    assert not decoded.ok
    assert decoded.notes == ["Go gob encoding (DBOS_GOB) cannot be decoded here"]


# --- Java: java_jackson ----------------------------------------------------------------


def test_java_inputs_are_a_typed_object_array() -> None:
    stored = json.dumps(
        [
            "[Ljava.lang.Object;",
            [
                "abc",
                123,
                ["java.lang.Long", 1234567890123],
                ["java.util.ImmutableCollections$List12", ["x", "y"]],
                {
                    "@class": "dev.example.Person",
                    "name": "Alice",
                    "age": 30,
                    "address": {"city": "Seattle", "zip": "98101"},
                },
                ["java.time.Instant", "2024-01-01T00:00:00Z"],
            ],
        ]
    )

    decoded = decode(stored, "java_jackson", kind="inputs")

    assert decoded.value == {
        "args": [
            "abc",
            123,
            1234567890123,
            ["x", "y"],
            {"name": "Alice", "age": 30, "address": {"city": "Seattle", "zip": "98101"}},
            "2024-01-01T00:00:00Z",
        ],
        "kwargs": {},
    }
    assert decoded.notes[0].startswith("Jackson type information removed (")
    assert "java.lang.Long" in decoded.notes[0]
    assert not editable(decoded)


def test_a_java_map_value_loses_its_class_property() -> None:
    stored = '{"@class":"java.util.HashMap","one":1,"nested":["java.util.ArrayList",[1,2]]}'

    assert decode(stored, "java_jackson").value == {"one": 1, "nested": [1, 2]}


def test_java_values_from_older_sdks_are_boxed() -> None:
    stored = '{"args":[{"@class":"dev.example.Person","name":"Alice"}]}'

    decoded = decode(stored, "java_jackson")

    assert decoded.value == {"name": "Alice"}
    assert "Java boxed format (older SDK)" in decoded.notes


def test_a_java_error_is_a_wire_throwable() -> None:
    stored = json.dumps(
        {
            "v": 1,
            "type": "java.lang.IllegalStateException",
            "message": "bad input fail1",
            "causeType": "java.lang.RuntimeException",
            "stackPreview": [
                "java.util.ImmutableCollections$ListN",
                ["dev.example.App.run(App.java:10)"],
            ],
            "suppressedCount": 0,
            "base64bytes": "rO0ABXNyAB9qYXZhLmxhbmcuSWxsZWdhbFN0YXRlRXhjZXB0aW9u",
            "node": None,
            "extra": {"@class": "java.util.ImmutableCollections$MapN"},
        }
    )

    decoded = decode(stored, "java_jackson", kind="error")

    assert decoded.value == {
        "name": "IllegalStateException",
        "message": "bad input fail1",
        "type": "java.lang.IllegalStateException",
        "causeType": "java.lang.RuntimeException",
        "stackPreview": ["dev.example.App.run(App.java:10)"],
    }
    assert "Java-serialized exception bytes are not decoded" in decoded.notes


# --- NULL serialization: recognised from the value ------------------------------------


def test_a_legacy_python_row_is_recognised_as_a_pickle() -> None:
    stored, _ = serialize_args(("alice",), {"times": 2}, None, PICKLER)

    decoded = decode(stored, None, kind="inputs")

    assert decoded.format == "py_pickle"
    assert decoded.value == {"args": ["alice"], "kwargs": {"times": 2}}
    assert decoded.notes == ["serialization column is empty; recognised as a Python pickle"]


def test_superjson_is_recognised_with_or_without_its_marker() -> None:
    marked = decode('{"json":[1,2],"__dbos_serializer":"superjson"}', None, kind="inputs")
    unmarked = decode('{"json":{"a":1},"meta":{"values":{"a":["bigint"]}}}', "")

    assert (marked.format, marked.value) == ("js_superjson", {"args": [1, 2], "kwargs": {}})
    assert (unmarked.format, unmarked.value) == ("js_superjson", {"a": 1})
    assert "superjson envelope without the DBOS marker" in unmarked.notes


def test_a_legacy_go_row_is_recognised_as_base64_json() -> None:
    decoded = decode(go_json([1, "two"]), None)

    assert (decoded.format, decoded.value) == ("go_json", [1, "two"])


def test_a_legacy_java_row_is_recognised_by_its_box() -> None:
    decoded = decode('{"args":["abc",["java.lang.Long",5]]}', None, kind="inputs")

    assert (decoded.format, decoded.value) == ("java_jackson", {"args": ["abc", 5], "kwargs": {}})


def test_unrecognisable_legacy_text_is_kept_raw() -> None:
    decoded = decode("<xml>not ours</xml>", None)

    assert not decoded.ok
    assert decoded.format == "raw"
    assert decoded.raw == "<xml>not ours</xml>"


def test_a_legacy_plain_text_error_is_still_shown_as_an_error() -> None:
    decoded = decode("workflow failed: boom", None, kind="error")

    assert decoded.value == {"name": "Error", "message": "workflow failed: boom"}


# --- unknown formats and empty values --------------------------------------------------


def test_a_custom_serializer_value_is_returned_raw_with_a_note() -> None:
    decoded = decode("opaque-bytes", "custom_serializer")

    assert decoded == Decoded(
        None,
        "raw",
        False,
        [UNKNOWN_SERIALIZATION.format(name="custom_serializer")],
        "opaque-bytes",
    )
    assert not editable(decoded)


def test_a_null_stored_value_decodes_to_none() -> None:
    decoded = decode(None, "py_pickle")

    assert decoded.ok
    assert decoded.value is None
    assert decoded.format == "py_pickle"


# --- encoders for edited forks ---------------------------------------------------------

EDITED = {"greeting": "hello EDITED", "n": 2, "ratio": 0.5, "tags": ["a"], "none": None, "ok": True}


@pytest.mark.parametrize("serialization", ["portable_json", "py_pickle", "js_superjson"])
def test_an_edited_value_round_trips_in_each_writable_format(serialization: str) -> None:
    decoded = decode(encode(EDITED, serialization), serialization)

    assert decoded.value == EDITED
    assert editable(decoded)


@pytest.mark.parametrize("serialization", ["portable_json", "py_pickle"])
def test_edited_inputs_round_trip_with_kwargs(serialization: str) -> None:
    inputs = {"args": ["bob", [1, 2]], "kwargs": {"times": 3}}

    decoded = decode(encode(inputs, serialization, kind="inputs"), serialization, kind="inputs")

    assert decoded.value == inputs
    assert editable(decoded)


@pytest.mark.parametrize("inputs", [["bob"], {"args": "bob"}, {"args": [], "extra": 1}])
def test_inputs_of_another_shape_are_refused_with_the_shape_shown_as_json(inputs: Any) -> None:
    with pytest.raises(ValueError, match="must be an object") as refused:
        encode(inputs, "portable_json", kind="inputs")

    assert str(refused.value) == 'Inputs must be an object {"args": [...], "kwargs": {...}}.'


def test_edited_inputs_are_written_in_each_sdk_shape() -> None:
    inputs = {"args": ["bob"], "kwargs": {"times": 3}}

    assert (
        encode(inputs, "portable_json", kind="inputs")
        == '{"positionalArgs":["bob"],"namedArgs":{"times":3}}'
    )
    assert (
        encode({"args": ["alice", 2], "kwargs": {}}, "js_superjson", kind="inputs")
        == '{"json":["alice",2],"__dbos_serializer":"superjson"}'
    )
    assert encode("HELLO EDITED!!", "portable_json") == '"HELLO EDITED!!"'


def test_the_python_sdk_reads_the_inputs_we_write() -> None:
    inputs = {"args": ["bob"], "kwargs": {"times": 3}}

    # The SDK unpickles our own plain data here; the conductor itself never unpickles.
    pickled = deserialize_args(encode(inputs, "py_pickle", kind="inputs"), "py_pickle", PICKLER)
    portable = deserialize_args(
        encode(inputs, "portable_json", kind="inputs"), "portable_json", PICKLER
    )

    assert pickled == {"args": ("bob",), "kwargs": {"times": 3}}
    assert portable == {"args": ("bob",), "kwargs": {"times": 3}}
    assert DBOSPortableJSON.deserialize(encode(EDITED, "portable_json")) == EDITED


@pytest.mark.parametrize("serialization", ["DBOS_JSON", "java_jackson", "custom_serializer", ""])
def test_formats_we_cannot_write_are_refused(serialization: str) -> None:
    with pytest.raises(NotWritable) as caught:
        encode({"a": 1}, serialization)

    assert str(caught.value) == NOT_WRITABLE.format(serialization=serialization)


@pytest.mark.parametrize(
    "value",
    [(1, 2), {1, 2}, float("nan"), float("inf"), {1: "x"}, datetime(2024, 1, 1, tzinfo=UTC), b"x"],
)
def test_values_that_are_not_plain_json_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match=r"^(Value at|Object key at) "):
        encode({"edited": value}, "portable_json")


def test_superjson_inputs_cannot_carry_keyword_arguments() -> None:
    with pytest.raises(NotWritable, match=SUPERJSON_NO_KWARGS):
        encode({"args": [], "kwargs": {"times": 3}}, "js_superjson", kind="inputs")


def test_inputs_must_have_the_args_and_kwargs_shape() -> None:
    with pytest.raises(ValueError, match="Inputs must be an object"):
        encode(["bob"], "portable_json", kind="inputs")
