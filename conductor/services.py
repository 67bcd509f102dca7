"""Operator decisions about poison workflows: cancel one, or let its recovery go ahead."""

from typing import Any

from django.http import Http404, HttpRequest
from django.utils import timezone

from conductor import relay
from conductor.models import DATABASE_PATH, PoisonWorkflow
from conductor.protocol import CancelRequest
from stepchange.asyncdb import db_async
from stepchange.audit import Result, audit_record
from stepchange.models import Application

NOT_POISON = "Workflow {workflow_id} is not held as poison in {app}."


def _held(
    application: Application, workflow_id: str, *, action: str, request: HttpRequest
) -> PoisonWorkflow:
    poison = PoisonWorkflow.objects.filter(
        application=application, workflow_id=workflow_id, resolved_at__isnull=True
    ).first()
    if poison is None:
        missing = NOT_POISON.format(workflow_id=workflow_id, app=application.name)
        audit_record(
            action=action,
            request=request,
            application=application,
            target=f"workflow {workflow_id}",
            result=Result.FAILED,
            detail=missing,
        )
        raise Http404(missing)
    return poison


def _resolve(
    poison: PoisonWorkflow, *, resolution: str, request: HttpRequest, reason: str, **audit: Any
) -> None:
    PoisonWorkflow.objects.filter(pk=poison.pk).update(
        resolved_at=timezone.now(), resolution=resolution
    )
    audit_record(
        action=f"poison.{resolution}",
        request=request,
        application=poison.application,
        target=f"workflow {poison.workflow_id}",
        reason=reason,
        parameters={"executors_killed": poison.executors_killed},
        **audit,
    )


async def poison_cancel(
    *, application: Application, workflow_id: str, request: HttpRequest, reason: str = ""
) -> None:
    """Cancel a poison workflow through a live executor, or, with none connected and a
    system database registered, in the system database (a database-managed application's
    held suspect); the held recovery then resumes."""
    poison = await db_async(_held)(
        application, workflow_id, action="poison.cancel", request=request
    )
    if await _on_the_database(application):
        # workflows.actions imports this module: imported here, once both are loaded.
        from workflows.actions import Action, Parameters, workflow_act

        # Audited as workflow.cancel with "path": "database"; clearing the hold is audited
        # as poison.cancel (poison_holds_clear).
        await workflow_act(
            application=application,
            action=Action.CANCEL,
            workflow_id=workflow_id,
            parameters=Parameters(reason=reason),
            actor=request.user,
            request=request,
            source="console",
        )
        return
    actor = await db_async(lambda: request.user.get_username())()
    message = CancelRequest(workflow_id=workflow_id)
    try:
        await relay.request(application, message, actor_name=actor, source="console")
    except relay.RelayError as exc:
        await db_async(audit_record)(
            action="poison.cancel",
            request=request,
            application=application,
            target=f"workflow {workflow_id}",
            result=Result.FAILED,
            detail=str(exc),
            reason=reason,
            request_id=message.request_id,
        )
        raise
    await db_async(_resolve)(
        poison, resolution="cancel", request=request, reason=reason, request_id=message.request_id
    )


async def _on_the_database(application: Application) -> bool:
    """Whether a cancel goes into the system database: the path every action takes
    (`workflows.actions.action_path`), with no executor a request can reach."""
    from workflows.actions import acting_executors, action_path

    return action_path(application, await acting_executors(application)) == DATABASE_PATH


def poison_dismiss(
    *, application: Application, workflow_id: str, request: HttpRequest, reason: str = ""
) -> None:
    """Not poison after all: let the held recovery hand it to an executor again."""
    poison = _held(application, workflow_id, action="poison.dismiss", request=request)
    _resolve(poison, resolution="dismiss", request=request, reason=reason)


def poison_holds_clear(
    *,
    application: Application,
    workflow_ids: list[str],
    action: str,
    actor: Any = None,
    actor_name: str = "",
    request: HttpRequest | None = None,
    request_id: str = "",
) -> list[str]:
    """A held workflow that was cancelled or deleted (console or API, one or in bulk) is no
    longer held: its recovery may go ahead. Each cleared hold is audited; returns their ids."""
    held = list(
        PoisonWorkflow.objects.filter(
            application=application, workflow_id__in=workflow_ids, resolved_at__isnull=True
        )
    )
    for poison in held:
        PoisonWorkflow.objects.filter(pk=poison.pk, resolved_at__isnull=True).update(
            resolved_at=timezone.now(), resolution=action
        )
        audit_record(
            action=f"poison.{action}",
            actor=actor,
            actor_name=actor_name,
            request=request,
            application=application,
            target=f"workflow {poison.workflow_id}",
            detail=f"The workflow's {action} cleared its hold.",
            parameters={"executors_killed": poison.executors_killed},
            request_id=request_id,
        )
    return [poison.workflow_id for poison in held]
