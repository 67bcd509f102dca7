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
from daphne.access import AccessLogGenerator

# Daphne's modules, imported above, install Twisted's asyncio reactor: this is that one.
from twisted.internet import defer, reactor

from stepchange.redaction import redact_path, redact_websocket_path

APPLICATION = "stepchange.asgi:application"


class RedactingAccessLog(AccessLogGenerator):  # type: ignore[misc]
    def __call__(self, protocol: str, action: str, details: dict[str, Any]) -> None:
        if "path" in details:
            redact = redact_websocket_path if protocol == "websocket" else redact_path
            details = {**details, "path": redact(details["path"])}
        super().__call__(protocol, action, details)


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
    background_with_the_reactor()
    cli.CommandLineInterface().run(arguments)


if __name__ == "__main__":
    main()
