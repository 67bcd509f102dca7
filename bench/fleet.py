"""Many executors at once, from one asyncio process, beside the bare-WebSocket floor.

    .venv/bin/python bench/fleet.py --executors 1000
    .venv/bin/python bench/fleet.py --executors 5000 --processes 2 --operators 20
    .venv/bin/python bench/fleet.py --executors 1000 --operators 20 --base <git revision>

Needs Postgres (127.0.0.1:5432), and Redis (127.0.0.1:6379) for two processes or more.

Each simulated executor speaks the real protocol over its own WebSocket: it answers
`executor_info`, list, get and step requests with the payloads a dbos 3.2.0 executor
sends (tests/executor_replies.py, shared with the unit tests' fake executor), `success` to
actions, and keeps the connection alive with a ping every 20 s as the SDKs do; it dials
again one second after any close, as they do.

The run, in order: the floor (bench/fleet_floor.py: a Daphne process with a Channels
consumer that does nothing) with as many idle sockets; then StepChange (one or more
Daphne processes, a Postgres app database, Redis between them) with the executors spread
over its processes. Printed: resident memory per process and per socket at rest, beside
the floor's; CPU at rest; the time until every executor is registered; the executors page
and overview p95 (a viewer's session); and with --operators, what those operators saw
while browsing and acting through the API (every request relayed to an executor): p50 and
p99, requests lost, the relay's own p99 from the request log, and CPU per relayed request.

With --base, the same StepChange run is made twice in one run, first with the base
revision (from a temporary git worktree), then with this checkout as it is, and both are
printed: compare within one run only, as this machine's speed drifts.
"""

import argparse
import asyncio
import http.client
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.relay import cpu_seconds  # noqa: E402
from tests.executor_replies import executor_info_reply, reply_to  # noqa: E402

APP = "fleet"
KEY = "fleet-key-0123456789abcdef"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8")
# As the SDKs: a ping every 20 s, the connection dropped when no pong comes within 15 s,
# and a new one dialled a second after any close.
PING_SECONDS = 20
PONG_SECONDS = 15
REDIAL_SECONDS = 1.0


@dataclass
class FleetStats:
    opened: int = 0
    identified: int = 0
    closed: int = 0
    answered: Counter[str] = field(default_factory=Counter)
    identify_seconds: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)


class Fleet:
    """`count` simulated executors over `urls` (round robin: one per StepChange process),
    each on its own WebSocket, all on the running event loop. With `speak=False` the
    sockets only idle (the floor)."""

    def __init__(
        self,
        urls: list[str],
        count: int,
        *,
        version: str = "v1",
        speak: bool = True,
        prefix: str = "",
    ) -> None:
        self.urls = urls
        self.count = count
        self.version = version
        self.speak = speak
        self.prefix = prefix or uuid.uuid4().hex[:6]
        self.stats = FleetStats()
        self.tasks: list[asyncio.Task[None]] = []
        self.stopping = False
        self.executor_ids = [f"{self.prefix}-{n:05d}-{uuid.uuid4().hex[:8]}" for n in range(count)]

    async def start(self, *, at_once: int = 50, within: float = 120) -> float:
        """Dial every socket, `at_once` handshakes at a time; returns the seconds until all
        were open."""
        started = time.perf_counter()
        gate = asyncio.Semaphore(at_once)
        urls = itertools.cycle(self.urls)
        for executor_id in self.executor_ids:
            self.tasks.append(asyncio.create_task(self._member(next(urls), executor_id, gate)))
        await self._until(lambda: self.stats.opened >= self.count, within, "every socket open")
        return time.perf_counter() - started

    async def identified(self, within: float = 120) -> None:
        await self._until(
            lambda: self.stats.identified >= self.count, within, "every executor identified"
        )

    async def stop(self) -> None:
        self.stopping = True
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()

    async def _until(self, done: Any, within: float, what: str) -> None:
        deadline = time.monotonic() + within
        # Polled: the counts grow in many tasks, none of which should signal anyone.
        while not done():
            if time.monotonic() > deadline:
                stats = self.stats
                raise TimeoutError(
                    f"{what}: not within {within:g} s ({stats.opened} open, "
                    f"{stats.identified} identified, failures {dict(stats.failures)})"
                )
            await asyncio.sleep(0.05)

    async def _member(self, url: str, executor_id: str, gate: asyncio.Semaphore) -> None:
        import websockets

        first = True
        while not self.stopping:
            try:
                async with gate if first else _NoGate():
                    socket = await websockets.connect(
                        url,
                        max_size=None,
                        ping_interval=PING_SECONDS,
                        ping_timeout=PONG_SECONDS,
                        open_timeout=60,
                    )
                opened = time.perf_counter()
                if first:
                    self.stats.opened += 1
                first = False
                async with socket:
                    async for frame in socket:
                        if self.speak:
                            await self._answer(socket, frame, executor_id, opened)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Refused, dropped, or a ping unanswered: dial again, as the SDKs do.
                self.stats.failures[type(exc).__name__] += 1
            self.stats.closed += 1
            await asyncio.sleep(REDIAL_SECONDS)

    async def _answer(self, socket: Any, frame: Any, executor_id: str, opened: float) -> None:
        request = json.loads(frame)
        if request["type"] == "executor_info":
            reply = executor_info_reply(
                request,
                executor_id=executor_id,
                version=self.version,
                hostname=f"host-{executor_id[:12]}",
                metadata={"region": "eu-west-1", "pod": executor_id[-8:]},
            )
            self.stats.identified += 1
            self.stats.identify_seconds.append(time.perf_counter() - opened)
        else:
            reply = reply_to(request, executor_id=executor_id, version=self.version)
        self.stats.answered[request["type"]] += 1
        await socket.send(json.dumps(reply))


class _NoGate:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


# -- measuring --------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def timed_gets(port: int, path: str, headers: dict[str, str], runs: int) -> list[float]:
    """`runs` GETs of `path` on one kept-alive connection; milliseconds each (200s only)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    times = []
    try:
        for _ in range(runs):
            started = time.perf_counter()
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"GET {path}: {response.status} {body[:300]!r}")
            times.append((time.perf_counter() - started) * 1000)
    finally:
        conn.close()
    return times


@dataclass
class OperatorFigures:
    latencies_ms: list[float] = field(default_factory=list)
    lost: Counter[str] = field(default_factory=Counter)
    # Why, for the first few lost: each one's answer (a problem's detail) or exception.
    why: list[str] = field(default_factory=list)
    relayed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def operator(
    port: int,
    token: str,
    seconds: float,
    figures: OperatorFigures,
    seed: int,
    think: tuple[float, float] = (0.05, 0.2),
) -> None:
    """One operator, for `seconds`: lists workflows, opens one, lists its steps, now and
    then cancels a running one; each request relayed to an executor, with `think` seconds
    (at least, at most) between them. Anything but a 200 is a lost request."""
    chooser = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        n = chooser.randrange(1_000_000)
        method, path, body = chooser.choice(
            [
                ("GET", f"/api/v1/apps/{APP}/workflows?limit=20", None),
                ("GET", f"/api/v1/apps/{APP}/workflows/op-wf-{n:06d}", None),
                ("GET", f"/api/v1/apps/{APP}/workflows/op-wf-{n:06d}/steps", None),
                ("POST", f"/api/v1/apps/{APP}/workflows/op-pending-{n:06d}/cancel", "{}"),
            ]
        )
        started = time.perf_counter()
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            answer = response.read()
            status = str(response.status)
        except (OSError, http.client.HTTPException) as exc:
            status, answer = type(exc).__name__, str(exc).encode()
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        elapsed = (time.perf_counter() - started) * 1000
        with figures.lock:
            figures.relayed += 1
            if status == "200":
                figures.latencies_ms.append(elapsed)
            else:
                figures.lost[f"{method} {path.split('/')[-1][:12]} {status}"] += 1
                if len(figures.why) < 10:
                    figures.why.append(f"{method} {path}: {status} {answer[:300]!r}")
        time.sleep(chooser.uniform(*think))
    conn.close()


def relay_p99_ms(database_url: str, since: float) -> tuple[int, float, float]:
    """Relayed requests of the operators' window in the request log: count, p50, p99 of the
    exchange with the executor (as StepChange timed it)."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT duration_ms FROM conductor_requestlog WHERE source <> 'handshake'"
            " AND duration_ms IS NOT NULL AND sent_at >= to_timestamp(%s)",
            [since],
        ).fetchall()
    durations = [row[0] for row in rows]
    return len(durations), percentile(durations, 0.5), percentile(durations, 0.99)


# -- the run ----------------------------------------------------------------------------


def floor_run(args: argparse.Namespace, work: Path) -> dict[str, float]:
    from tests.e2e.servers import free_port, wait_for_http

    port = free_port()
    with (work / "floor.log").open("wb") as log:
        daphne = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("daphne")),
                "--websocket_timeout",
                "-1",
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "bench.fleet_floor:application",
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/", process=daphne)
        return asyncio.run(floor_measure(args, port, daphne.pid))
    finally:
        daphne.terminate()
        daphne.wait(timeout=20)


async def floor_measure(args: argparse.Namespace, port: int, pid: int) -> dict[str, float]:
    """The floor's process empty, then with as many idle sockets as executors, at rest."""
    empty = rss_mb(pid)
    fleet = Fleet([f"ws://127.0.0.1:{port}/ws"], args.executors, speak=False)
    opened = await fleet.start(within=max(120, args.executors / 8))
    await asyncio.sleep(args.rest / 2)
    cpu = cpu_seconds(pid)
    await asyncio.sleep(args.rest)
    busy = (cpu_seconds(pid) - cpu) / args.rest
    full = rss_mb(pid)
    await fleet.stop()
    return {"empty": empty, "full": full, "busy": busy, "opened": opened}


def connected_count(database_url: str) -> int:
    import psycopg

    with psycopg.connect(database_url) as conn:
        [(count,)] = conn.execute(
            "SELECT count(*) FROM conductor_executor WHERE state = 'connected'"
        ).fetchall()
    return int(count)


async def stepchange_run(args: argparse.Namespace, work: Path, root: Path = ROOT) -> dict[str, Any]:
    from bench.console import VIEWER_SESSION
    from tests.e2e.servers import PostgresDatabases, StepChange

    databases = PostgresDatabases()
    servers: list[StepChange] = []
    try:
        database_url = databases.new("sc_fleet_app")
        env = {"DATABASE_URL": database_url}
        if args.processes > 1:
            env["REDIS_URL"] = REDIS_URL
        for n in range(args.processes):
            server = StepChange(
                work / f"stepchange-{n}", env=env, name=f"stepchange-{n}", root=root
            )
            server.data_dir.mkdir()
            server.start(migrate=n == 0)
            servers.append(server)
        first = servers[0]
        first.manage("register_app", APP, "--key", KEY)
        session = first.manage("shell", "-c", VIEWER_SESSION).strip().splitlines()[-1]
        token = first.token()
        pids = [server.process.popen.pid for server in servers if server.process]
        empty = [rss_mb(pid) for pid in pids]

        urls = [f"{server.ws_url}/websocket/{APP}/{KEY}" for server in servers]
        fleet = Fleet(urls, args.executors)
        started = time.perf_counter()
        # A shared two-core machine dials some tens of sockets a second: allow for it.
        opened = await fleet.start(within=max(120, args.executors / 8))
        await fleet.identified(within=max(120, args.executors / 8))
        # Polled: the registry is another process's database rows.
        while await asyncio.to_thread(connected_count, database_url) < args.executors:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        registered = time.perf_counter() - started
        figures: dict[str, Any] = {
            "empty": empty,
            "opened": opened,
            "registered": registered,
            "identify_p99": percentile(fleet.stats.identify_seconds, 0.99),
        }
        await asyncio.sleep(args.rest / 2)
        cpu = [cpu_seconds(pid) for pid in pids]
        await asyncio.sleep(args.rest)
        figures["busy"] = [(cpu_seconds(p) - c) / args.rest for p, c in zip(pids, cpu, strict=True)]
        figures["full"] = [rss_mb(pid) for pid in pids]
        figures["load"] = load_average()

        headers = {"Cookie": f"sessionid={session}", "Host": "127.0.0.1"}
        for name, path in (
            ("executors page", f"/apps/{APP}/executors/"),
            ("executors page 2", f"/apps/{APP}/executors/?page=2"),
            ("overview", f"/apps/{APP}/"),
        ):
            times = await asyncio.to_thread(timed_gets, first.port, path, headers, args.pages)
            figures[name] = (percentile(times, 0.5), percentile(times, 0.95))

        if args.operators:
            figures["operators"] = await operate(args, servers, token, pids, database_url)
        figures["closed"] = fleet.stats.closed
        figures["failures"] = dict(fleet.stats.failures)
        figures["answered"] = dict(fleet.stats.answered)
        await fleet.stop()
        return figures
    except BaseException:
        for server in servers:
            if server.process is not None:
                print(server.process.output()[-3000:], file=sys.stderr)
        raise
    finally:
        for server in servers:
            server.stop()
        databases.drop_all()


async def watch_lag(lags: list[float], every: float = 0.01) -> None:
    """How late this process's event loop (every simulated executor's) wakes, in ms: what
    an executor's answer waits for here, before StepChange has any part in it."""
    while True:
        asked = time.perf_counter()
        await asyncio.sleep(every)
        lags.append((time.perf_counter() - asked - every) * 1000)


async def operate(
    args: argparse.Namespace, servers: list[Any], token: str, pids: list[int], database_url: str
) -> dict[str, Any]:
    """`args.operators` operators for `args.seconds`, spread over the processes."""
    figures = OperatorFigures()
    since = time.time()
    cpu = sum(cpu_seconds(pid) for pid in pids)
    threads = [
        threading.Thread(
            target=operator,
            args=(servers[n % len(servers)].port, token, args.seconds, figures, n, args.think),
        )
        for n in range(args.operators)
    ]
    own_cpu, own_wall = time.process_time(), time.perf_counter()
    lags: list[float] = []
    watching = asyncio.create_task(watch_lag(lags))
    for thread in threads:
        thread.start()
    # Polled: the operators are threads, so that the event loop keeps answering as executors.
    while any(thread.is_alive() for thread in threads):  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    watching.cancel()
    own_busy = (time.process_time() - own_cpu) / (time.perf_counter() - own_wall)
    cpu_used = sum(cpu_seconds(pid) for pid in pids) - cpu
    logged, relay_p50, relay_p99 = await asyncio.to_thread(relay_p99_ms, database_url, since)
    return {
        "requests": figures.relayed,
        "p50": percentile(figures.latencies_ms, 0.5),
        "p99": percentile(figures.latencies_ms, 0.99),
        "lost": dict(figures.lost),
        "why": list(figures.why),
        "relay_logged": logged,
        "relay_p50": relay_p50,
        "relay_p99": relay_p99,
        "cpu_ms_per_request": cpu_used * 1000 / max(figures.relayed, 1),
        "generator_busy": own_busy,
        "lag_p50": percentile(lags, 0.5),
        "lag_p99": percentile(lags, 0.99),
        "load": load_average(),
    }


def report(args: argparse.Namespace, floor: dict[str, float], ours: dict[str, Any]) -> None:
    n = args.executors
    print(f"{n} executors over {args.processes} StepChange process(es); load {ours['load']}")
    print(
        f"  floor (bare Daphne+Channels): RSS {floor['empty']:.0f} MB empty, "
        f"{floor['full']:.0f} MB with {n} sockets "
        f"({(floor['full'] - floor['empty']) * 1024 / n:.1f} KB per socket); "
        f"CPU at rest {floor['busy']:.1%} of a core; all open in {floor['opened']:.1f} s"
    )
    for k, (empty, full, busy) in enumerate(
        zip(ours["empty"], ours["full"], ours["busy"], strict=True)
    ):
        held = n / args.processes
        print(
            f"  stepchange-{k}: RSS {empty:.0f} MB empty, {full:.0f} MB with {held:.0f} executors "
            f"({(full - empty) * 1024 / held:.1f} KB per executor); CPU at rest {busy:.1%}"
        )
    print(
        f"  sockets open in {ours['opened']:.1f} s; all {n} registered {ours['registered']:.1f} s "
        f"after the first dial; executor_info came {ours['identify_p99']:.2f} s after open (p99)"
    )
    for name in ("executors page", "executors page 2", "overview"):
        p50, p95 = ours[name]
        print(f"  {name:17} p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  ({args.pages} GETs)")
    if "operators" in ours:
        op = ours["operators"]
        print(
            f"  {args.operators} operators ({args.think[0]:g}-{args.think[1]:g} s between "
            f"requests), {args.seconds:g} s: {op['requests']} relayed requests, "
            f"API p50 {op['p50']:.1f} ms p99 {op['p99']:.1f} ms; lost {sum(op['lost'].values())}"
            f" {op['lost'] or ''}"
        )
        for why in op["why"]:
            print(f"    lost: {why}")
        print(
            f"  executor exchanges (request log, {op['relay_logged']}; an action is two): "
            f"p50 {op['relay_p50']:.1f} ms p99 {op['relay_p99']:.1f} ms; "
            f"{op['cpu_ms_per_request']:.1f} ms of StepChange CPU per relayed request; "
            f"load {op['load']}"
        )
        print(
            f"  the load generator meanwhile (operators' threads and every executor, one "
            f"process): {op['generator_busy']:.0%} of a core; its event loop woke late by "
            f"p50 {op['lag_p50']:.1f} ms p99 {op['lag_p99']:.1f} ms"
        )
    print(f"  sockets closed and dialled again: {ours['closed']} {ours['failures'] or ''}")
    print(f"  the executors answered: {ours['answered']}")


def _seconds_range(text: str) -> tuple[float, float]:
    low, _, high = text.partition(",")
    bounds = float(low), float(high or low)
    if not 0 <= bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError("LOW,HIGH with 0 <= LOW <= HIGH")
    return bounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executors", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--operators", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=30, help="how long operators act")
    parser.add_argument("--rest", type=float, default=10, help="seconds at rest, measured")
    parser.add_argument("--pages", type=int, default=100, help="GETs of each page")
    parser.add_argument(
        "--think",
        type=_seconds_range,
        default=(0.05, 0.2),
        help="LOW,HIGH seconds an operator waits between requests (default 0.05,0.2: a "
        "stress far above people's pace; 1,3 is someone reading each answer)",
    )
    parser.add_argument("--base", default="", help="also run this git revision, first")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sc-fleet-"))
    try:
        floor = floor_run(args, work)
        if args.base:
            base = work / "base"
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(base), args.base],
                cwd=ROOT, check=True, capture_output=True,
            )  # fmt: skip
            try:
                (work / "base-run").mkdir()
                theirs = asyncio.run(stepchange_run(args, work / "base-run", root=base))
            finally:
                subprocess.run(
                    ["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False
                )
            print(f"base {args.base}:")
            report(args, floor, theirs)
            print("this checkout:")
        ours = asyncio.run(stepchange_run(args, work))
        report(args, floor, ours)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
