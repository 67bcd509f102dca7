"""What StepChange writes for an edited fork, the real TypeScript SDK (5.0.2) reads back.

(The Python SDK's side is in test_serialization.py.) Node runs the SDK's own
deserializers from the TypeScript sample's node_modules.
"""

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from workflows.serialization import encode

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "samples/typescript/node_modules/@dbos-inc/dbos-sdk/dist/src/serialization.js"
READ_BACK = """
const s = require(process.argv[1]);
const [stored, serialization, kind] = JSON.parse(process.argv[2]);
const read = kind === "inputs" ? s.deserializePositionalArgs : s.deserializeValue;
read(stored, serialization, s.DBOSJSON).then((value) => console.log(JSON.stringify(value)));
"""
VALUE = {"greeting": "hello édith", "n": 5, "ratio": 0.5, "tags": ["a", "b"], "none": None}


def read_back(stored: str, serialization: str, kind: str) -> Any:
    if not SDK.exists() or shutil.which("node") is None:
        pytest.fail("the TypeScript sample's node_modules are missing: run `make install`")
    result = subprocess.run(
        ["node", "-e", READ_BACK, str(SDK), json.dumps([stored, serialization, kind])],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)


@pytest.mark.parametrize("serialization", ["js_superjson", "portable_json"])
def test_the_typescript_sdk_reads_the_values_we_write(serialization: str) -> None:
    assert read_back(encode(VALUE, serialization), serialization, "value") == VALUE


@pytest.mark.parametrize("serialization", ["js_superjson", "portable_json"])
def test_the_typescript_sdk_reads_the_inputs_we_write(serialization: str) -> None:
    inputs = {"args": ["alice", 2, {"deep": [1, 2]}], "kwargs": {}}
    stored = encode(inputs, serialization, kind="inputs")
    assert read_back(stored, serialization, "inputs") == inputs["args"]
