"""The servers' floor beside the typical workflow's detail, interleaved in one run.

    .venv/bin/python bench/seed.py          # once: seeds sc_bench_1m (about 75 s)
    .venv/bin/python bench/server_floor.py [--rounds 400]

What a request costs before any view runs, on this machine: a trivial ASGI application
(it answers "ok") under Daphne, the server StepChange's design fixes, and under uvicorn,
the server dbos-argus runs on (from argus's virtualenv, var/argus-venv, which
bench/console_argus.py makes); then a static file through StepChange (Daphne and Django's
handler, no view), StepChange's page and API for the typical workflow and argus's detail
of it, and the newest ENQUEUED workflows from each. Each round sends one request to each,
in turn, on kept-alive connections; printed: p50 and p95 per request.
"""

import argparse
import http.client
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.console import DEFAULT_URL, VIEWER_SESSION, percentile, typical_workflow  # noqa: E402
from bench.console_argus import Argus, ensure_venv, free_port  # noqa: E402
from tests.e2e.servers import StepChange, wait_for_http  # noqa: E402

# The console's strip of ENQUEUED workflows, as bench/console_argus.py asks for it.
ARGUS_ENQUEUED = "/api/workflows?grouped=false&limit=50&status=ENQUEUED"
TRIVIAL = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await receive()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--rounds", type=int, default=400)
    args = parser.parse_args()
    typical = typical_workflow(args.url)
    work = Path(tempfile.mkdtemp(prefix="sc-floor-"))
    (work / "trivial.py").write_text(TRIVIAL)
    argus_python = ensure_venv()
    ports = {"daphne": free_port(), "uvicorn": free_port()}
    commands = {
        "daphne": [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(ports["daphne"])],
        "uvicorn": [
            str(argus_python),
            "-m",
            "uvicorn",
            "--no-access-log",
            "--port",
            str(ports["uvicorn"]),
        ],
    }
    trivial = [
        subprocess.Popen([*command, "trivial:app"], cwd=work, stderr=subprocess.DEVNULL)
        for command in commands.values()
    ]
    stepchange = StepChange(work / "stepchange", name="stepchange")
    argus = Argus(args.url, work / "argus.log")
    try:
        (work / "stepchange").mkdir()
        stepchange.start()
        stepchange.manage(
            "register_app", "bench-1m", "--system-database-url", args.url, "--schema", "dbos"
        )
        session = stepchange.manage("shell", "-c", VIEWER_SESSION).strip().splitlines()[-1]
        token = stepchange.manage("create_api_token", "bench").strip()
        argus.wait_ready()
        for port, process in zip(ports.values(), trivial, strict=True):
            wait_for_http(f"http://127.0.0.1:{port}/", process=process)
        page = {"Cookie": f"sessionid={session}", "Host": "127.0.0.1"}
        api = {"Authorization": f"Bearer {token}", "Host": "127.0.0.1"}
        listed = "/apps/bench-1m/workflows"
        detail = f"{listed}/{typical}"
        targets = [
            ("trivial ASGI app, Daphne", ports["daphne"], "/", {}),
            ("trivial ASGI app, uvicorn", ports["uvicorn"], "/", {}),
            ("StepChange: a static file", stepchange.port, "/static/stepchange/console.css", page),
            ("StepChange: detail page", stepchange.port, f"{detail}/", page),
            ("StepChange: detail API", stepchange.port, f"/api/v1{detail}", api),
            ("argus: detail", argus.port, f"/api/workflows/{typical}", {}),
            ("StepChange: ENQUEUED page", stepchange.port, f"{listed}/?status=ENQUEUED", page),
            ("StepChange: ENQUEUED API", stepchange.port, f"/api/v1{listed}?status=ENQUEUED", api),
            ("argus: ENQUEUED", argus.port, ARGUS_ENQUEUED, {}),
        ]
        connections = {
            label: http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            for label, port, _, _ in targets
        }
        times: dict[str, list[float]] = {label: [] for label, _, _, _ in targets}
        for round_ in range(args.rounds + 10):
            for label, _, path, headers in targets:
                started = time.perf_counter()
                connections[label].request("GET", path, headers=headers)
                response = connections[label].getresponse()
                body = response.read()
                elapsed = (time.perf_counter() - started) * 1000
                if response.status != 200:
                    raise RuntimeError(f"{label}: {response.status} {body[:200]!r}")
                if round_ >= 10:
                    times[label].append(elapsed)
        print(f"{'request':<30} {'p50 ms':>8} {'p95 ms':>8}")
        for label, samples in times.items():
            p50, p95 = statistics.median(samples), percentile(samples, 0.95)
            print(f"{label:<30} {p50:8.2f} {p95:8.2f}")
    finally:
        argus.stop()
        stepchange.stop()
        for process in trivial:
            process.terminate()
            process.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
