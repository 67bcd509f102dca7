"""Frames at the edges, through Daphne: replies of many megabytes pass, a frame over the
configured limit closes only that executor's socket, and junk harms nobody."""

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from bench.frame_cost import measure
from tests.e2e.servers import StepChange

pytestmark = pytest.mark.e2e
LIMIT = 8 * 1024 * 1024


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StepChange]:
    server = StepChange(
        tmp_path_factory.mktemp("limited"), env={"EXECUTOR_MAX_MESSAGE_BYTES": str(LIMIT)}
    )
    server.start()
    yield server
    server.stop()


def handshake(socket: ClientConnection, executor_id: str) -> None:
    info = json.loads(socket.recv(timeout=10))
    socket.send(
        json.dumps(
            {
                "type": "executor_info",
                "request_id": info["request_id"],
                "executor_id": executor_id,
                "application_version": "v1",
                "hostname": "raw",
                "language": "python",
                "dbos_version": "3.2.0",
            }
        )
    )


def serve(socket: ClientConnection, reply: Callable[[dict[str, Any]], str]) -> threading.Thread:
    """Answer every request in the background until the socket closes."""

    def loop() -> None:
        try:
            while True:
                socket.send(reply(json.loads(socket.recv())))
        except ConnectionClosed:
            return

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def send_then_wait(socket: ClientConnection, frame: str) -> None:
    socket.send(frame)
    socket.recv(timeout=10)


def register(server: StepChange) -> tuple[str, str]:
    app, key = f"raw-{uuid.uuid4().hex[:6]}", f"key-{uuid.uuid4().hex}"
    server.manage("register_app", app, "--key", key)
    return app, key


def test_a_reply_of_many_megabytes_reaches_the_caller(limited: StepChange) -> None:
    app, key = register(limited)
    big = "x" * (5 * 1024 * 1024)  # over Daphne's 1 MiB default, under the limit
    with connect(f"{limited.ws_url}/websocket/{app}/{key}", max_size=None) as socket:
        handshake(socket, "raw-big")
        limited.wait_executors(app, 1)
        serve(
            socket,
            lambda request: json.dumps(
                {
                    "type": request["type"],
                    "request_id": request["request_id"],
                    "output": {"WorkflowUUID": "wf-big", "Status": "SUCCESS", "Output": big},
                }
            ),
        )
        status, body = limited.api("GET", f"/apps/{app}/workflows/wf-big")
    assert status == 200, body
    assert len(body["output"]) == len(big)


def test_an_oversized_frame_closes_that_socket_only(limited: StepChange, tmp_path: Path) -> None:
    app, key = register(limited)
    url = f"{limited.ws_url}/websocket/{app}/{key}"
    with connect(url, max_size=None) as healthy, connect(url, max_size=None) as greedy:
        handshake(healthy, "raw-healthy")
        handshake(greedy, "raw-greedy")
        limited.wait_executors(app, 2)
        # Daphne drops the connection mid-frame (it may not get to send a close frame).
        with pytest.raises((ConnectionClosed, OSError)):
            send_then_wait(greedy, "y" * (LIMIT + 1024))
        serve(
            healthy,
            lambda request: json.dumps(
                {"type": request["type"], "request_id": request["request_id"], "output": None}
            ),
        )
        limited.wait_executors(app, 1)
        status, body = limited.api("GET", f"/apps/{app}/workflows/nope")
        assert status == 404, body


def test_junk_frames_are_dropped_and_the_executor_keeps_answering(limited: StepChange) -> None:
    app, key = register(limited)
    with connect(f"{limited.ws_url}/websocket/{app}/{key}", max_size=None) as socket:
        handshake(socket, "raw-junk")
        limited.wait_executors(app, 1)
        for junk in ["not json", "[]", "{}", '{"type": "get_workflow", "request_id": "nobody"}']:
            socket.send(junk)
        socket.send(b"\x00binary")
        serve(
            socket,
            lambda request: json.dumps(
                {
                    "type": request["type"],
                    "request_id": request["request_id"],
                    "output": {"WorkflowUUID": "wf-1", "Status": "PENDING"},
                }
            ),
        )
        status, body = limited.api("GET", f"/apps/{app}/workflows/wf-1")
    assert status == 200, body
    assert body["status"] == "PENDING"
    log = limited.process.output() if limited.process else ""
    assert "Dropped a malformed frame" in log
    assert "Dropped a binary frame" in log
    assert "unknown request nobody" in log


def test_a_frame_of_millions_of_empty_objects_costs_little_and_stalls_nobody(
    tmp_path: Path,
) -> None:
    """60 MiB of {},{},... once took the process from 108 MB to 23 GB (bench/RESULTS.md).
    It is refused before parsing now: what is left is holding the frame itself (its bytes
    and its text, about 2 x 60 MiB, plus the transport's buffers), hence 300 MB."""
    server = StepChange(tmp_path, env={"EXECUTOR_MAX_MESSAGE_BYTES": str(64 * 1024 * 1024)})
    server.start()
    try:
        result = measure(server, mib=60)
        log = server.process.output() if server.process else ""
    finally:
        server.stop()
    assert result["server_exit_code"] is None
    assert result["growth_mb"] < 300, result
    # The request it answered fails at once, and nothing else waits on it.
    assert result["list_status"] == 502, result
    assert result["list_seconds"] < 5, result
    assert result["other_failures"] == 0, result
    assert result["slowest_other_seconds"] < 1, result
    assert "holds more than 2000000 JSON values" in log
