"""Executor keys travel in the WebSocket path (`/websocket/<app>/<key>`): what hides them
from every log line, whatever shape the path has. Pure Python."""

import re

REDACTED = "[redacted]"
# A segment ends at a slash, or at a slash a client percent-encoded.
_SEPARATOR = re.compile(r"(/|%2f|\\)", re.IGNORECASE)
_QUERY = re.compile(r"[?#]")


def redact_path(path: str) -> str:
    """Every segment after the first `websocket` segment (any case) is redacted, but the
    application's name where a key still follows it: `/x/WebSocket/orders/k/` is logged as
    `/x/WebSocket/orders/[redacted]/`. The query and fragment are kept."""
    found = _QUERY.search(path)
    cut = found.start() if found else len(path)
    pieces = _SEPARATOR.split(path[:cut])
    segments = pieces[0::2]
    for i, segment in enumerate(segments):
        if segment.lower() == "websocket":
            after = range(i + 1, len(segments))
            keep = 1 if len([s for s in segments[i + 1 :] if s]) >= 2 else 0
            for j in list(after)[keep:]:
                if segments[j]:
                    segments[j] = REDACTED
            break
    pieces[0::2] = segments
    return "".join(pieces) + path[cut:]


def redact_websocket_path(path: str) -> str:
    """A WebSocket path as `redact_path` logs it; one with no `websocket` segment keeps only
    its first segment, as a key may be anywhere in it. Daphne reads a request target of
    `//websocket/<app>/<key>` as a host and the path `/<app>/<key>`."""
    redacted = redact_path(path)
    if "websocket" in (segment.lower() for segment in _SEPARATOR.split(redacted)):
        return redacted
    return "/" + _SEPARATOR.split(path.lstrip("/"), maxsplit=1)[0] + "/..."
