"""The executor registry: who is connected, through which consumer, and since when.

Plain synchronous functions over the database; the consumer calls them through
`stepchange.asyncdb.db_async`. Every change of an executor's state is announced to console
sockets by `conductor.events`.
"""

from typing import Any

from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from conductor.models import Executor, ExecutorConnection
from conductor.protocol import ExecutorInfoResponse
from stepchange.models import Application


def executor_register(
    *,
    application: Application,
    info: ExecutorInfoResponse,
    channel_name: str,
    remote_address: str,
) -> tuple[Executor, ExecutorConnection, str]:
    """Record an executor that answered `executor_info`.

    Returns the executor, its new connection, and the channel of a consumer that held the
    same executor id before (empty if none): a reconnect replaces the old connection.
    """
    now = timezone.now()
    fields: dict[str, Any] = {
        "application_version": info.application_version or "",
        "hostname": info.hostname or "",
        "language": info.language or "",
        "dbos_version": info.dbos_version or "",
        "metadata": info.executor_metadata,
        "remote_address": remote_address,
        "channel_name": channel_name,
        "state": Executor.State.CONNECTED,
        "connected_at": now,
        "last_seen_at": now,
        "disconnected_at": None,
    }
    with transaction.atomic():
        executor = (
            Executor.objects.select_for_update()
            .filter(application=application, executor_id=info.executor_id)
            .first()
        )
        previous_channel = ""
        if executor is None:
            executor = Executor.objects.create(
                application=application,
                executor_id=info.executor_id or "",
                first_connected_at=now,
                **fields,
            )
        else:
            if executor.state == Executor.State.CONNECTED:
                previous_channel = executor.channel_name
            for name, value in fields.items():
                setattr(executor, name, value)
            executor.save()
            ExecutorConnection.objects.filter(
                executor=executor, disconnected_at__isnull=True
            ).update(disconnected_at=now, ended_by="replaced by a new connection")
        connection = ExecutorConnection.objects.create(
            executor=executor, remote_address=remote_address, connected_at=now
        )
    return executor, connection, previous_channel


# How a connection ended when its StepChange process shut down and sent the executor
# elsewhere (a normal close): not a death, and the executor is back within seconds.
ENDED_BY_SHUTDOWN = "StepChange shut down"


def executor_disconnected(
    *,
    executor: Executor,
    connection: ExecutorConnection,
    channel_name: str,
    close_code: int | None,
    ended_by: str = "closed",
) -> bool:
    """Mark the executor gone, unless a newer connection of it has taken over already."""
    now = timezone.now()
    ExecutorConnection.objects.filter(pk=connection.pk, disconnected_at__isnull=True).update(
        disconnected_at=now, close_code=close_code, ended_by=ended_by
    )
    updated = Executor.objects.filter(
        pk=executor.pk, channel_name=channel_name, state=Executor.State.CONNECTED
    ).update(state=Executor.State.DISCONNECTED, disconnected_at=now, last_seen_at=now)
    return updated == 1


def executors_seen(*, channel_names: list[str]) -> int:
    """The heartbeat: mark the executors held by these consumers as seen now."""
    return Executor.objects.filter(
        channel_name__in=channel_names, state=Executor.State.CONNECTED
    ).update(last_seen_at=timezone.now())


class NoExecutorError(Exception):
    """No live executor can take the request (the API answers 503)."""


NO_EXECUTOR = "No executor of {app} is connected."
NO_SUCH_EXECUTOR = "Executor {executor_id} of {app} is not connected."
NO_LATEST_EXECUTOR = "No executor of {app} runs its latest application version {version}."


def live_executors(application: Application) -> list[Executor]:
    """The application's live executors, the most recently connected first."""
    return list(Executor.objects.live().filter(application=application).order_by("-connected_at"))


def executor_pick(
    *, application: Application, executor_id: str | None = None, latest_version: bool = False
) -> Executor:
    """Choose a live executor: the named one, else one on the newest version when asked,
    else the most recently connected."""
    live = Executor.objects.live().filter(application=application)
    if executor_id:
        chosen = live.filter(executor_id=executor_id).first()
        if chosen is None:
            raise NoExecutorError(
                NO_SUCH_EXECUTOR.format(executor_id=executor_id, app=application.name)
            )
        return chosen
    if latest_version:
        newest = (
            Executor.objects.filter(application=application)
            .exclude(application_version="")
            .order_by("-first_connected_at")
            .values_list("application_version", flat=True)
            .first()
        )
        chosen = live.filter(application_version=newest).order_by("-connected_at").first()
        if chosen is None:
            raise NoExecutorError(
                NO_LATEST_EXECUTOR.format(app=application.name, version=newest or "?")
            )
        return chosen
    chosen = live.order_by("-connected_at").first()
    if chosen is None:
        raise NoExecutorError(NO_EXECUTOR.format(app=application.name))
    return chosen


def stale_executors_release(*, application: Application) -> int:
    """Executors still marked connected whose heartbeat stopped (their StepChange process
    died) are counted as disconnected from their last beat."""
    stale = Executor.objects.filter(
        application=application, state=Executor.State.CONNECTED
    ).exclude(Q(pk__in=Executor.objects.live().values("pk")))
    count = 0
    for executor in stale:
        count += Executor.objects.filter(
            pk=executor.pk, state=Executor.State.CONNECTED, last_seen_at=executor.last_seen_at
        ).update(state=Executor.State.DISCONNECTED, disconnected_at=executor.last_seen_at)
    return count


def with_live_executor_counts(applications: QuerySet[Application]) -> QuerySet[Application]:
    """Annotate `live_executors`: how many executors each has connected, in one query."""
    live = Executor.objects.live()
    return applications.annotate(live_executors=Count("executors", filter=Q(executors__in=live)))


def live_versions(application: Application) -> list[str]:
    """Application versions a connected executor runs, newest connection first."""
    executors = live_executors(application)
    return list(dict.fromkeys(e.application_version for e in executors if e.application_version))
