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

Two rows are StepChange's floor for a page: empty views (they answer "ok") added to its
URLs for this run only (a settings module in the run's scratch directory), behind the
console's middleware, anonymous and signed in. And one row is what argus answers to show
what StepChange's page shows first, the workflow's output: its detail and then its
`/result`, timed together.
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
# StepChange's own settings and URLs, with two empty views: the floor of a console page.
FLOOR_SETTINGS = """
from stepchange.settings import *  # noqa: F403
ROOT_URLCONF = "floor_urls"
"""
FLOOR_URLS = """
from django.http import HttpResponse
from django.urls import path
from django.contrib.auth.decorators import login_required
from stepchange.urls import urlpatterns as stepchange


async def empty(request):
    return HttpResponse("ok")


urlpatterns = [path("floor/", empty), path("floor/signed-in/", login_required(empty)), *stepchange]
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--rounds", type=int, default=400)
    args = parser.parse_args()
    typical = typical_workflow(args.url)
    work = Path(tempfile.mkdtemp(prefix="sc-floor-"))
    (work / "trivial.py").write_text(TRIVIAL)
    (work / "floor_settings.py").write_text(FLOOR_SETTINGS)
    (work / "floor_urls.py").write_text(FLOOR_URLS)
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
    floor = {"DJANGO_SETTINGS_MODULE": "floor_settings", "PYTHONPATH": str(work)}
    stepchange = StepChange(work / "stepchange", name="stepchange", env=floor)
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
        argus_detail = f"/api/workflows/{typical}"
        argus_result = f"{argus_detail}/result"
        css, enqueued = "/static/stepchange/console.css", f"{listed}?status=ENQUEUED"
        # Each row: its label, the port and the paths asked in turn (timed together).
        targets = [
            ("trivial ASGI app, Daphne", ports["daphne"], ["/"], {}),
            ("trivial ASGI app, uvicorn", ports["uvicorn"], ["/"], {}),
            ("StepChange: a static file", stepchange.port, [css], page),
            ("StepChange: empty view", stepchange.port, ["/floor/"], page),
            ("StepChange: empty view, signed in", stepchange.port, ["/floor/signed-in/"], page),
            ("StepChange: detail page", stepchange.port, [f"{detail}/"], page),
            ("StepChange: detail API", stepchange.port, [f"/api/v1{detail}"], api),
            ("argus: detail", argus.port, [argus_detail], {}),
            ("argus: detail, then /result", argus.port, [argus_detail, argus_result], {}),
            ("StepChange: ENQUEUED page", stepchange.port, [f"{listed}/?status=ENQUEUED"], page),
            ("StepChange: ENQUEUED API", stepchange.port, [f"/api/v1{enqueued}"], api),
            ("argus: ENQUEUED", argus.port, [ARGUS_ENQUEUED], {}),
        ]
        connections = {
            label: http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            for label, port, _, _ in targets
        }
        times: dict[str, list[float]] = {label: [] for label, _, _, _ in targets}
        for round_ in range(args.rounds + 10):
            for label, _, paths, headers in targets:
                started = time.perf_counter()
                for path in paths:
                    connections[label].request("GET", path, headers=headers)
                    response = connections[label].getresponse()
                    body = response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{label}: {response.status} {body[:200]!r}")
                elapsed = (time.perf_counter() - started) * 1000
                if round_ >= 10:
                    times[label].append(elapsed)
        print(f"{'request':<36} {'p50 ms':>8} {'p95 ms':>8}")
        for label, samples in times.items():
            p50, p95 = statistics.median(samples), percentile(samples, 0.95)
            print(f"{label:<36} {p50:8.2f} {p95:8.2f}")
    finally:
        argus.stop()
        stepchange.stop()
        for process in trivial:
            process.terminate()
            process.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
