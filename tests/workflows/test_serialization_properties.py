"""Properties of the decoders: they never raise and never run anything, whatever the bytes,
and every value an edited fork writes reads back unchanged."""

import base64
import collections
import json
import os
import pickle
import posix
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from workflows.serialization import Decoded, decode, editable, encode

FAST = settings(max_examples=200, deadline=None, database=None)

SERIALIZATIONS = [
    None,
    "",
    "py_pickle",
    "portable_json",
    "js_superjson",
    "DBOS_JSON",
    "DBOS_GOB",
    "java_jackson",
    "custom_serializer",
]
KINDS = ["value", "inputs", "error"]
WRITABLE = ["portable_json", "py_pickle", "js_superjson"]

REAL_PICKLES = [
    pickle.dumps(value, protocol=protocol)
    for protocol in (2, 3, 4, 5)
    for value in (
        {"args": ("alice",), "kwargs": {"times": 2}},
        {"greeting": "hello alice", "n": 5, "when": datetime(2024, 1, 2, tzinfo=UTC)},
        [Decimal("1.5"), {1, 2}, (3, 4), b"\x00", collections.OrderedDict(a=1)],
        ValueError("bad input fail1"),
    )
]


@contextmanager
def nothing_may_run() -> Iterator[list[str]]:
    """Anything that would execute a pickle's payload records itself and fails the test."""
    calls: list[str] = []

    def recorder(name: str) -> Any:
        def record(*args: object, **kwargs: object) -> None:
            calls.append(name)
            raise AssertionError(f"{name} was called")

        return record

    targets = [
        (os, "system"),
        (posix, "system"),
        (subprocess, "Popen"),
        (pickle, "loads"),
        (pickle, "load"),
        (pickle, "Unpickler"),
    ]
    with ExitStack() as stack:
        for module, name in targets:
            stack.enter_context(mock.patch.object(module, name, recorder(name)))
        yield calls
    assert calls == []


def check_decoded(decoded: Decoded, stored: str) -> None:
    assert isinstance(decoded, Decoded)
    json.dumps(decoded.value, allow_nan=False)  # always JSON-able
    assert not any(note.startswith("unexpected failure") for note in decoded.notes)
    if not decoded.ok:
        assert decoded.raw == stored
        assert decoded.notes


@FAST
@given(data=st.binary(max_size=600), kind=st.sampled_from(KINDS))
def test_the_restricted_decoder_never_raises_on_arbitrary_bytes(data: bytes, kind: Any) -> None:
    stored = base64.b64encode(data).decode()
    with nothing_may_run():
        decoded = decode(stored, "py_pickle", kind=kind)
    check_decoded(decoded, stored)


@FAST
@given(
    body=st.binary(max_size=400),
    protocol=st.integers(min_value=2, max_value=5),
    kind=st.sampled_from(KINDS),
)
def test_the_restricted_decoder_never_raises_past_a_valid_header(
    body: bytes, protocol: int, kind: Any
) -> None:
    stored = base64.b64encode(bytes([0x80, protocol]) + body + b".").decode()
    with nothing_may_run():
        decoded = decode(stored, "py_pickle", kind=kind)
    check_decoded(decoded, stored)


@FAST
@given(
    original=st.sampled_from(REAL_PICKLES),
    edits=st.lists(
        st.tuples(st.sampled_from(["flip", "insert", "delete", "truncate"]), st.integers(0, 10**6)),
        min_size=1,
        max_size=4,
    ),
    byte=st.integers(0, 255),
)
def test_mutated_real_pickles_never_raise_and_never_run(
    original: bytes, edits: list[tuple[str, int]], byte: int
) -> None:
    data = bytearray(original)
    for edit, where in edits:
        index = where % (len(data) + 1)
        if edit == "flip" and index < len(data):
            data[index] = byte
        elif edit == "insert":
            data.insert(index, byte)
        elif edit == "delete" and index < len(data):
            del data[index]
        elif edit == "truncate":
            del data[index:]
    stored = base64.b64encode(bytes(data)).decode()
    with nothing_may_run():
        decoded = decode(stored, "py_pickle")
    check_decoded(decoded, stored)


@FAST
@given(
    stored=st.text(max_size=300),
    serialization=st.sampled_from(SERIALIZATIONS),
    kind=st.sampled_from(KINDS),
)
def test_no_decoder_raises_on_arbitrary_text(
    stored: str, serialization: str | None, kind: Any
) -> None:
    with nothing_may_run():
        decoded = decode(stored, serialization, kind=kind)
    check_decoded(decoded, stored)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@FAST
@given(value=json_values, serialization=st.sampled_from(WRITABLE))
def test_every_json_value_round_trips_in_each_writable_format(
    value: object, serialization: str
) -> None:
    decoded = decode(encode(value, serialization), serialization)

    assert decoded.value == value
    assert editable(decoded)


@FAST
@given(
    args=st.lists(json_values, max_size=4),
    kwargs=st.dictionaries(st.text(), json_values, max_size=4),
    serialization=st.sampled_from(WRITABLE),
)
def test_every_json_input_round_trips_in_each_writable_format(
    args: list[object], kwargs: dict[str, object], serialization: str
) -> None:
    if serialization == "js_superjson":
        kwargs = {}  # TypeScript inputs are positional only
    inputs = {"args": args, "kwargs": kwargs}

    decoded = decode(encode(inputs, serialization, kind="inputs"), serialization, kind="inputs")

    assert decoded.value == inputs
    assert editable(decoded)


@FAST
@given(
    payload=json_values,
    meta=json_values | st.fixed_dictionaries({"values": json_values}),
    serialization=st.sampled_from(SERIALIZATIONS),
    kind=st.sampled_from(KINDS),
)
def test_json_decoders_handle_any_envelope_and_meta(
    payload: object, meta: object, serialization: str | None, kind: Any
) -> None:
    for value in (
        {"json": payload, "meta": meta, "__dbos_serializer": "superjson"},
        {"args": [payload, meta]},
        ["[Ljava.lang.Object;", [payload, meta]],
        payload,
    ):
        stored = json.dumps(value)
        decoded = decode(stored, serialization, kind=kind)
        check_decoded(decoded, stored)
