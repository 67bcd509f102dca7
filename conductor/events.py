"""Live updates for console sockets: what changed, per application, as a small event.

Events carry no data a viewer could not see on the page anyway; the browser re-fetches
the affected part of the page, which applies permissions as usual.
"""

import time
from typing import Any

from channels.layers import get_channel_layer

# Request-log events are coalesced: a busy application relays hundreds of requests a
# second, and a console only needs to know that the log changed.
REQUEST_EVENT_INTERVAL_SECONDS = 1.0
_last_request_event: dict[int, float] = {}
_last_workflows_event: dict[int, float] = {}


# Every process's relay listens here to drop its cached routes when executors come and go.
REGISTRY_GROUP = "conductor.registry"


async def registry_changed() -> None:
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(REGISTRY_GROUP, {"type": "registry.changed"})


def group_for(application_id: int) -> str:
    return f"console.app.{application_id}"


async def announce(application_id: int, kind: str, **data: Any) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    await layer.group_send(
        group_for(application_id),
        {
            "type": "console.event",
            "event": {"kind": kind, "application_id": application_id, **data},
        },
    )


async def announce_request(application_id: int, *, changes_workflows: bool = False) -> None:
    """The request log changed ("requests": the log's pages listen); and, for a request that
    changes workflows (an action, not a read), the workflows did ("workflows": the lists
    and the dashboard listen, which would otherwise refresh on their own reads, each of
    them a request when an executor answers them)."""
    now = time.monotonic()
    if _due(_last_request_event, application_id, now):
        await announce(application_id, "requests")
    if changes_workflows and _due(_last_workflows_event, application_id, now):
        await announce(application_id, "workflows")


def _due(last: dict[int, float], application_id: int, now: float) -> bool:
    """Whether an application's event of this kind is due (none in the interval), noting it
    sent now if so."""
    if now - last.get(application_id, 0.0) < REQUEST_EVENT_INTERVAL_SECONDS:
        return False
    last[application_id] = now
    return True
