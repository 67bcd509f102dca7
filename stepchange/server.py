"""Run Daphne with StepChange's defaults: `python -m stepchange.server -b HOST -p PORT`.

It is Daphne's own command line with three differences that production needs: executors
stay connected for days (no WebSocket timeout), their replies can be many megabytes (a
raised message limit instead of Daphne's 1 MiB), and the access log redacts executor keys,
which travel in the WebSocket path. And the process's background work
(`stepchange.background`) starts with the server and stops with it: Daphne sends no ASGI
lifespan events, so Twisted's reactor, which runs Daphne's asyncio loop, tells us.
Its counters for `GET /metrics` go to files shared by every process on the host
(`stepchange.prometheus`), in a directory this prepares before anything counts.
"""

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from daphne import cli
from daphne import server as daphne_server
from daphne.access import AccessLogGenerator
from daphne.http_protocol import HTTPFactory, WebRequest

# Daphne's modules, imported above, install Twisted's asyncio reactor: this is that one.
from twisted.internet import defer, reactor

from stepchange import upload_guard
from stepchange.redaction import redact_path, redact_websocket_path

APPLICATION = "stepchange.asgi:application"


class RedactingAccessLog(AccessLogGenerator):  # type: ignore[misc]
    def __call__(self, protocol: str, action: str, details: dict[str, Any]) -> None:
        if "path" in details:
            redact = redact_websocket_path if protocol == "websocket" else redact_path
            details = {**details, "path": redact(details["path"])}
        super().__call__(protocol, action, details)


class Discarded:
    """Where a refused body goes as it arrives: counted, never kept."""

    closed = False

    def __init__(self, size: int = 0) -> None:
        self.size = size

    def write(self, data: bytes) -> None:
        self.size += len(data)

    def seek(self, *args: Any) -> None:
        pass

    def tell(self) -> int:
        # Nothing to parse: Twisted reads a form body only when there is one.
        return 0

    def read(self, *args: Any) -> bytes:
        return b""

    def close(self) -> None:
        self.closed = True


class GuardedRequest(WebRequest):  # type: ignore[misc]
    """Daphne's request, which refuses an oversized import upload once its headers are in:
    Twisted calls `gotLength` with the request line and headers read and no byte of the
    body yet (Daphne's own `process` runs only after the last one). The answer goes out at
    once, the body that still comes is dropped, and the connection closes after it (a
    client that sends `Expect: 100-continue` sends none: no 100 is sent). A chunked body,
    which declares no length, is dropped once it passes the limit.

    These hooks are Twisted's (`twisted.web.http.Request`); the request line is read from
    the channel, where Twisted keeps it until the body is in (tests/e2e/test_upload_guard.py
    checks both against the installed versions)."""

    refused: upload_guard.Refusal | None = None
    limit: int | None = None
    received = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Twisted would parse every multipart form body in memory into `args`, which
        # Daphne never reads (Django parses the body itself): a second copy of an upload.
        self._parsePOSTFormSubmission = False

    def _line(self) -> tuple[str, str]:
        # The channel holds the request line while the headers and body are read.
        method = getattr(self.channel, "_command", b"") or b""
        path = getattr(self.channel, "_path", b"") or b""
        return method.decode("latin-1"), path.decode("latin-1")

    def gotLength(self, length: int | None) -> None:
        method, path = self._line()
        refused = upload_guard.refusal(method, path, length)
        if refused is None:
            super().gotLength(length)
            self.limit = upload_guard.limit_for(method, path) if length is None else None
            return
        self._refuse(refused, path, received=0)

    def handleContentChunk(self, data: bytes) -> None:
        if self.refused is None and self.limit is not None:
            self.received += len(data)
            if self.received > self.limit:
                method, path = self._line()
                refused = upload_guard.refusal(method, path, self.received)
                if refused is not None:
                    self.content.close()
                    self._refuse(refused, path, received=self.received)
                    return
        self.content.write(data)

    def _refuse(self, refused: upload_guard.Refusal, path: str, *, received: int) -> None:
        self.refused = refused
        self.content = Discarded(received)
        self.requestHeaders.removeHeader(b"Expect")
        self.channel.transport.write(upload_guard.raw_response(refused))
        upload_guard.log_refusal(refused, path, self.channel.transport.getPeer())

    def process(self) -> Any:
        if self.refused is not None:
            # Answered already; the body is in and dropped.
            self.channel.loseConnection()
            return None
        return super().process()


class GuardedHTTPFactory(HTTPFactory):  # type: ignore[misc]
    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = GuardedRequest
        return protocol


def daphne_arguments(argv: list[str], max_message_bytes: int) -> list[str]:
    """Our defaults first, so that anything given on the command line overrides them."""
    defaults = {
        "--websocket_timeout": "-1",
        "--websocket-max-message-size": str(max_message_bytes),
        "--websocket-max-frame-size": str(max_message_bytes),
    }
    arguments: list[str] = []
    for flag, value in defaults.items():
        if flag not in argv:
            arguments += [flag, value]
    return [*arguments, *argv, APPLICATION]


def background_with_the_reactor() -> None:
    """Start the background work once the reactor runs, and stop it before the reactor
    shuts down (a 'before' trigger's Deferred is waited for; SIGTERM and SIGINT stop the
    reactor through the same triggers)."""
    # Twisted calls back "when running" just before its asyncio loop runs: one more turn,
    # and the loop is running for the tasks to belong to.
    reactor.callWhenRunning(reactor.callLater, 0, _start_background)
    # Twisted types the reactor by its zope interface, whose methods are written without
    # `self`: mypy takes the first argument for it.
    reactor.addSystemEventTrigger("before", "shutdown", _stop_background)  # type: ignore[arg-type]


def _start_background() -> None:
    # Imported here: the loops' modules need Django set up, which loading the application
    # (stepchange.asgi) has done by now.
    from stepchange.background import background_start

    background_start()


def _stop_background() -> defer.Deferred[None]:
    from stepchange.background import background_stop

    return defer.Deferred.fromFuture(asyncio.ensure_future(background_stop()))


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def metrics_directory_prepare(directory: Path) -> None:
    """Make `directory` where this process's Prometheus counters go (a
    PROMETHEUS_MULTIPROC_DIR already set wins), before prometheus_client is imported: it
    reads the variable then. Removes what processes no longer running left there: their
    counts go with them, which Prometheus reads as a counter reset, as after a restart."""
    directory = Path(os.environ.setdefault(MULTIPROC_ENV, str(directory)))
    directory.mkdir(parents=True, exist_ok=True)
    for path in directory.glob("*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and not _running(int(pid)):
            path.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, but running
    return True


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stepchange.settings")
    from django.conf import settings

    metrics_directory_prepare(settings.METRICS_MULTIPROC_DIR)

    arguments = daphne_arguments(
        sys.argv[1:] if argv is None else argv, settings.EXECUTOR_MAX_MESSAGE_BYTES
    )
    # Daphne's command line builds its access log from this name; ours redacts keys.
    cli.AccessLogGenerator = RedactingAccessLog
    # Daphne's server builds its HTTP factory from this name; ours guards uploads.
    daphne_server.HTTPFactory = GuardedHTTPFactory
    background_with_the_reactor()
    cli.CommandLineInterface().run(arguments)


if __name__ == "__main__":
    main()
