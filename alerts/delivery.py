"""The delivery loop: works through the outbox (`AlertDelivery`), sends each due message,
and on failure tries again later with exponential backoff. After MAX_ATTEMPTS a message
is marked failed, not dropped: it stays on its channel's page with its last error, and an
admin may send it again. Each row is claimed by a conditional update first, so with
several processes one of them sends it."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from alerts import channels
from alerts.models import AlertDelivery
from conductor import relay
from stepchange.asyncdb import db_async
from stepchange.prometheus import ALERT_DELIVERIES

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 12
MAX_BACKOFF_SECONDS = 3600
# A claimed row is left alone this long; a process that died while sending is overtaken.
CLAIM_SECONDS = 120
BATCH = 50

State = AlertDelivery.State


def backoff(attempts: int) -> timedelta:
    """How long to wait after the `attempts`-th failure: the base, doubled each time."""
    base = settings.ALERT_RETRY_BASE_SECONDS
    return timedelta(seconds=min(base * 2 ** max(attempts - 1, 0), MAX_BACKOFF_SECONDS))


def _claim_due(now: datetime) -> list[AlertDelivery]:
    due = list(
        AlertDelivery.objects.filter(state=State.PENDING, next_attempt_at__lte=now)
        .select_related("channel__application")
        .order_by("next_attempt_at", "id")[:BATCH]
    )
    claimed = []
    for delivery in due:
        taken = AlertDelivery.objects.filter(
            pk=delivery.pk, state=State.PENDING, next_attempt_at=delivery.next_attempt_at
        ).update(next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS))
        if taken:
            claimed.append(delivery)
    return claimed


def _record(delivery: AlertDelivery, error: str | None, now: datetime) -> None:
    _count(delivery, error)
    if error is None:
        AlertDelivery.objects.filter(pk=delivery.pk).update(
            state=State.DELIVERED,
            attempts=F("attempts") + 1,
            last_attempt_at=now,
            delivered_at=now,
            last_error="",
        )
        return
    attempts = delivery.attempts + 1
    gave_up = attempts >= MAX_ATTEMPTS
    AlertDelivery.objects.filter(pk=delivery.pk).update(
        state=State.FAILED if gave_up else State.PENDING,
        attempts=attempts,
        last_attempt_at=now,
        last_error=error,
        next_attempt_at=now + backoff(attempts),
    )
    log = logger.error if gave_up else logger.warning
    log(
        "Alert delivery %s to channel %s failed (attempt %s%s): %s",
        delivery.pk,
        delivery.channel_id,
        attempts,
        ", giving up" if gave_up else "",
        error,
    )


def _count(delivery: AlertDelivery, error: str | None) -> None:
    outcome = "delivered"
    if error is not None:
        outcome = "gave_up" if delivery.attempts + 1 >= MAX_ATTEMPTS else "failed"
    channel = delivery.channel
    labels = (channel.application.name, channel.kind, outcome)
    ALERT_DELIVERIES.labels(*labels).inc()


async def send_one(delivery: AlertDelivery) -> str | None:
    """Send one message; the error text, or None when it was taken."""
    channel = delivery.channel
    if not channel.enabled:
        return "The channel is disabled."
    try:
        await channels.send(channel, channel.application, delivery.message)
    except (channels.SendError, relay.RelayError) as exc:
        return str(exc) or type(exc).__name__
    except Exception as exc:
        logger.exception("Alert delivery %s failed unexpectedly", delivery.pk)
        return f"{type(exc).__name__}: {exc}"[: channels.ERROR_CHARS]
    return None


async def deliver_due(*, now: datetime | None = None) -> int:
    """Send every due message once; how many were sent."""
    sent = 0
    for delivery in await db_async(_claim_due)(now or timezone.now()):
        error = await send_one(delivery)
        await db_async(_record)(delivery, error, timezone.now())
        sent += error is None
    return sent


async def deliver_forever() -> None:
    """The delivery loop (a loop of `stepchange.background`)."""
    while True:
        await asyncio.sleep(settings.ALERT_DELIVERY_SECONDS)
        try:
            await deliver_due()
        except Exception:
            logger.exception("Alert delivery failed; it runs again shortly")
