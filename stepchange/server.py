"""Run Daphne with StepChange's defaults: `python -m stepchange.server -b HOST -p PORT`.

It is Daphne's own command line with three differences that production needs: executors
stay connected for days (no WebSocket timeout), their replies can be many megabytes (a
raised message limit instead of Daphne's 1 MiB), and the access log redacts executor keys,
which travel in the WebSocket path. And the process's background work
(`stepchange.background`) starts with the server and stops with it: Daphne sends no ASGI
lifespan events, so Twisted's reactor, which runs Daphne's asyncio loop, tells us.
Its counters for `GET /metrics` go to files shared by every process on the host
(`stepchange.prometheus`), in a directory this prepares before anything counts. With
METRICS_PORT set, the same scrape is also served without a token on a listener of its own
(`metrics_listener_open`).

SIGTERM drains the process instead of stopping it at once (README "Shutdown"): it stops
listening and turns /readyz to 503, lets relayed requests finish, tells its executors to
go (a normal close, 1000, after which they reconnect to another process), fails whatever is still
waiting with a 502 that says why, and stops the reactor, all within
SHUTDOWN_GRACE_SECONDS. A second SIGTERM, or SIGINT, stops it at once.
"""

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from daphne import cli
from daphne.access import AccessLogGenerator

# Daphne's modules, imported above, install Twisted's asyncio reactor: this is that one.
from twisted.internet import defer, reactor
from twisted.internet.interfaces import IListeningPort

from stepchange.redaction import redact_path, redact_websocket_path

APPLICATION = "stepchange.asgi:application"
PROBE_PATHS = frozenset({"/healthz", "/readyz"})

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("stepchange.access")


class RedactingAccessLog(AccessLogGenerator):  # type: ignore[misc]
    """Daphne's access log, with executor keys redacted, written through `logging` (so that
    LOG_FORMAT=json makes its lines JSON too); load balancers' probes only at DEBUG."""

    def __call__(self, protocol: str, action: str, details: dict[str, Any]) -> None:
        if "path" in details:
            redact = redact_websocket_path if protocol == "websocket" else redact_path
            details = {**details, "path": redact(details["path"])}
        self.level = logging.INFO
        if protocol == "http" and details.get("path") in PROBE_PATHS:
            self.level = logging.DEBUG
        super().__call__(protocol, action, details)

    def write_entry(
        self,
        host: str,
        date: Any,
        request: str,
        status: int | None = None,
        length: int | None = None,
        ident: str | None = None,
        user: str | None = None,
    ) -> None:
        # The time is the log line's own.
        access_logger.log(
            self.level,
            '%s %s %s "%s" %s %s',
            host,
            ident or "-",
            user or "-",
            request,
            status or "-",
            length or "-",
        )


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


def graceful_shutdown_on_sigterm() -> None:
    """Once the reactor runs (and has installed its own handlers), SIGTERM drains."""
    reactor.callWhenRunning(signal.signal, signal.SIGTERM, _on_sigterm)


_draining: list[asyncio.Task[None]] = []


def _on_sigterm(number: int, frame: Any) -> None:
    # A signal handler runs between two bytecodes of whatever ran: hand over to the loop.
    reactor.callFromThread(_drain_or_stop)


def _drain_or_stop() -> None:
    if _draining:
        logger.warning("A second SIGTERM: stopping now")
        reactor.stop()  # type: ignore[misc]
        return
    task = asyncio.ensure_future(drain(float(_grace_seconds())))
    task.add_done_callback(_stop_if_drain_failed)
    _draining.append(task)


def _stop_if_drain_failed(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("The drain failed; stopping now", exc_info=task.exception())
        reactor.stop()  # type: ignore[misc]


def _grace_seconds() -> int:
    from django.conf import settings

    return int(settings.SHUTDOWN_GRACE_SECONDS)


# How long the executors get to close, and the last answers to be sent, after the wait
# for in-flight requests: taken from the grace, not added to it.
CLOSING_SECONDS = 2.0


async def drain(grace: float) -> None:
    """Stop taking work, hand the executors to other processes, then stop the reactor."""
    from conductor import consumers, relay
    from stepchange import health

    deadline = time.monotonic() + grace
    health.drain_begin()
    logger.info("SIGTERM: draining (at most %g s)", grace)
    for reader in reactor.getReaders():  # type: ignore[misc]
        # Daphne's listening ports: no new connections from here on.
        if IListeningPort.providedBy(reader):
            reader.stopListening()
    await _until(
        lambda: relay.relays_in_flight() == 0 and consumers.requests_waiting() == 0,
        deadline - CLOSING_SECONDS,
    )
    sockets = consumers.executor_sockets_open()
    logger.info("SIGTERM: sending %d executor(s) elsewhere (close code 1000)", len(sockets))
    for consumer in sockets:
        await consumer.go_away()
    # Whatever still waits here on an executor of another process fails now, with a 502.
    relay.relays_abandon()
    await _until(
        lambda: not consumers.executor_sockets_open() and relay.relays_in_flight() == 0,
        deadline,
    )
    # The last answers leave before the reactor drops the connections.
    await asyncio.sleep(0.1)
    reactor.stop()  # type: ignore[misc]


async def _until(done: Any, deadline: float) -> None:
    # Polled: what it waits on is counted in several modules, none of which should know
    # about a shutdown.
    while not done() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)


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


METRICS_PORT_TAKEN = "METRICS_PORT {port} on {bind} cannot be opened: {reason}"


def metrics_listener_open(bind: str, port: int) -> socket.socket:
    """Bind the metrics port before the server starts, so that a port taken stops start-up
    with a message naming the setting. SO_REUSEPORT lets every StepChange process of the
    host (one user's processes only: Linux refuses others) bind the same port; the kernel
    hands each scrape to one of them, and each answers for all (multiprocess mode)."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind((bind, port))
        listener.listen(64)
    except OSError as exc:
        listener.close()
        reason = exc.strerror or str(exc)
        raise SystemExit(METRICS_PORT_TAKEN.format(port=port, bind=bind, reason=reason)) from None
    listener.setblocking(False)
    return listener


def metrics_listener_serve(listener: socket.socket) -> None:
    """Serve prometheus_client's WSGI application on `listener` from Twisted's reactor (the
    one Daphne runs): on its thread pool, stopped with the server. prometheus_client's own
    `start_http_server` binds its socket itself, without SO_REUSEPORT, so only one process
    of a host could serve the port."""
    from twisted.web.server import Site
    from twisted.web.wsgi import WSGIResource

    from stepchange.prometheus import wsgi_app

    # Twisted leaves these two constructors untyped.
    resource = WSGIResource(reactor, reactor.getThreadPool(), wsgi_app())  # type: ignore[no-untyped-call]
    site = Site(resource)  # type: ignore[no-untyped-call]
    reactor.adoptStreamPort(listener.fileno(), listener.family, site)
    # The reactor listens on a copy of the descriptor.
    listener.close()


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stepchange.settings")
    from django.conf import settings

    metrics_directory_prepare(settings.METRICS_MULTIPROC_DIR)
    if settings.METRICS_PORT:
        metrics_listener_serve(metrics_listener_open(settings.METRICS_BIND, settings.METRICS_PORT))

    arguments = daphne_arguments(
        sys.argv[1:] if argv is None else argv, settings.EXECUTOR_MAX_MESSAGE_BYTES
    )
    # Daphne's command line builds its access log from this name; ours redacts keys.
    cli.AccessLogGenerator = RedactingAccessLog
    background_with_the_reactor()
    graceful_shutdown_on_sigterm()
    cli.CommandLineInterface().run(arguments)


if __name__ == "__main__":
    main()
