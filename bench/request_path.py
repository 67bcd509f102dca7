"""Where a console request's time goes, in-process: StepChange's ASGI application driven
directly (no sockets, no Daphne), beside bare Django views in the same process and run.

    .venv/bin/python bench/seed.py            # once: seeds sc_bench_1m (about 80 s)
    .venv/bin/python bench/request_path.py [--url postgresql://...] [--runs 60]

For each view it prints p50/p95 wall time and the process's CPU time per request over
`--runs` requests after a warm-up: the list and detail pages (a viewer's session) and the
matching API calls (a viewer's token) on the seeded database, and, as the floor, a bare
Django view with the console's middleware chain (with and without a signed-in user) and a
bare django-ninja endpoint (with and without a bearer token). Then, for the typical
workflow's page, the time spent in each part of the request (session and user, the
application and permissions, the system-database reads, the actions panel, rendering);
what is left over is the request's trips between the event loop and the database thread,
the middleware and Django's request handling.
"""

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.console import DEFAULT_URL, VIEWER_SESSION, typical_workflow  # noqa: E402

APP = "bench-1m"


def prepare(url: str) -> tuple[str, str, str]:
    """A fresh StepChange data directory with the application, a viewer and their token;
    returns the session key, the token and the typical workflow's id."""
    typical = typical_workflow(url)
    os.environ["STEPCHANGE_DATA_DIR"] = tempfile.mkdtemp(prefix="sc-bench-path-")
    os.environ["DJANGO_SETTINGS_MODULE"] = "stepchange.settings"

    def manage(*args: str) -> str:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    manage("migrate", "-v0", "--noinput")
    manage("register_app", APP, "--system-database-url", url, "--schema", "dbos")
    session = manage("shell", "-c", VIEWER_SESSION).split()[-1]
    token = manage("create_api_token", "bench").strip()
    return session, token, typical


class Driver:
    def __init__(self, application: Any, session: str, token: str) -> None:
        self.application = application
        self.credentials = {
            "page": (b"cookie", f"sessionid={session}".encode()),
            "api": (b"authorization", f"Bearer {token}".encode()),
        }

    async def get(self, url: str, who: str) -> int:
        path, _, query = url.partition("?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(b"host", b"127.0.0.1"), self.credentials[who]],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 80),
        }
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await asyncio.Event().wait()
            return {}

        status = 0

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await self.application(scope, receive, send)
        if status != 200:
            raise RuntimeError(f"{url}: {status}")
        return status

    async def measure(self, url: str, who: str, runs: int) -> tuple[float, float, float]:
        for _ in range(5):
            await self.get(url, who)
        times = []
        cpu = time.process_time()
        for _ in range(runs):
            started = time.perf_counter()
            await self.get(url, who)
            times.append((time.perf_counter() - started) * 1000)
        cpu_ms = (time.process_time() - cpu) * 1000 / runs
        times.sort()
        return statistics.median(times), times[max(int(len(times) * 0.95) - 1, 0)], cpu_ms


def add_bare_views() -> None:
    """The floor: views that do nothing, behind the same chains."""
    from django.contrib.auth.decorators import login_required
    from django.http import HttpRequest, HttpResponse
    from django.urls import path

    from stepchange.api.base import BearerToken, SessionCookie, StepChangeAPI

    api = StepChangeAPI(urls_namespace="bench", auth=[BearerToken(), SessionCookie()])

    @api.get("/bench-bare", auth=None, include_in_schema=False)
    async def bare_api(request: HttpRequest) -> dict[str, bool]:
        return {"ok": True}

    @api.get("/bench-bare-token", include_in_schema=False)
    async def bare_api_token(request: HttpRequest) -> dict[str, bool]:
        return {"ok": True}

    async def bare(request: HttpRequest) -> HttpResponse:
        return HttpResponse("ok")

    import stepchange.urls

    stepchange.urls.urlpatterns[:0] = [
        path("api/v1/", api.urls),
        path("bench-bare/", bare),
        path("bench-bare-user/", login_required(bare)),
    ]


def timed_parts(names: dict[str, tuple[Any, str]]) -> dict[str, list[float]]:
    spent: dict[str, list[float]] = {label: [] for label in names}
    for label, (owner, attribute) in names.items():
        function = getattr(owner, attribute)

        def wrapper(
            *args: Any, _f: Callable[..., Any] = function, _l: str = label, **kwargs: Any
        ) -> Any:
            started = time.perf_counter()
            try:
                return _f(*args, **kwargs)
            finally:
                spent[_l].append((time.perf_counter() - started) * 1000)

        setattr(owner, attribute, wrapper)
    return spent


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--runs", type=int, default=60)
    args = parser.parse_args()
    session, token, typical = prepare(args.url)

    import django

    django.setup()
    from stepchange.asgi import application

    add_bare_views()
    driver = Driver(application, session, token)
    base = f"/apps/{APP}/workflows"
    views = [
        ("bare Django view, console chain", "/bench-bare/", "page"),
        ("bare Django view, signed in", "/bench-bare-user/", "page"),
        ("bare ninja endpoint", "/api/v1/bench-bare", "api"),
        ("bare ninja endpoint, bearer token", "/api/v1/bench-bare-token", "api"),
        ("list page", f"{base}/", "page"),
        ("list API", f"/api/v1{base}", "api"),
        ("detail page, typical", f"{base}/{typical}/", "page"),
        ("detail API, typical", f"/api/v1{base}/{typical}", "api"),
        ("steps API, typical", f"/api/v1{base}/{typical}/steps", "api"),
        ("detail page, 1,000 steps (first 100)", f"{base}/wf-1000-steps/", "page"),
        ("steps API, 1,000 steps (first 100)", f"/api/v1{base}/wf-1000-steps/steps", "api"),
        ("steps API, 1,000 steps (all)", f"/api/v1{base}/wf-1000-steps/steps?limit=1000", "api"),
    ]
    print(f"{'view':<42} {'p50 ms':>8} {'p95 ms':>8} {'cpu ms/req':>11}")
    for label, url, who in views:
        p50, p95, cpu = await driver.measure(url, who, args.runs)
        print(f"{label:<42} {p50:8.2f} {p95:8.2f} {cpu:11.2f}", flush=True)

    import django.contrib.auth.middleware

    import stepchange.access
    import workflows.sources
    import workflows.views

    source = workflows.sources.DatabaseSource
    spent = timed_parts(
        {
            "session and user": (django.contrib.auth.middleware, "get_user"),
            "application and permissions": (stepchange.access, "application_for"),
            # The workflow, its first steps and its extras: one round trip, then decoded.
            "system database, read and decoded": (source, "_detail"),
            "actions panel, audit history and rendering": (workflows.views, "_render_detail"),
        }
    )
    page = f"{base}/{typical}/"
    for _ in range(5):
        await driver.get(page, "page")
    for samples in spent.values():
        samples.clear()
    times = []
    for _ in range(args.runs):
        started = time.perf_counter()
        await driver.get(page, "page")
        times.append((time.perf_counter() - started) * 1000)
    mean = statistics.mean(times)
    print(f"\nthe typical workflow's page, {mean:.2f} ms on average, by part (ms per request):")
    accounted = 0.0
    for label, samples in spent.items():
        share = sum(samples) / args.runs
        accounted += share
        print(f"  {label:<36} {share:6.2f}")
    print(f"  {'everything else':<36} {mean - accounted:6.2f}")


if __name__ == "__main__":
    asyncio.run(main())
