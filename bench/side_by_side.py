"""Two versions of StepChange side by side, through Daphne, on the seeded database.

    .venv/bin/python bench/seed.py        # once: seeds sc_bench_1m (about 75 s)
    .venv/bin/python bench/side_by_side.py --base <git revision> [--rounds 400]

This machine's speed drifts by up to 2x within minutes, so two versions are compared only
in one run: both servers run at once (the base from a temporary git worktree, this
checkout as it is), and each round sends every view to one and then the other, the order
alternating. Printed per view: p50 and p95 of each, and the change. The views: the typical
workflow's page and API, the 1,000-step workflow's page, the list page and API, the
ENQUEUED list page, and a static file (the floor: Daphne and Django's handler alone).
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
from tests.e2e.servers import StepChange  # noqa: E402

APP = "bench-1m"


def start(root: Path, url: str, name: str) -> tuple[StepChange, dict[str, dict[str, str]]]:
    server = StepChange(Path(tempfile.mkdtemp(prefix=f"sc-side-{name}-")), name=name, root=root)
    server.start()
    server.manage("register_app", APP, "--system-database-url", url, "--schema", "dbos")
    session = server.manage("shell", "-c", VIEWER_SESSION).strip().splitlines()[-1]
    token = server.manage("create_api_token", "bench").strip()
    return server, {
        "page": {"Cookie": f"sessionid={session}", "Host": "127.0.0.1"},
        "api": {"Authorization": f"Bearer {token}", "Host": "127.0.0.1"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the git revision to compare with")
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--rounds", type=int, default=400)
    args = parser.parse_args()
    typical = typical_workflow(args.url)
    base = f"/apps/{APP}/workflows"
    views = [
        ("detail page, typical", f"{base}/{typical}/", "page"),
        ("detail API, typical", f"/api/v1{base}/{typical}", "api"),
        ("detail page, 1,000 steps", f"{base}/wf-1000-steps/", "page"),
        ("list page", f"{base}/", "page"),
        ("list API", f"/api/v1{base}", "api"),
        ("ENQUEUED list page", f"{base}/?status=ENQUEUED", "page"),
        ("floor: a static file", "/static/stepchange/console.css", "page"),
    ]
    tree = Path(tempfile.mkdtemp(prefix="sc-side-base-")) / "tree"
    subprocess.run(
        ["git", "worktree", "add", "-q", "--detach", str(tree), args.base], cwd=ROOT, check=True
    )
    servers = []
    try:
        for name, root in (("base", tree), ("this", ROOT)):
            server, headers = start(root, args.url, name)
            servers.append((name, server, headers))
        clients = {
            name: http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            for name, server, _ in servers
        }
        times: dict[tuple[str, str], list[float]] = {}

        def fetch(name: str, headers: dict[str, dict[str, str]], path: str, who: str) -> float:
            started = time.perf_counter()
            clients[name].request("GET", path, headers=headers[who])
            response = clients[name].getresponse()
            body = response.read()
            elapsed = (time.perf_counter() - started) * 1000
            if response.status != 200:
                raise RuntimeError(f"{name} {path}: {response.status} {body[:300]!r}")
            return elapsed

        for round_ in range(args.rounds + 10):
            order = servers if round_ % 2 == 0 else servers[::-1]
            for label, path, who in views:
                for name, _, headers in order:
                    elapsed = fetch(name, headers, path, who)
                    if round_ >= 10:  # warm-up rounds
                        times.setdefault((label, name), []).append(elapsed)
        print(f"{'view':<28} {'base p50':>9} {'p95':>7} {'this p50':>9} {'p95':>7} {'change':>15}")
        for label, _, _ in views:
            old, new = times[(label, "base")], times[(label, "this")]
            o50, o95 = statistics.median(old), percentile(old, 0.95)
            n50, n95 = statistics.median(new), percentile(new, 0.95)
            print(
                f"{label:<28} {o50:9.2f} {o95:7.2f} {n50:9.2f} {n95:7.2f}"
                f" {n50 - o50:+7.2f}/{n95 - o95:+6.2f}"
            )
        for client in clients.values():
            client.close()
    finally:
        for _, server, _ in servers:
            server.stop()
            shutil.rmtree(server.data_dir, ignore_errors=True)
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)


if __name__ == "__main__":
    main()
