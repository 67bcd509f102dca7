"""`GET /metrics`: who may scrape it, and what a scrape says about what happened.

Every scrape is parsed as Prometheus parses it (prometheus_client's own parser). Counters
are process-wide, so the stories compare a scrape before and after what they do.
"""

import asyncio
import json
import os
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from conductor import recovery, relay
from conductor.models import Executor, PoisonWorkflow, RecoveryAttempt
from conductor.protocol import ListStepsRequest, new_request_id
from stepchange import prometheus, views
from stepchange.models import Application, AuditRecord
from stepchange.server import metrics_directory_prepare
from tests.conftest import make_app, signed_in
from tests.fake_executor import FakeExecutor
from workflows.models import BulkJob, BulkJobItem

TOKEN = "scrape-me-0123456789abcdef"
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


def scrape(client: Client | None = None) -> str:
    response = (client or Client()).get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return response.content.decode()


@pytest.fixture(autouse=True)
def _metrics_token(settings: Any) -> None:
    settings.METRICS_TOKEN = TOKEN


def _refusals() -> list[AuditRecord]:
    return list(AuditRecord.objects.filter(action="access.denied", target="GET /metrics"))


# Who may scrape.


@pytest.mark.django_db
def test_a_scraper_with_the_token_reads_prometheus_text() -> None:
    text = scrape()
    assert "# TYPE stepchange_relay_requests_total counter" in text
    assert _refusals() == []


@pytest.mark.django_db
def test_a_scraper_without_a_token_is_refused_and_audited() -> None:
    response = Client().get("/metrics")
    assert response.status_code == 401
    assert response.json() == {"detail": views.METRICS_NO_TOKEN}
    assert response["WWW-Authenticate"].startswith("Bearer")
    [record] = _refusals()
    assert record.result == "denied"
    assert record.detail == views.METRICS_NO_TOKEN


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header",
    [f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer sc_not-the-metrics-token", "Bearer é"],
)
def test_a_wrong_token_is_refused_and_audited(header: str) -> None:
    response = Client().get("/metrics", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response.json() == {"detail": views.METRICS_WRONG_TOKEN}
    [record] = _refusals()
    assert record.detail == views.METRICS_WRONG_TOKEN


@pytest.mark.django_db
def test_without_a_metrics_token_set_no_bearer_gets_in(settings: Any) -> None:
    settings.METRICS_TOKEN = ""
    response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ")
    assert response.status_code == 401
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 401
    assert len(_refusals()) == 2


@pytest.mark.django_db
def test_an_admin_reads_it_signed_in_and_others_are_refused_and_audited(
    admin: Any, viewer: Any, operator: Any
) -> None:
    assert signed_in(admin).get("/metrics").status_code == 200
    for user in (viewer, operator):
        assert signed_in(user).get("/metrics").status_code == 403
    assert sorted(record.actor_name for record in _refusals()) == ["otto", "vera"]
    assert all(record.detail == views.METRICS_ADMINS_ONLY for record in _refusals())


@pytest.mark.django_db
def test_only_reads_are_answered() -> None:
    response = Client().post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 405


@pytest.mark.django_db
def test_wrong_tokens_lock_the_address_out_for_a_while(settings: Any) -> None:
    settings.THROTTLE_FAILURE_LIMIT = 3
    client = Client()
    statuses = [
        client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code for _ in range(4)
    ]
    assert statuses == [401, 401, 401, 429]
    # Even the right token waits out the lockout: the address is refused before any check.
    locked = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert locked.status_code == 429
    assert int(locked["Retry-After"]) > 0
    assert len(_refusals()) == 3
    assert AuditRecord.objects.filter(action="api_token.lockout").count() == 1


# What a scrape says.


def _executor(app: Application, executor_id: str, state: str, version: str, **fields: Any) -> None:
    Executor.objects.create(
        application=app, executor_id=executor_id, state=state, application_version=version, **fields
    )


@pytest.mark.django_db
def test_executors_are_counted_per_application_version_and_status_as_conductor_does() -> None:
    orders = make_app(name="orders")
    billing = make_app(name="billing")
    stale = timezone.now() - timedelta(hours=1)
    _executor(orders, "a", Executor.State.CONNECTED, "v1")
    _executor(orders, "b", Executor.State.CONNECTED, "v1")
    _executor(orders, "c", Executor.State.CONNECTED, "v2")
    # Still says connected, but its process stopped beating: disconnected.
    _executor(orders, "d", Executor.State.CONNECTED, "v2", last_seen_at=stale)
    _executor(orders, "e", Executor.State.DEAD, "v1")
    _executor(orders, "f", Executor.State.RECOVERED, "v1")
    _executor(billing, "g", Executor.State.DISCONNECTED, "")
    text = scrape()
    count = "dbos_conductor_v1_executor_count"
    assert value(text, count, application="orders", application_version="v1", status="HEALTHY") == 2
    assert value(text, count, application="orders", application_version="v2", status="HEALTHY") == 1
    assert (
        value(text, count, application="orders", application_version="v2", status="DISCONNECTED")
        == 1
    )
    assert value(text, count, application="orders", application_version="v1", status="DEAD") == 1
    assert (
        value(
            text, count, application="billing", application_version="unknown", status="DISCONNECTED"
        )
        == 1
    )
    # A recovered executor is not counted at all.
    assert sum(v for (name, _), v in samples(text).items() if name == count) == 6
    connected = "stepchange_executors_connected"
    assert value(text, connected, application="orders", application_version="v1") == 2
    assert value(text, connected, application="orders", application_version="v2") == 1
    assert (
        "stepchange_executors_connected",
        frozenset({"application": "billing"}.items()),
    ) not in (samples(text))


@pytest.mark.django_db
def test_poison_workflows_held_for_an_operator_are_counted() -> None:
    orders = make_app(name="orders")
    PoisonWorkflow.objects.create(application=orders, workflow_id="p1", executors_killed=2)
    PoisonWorkflow.objects.create(application=orders, workflow_id="p2", executors_killed=3)
    # Seen once only: not (yet) held.
    PoisonWorkflow.objects.create(application=orders, workflow_id="p3", executors_killed=1)
    PoisonWorkflow.objects.create(
        application=orders, workflow_id="p4", executors_killed=5, resolved_at=timezone.now()
    )
    assert value(scrape(), "stepchange_poison_workflows", application="orders") == 2


@pytest.mark.django_db
def test_bulk_job_progress_counts_the_unfinished_jobs_and_their_workflows() -> None:
    orders = make_app(name="orders")
    running = BulkJob.objects.create(
        application=orders, action="cancel", state="running", created_by_name="otto"
    )
    done = BulkJob.objects.create(
        application=orders, action="cancel", state="done", created_by_name="otto"
    )
    for n, state in enumerate(["ok", "ok", "failed", "pending"]):
        BulkJobItem.objects.create(job=running, workflow_id=f"wf-{n}", state=state)
    BulkJobItem.objects.create(job=done, workflow_id="wf-old", state="ok")
    text = scrape()
    assert (
        value(text, "stepchange_bulk_jobs", application="orders", action="cancel", state="running")
        == 1
    )
    assert (
        value(text, "stepchange_bulk_jobs", application="orders", action="cancel", state="done")
        == 0
    )
    items = "stepchange_bulk_job_items"
    assert value(text, items, application="orders", action="cancel", state="ok") == 2
    assert value(text, items, application="orders", action="cancel", state="failed") == 1
    assert value(text, items, application="orders", action="cancel", state="pending") == 1


@pytest.mark.django_db
def test_audit_events_are_counted_by_kind_and_result(admin: Any) -> None:
    before = scrape()
    Client().get("/metrics")  # one refusal: access.denied, denied
    client = signed_in(admin)
    client.post("/tokens/", {"name": "deploy"})  # api_token.create, ok
    after = scrape()
    for action, result in (("access.denied", "denied"), ("api_token.create", "ok")):
        name = "stepchange_audit_events_total"
        grown = value(after, name, action=action, result=result) - value(
            before, name, action=action, result=result
        )
        assert grown == 1, (action, result)


@pytest.fixture
def _broken_collector() -> Iterator[None]:
    def broken() -> list[GaugeMetricFamily]:
        raise RuntimeError("the database went away")

    prometheus.collector_add("broken", broken)
    yield
    prometheus._collectors.pop("broken")


@pytest.mark.django_db
@pytest.mark.usefixtures("_broken_collector")
def test_a_collector_that_fails_leaves_the_rest_of_the_scrape_whole() -> None:
    make_app(name="orders")
    text = scrape()
    assert "dbos_conductor_v1_executor_count" in text
    assert "stepchange_relay_requests_total" in text


@pytest.mark.django_db(transaction=True)
async def test_relayed_requests_are_counted_and_timed_by_type_and_outcome(
    executor: FakeExecutor, orders: Application
) -> None:
    name, hist = "stepchange_relay_requests_total", "stepchange_relay_request_duration_seconds"
    labels = {"application": "orders", "type": "list_steps", "outcome": "ok"}
    failed = {**labels, "outcome": "error"}
    before = await sync_to_async(scrape)()

    async def ask(error: str | None) -> None:
        message = ListStepsRequest(request_id=new_request_id(), workflow_id="wf-1")
        pending = asyncio.ensure_future(relay.request(orders, message, raise_on_error=False))
        await executor.answer("list_steps", output=[], error_message=error)
        await pending

    await ask(None)
    await ask(None)
    await ask("no such workflow")
    after = await sync_to_async(scrape)()
    assert value(after, name, **labels) - value(before, name, **labels) == 2
    assert value(after, name, **failed) - value(before, name, **failed) == 1
    count = f"{hist}_count"
    assert value(after, count, **labels) - value(before, count, **labels) == 2
    # Each answer came within the histogram's largest finite bucket.
    bucket = f"{hist}_bucket"
    assert (
        value(after, bucket, **labels, le="60.0") - value(before, bucket, **labels, le="60.0") == 2
    )


def test_a_process_start_clears_what_processes_no_longer_running_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(prometheus.MULTIPROC_ENV, raising=False)
    directory = tmp_path / "prometheus"
    directory.mkdir()
    mine = directory / f"counter_{os.getpid()}.db"
    gone = directory / "counter_999999999.db"
    for path in (mine, gone):
        path.write_bytes(b"")
    metrics_directory_prepare(directory)
    assert os.environ[prometheus.MULTIPROC_ENV] == str(directory)
    assert mine.exists()
    assert not gone.exists()


# The Grafana dashboard.


@pytest.mark.django_db
def test_the_grafana_dashboard_names_only_metrics_a_scrape_has() -> None:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    expressions = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    assert expressions
    families = {family.name for family in text_string_to_metric_families(scrape())}
    # Histograms and counters are named by their family; their series add suffixes.
    known = set()
    for family in families:
        known |= {family, f"{family}_total", f"{family}_bucket", f"{family}_count", f"{family}_sum"}
    referenced = {
        name
        for expr in expressions
        for name in re.findall(r"\b((?:dbos_conductor_v1|stepchange)_[a-z_0-9]+)", expr)
    }
    assert referenced
    assert referenced <= known, referenced - known


@pytest.mark.django_db
def test_recovery_attempts_are_counted_by_outcome_and_a_hold_among_them() -> None:
    orders = make_app(name="orders")
    gone = Executor.objects.create(
        application=orders, executor_id="gone", state=Executor.State.RECOVERING
    )
    name = "stepchange_recoveries_total"
    before = scrape()
    for outcome in (RecoveryAttempt.Outcome.WAITING, RecoveryAttempt.Outcome.HELD):
        recovery._write_attempt(gone, outcome, None, ["wf-1"], False, "", None, "")
    after = scrape()
    for counted in ("waiting", "held"):
        grown = value(after, name, application="orders", outcome=counted) - value(
            before, name, application="orders", outcome=counted
        )
        assert grown == 1, counted
