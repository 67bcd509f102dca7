"""Relay overhead and throughput, measured side by side in one run.

    .venv/bin/python bench/relay.py [--requests 400] [--seconds 5]

Needs Postgres (127.0.0.1:5432) and Redis (127.0.0.1:6379), like the test suite.

Three ways to ask a real dbos==3.2.0 executor for the same workflow (`get_workflow`), with
two identical executors reading one system database:

- floor: the benchmark itself is the WebSocket server (the `websockets` library) the
  first executor dials, and sends it requests directly: the physical floor;
- relay: `conductor.relay.request()` from this process, through the Redis channel layer,
  to StepChange's Daphne process that holds the second executor's socket (any process
  relaying, as at scale);
- api: `GET /api/v1/apps/{app}/workflows/{id}` over HTTP keep-alive to that Daphne
  process (authentication, permissions, the relay and JSON rendering included).

Overhead is each path's latency minus the floor's, at 1 and 50 concurrent requests.
Throughput is measured with a synthetic executor that answers instantly, so that the
Daphne process, not the executor, is the limit: relayed requests per second per process.
"""

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.servers import (  # noqa: E402
    Executor,
    PostgresDatabases,
    StepChange,
    eventually,
    free_port,
)

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")
KEY = "bench-key-0123456789abcdef"
APP = "bench"
WORKFLOW = "wf-bench"


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure(
    ask: Callable[[], Awaitable[None]], *, requests: int, concurrency: int
) -> dict[str, float]:
    """Latencies (ms) of `requests` asks, `concurrency` at a time."""
    latencies: list[float] = []
    per_worker = max(1, requests // concurrency)

    async def worker() -> None:
        for _ in range(per_worker):
            started = time.perf_counter()
            await ask()
            latencies.append((time.perf_counter() - started) * 1000)

    for _ in range(min(20, per_worker)):  # warm up
        await ask()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "p50": statistics.median(latencies),
        "p99": percentile(latencies, 0.99),
        "rps": len(latencies) / elapsed,
    }


class BareServer:
    """The floor: a plain WebSocket server that speaks just enough of the protocol."""

    def __init__(self) -> None:
        self.port = free_port()
        self.socket: Any = None
        self.waiting: dict[str, asyncio.Future[str]] = {}
        self.ready = asyncio.Event()

    async def start(self) -> None:
        import websockets

        self.server = await websockets.serve(self._handle, "127.0.0.1", self.port, max_size=None)

    async def _handle(self, socket: Any) -> None:
        self.socket = socket
        await socket.send(json.dumps({"type": "executor_info", "request_id": "info"}))
        async for frame in socket:
            reply = json.loads(frame)
            if reply["request_id"] == "info":
                self.ready.set()
            elif future := self.waiting.pop(reply["request_id"], None):
                future.set_result(frame)

    async def get_workflow(self) -> None:
        request_id = str(uuid.uuid4())
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.waiting[request_id] = future
        await self.socket.send(
            json.dumps(
                {
                    "type": "get_workflow",
                    "request_id": request_id,
                    "workflow_id": WORKFLOW,
                    "load_input": True,
                    "load_output": True,
                }
            )
        )
        assert json.loads(await future)["output"]["WorkflowUUID"] == WORKFLOW


class KeepAliveClient:
    """A minimal HTTP/1.1 keep-alive client: one connection per concurrent worker."""

    def __init__(self, port: int, token: str, size: int) -> None:
        self.port, self.token, self.size = port, token, size
        self.pool: asyncio.Queue[tuple[Any, Any]] = asyncio.Queue()

    async def open(self) -> None:
        for _ in range(self.size):
            self.pool.put_nowait(await asyncio.open_connection("127.0.0.1", self.port))

    async def get(self, path: str) -> bytes:
        reader, writer = await self.pool.get()
        try:
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {self.token}\r\n\r\n".encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            body = await reader.readexactly(length)
            assert head.startswith(b"HTTP/1.1 200"), head + body
            return body
        finally:
            self.pool.put_nowait((reader, writer))


async def synthetic_executor(url: str) -> None:
    """An executor that answers every get_workflow at once, for throughput."""
    import websockets

    reply = {"WorkflowUUID": WORKFLOW, "Status": "SUCCESS", "WorkflowName": "greet"}
    async with websockets.connect(url, max_size=None) as socket:
        async for frame in socket:
            request = json.loads(frame)
            answer: dict[str, Any] = {"type": request["type"], "request_id": request["request_id"]}
            if request["type"] == "executor_info":
                answer |= {
                    "executor_id": f"synthetic-{uuid.uuid4()}",
                    "application_version": "v1",
                    "hostname": "bench",
                    "language": "python",
                    "dbos_version": "3.2.0",
                }
            else:
                answer["output"] = reply
            await socket.send(json.dumps(answer))


def django_setup(stepchange: StepChange) -> None:
    os.environ.update(
        {k: v for k, v in stepchange.env.items() if k in {"DATABASE_URL", "REDIS_URL"}}
    )
    os.environ["DJANGO_SETTINGS_MODULE"] = "stepchange.settings"
    os.environ["STEPCHANGE_DATA_DIR"] = str(stepchange.data_dir)
    import django

    django.setup()


async def run(args: argparse.Namespace, work: Path, databases: PostgresDatabases) -> None:
    stepchange = StepChange(
        work / "stepchange",
        env={"REDIS_URL": REDIS_URL, "DATABASE_URL": databases.new("sc_bench_app")},
        name="stepchange",
    )
    stepchange.data_dir.mkdir()
    stepchange.start()
    stepchange.manage("register_app", APP, "--key", KEY)
    system_db = databases.new("sc_bench_sys")
    floor = BareServer()
    await floor.start()
    executors = []
    try:
        executors.append(
            Executor(
                "python",
                conductor_url=stepchange.ws_url,
                app=APP,
                key=KEY,
                system_database_url=system_db,
                version="v1",
                log_dir=work,
            )
        )
        stepchange.wait_executors(APP, 1)
        await asyncio.to_thread(executors[0].get, f"/?name=bench&workflow_id={WORKFLOW}")
        executors.append(
            Executor(
                "python",
                conductor_url=f"ws://127.0.0.1:{floor.port}",
                app=APP,
                key=KEY,
                system_database_url=system_db,
                version="v1",
                log_dir=work,
            )
        )
        await asyncio.wait_for(floor.ready.wait(), 30)

        django_setup(stepchange)
        from asgiref.sync import sync_to_async

        from conductor import relay
        from conductor.protocol import GetWorkflowRequest
        from stepchange.models import Application

        application = await sync_to_async(Application.objects.get)(name=APP)
        # As in a server process (stepchange.background): the routes to live executors are
        # cached while their listener runs.
        routes = asyncio.create_task(relay.routes.listen())

        async def relayed() -> None:
            await relay.request(application, GetWorkflowRequest(workflow_id=WORKFLOW))

        http = KeepAliveClient(stepchange.port, stepchange.token(), 50)
        await http.open()

        async def api() -> None:
            await http.get(f"/api/v1/apps/{APP}/workflows/{WORKFLOW}")

        rows = []
        for concurrency in (1, 50):
            figures = {}
            for name, ask in (("floor", floor.get_workflow), ("relay", relayed), ("api", api)):
                print(f"measuring {name} at {concurrency} concurrent", file=sys.stderr)
                figures[name] = await measure(ask, requests=args.requests, concurrency=concurrency)
            rows.append((concurrency, figures))
        print_latency(rows, args.requests)

        for executor in executors:
            executor.stop()
        # Throughput: a synthetic executor (its own process) that answers at once, so that
        # StepChange is the limit. The Daphne process's CPU time over the run tells what one
        # process could carry with a core to itself: the load generator shares the machine.
        fast = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--synthetic", f"{stepchange.ws_url}/websocket/{APP}/{KEY}"
        )
        await asyncio.to_thread(
            eventually, lambda: stepchange.executors(APP), timeout=15, what="the synthetic executor"
        )
        assert stepchange.process is not None
        daphne = stepchange.process.popen.pid
        print(f"throughput, 50 concurrent, {args.seconds:g} s each; one Daphne process")
        for name, ask in (("relay", relayed), ("api", api)):
            cpu_before = cpu_seconds(daphne)
            rate, elapsed = await measure_for(ask, seconds=args.seconds, concurrency=50)
            busy = (cpu_seconds(daphne) - cpu_before) / elapsed
            print(
                f"  {name:5} {rate:8,.0f} requests/s; Daphne CPU {busy:4.0%} of one core; "
                f"{rate / busy:8,.0f} requests per Daphne CPU-second"
            )
        fast.terminate()
        await fast.wait()
        routes.cancel()
    except BaseException:
        if stepchange.process is not None:
            print(stepchange.process.output()[-4000:], file=sys.stderr)
        raise
    finally:
        for executor in executors:
            executor.stop()
        stepchange.stop()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure_for(
    ask: Callable[[], Awaitable[None]], *, seconds: float, concurrency: int
) -> tuple[float, float]:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await ask()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return done / elapsed, elapsed


def print_latency(rows: list[tuple[int, dict[str, dict[str, float]]]], requests: int) -> None:
    print(f"get_workflow latency, {requests} requests per cell (ms); overhead = path - floor")
    print(f"{'concurrency':>11} {'path':>6} {'p50':>8} {'p99':>8} {'over p50':>9} {'over p99':>9}")
    for concurrency, figures in rows:
        base = figures["floor"]
        for name, result in figures.items():
            over50 = result["p50"] - base["p50"]
            over99 = result["p99"] - base["p99"]
            extra = "" if name == "floor" else f"{over50:9.2f} {over99:9.2f}"
            print(f"{concurrency:>11} {name:>6} {result['p50']:8.2f} {result['p99']:8.2f} {extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--keep", action="store_true", help="keep the logs in a temp folder")
    parser.add_argument("--synthetic", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.synthetic:
        asyncio.run(synthetic_executor(args.synthetic))
        return
    databases = PostgresDatabases()
    work = Path(tempfile.mkdtemp(prefix="stepchange-bench-"))
    try:
        asyncio.run(run(args, work, databases))
    finally:
        from django.apps import apps

        if apps.ready:
            # What this process's relay calls logged is written before its database goes.
            from conductor.requestlog import request_log_flush, request_log_stop

            request_log_stop()
            request_log_flush()
        databases.drop_all()
        if args.keep:
            print(f"logs kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
