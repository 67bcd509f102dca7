"""Stories about a load balancer asking whether a process is up and ready."""

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from stepchange import health
from stepchange.models import AuditRecord

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _not_draining() -> Iterator[None]:
    yield
    health._draining = False


def test_healthz_answers_anyone_that_the_process_is_up() -> None:
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]
    assert not AuditRecord.objects.exists()


def test_readyz_answers_ready_with_each_part_and_the_executors_held() -> None:
    response = Client().get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "status": "ready",
        "failing": [],
        "checks": {"database": "ok", "channel_layer": "ok"},
        "executors": 0,
    }
    assert not AuditRecord.objects.exists()


def test_readyz_is_503_naming_the_channel_layer_when_redis_is_unreachable(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # A closed port: nothing listens on the discard port of the loopback.
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:9"]},
        }
    }
    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["channel_layer"]
    assert body["checks"] == {"database": "ok", "channel_layer": "failed"}
    # Why goes to the log, not to whoever asked.
    assert "127.0.0.1" not in json.dumps(body)
    assert "Readiness: the channel layer failed" in caplog.text


def test_readyz_is_503_once_the_process_is_shutting_down() -> None:
    health.drain_begin()
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["shutting_down"]
    assert Client().get("/healthz").status_code == 200


def test_the_probes_take_only_get_and_head() -> None:
    assert Client().post("/healthz").status_code == 405
    assert Client().post("/readyz").status_code == 405
    assert Client().head("/readyz").status_code == 200
