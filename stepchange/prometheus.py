"""What `GET /metrics` serves: Prometheus's text format, from prometheus_client.

Two kinds of series, kept apart because they live in different places:

- **Counted in the process** (relayed requests by type and outcome with their latency,
  audit events by kind, recovery attempts by outcome): the instruments below. A scrape
  lands on any one of several Daphne processes, so these run in prometheus_client's
  multiprocess mode: each process writes its values to files in one directory
  (PROMETHEUS_MULTIPROC_DIR, by default `DATA_DIR/prometheus`; `stepchange.server` sets it
  before prometheus_client is first imported, which reads it then, and removes the files
  of processes no longer running), and a scrape adds up every file there. Without that
  variable (tests, a shell) they count in this process alone.
- **Read from StepChange's database at scrape time** (executors per application and
  version, poison holds, bulk-job progress): what every process already shares, read by
  small grouped queries over indexed, bounded sets (live rows, unfinished jobs), so every
  process answers the same and nothing is counted twice. These are collect functions in
  a registry each app adds to (`collector_add`, from its `AppConfig.ready`); a collect
  function that fails is logged and left out of that scrape, never a failed scrape.

`GET /metrics` serves it behind a token; with METRICS_PORT set, `stepchange.server` also
serves it without one on its own listener (`wsgi_app`).

Why not one way for all: a per-process counter of executors would be wrong the moment an
executor's socket sits in another process, and a database count of relayed requests would
cost a write per request the request log already batches.

Names match DBOS Conductor's `dbos_conductor_v1_*` where they mean the same thing (so its
Grafana and Datadog recipes work), and are `stepchange_*` for StepChange's own.
"""

import logging
import os
from collections.abc import Callable, Iterable
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from django.db import close_old_connections
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    make_wsgi_app,
    multiprocess,
)
from prometheus_client.core import Metric
from prometheus_client.registry import REGISTRY, Collector

logger = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# A function returning metric families, read at every scrape (see the module docstring).
Collect = Callable[[], Iterable[Metric]]

RELAY_REQUESTS = Counter(
    "stepchange_relay_requests",
    "Requests relayed to executors, by application, message type and outcome.",
    ["application", "type", "outcome"],
)
RELAY_SECONDS = Histogram(
    "stepchange_relay_request_duration_seconds",
    "From sending a request to an executor to its answer (or the timeout), in seconds.",
    ["application", "type", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
AUDIT_EVENTS = Counter(
    "stepchange_audit_events",
    "Audit records written, by kind (action) and result.",
    ["action", "result"],
)
RECOVERIES = Counter(
    "stepchange_recoveries",
    "Recovery attempts of dead executors, by application and outcome "
    "(held: a poison workflow was among the pending ones).",
    ["application", "outcome"],
)

ALERT_DELIVERIES = Counter(
    "stepchange_alert_deliveries",
    "Attempts to deliver an alert message, by application, channel kind and outcome "
    "(delivered; failed, to be retried; gave_up after the last attempt).",
    ["application", "channel_kind", "outcome"],
)

_collectors: dict[str, Collect] = {}


def collector_add(name: str, collect: Collect) -> None:
    """Read `collect` at every scrape. `name` keeps a second add of one name (an app
    loaded twice in tests) from reporting its series twice."""
    _collectors[name] = collect


def collectors() -> dict[str, Collect]:
    return dict(_collectors)


class _Scraped(Collector):
    """Every registered collect function, each one's failure kept to itself."""

    def collect(self) -> Iterable[Metric]:
        for name, collect in collectors().items():
            try:
                families = list(collect())
            except Exception:
                logger.exception("The %s metrics could not be read for this scrape", name)
                continue
            yield from families


def scrape_registry() -> CollectorRegistry:
    """Every series of a scrape: the instruments (of every process on the host, in
    multiprocess mode; the files are read at each collect) and the collect functions."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get(MULTIPROC_ENV):
        # prometheus_client leaves this constructor untyped.
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_InProcess())
    registry.register(_Scraped())
    return registry


def exposition() -> bytes:
    """The whole scrape, in Prometheus's text format."""
    return generate_latest(scrape_registry())


def wsgi_app() -> WSGIApplication:
    """The scrape as prometheus_client's own WSGI application, for the listener of
    METRICS_PORT (stepchange/server.py). It runs on a thread of a pool, outside Django's
    request cycle: the collect functions' database connections are closed after each
    scrape as Django closes a request's, or the pool's threads would each keep one."""
    serve = make_wsgi_app(scrape_registry())

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            # prometheus_client types its WSGI application as a bare Callable.
            return serve(environ, start_response)  # type: ignore[no-any-return]
        finally:
            close_old_connections()

    return app


class _InProcess(Collector):
    """The default registry's series (this process's instruments) inside another
    registry; Collector's `describe` is not needed with auto_describe off."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()
