"""A page of steps decodes each distinct stored text once (list_steps of a workflow whose
steps record the same value), and the steps it gives are those decoded one by one."""

import base64
import pickle
from typing import Any

import pytest

from workflows import serialization, sources


def row(function_id: int, output: object = None, error: str | None = None) -> dict[str, Any]:
    def text(value: object) -> str:
        return base64.b64encode(pickle.dumps(value)).decode()

    return {
        "function_id": function_id,
        "function_name": "import_batch",
        "output": None if output is None else text(output),
        "error": None if error is None else "not base64 at all!",
        "serialization": "py_pickle",
    }


def test_each_distinct_text_is_decoded_once_and_steps_are_unchanged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = [row(1, {"x": "ord-1", "ok": True})] * 3 + [row(4, [1, 2]), row(5, error="bad")]
    rows += [row(6, {"x": "ord-1", "ok": True}), row(7)]
    one_by_one = [sources._step(r) for r in rows]
    calls: list[tuple[str, Any]] = []
    decode = serialization.decode

    def counted(text: str, serialization: Any, *, kind: Any) -> Any:
        calls.append((text, kind))
        return decode(text, serialization, kind=kind)

    monkeypatch.setattr(sources, "decode", counted)
    kept: sources.Decodings = {}
    paged = [sources._step(r, kept) for r in rows]
    assert paged == one_by_one
    assert paged[0].output is not None
    assert paged[0].output.value == {"x": "ord-1", "ok": True}
    # Three distinct texts: the repeated output, the list, the unreadable error.
    assert len(calls) == 3 == len(set(calls))
    # The unreadable error is still reported as such, not taken for an output.
    assert paged[4].error is not None
    assert paged[4].output is None
    assert paged[6].output is None
    assert paged[6].error is None
