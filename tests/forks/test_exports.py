"""The export file: signed on the way out, read back as data, refused with a reason."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from django.test import override_settings

from forks import exports

NOW = datetime(2026, 12, 5, 8, 30, tzinfo=UTC)


def _element(workflow_id: str, *, parent: str | None = None) -> exports.Element:
    return exports.Element(
        status={
            "workflow_uuid": workflow_id,
            "status": "SUCCESS",
            "name": "greet",
            "inputs": "gAR9lC4=",
            "output": "gARLAi4=",
            "error": None,
            "created_at": 1_795_315_694_040,
            "updated_at": 1_795_315_694_540,
            "parent_workflow_id": parent,
            "serialization": "py_pickle",
        },
        steps=[
            {
                "workflow_uuid": workflow_id,
                "function_id": 1,
                "function_name": "say",
                "output": "gARLAi4=",
                "error": None,
                "child_workflow_id": None,
                "started_at_epoch_ms": 1_795_315_694_100,
                "completed_at_epoch_ms": 1_795_315_694_200,
                "serialization": "py_pickle",
            }
        ],
        events=[{"workflow_uuid": workflow_id, "key": "k", "value": "x", "serialization": None}],
        history=[
            {
                "workflow_uuid": workflow_id,
                "key": "k",
                "value": "x",
                "function_id": 2,
                "serialization": None,
            }
        ],
        streams=[],
    )


def _doc(**overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "application": "shop",
        "language": "python",
        "schema_version": 112,
        "source": exports.FROM_DATABASE,
        "root_id": "wf-1",
        "elements": [_element("wf-1"), _element("wf-1-child", parent="wf-1")],
        "exported_by": "alice",
        "exported_at": NOW,
    }
    return exports.document(**(arguments | overrides))


def test_a_signed_export_reads_back_whole() -> None:
    read = exports.read(exports.dumps(_doc()))
    assert read.signature == exports.SIGNED
    assert read.signed
    assert read.problem == ""
    assert read.root_id == "wf-1"
    assert read.root.workflow_id == "wf-1"
    assert [e.workflow_id for e in read.workflows] == ["wf-1", "wf-1-child"]
    assert read.application == "shop"
    assert read.language == "python"
    assert read.schema_version == 112
    assert read.source == exports.FROM_DATABASE
    assert read.exported_by == "alice"
    assert read.exported_at == NOW
    assert read.workflow("wf-1-child") == _element("wf-1-child", parent="wf-1")
    assert read.workflow("nope") is None
    assert len(read.sha256) == 64


def test_gzip_reads_the_same() -> None:
    raw = exports.dumps(_doc())
    assert exports.read(gzip.compress(raw)).workflows == exports.read(raw).workflows


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["workflows"][0]["workflow_status"].update(status="ERROR"),
        lambda d: d["workflows"][1]["operation_outputs"][0].update(output="gARLAy4="),
        lambda d: d.update(application="other"),
        lambda d: d["workflows"].append(_element("wf-x").as_json()),
    ],
    ids=["status", "step output", "application", "added workflow"],
)
def test_any_change_breaks_the_signature(change: Any) -> None:
    doc = _doc()
    change(doc)
    read = exports.read(exports.dumps(doc))
    assert read.signature == exports.BAD_SIGNATURE
    assert "changed after it was exported" in read.problem


def test_unsigned_reads_and_says_so() -> None:
    doc = _doc()
    del doc["signature"]
    read = exports.read(json.dumps(doc).encode())
    assert read.signature == exports.UNSIGNED
    assert not read.signed
    assert read.problem == exports.NO_SIGNATURE


def test_another_secret_key_does_not_sign() -> None:
    raw = exports.dumps(_doc())
    with override_settings(SECRET_KEY="another-stepchange-" + "x" * 40):
        assert exports.read(raw).signature == exports.BAD_SIGNATURE


def test_a_rotated_key_still_signs() -> None:
    old = "the-key-before-rotation-" + "y" * 40
    with override_settings(SECRET_KEY=old):
        raw = exports.dumps(_doc())
    with override_settings(SECRET_KEY="the-new-key-" + "z" * 40, SECRET_KEY_FALLBACKS=[old]):
        assert exports.read(raw).signed


def test_a_malformed_signature_is_bad() -> None:
    doc = _doc()
    doc["signature"] = {"algorithm": "MD5", "value": doc["signature"]["value"]}
    assert exports.read(exports.dumps(doc)).signature == exports.BAD_SIGNATURE
    doc["signature"] = "abc"
    assert exports.read(exports.dumps(doc)).signature == exports.BAD_SIGNATURE


@override_settings(EXPORT_FILE_MAX_BYTES=4096)
def test_too_large_is_refused_before_parsing() -> None:
    with pytest.raises(exports.BadExportFile, match="at most 4,096 bytes"):
        exports.read(b"{" + b" " * 5000 + b"}")


@override_settings(EXPORT_FILE_MAX_BYTES=4096)
def test_a_zip_bomb_is_refused() -> None:
    with pytest.raises(exports.BadExportFile, match="Once unzipped"):
        exports.read(gzip.compress(b" " * 1_000_000))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x1f\x8bnot really gzip", "cannot be unzipped"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (b"{nope", "not JSON"),
        (b'{"a": NaN}', "not JSON"),
        (b"[1, 2]", "not a StepChange export"),
        (b'{"format": "dbos"}', "not a StepChange export"),
        (json.dumps({"format": exports.FORMAT, "version": 99}).encode(), "version 99 export"),
        (json.dumps({"format": exports.FORMAT, "version": "1"}).encode(), "version is not"),
    ],
)
def test_unreadable_files_say_why(raw: bytes, message: str) -> None:
    with pytest.raises(exports.BadExportFile, match=message):
        exports.read(raw)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(workflows=[]), "workflows is not a non-empty list"),
        (lambda d: d.update(workflows="x"), "workflows is not a non-empty list"),
        (lambda d: d["workflows"].__setitem__(0, 5), r"workflows\[0\] is not an object"),
        (
            lambda d: d["workflows"][0]["workflow_status"].pop("workflow_uuid"),
            r"workflows\[0\].workflow_status.workflow_uuid is missing",
        ),
        (
            lambda d: d["workflows"][1]["workflow_status"].update(workflow_uuid="wf-1"),
            "repeats workflow wf-1",
        ),
        (
            lambda d: d["workflows"][0]["operation_outputs"][0].update(function_id="1"),
            "function_id is missing or not a whole number",
        ),
        (
            lambda d: d["workflows"][0]["operation_outputs"][0].update(function_id=True),
            "function_id is missing or not a whole number",
        ),
        (
            lambda d: d["workflows"][0]["operation_outputs"][0].update(workflow_uuid="wf-9"),
            "is not its workflow's id wf-1",
        ),
        (
            lambda d: d["workflows"][0]["workflow_status"].update(created_at="17953"),
            "created_at is not a whole number",
        ),
        (
            lambda d: d["workflows"][0]["workflow_status"].update(output={"a": 1}),
            "output is not text",
        ),
        (lambda d: d["workflows"][0].update(streams={}), "streams is not a list"),
        (lambda d: d.update(workflow_id="wf-1-child"), "not the first workflow's id"),
        (lambda d: d.update(source="memory"), "source is not one of"),
        (lambda d: d.update(schema_version="112"), "schema_version is not"),
        (lambda d: d.update(exported_at="yesterday"), "not an ISO 8601 time"),
        (lambda d: d.update(application=5), "application is not text"),
    ],
)
def test_misshapen_exports_say_where(change: Any, message: str) -> None:
    doc = _doc()
    change(doc)
    with pytest.raises(exports.BadExportFile, match=message):
        exports.read(exports.dumps(doc))


def test_too_many_workflows() -> None:
    doc = _doc()
    doc["workflows"] = [
        _element("wf-1").as_json() if n == 0 else _element(f"wf-{n + 1}").as_json()
        for n in range(exports.MAX_WORKFLOWS + 1)
    ]
    with pytest.raises(exports.BadExportFile, match="more than 1,000 workflows"):
        exports.read(exports.dumps(doc))


def test_document_needs_its_root_first() -> None:
    with pytest.raises(ValueError, match="root"):
        _doc(root_id="wf-1-child")


def test_filename_is_safe() -> None:
    assert exports.filename("shop", "a/b c") == "shop-a_b_c.stepchange.json"
