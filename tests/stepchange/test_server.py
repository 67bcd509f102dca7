"""The Daphne launcher: production defaults, and an access log that never shows a key."""

import logging
import socket

import pytest

from stepchange.redaction import redact_path
from stepchange.server import RedactingAccessLog, daphne_arguments, metrics_listener_open


def test_executor_keys_are_redacted_from_paths() -> None:
    assert redact_path("/websocket/orders/s3cr3t-key") == "/websocket/orders/[redacted]"
    assert redact_path("/websocket/orders/s3cr3t-key?x=1") == "/websocket/orders/[redacted]?x=1"
    assert redact_path("/api/v1/apps") == "/api/v1/apps"


def test_the_access_log_writes_websocket_paths_without_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = RedactingAccessLog(None)
    with caplog.at_level(logging.INFO, logger="stepchange.access"):
        for action in ["connecting", "rejected", "connected", "disconnected"]:
            log(
                "websocket",
                action,
                {"client": ["127.0.0.1", 5], "path": "/websocket/orders/s3cr3t"},
            )
    assert "s3cr3t" not in caplog.text
    assert caplog.text.count("/websocket/orders/[redacted]") == 4


def test_the_access_log_hides_a_key_daphne_read_as_the_whole_path(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A request target of //websocket/orders/s3cr3t reaches the log as /orders/s3cr3t.
    log = RedactingAccessLog(None)
    with caplog.at_level(logging.INFO, logger="stepchange.access"):
        log("websocket", "rejected", {"client": ["127.0.0.1", 5], "path": "/orders/s3cr3t"})
    assert "s3cr3t" not in caplog.text
    assert "/orders/..." in caplog.text


def test_the_access_log_keeps_load_balancer_probes_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = RedactingAccessLog(None)
    request = {"client": ["10.0.0.9", 5], "method": "GET", "status": 200, "size": 20}
    with caplog.at_level(logging.DEBUG, logger="stepchange.access"):
        log("http", "complete", {**request, "path": "/readyz"})
        log("http", "complete", {**request, "path": "/healthz"})
        log("http", "complete", {**request, "path": "/api/v1/apps"})
    levels = {record.getMessage().split('"')[1]: record.levelno for record in caplog.records}
    assert levels == {
        "GET /readyz": logging.DEBUG,
        "GET /healthz": logging.DEBUG,
        "GET /api/v1/apps": logging.INFO,
    }


def test_defaults_raise_the_message_limit_and_can_be_overridden() -> None:
    arguments = daphne_arguments(["-p", "9000"], 64 * 1024 * 1024)
    assert arguments[arguments.index("--websocket-max-message-size") + 1] == str(64 * 1024 * 1024)
    assert arguments[arguments.index("--websocket_timeout") + 1] == "-1"
    assert arguments[-1] == "stepchange.asgi:application"
    overridden = daphne_arguments(["--websocket_timeout", "600"], 1024)
    assert overridden.count("--websocket_timeout") == 1


def test_every_process_of_the_host_may_open_the_metrics_port() -> None:
    first = metrics_listener_open("127.0.0.1", 0)
    port = first.getsockname()[1]
    second = metrics_listener_open("127.0.0.1", port)
    try:
        assert second.getsockname() == ("127.0.0.1", port)
    finally:
        first.close()
        second.close()


def test_a_metrics_port_another_program_holds_stops_start_up_naming_the_setting() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(SystemExit) as stopped:
            metrics_listener_open("127.0.0.1", port)
    assert str(stopped.value) == (
        f"METRICS_PORT {port} on 127.0.0.1 cannot be opened: Address already in use"
    )


def test_the_metrics_port_may_be_bound_to_an_ipv6_address() -> None:
    listener = metrics_listener_open("::1", 0)
    try:
        assert listener.family == socket.AF_INET6
    finally:
        listener.close()
