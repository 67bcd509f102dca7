"""What the alert stories share: a webhook receiver started on 127.0.0.1 that checks the
signature and answers what it is told to, and small keyword-only factories."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from alerts.channels import SIGNATURE_HEADER, signature_valid
from alerts.models import AlertChannel, AlertRule
from stepchange.models import Application

SECRET = "receiver-secret"


class Receiver:
    """An HTTP server on 127.0.0.1: keeps what it was sent and answers `statuses` in turn
    (then 200)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.received: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self.calls = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.calls += 1
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                if not signature_valid(SECRET, body, self.headers.get(SIGNATURE_HEADER, "")):
                    receiver.bad_signatures += 1
                    status = 401
                elif status == 200:
                    receiver.received.append(json.loads(body))
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"no")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def receiving(statuses: list[int] | None = None) -> Iterator[Receiver]:
    with Receiver(statuses) as receiver:
        yield receiver


def make_channel(
    *, application: Application, url: str, name: str = "hook", secret: str = SECRET, **fields: Any
) -> AlertChannel:
    fields.setdefault("kind", AlertChannel.Kind.WEBHOOK)
    return AlertChannel.objects.create(
        application=application, name=name, url=url, secret=secret, **fields
    )


def make_rule(
    *,
    application: Application,
    kind: str,
    parameters: dict[str, Any] | None = None,
    channels: list[AlertChannel] | None = None,
    name: str = "rule",
    **fields: Any,
) -> AlertRule:
    rule = AlertRule.objects.create(
        application=application, name=name, kind=kind, parameters=parameters or {}, **fields
    )
    rule.channels.set(channels or [])
    return rule
