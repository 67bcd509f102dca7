"""Stories about the Metrics page and the roll-ups in `GET /metrics`: what a viewer sees
for each window, what a bad window or an unknown application gets, and the series a
scraper reads (parsed by prometheus_client's own parser)."""

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from metrics import rollups
from metrics.models import RollupState
from metrics.reads import UNKNOWN_WINDOW, WINDOWS
from stepchange.models import Application
from tests.conftest import make_app, make_user, signed_in
from tests.metrics.data import SystemDatabase

pytestmark = pytest.mark.django_db(transaction=True)
Shop = tuple[Application, SystemDatabase]
TOKEN = "scrape-me-0123456789abcdef"


def busy_minutes(db: SystemDatabase) -> int:
    """Workflows of two names and a step, finished three minutes ago; that minute."""
    now_ms = int(timezone.now().timestamp() * 1000)
    minute = (now_ms - 3 * 60_000) // 60_000 * 60_000
    db.add(
        workflows=[
            {"workflow_uuid": f"w{n}", "name": "charge", "status": status}
            | {"created_at": minute + n, "completed_at": minute + n + 1500}
            for n, status in enumerate(["SUCCESS"] * 5 + ["ERROR"])
        ]
        + [
            {"workflow_uuid": "s1", "name": "ship", "status": "ENQUEUED"}
            | {"created_at": minute + 10, "queue_name": "shipping"}
        ],
        steps=[
            {"workflow_uuid": "w0", "function_id": 1, "function_name": "pay"}
            | {"started_at_epoch_ms": minute + 100, "completed_at_epoch_ms": minute + 400}
        ],
    )
    return minute


@pytest.fixture
def vera(db: None) -> Client:
    return signed_in(make_user(username="vera", role="viewer"))


@pytest.mark.parametrize("window", list(WINDOWS))
def test_a_viewer_reads_every_window_drawn_from_the_roll_ups(
    shop: Shop, vera: Client, window: str
) -> None:
    application, db = shop
    busy_minutes(db)
    rollups.rollup_application(application)
    response = vera.get(reverse("app-metrics", args=[application.name]), {"window": window})
    assert response.status_code == 200
    page = response.content.decode()
    assert 'aria-current="page">Metrics</a>' in page
    assert f'href="?window={window}" aria-current="page"' in page
    # The charts, each with its hover values and its table; nothing waited in a queue.
    assert page.count("<svg") == 4
    assert page.count("Nothing in this window.") == 1
    assert "failed: 1 workflows</title>" in page
    assert page.count("as a table</summary>") == 5
    # The tables by name: charge started 6 times, one failed, 1.5 s each (in the 2.5 s bucket).
    assert '<td class="num">6</td><td class="num">5</td><td class="num">1</td>' in page
    assert "1.5 s" in page
    assert ">pay</th>" in page


def test_an_unknown_window_is_refused_with_the_windows_there_are(shop: Shop, vera: Client) -> None:
    application, _ = shop
    response = vera.get(reverse("app-metrics", args=[application.name]), {"window": "90d"})
    assert response.status_code == 400
    page = response.content.decode()
    assert UNKNOWN_WINDOW.format(window="90d", choices="1h, 24h, 7d, 30d") in page
    assert "<svg" not in page


def test_an_unknown_application_is_not_found(vera: Client) -> None:
    assert vera.get(reverse("app-metrics", args=["nowhere"])).status_code == 404


def test_without_a_system_database_the_page_says_where_its_metrics_come_from(
    vera: Client,
) -> None:
    make_app(name="relayed")
    response = vera.get(reverse("app-metrics", args=["relayed"]))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Rolled up through a connected executor" in page
    assert "no percentiles, which need the system database" in page


def _scrape(settings: Any) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
    settings.METRICS_TOKEN = TOKEN
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    found: dict[str, dict[frozenset[tuple[str, str]], float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            found.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return found


def test_a_scrape_reads_the_last_minute_rolled_up_in_conductors_names(
    shop: Shop, settings: Any
) -> None:
    application, db = shop
    minute = busy_minutes(db)
    # Rolled up to the end of that minute: it is the last one complete.
    rollups.rollup_application(application, now=timezone.now())
    RollupState.objects.filter(application=application).update(rolled_to_ms=minute + 65_000)
    found = _scrape(settings)
    charge = frozenset({"application": "shop", "workflow_name": "charge"}.items())
    assert found["dbos_conductor_v1_workflow_started_rate"][charge] == pytest.approx(6 / 60)
    assert found["dbos_conductor_v1_workflow_failed_rate"][charge] == pytest.approx(1 / 60)
    assert found["dbos_conductor_v1_workflow_max_total_latency_seconds"][charge] == 1.5
    # Labelled as DBOS names a step (function_name) and as Conductor's series do.
    pay = frozenset({"application": "shop", "function_name": "pay", "step_name": "pay"}.items())
    assert found["dbos_conductor_v1_step_max_duration_seconds"][pay] == 0.3
    assert found["dbos_conductor_v1_step_success_rate"][pay] == pytest.approx(1 / 60)
    shipping = frozenset({"application": "shop", "queue_name": "shipping"}.items())
    assert found["dbos_conductor_v1_workflow_enqueued_count"][shipping] == 1
    oldest = found["dbos_conductor_v1_workflow_oldest_enqueued_timestamp_seconds"]
    assert oldest == {shipping: (minute + 10) / 1000}
    # Nothing runs: no series of the oldest running.
    assert "dbos_conductor_v1_workflow_oldest_pending_timestamp_seconds" not in found
    rolled = found["stepchange_metrics_rolled_up_to_seconds"][
        frozenset({"application": "shop"}.items())
    ]
    assert rolled == (minute + 65_000) / 1000
    assert timedelta(seconds=timezone.now().timestamp() - rolled) < timedelta(minutes=5)
