"""Metrics end to end: a real DBOS 3.2.0 executor runs workflows, some of which fail; the
roll-up job of a StepChange under Daphne counts them from the system database, and they
show on the application's Metrics page and in `GET /metrics`."""

import re
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.servers import Executor, PostgresDatabases, StepChange, eventually

pytestmark = pytest.mark.e2e
TOKEN = "e2e-rollup-token-0123456789"
VIEWER = "vic"
# The page as a signed-in viewer sees it, rendered in the server's own environment.
PAGE = """
from django.contrib.auth.models import User
from django.test import Client
client = Client(HTTP_HOST="127.0.0.1")
client.force_login(User.objects.get(username="{viewer}"))
response = client.get("/apps/{app}/metrics/?window=1h")
print("STATUS", response.status_code)
print(response.content.decode())
"""


@pytest.fixture(scope="module")
def stepchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StepChange]:
    # Rolled up every second, each row counted as soon as it is written.
    fast = {"METRICS_ROLLUP_SECONDS": "1", "METRICS_SETTLE_SECONDS": "0", "METRICS_TOKEN": TOKEN}
    server = StepChange(tmp_path_factory.mktemp("stepchange"), env=fast).start()
    yield server
    server.stop()


def scrape(server: StepChange) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    request = urllib.request.Request(
        f"{server.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def greet_row(
    stepchange: StepChange, app: str, started: str, succeeded: str, failed: str
) -> Callable[[], str | None]:
    """The Metrics page once its greet row reads these counts (and none cancelled)."""

    def read() -> str | None:
        out = stepchange.manage("shell", "-c", PAGE.format(viewer=VIEWER, app=app))
        # The shell may print before the page: what follows the status line is the page.
        _, _, after = out.partition("STATUS ")
        status, _, page = after.partition("\n")
        assert status.strip() == "200", out[:500]
        found = re.search(
            rf'greet</a></th><td class="num">{started}</td><td class="num">{succeeded}</td>'
            rf'<td class="num">{failed}</td><td class="num">0</td>',
            page,
        )
        return page if found else None

    return read


def test_a_real_executors_workflows_show_on_the_metrics_page_and_in_prometheus(
    stepchange: StepChange,
    new_app: Callable[..., tuple[str, str]],
    executors: Callable[..., Executor],
    databases: PostgresDatabases,
) -> None:
    system_db = databases.new("sc_rollups")
    app, key = new_app("rolled", system_database_url=system_db)
    executor = executors("python", app=app, key=key, system_database_url=system_db)
    stepchange.wait_executors(app, 1)
    stepchange.user(VIEWER, "viewer", "vic-pass-5521")
    for name in ("ann", "bob", "cy", "fail1"):
        executor.get(f"/?name={name}")

    page = eventually(
        greet_row(stepchange, app, "4", "3", "1"),
        timeout=60,
        what="greet rolled up on the Metrics page",
    )
    assert page.count("<svg") >= 3
    assert ">shout</th>" in page  # a step of greet
    rolled = ("stepchange_metrics_rolled_up_to_seconds", frozenset({("application", app)}))
    assert scrape(stepchange)[rolled] > 0


def test_without_a_system_database_a_real_executor_is_asked_for_each_minute(
    stepchange: StepChange,
    new_app: Callable[..., tuple[str, str]],
    executors: Callable[..., Executor],
    databases: PostgresDatabases,
) -> None:
    """StepChange has no system database URL for this application: the roll-up job asks
    the executor for DBOS's aggregates of each whole minute, so the counts show once the
    minute they ran in is over."""
    app, key = new_app("relayed")
    executor = executors(
        "python", app=app, key=key, system_database_url=databases.new("sc_relayed_rollups")
    )
    stepchange.wait_executors(app, 1)
    stepchange.user(VIEWER, "viewer", "vic-pass-5521")
    for name in ("ann", "fail1"):
        executor.get(f"/?name={name}")
    page = eventually(
        greet_row(stepchange, app, "2", "1", "1"),
        timeout=150,
        what="greet rolled up through the executor",
    )
    assert "Rolled up through a connected executor" in page
    # The once-a-minute queue sample was answered too: no problem is shown.
    assert "could not read through an executor" not in page
    assert ">shout</th>" in page
