"""dbos-argus's console views on the seeded 1,000,000-workflow database, over HTTP.

    var/argus-venv/bin/python bench/console_argus.py [--runs 30] [--budget 20] [--json out.json]
        [--url postgresql://postgres@127.0.0.1:5432/sc_bench_1m]

dbos-argus (PyPI `dbos-argus`, a FastAPI app; needs Python >= 3.12) is a read-only DBOS
workflow viewer. Run with any other interpreter, this script first makes the virtualenv
`var/argus-venv` from pyenv's Python 3.12 (`pip install dbos-argus==0.0.41`) and re-runs
itself with it (run it with that virtualenv's Python to skip this). It then starts
`dbos-argus --db-url URL` on a free localhost port, times repeated GETs of its JSON API on
one keep-alive connection (p50/p95 over up to `--runs` requests after a warm-up, at most
`--budget` seconds per view, at least 5 requests), prints a table and stops argus.

What argus offers, from its source (dbos_argus/main.py, db/postgres.py):

- list `GET /api/workflows?limit=&q=&status=&queue_name=&started_after=&started_before=
  &grouped=&hide_scheduled=`: newest first by COALESCE(started_at_epoch_ms, created_at),
  at most `limit` (<= 200) rows and no paging at all (no cursor, no offset). `grouped`
  (the console's default) lists root workflows by `updated_at` with their child trees;
  without a status filter it hides ENQUEUED, which the console shows in a separate strip
  (`status=ENQUEUED&grouped=false`). `q` is a substring search (ILIKE) on the id or name;
  there is no filter on executor, application version, fork source or parent. Each row
  carries its step count (COUNT over operation_outputs).
- detail `GET /api/workflows/{id}`: the workflow's whole family (up to the root, then the
  tree below), every step (flags, no payloads) and its events; payloads come separately,
  `GET /api/workflows/{id}/result` and `.../steps/{function_id}/result`.
The console reaches the same queries through a WebSocket subscription; HTTP is timed here.
"""

import argparse
import asyncio
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / "var" / "argus-venv"
ARGUS_VERSION = "0.0.41"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/sc_bench_1m"
DAY_MS = 86_400_000


@dataclass
class Measurement:  # the same fields as bench/console.py's Measurement
    system: str
    p50_ms: float | None
    p95_ms: float | None
    runs: int
    rows: int | None = None
    size_bytes: int | None = None
    indexes: str = ""
    plan_ms: float | None = None
    note: str = ""


# --------------------------------------------------------------------------------------
# The virtualenv
# --------------------------------------------------------------------------------------


def python312() -> str:
    if sys.version_info >= (3, 12):
        return sys.executable
    versions = sorted(Path.home().glob(".pyenv/versions/3.12*/bin/python"))
    if versions:
        return str(versions[-1])
    raise SystemExit("dbos-argus needs Python >= 3.12: none found (pyenv install 3.12)")


def ensure_venv() -> Path:
    python = VENV / "bin" / "python"
    if (VENV / "bin" / "dbos-argus").exists():
        return python
    print(f"creating {VENV} with {python312()} and installing dbos-argus=={ARGUS_VERSION}")
    subprocess.run([python312(), "-m", "venv", str(VENV)], check=True, timeout=120)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", f"dbos-argus=={ARGUS_VERSION}"],
        check=True,
        timeout=600,
    )
    return python


# --------------------------------------------------------------------------------------
# Argus
# --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Argus:
    def __init__(self, url: str, log: Path) -> None:
        self.port = free_port()
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            [
                str(VENV / "bin" / "dbos-argus"),
                "--db-url",
                url,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as a whole below
        )
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)

    def wait_ready(self, seconds: float = 60) -> dict:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(
                    f"dbos-argus exited with {self.proc.returncode}; see {self.log.name}"
                )
            try:
                status, body = self.get("/healthz")
                if status == 200:
                    return json.loads(body)
            except OSError:
                self.conn.close()
            time.sleep(0.2)
        raise SystemExit(f"dbos-argus did not answer /healthz in {seconds:.0f} s")

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            self.conn.request("GET", path)
            response = self.conn.getresponse()
            return response.status, response.read()
        except (http.client.HTTPException, OSError):
            self.conn.close()  # reconnect on the next request
            raise

    def stop(self) -> None:
        self.conn.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        self.log.close()


# --------------------------------------------------------------------------------------
# Views
# --------------------------------------------------------------------------------------


def read_seed(url: str) -> dict:
    import asyncpg  # type: ignore[import-not-found]  # argus's own dependency, in its venv

    async def read() -> dict:
        conn = await asyncpg.connect(url)
        try:
            row = await conn.fetchrow(
                "SELECT typical_id, thousand_steps_id, workflow_rows FROM public.sc_bench_seed"
            )
            newest = await conn.fetchval("SELECT max(created_at) FROM dbos.workflow_status")
        finally:
            await conn.close()
        if row is None:
            raise SystemExit("not seeded: run .venv/bin/python bench/seed.py first")
        return {"typical": row[0], "thousand": row[1], "rows": row[2], "newest": newest}

    return asyncio.run(read())


def iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def views(seed: dict) -> list[tuple[str, list[str], str]]:
    """(view key as in bench/console.py, the GETs that make it, note)."""
    lst = "/api/workflows"
    range_from, range_to = seed["newest"] - 11 * DAY_MS, seed["newest"] - 10 * DAY_MS

    def q(**params: str) -> str:
        return f"{lst}?{urlencode(params)}"

    substring = "substring search on id or name (q=, ILIKE '%...%')"
    detail = "/api/workflows/" + quote(seed["typical"], safe="")
    thousand = "/api/workflows/" + quote(seed["thousand"], safe="")
    return [
        ("list/first", [lst], "grouped (the console's default): roots by updated_at + trees"),
        (
            "list/first (console page: list + ENQUEUED strip + queues)",
            [lst, q(grouped="false", limit="50", status="ENQUEUED"), "/api/queues"],
            "the three subscriptions the console's list page opens, one after another",
        ),
        ("list/first (flat)", [q(grouped="false")], "grouped=false"),
        ("list/first (limit=200, its largest window)", [q(limit="200")], "no page after it"),
        ("list/first?status=ERROR", [q(status="ERROR")], ""),
        ("list/first?status=PENDING", [q(status="PENDING")], ""),
        (
            "list/first?status=ENQUEUED",
            [q(grouped="false", limit="50", status="ENQUEUED")],
            "the console's ENQUEUED strip",
        ),
        ("list/first?name=order_workflow", [q(q="order_workflow")], substring),
        ("list/first?name=rebuild_search_index (rare)", [q(q="rebuild_search_index")], substring),
        ("list/first?queue=orders", [q(queue_name="orders")], ""),
        ("list/first?id prefix=ab", [q(q="ab")], substring),
        ("list/first?id prefix=abc", [q(q="abc")], substring),
        (
            "list/first?created in a 1-day range",
            [q(started_after=iso(range_from), started_before=iso(range_to))],
            "on COALESCE(started_at_epoch_ms, created_at)",
        ),
        # The search box (argus's is one too: a substring of the id or the name).
        ("list/first?search=order_workflow (a name)", [q(q="order_workflow")], substring),
        ("list/first?search=ab (an id's start)", [q(q="ab")], substring),
        ("detail/typical", [detail], "family + steps (flags) + events"),
        ("detail/typical (+ output)", [detail, detail + "/result"], "and the lazy /result"),
        ("detail/1000-steps", [thousand], "family + steps (flags) + events"),
        ("detail/1000-steps (+ output)", [thousand, thousand + "/result"], "and /result"),
    ]


NOT_OFFERED = {
    "list/page1000": "no paging (at most 200 rows, no cursor or offset)",
    "list/first?executor=executor-3": "no executor filter",
    "list/first?version=newest": "no application version filter",
    "list/first?version=oldest": "no application version filter",
    "list/first?forked_from=<id>": "no fork-source filter",
    "list/first?parent=<id>": "no parent filter (a child shows under its root)",
}


def chosen(key: str, views: str | None) -> bool:
    """Whether `--views` asks for the view `key` (None: every view): comma-separated keys,
    a key ending in * standing for those starting with it."""
    if views is None:
        return True
    return any(key.startswith(w[:-1]) if w.endswith("*") else key == w for w in views.split(","))


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def count_rows(body: bytes) -> int | None:
    data = json.loads(body)
    if isinstance(data, list):
        return len(data)
    if isinstance(data, dict) and "steps" in data:
        return len(data["steps"])
    return None


def measure(argus: Argus, paths: list[str], runs: int, budget: float) -> Measurement:
    sizes: list[int] = []
    rows: int | None = None

    def once() -> None:
        nonlocal rows
        sizes.clear()
        for i, path in enumerate(paths):
            status, body = argus.get(path)
            if status != 200:
                raise SystemExit(f"GET {path}: HTTP {status}: {body[:300]!r}")
            sizes.append(len(body))
            if i == 0:
                rows = count_rows(body)

    started = time.perf_counter()
    once()  # warm-up (and a check); slow views get one, fast ones three
    if time.perf_counter() - started < 0.5:
        once()
        once()
    times: list[float] = []
    deadline = time.perf_counter() + budget
    while len(times) < runs and (len(times) < 5 or time.perf_counter() < deadline):
        t0 = time.perf_counter()
        once()
        times.append((time.perf_counter() - t0) * 1000)
    return Measurement(
        "argus",
        statistics.median(times),
        percentile(times, 0.95),
        len(times),
        rows=rows,
        size_bytes=sum(sizes),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--runs", type=int, default=30, help="timed requests per view (max)")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per view (max)")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    parser.add_argument("--views", help="only these views (as bench/console.py's --views)")
    args = parser.parse_args()

    python = ensure_venv()
    if Path(sys.prefix).resolve() != VENV.resolve():
        rerun = subprocess.run([str(python), __file__, *sys.argv[1:]], check=False, timeout=3600)
        raise SystemExit(rerun.returncode)

    seed = read_seed(args.url)
    print(f"database: {seed['rows']:,} workflows; typical {seed['typical']}")
    log = ROOT / "var" / "bench-argus.log"
    argus = Argus(args.url, log)
    cells: dict[str, dict] = {}
    try:
        health = argus.wait_ready()
        status, body = argus.get("/api/sql-diagnostics")
        diag = json.loads(body) if status == 200 else {}
        compat = diag.get("compat", {})
        print(
            f"dbos-argus {ARGUS_VERSION} on port {argus.port} (pid {argus.proc.pid}):"
            f" schema revision {health.get('dbos_schema_revision')},"
            f" compatible={compat.get('compatible')}, schema issues={len(diag.get('issues', []))}"
        )
        for key, paths, note in views(seed):
            if not chosen(key, args.views):
                continue
            m = measure(argus, paths, args.runs, args.budget)
            m.note = note
            cells[key] = asdict(m)
            print(
                f"  argus {key:<58} p50 {m.p50_ms:9.1f}  p95 {m.p95_ms:9.1f} ms"
                f"  n={m.runs:<3} {m.rows if m.rows is not None else '-':>5} rows"
                f"  {(m.size_bytes or 0) / 1024:8.1f} KiB",
                flush=True,
            )
        for key, note in NOT_OFFERED.items():
            if not chosen(key, args.views):
                continue
            cells[key] = asdict(Measurement("argus", None, None, 0, note=f"not offered: {note}"))
    finally:
        argus.stop()
        print(f"dbos-argus stopped (exit {argus.proc.returncode}); its log: {log}")

    print()
    print(f"{'view (dbos-argus over HTTP)':<58} {'p50 ms':>9} {'p95 ms':>9} {'n':>3} {'KiB':>8}")
    for key, cell in cells.items():
        if cell["p50_ms"] is None:
            print(f"{key:<58} {cell['note']}")
        else:
            print(
                f"{key:<58} {cell['p50_ms']:9.1f} {cell['p95_ms']:9.1f} {cell['runs']:3d}"
                f" {cell['size_bytes'] / 1024:8.1f}"
            )
    if args.json:
        args.json.write_text(json.dumps({"cells": cells}, indent=1))


if __name__ == "__main__":
    main()
