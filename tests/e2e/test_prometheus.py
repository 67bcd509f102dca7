"""`GET /metrics` from two real Daphne processes sharing one host's counters: a real DBOS
3.2.0 executor answers requests relayed through either process, and a scrape of either
process counts them all, as does a scrape of the tokenless port both of them serve
(METRICS_PORT)."""

import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.servers import (
    Executor,
    PostgresDatabases,
    StepChange,
    free_port,
    listening_ports,
)
from tests.e2e.test_scale import REDIS_URL, require_redis

pytestmark = pytest.mark.e2e
TOKEN = "e2e-metrics-token-0123456789"
APP, KEY = "scraped", "scraped-key-0123456789abcdef"


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: StepChange, token: str = TOKEN) -> Samples:
    request = urllib.request.Request(
        f"{server.url}/metrics", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return parsed(response.read().decode())


def scrape_open_port(port: int) -> Samples:
    """The METRICS_PORT listener: no token, any path."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return parsed(response.read().decode())


def parsed(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def relayed(samples: Samples, outcome: str) -> float:
    """Requests relayed for APP with `outcome`, whatever their type."""
    return sum(
        value
        for (name, labels), value in samples.items()
        if name == "stepchange_relay_requests_total"
        and ("application", APP) in labels
        and ("outcome", outcome) in labels
    )


@pytest.fixture
def metrics_port() -> int:
    return free_port()


@pytest.fixture
def two_processes(
    tmp_path: Path, databases: PostgresDatabases, metrics_port: int
) -> Iterator[list[StepChange]]:
    require_redis()
    shared = {
        "DATABASE_URL": databases.new("sc_prom"),
        "REDIS_URL": REDIS_URL,
        "METRICS_TOKEN": TOKEN,
        # One host: both processes count into one directory, and both serve one open port.
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
        "METRICS_PORT": str(metrics_port),
    }
    first = StepChange(tmp_path / "one", env=shared, name="one")
    second = StepChange(tmp_path / "two", env=shared, name="two")
    for server, migrate in ((first, True), (second, False)):
        server.data_dir.mkdir()
        server.start(migrate=migrate)
    yield [first, second]
    for server in (first, second):
        server.stop()


def test_one_scrape_of_either_process_counts_the_requests_both_relayed(
    two_processes: list[StepChange],
    executors: Callable[..., Executor],
    databases: PostgresDatabases,
    metrics_port: int,
) -> None:
    first, second = two_processes
    first.manage("register_app", APP, "--key", KEY)
    executor = executors(
        "python",
        app=APP,
        key=KEY,
        system_database_url=databases.new("sc_prom_sys"),
        server=first,
    )
    second.wait_executors(APP, 1)
    executor.get("/?name=metrics&workflow_id=wf-metrics")
    before = relayed(scrape(first), "ok")
    for server, times in ((first, 2), (second, 3)):
        for _ in range(times):
            status, workflow = server.api("GET", f"/apps/{APP}/workflows/wf-metrics")
            assert status == 200, workflow
    # An unknown workflow: the executor answers, and the relay counts what it answered.
    status, _ = second.api("GET", f"/apps/{APP}/workflows/wf-none")
    assert status == 404
    from_first, from_second = scrape(first), scrape(second)
    assert relayed(from_first, "ok") - before == 6
    assert relayed(from_second, "ok") == relayed(from_first, "ok")
    # The latency histogram saw every one of them, from both processes.
    timed = sum(
        value
        for (name, labels), value in from_second.items()
        if name == "stepchange_relay_request_duration_seconds_count"
        and ("application", APP) in labels
    )
    assert timed == relayed(from_second, "ok") + relayed(from_second, "error")
    # Executors come from the shared database: the same count whichever process answers.
    healthy = frozenset(
        {"application": APP, "application_version": "v1", "status": "HEALTHY"}.items()
    )
    for samples in (from_first, from_second):
        assert samples[("dbos_conductor_v1_executor_count", healthy)] == 1

    # The open port: both processes listen on it, and whichever the kernel hands a scrape
    # to answers for both.
    for server in (first, second):
        assert server.process is not None
        assert listening_ports(server.process.popen.pid) == {server.port, metrics_port}
    for _ in range(4):
        opened = scrape_open_port(metrics_port)
        assert relayed(opened, "ok") == relayed(from_second, "ok")
        assert opened[("dbos_conductor_v1_executor_count", healthy)] == 1

    # And a scrape without the token is refused, and the refusal is on record.
    with pytest.raises(urllib.error.HTTPError) as refused:
        scrape(first, token="not-the-token-at-all")
    assert refused.value.code == 401
    refused.value.close()
    status, audit = second.api("GET", "/audit")
    assert status == 200, audit
    assert any(record["target"] == "GET /metrics" for record in audit["items"])


def test_without_metrics_port_a_server_listens_on_its_own_port_only(
    stepchange: StepChange,
) -> None:
    assert stepchange.process is not None
    assert "METRICS_PORT" not in stepchange.env
    assert listening_ports(stepchange.process.popen.pid) == {stepchange.port}
