"""What one absurd executor frame costs a StepChange process: its peak memory and a stall.

    .venv/bin/python bench/frame_cost.py [--root /path/to/a/checkout] [--mib 60]

Starts StepChange (Daphne, SQLite, the in-memory channel layer) from `root`, connects one
raw executor, and answers a `list_workflows` with a frame of `--mib` MiB whose output is
`[{},{},...]`, then sends the same array as a bare top-level frame. Meanwhile another
request (the executors list, which asks no executor) is timed over and over. Prints the
process's peak RSS (VmHWM) before and after, the list request's status and time, and the
slowest other request.
"""

import argparse
import json
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from websockets.sync.client import connect  # noqa: E402

from tests.e2e.servers import StepChange  # noqa: E402


def peak_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MB (NaN once it has exited)."""
    status = Path(f"/proc/{pid}/status")
    for line in status.read_text().splitlines() if status.exists() else []:
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def absurd_array(mib: int) -> str:
    items = (mib * 1024 * 1024 - 200) // 3
    return "[" + "{}," * items + "{}]"


def measure(server: StepChange, *, mib: int = 60) -> dict[str, Any]:
    """Send the absurd frames to `server` (started, with a frame limit above `mib`)."""
    assert server.process is not None
    pid = server.process.popen.pid
    app, key = f"flood-{uuid.uuid4().hex[:6]}", f"key-{uuid.uuid4().hex}"
    server.manage("register_app", app, "--key", key)
    array = absurd_array(mib)
    result: dict[str, Any] = {}
    with connect(f"{server.ws_url}/websocket/{app}/{key}", max_size=None) as socket:
        info = json.loads(socket.recv(timeout=10))
        socket.send(
            json.dumps(
                {
                    "type": "executor_info",
                    "request_id": info["request_id"],
                    "executor_id": "flood",
                    "application_version": "v1",
                    "hostname": "raw",
                    "language": "python",
                    "dbos_version": "3.2.0",
                }
            )
        )
        server.wait_executors(app, 1)
        for _ in range(20):  # warm the other request's path before the baseline
            server.api("GET", f"/apps/{app}/executors")
        result["peak_before_mb"] = peak_mb(pid)

        def flood() -> None:
            request = json.loads(socket.recv(timeout=30))
            head = json.dumps({"type": request["type"], "request_id": request["request_id"]})
            socket.send(head[:-1] + ', "output": ' + array + "}")
            socket.send(array)

        def ask() -> None:
            started = time.perf_counter()
            status, _ = server.api("GET", f"/apps/{app}/workflows", timeout=120)
            result["list_status"] = status
            result["list_seconds"] = time.perf_counter() - started

        threads = [threading.Thread(target=flood), threading.Thread(target=ask)]
        for thread in threads:
            thread.start()
        slowest, others = 0.0, 0
        # The bare frame goes after the answer: give it time to be read, still timed.
        deadline = time.monotonic() + 3
        while threads[1].is_alive() or time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                status, _ = server.api("GET", f"/apps/{app}/executors", timeout=60)
            except TimeoutError:
                status = 0
            result.setdefault("other_failures", 0)
            result["other_failures"] += status != 200
            slowest = max(slowest, time.perf_counter() - started)
            others += 1
        for thread in threads:
            thread.join(timeout=120)
        result["peak_after_mb"] = peak_mb(pid)
        result["server_exit_code"] = server.process.popen.poll()
        result["other_requests"] = others
        result["slowest_other_seconds"] = slowest
    result["growth_mb"] = result["peak_after_mb"] - result["peak_before_mb"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--mib", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        server = StepChange(
            Path(data_dir),
            root=args.root,
            env={"EXECUTOR_MAX_MESSAGE_BYTES": str((args.mib + 4) * 1024 * 1024)},
        )
        server.start()
        try:
            result = measure(server, mib=args.mib)
            if result["server_exit_code"] is not None:
                assert server.process is not None
                print(server.process.output()[-2000:])
        finally:
            server.stop()
    print(f"checkout {args.root}, a {args.mib} MiB frame of [{{}},{{}},...]")
    for name, value in result.items():
        print(f"  {name}: {value:.2f}" if isinstance(value, float) else f"  {name}: {value}")


if __name__ == "__main__":
    main()
