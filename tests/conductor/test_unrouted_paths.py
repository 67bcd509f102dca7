"""Stories about WebSocket upgrades to paths that are not an executor's exact route: they
are refused, never a 500, and no log line shows what could be a key."""

import io
import logging
import time

import pytest
from channels.testing import WebsocketCommunicator

from conductor import consumers
from stepchange.asgi import application as asgi_app
from stepchange.redaction import redact_path
from stepchange.server import RedactingAccessLog

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "s3cr3t-key-0123"


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        (f"/websocket/orders/{SECRET}/", "/websocket/orders/[redacted]/"),
        (f"/prefix/websocket/orders/{SECRET}", "/prefix/websocket/orders/[redacted]"),
        (f"//websocket/orders/{SECRET}", "//websocket/orders/[redacted]"),
        (f"/WEBSOCKET/orders/{SECRET}", "/WEBSOCKET/orders/[redacted]"),
        (f"/websocket/orders/a%2F{SECRET}", "/websocket/orders/[redacted]%2F[redacted]"),
        (f"/websocket/orders/../{SECRET}", "/websocket/orders/[redacted]/[redacted]"),
        (f"/websocket/{SECRET}", "/websocket/[redacted]"),
        (f"/websocket/orders/{SECRET}?x=1", "/websocket/orders/[redacted]?x=1"),
        ("/api/v1/apps", "/api/v1/apps"),
    ],
)
def test_every_segment_after_a_websocket_segment_but_the_app_is_redacted(
    path: str, logged: str
) -> None:
    assert redact_path(path) == logged


def test_the_access_log_hides_the_key_of_a_malformed_executor_path() -> None:
    stream = io.StringIO()
    RedactingAccessLog(stream)(
        "websocket", "rejected", {"client": ["127.0.0.1", 5], "path": f"/x/WebSocket/o/{SECRET}/"}
    )

    assert SECRET not in stream.getvalue()


@pytest.mark.parametrize(
    "path",
    [
        f"/websocket/orders/{SECRET}/",
        f"/prefix/websocket/orders/{SECRET}",
        f"//websocket/orders/{SECRET}",
        f"/WEBSOCKET/orders/{SECRET}",
        f"/websocket/orders/a/{SECRET}",
        "/websocket/",
    ],
)
async def test_an_upgrade_to_no_route_is_refused_without_a_traceback_or_the_key(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    consumers.unrouted_warnings.kinds.clear()
    with caplog.at_level(logging.INFO):
        communicator = WebsocketCommunicator(asgi_app, path)
        connected, _ = await communicator.connect()

    assert not connected
    assert SECRET not in caplog.text
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.exc_info]
    assert "Refused a WebSocket upgrade to no route" in caplog.text


async def test_a_hundred_refused_upgrades_write_one_line_then_a_count(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumers.unrouted_warnings.kinds.clear()
    with caplog.at_level(logging.WARNING, logger="conductor.consumers"):
        for _ in range(100):
            communicator = WebsocketCommunicator(asgi_app, "/websocket/")
            await communicator.connect()
    assert len(caplog.records) == 1

    clock = time.monotonic() + consumers.UNROUTED_LOG_INTERVAL_SECONDS + 1
    monkeypatch.setattr(time, "monotonic", lambda: clock)
    with caplog.at_level(logging.WARNING, logger="conductor.consumers"):
        await WebsocketCommunicator(asgi_app, "/websocket/").connect()
    assert len(caplog.records) == 2
    assert "99 more like it" in caplog.records[1].getMessage()
