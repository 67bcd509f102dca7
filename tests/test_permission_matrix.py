"""The permission matrix: every route that changes something, tried by every persona.

Someone not signed in, a stranger (signed in, no role), an operator limited to another
application, a viewer, an operator and an admin each try every mutating operation of the
API (read from its OpenAPI document) and every console form (read from the URL patterns).
Each attempt gets the status its role earns and leaves exactly one audit record (the rows
that record nothing once allowed say so, and a known hole is a strict xfail). No executor
is connected, so an action that gets past the check fails at the relay, audited as failed.

The last stories check that the console hides what a role cannot do.
"""

import inspect
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import Group, User
from django.db.models import Max
from django.http.response import HttpResponseBase
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from alerts.models import AlertChannel, AlertDelivery, AlertRule
from conductor.models import Executor, PoisonWorkflow
from forks.models import EditedFork
from stepchange import views as core_views
from stepchange.access import APP_NOT_FOUND, NOT_ALLOWED
from stepchange.api import conductor_v2
from stepchange.models import ApiKey, Application, AuditRecord, SavedView
from stepchange.roles import PERM_ADMINISTER, PERM_INSPECT, PERM_OPERATE
from stepchange.services import api_token_create
from stepchange.urls import api
from tests.conftest import make_app, make_user, signed_in
from tests.sdk_fixtures import by_role, registered
from workflows import jobs
from workflows import views as workflow_views
from workflows.models import BulkJob
from workflows.sources import Listing, ListQuery, Workflow

APP = "orders"
WORKFLOW = "wf-1"
GONE_EXECUTOR = "exec-gone"
POISON = "wf-poison"

ANONYMOUS = "anonymous"
STRANGER = "sam"
OTHER_APP_OPERATOR = "oona"
VIEWER = "vera"
OPERATOR = "otto"
ADMIN = "ada"
PERSONAS = [ANONYMOUS, STRANGER, OTHER_APP_OPERATOR, VIEWER, OPERATOR, ADMIN]
# What each persona holds on `orders`; the two who may not see it hold nothing there.
HOLDS = {
    VIEWER: {PERM_INSPECT},
    OPERATOR: {PERM_INSPECT, PERM_OPERATE},
    ADMIN: {PERM_INSPECT, PERM_OPERATE, PERM_ADMINISTER},
}

UNSAFE = {"post", "put", "patch", "delete"}
LOGIN = "/accounts/login/"
OK, FAILED, DENIED = "ok", "failed", "denied"


@dataclass(frozen=True)
class Route:
    """One mutating route: what it needs, and what happens once past the permission check.

    `audit` is the action recorded past the check: with no executor connected, actions are
    recorded as failed. None means nothing is recorded when the attempt is allowed."""

    need: str
    status: int
    audit: str | None
    result: str = OK
    body: dict[str, Any] = field(default_factory=dict)
    # Console routes: the URL's arguments, `{placeholders}` filled from World.values().
    kwargs: dict[str, str] = field(default_factory=dict)
    # A known gap in the audit of allowed attempts: those cells are expected to fail.
    hole: str = ""
    # False for a route about no application (API keys, roles): whoever lacks the
    # permission gets a 403, not the 404 that hides an application.
    on_app: bool = True


REASON = {"reason": "permission matrix"}
BULK_BODY = {"action": "cancel", "workflow_ids": [WORKFLOW], **REASON}
ON_WORKFLOW = "/api/v1/apps/{app}/workflows/{workflow_id}"
ON_SCHEDULE = "/api/v1/apps/{app}/schedules/{schedule_name}"
ON_RULE = "/api/v1/apps/{app}/alert-rules/{rule_id}"
ON_CHANNEL = "/api/v1/apps/{app}/alert-channels/{channel_id}"
A_RULE = {"name": "matrix rule", "kind": "poison", "parameters": {}}
A_RULE_FORM = {"name": "matrix rule", "kind": "poison", "repeat_seconds": "0"}
A_CHANNEL = {"name": "matrix channel", "kind": "slack", "url": "https://hooks.example.com/x"}

API_ROUTES: dict[tuple[str, str], Route] = {
    ("POST", "/api/v1/apps/{app}/recovery"): Route(
        PERM_OPERATE, 200, "executor.recovery", body={"executor_ids": [GONE_EXECUTOR]}
    ),
    # No system database registered for the matrix's application: nothing to re-enqueue in.
    ("POST", "/api/v1/apps/{app}/database-recovery"): Route(
        PERM_OPERATE,
        503,
        "executor.recovery",
        FAILED,
        body={"executor_id": GONE_EXECUTOR, **REASON},
    ),
    ("PUT", "/api/v1/apps/{app}/retention"): Route(
        PERM_ADMINISTER,
        200,
        "application.update",
        body={"retention_days": 30, "retention_rows": None, "retention_timeout_hours": None},
    ),
    ("POST", "/api/v1/apps/{app}/retention/send"): Route(
        PERM_ADMINISTER, 503, "application.retention", FAILED
    ),
    ("PUT", "/api/v1/apps/{app}/liveness"): Route(
        PERM_ADMINISTER,
        200,
        "application.update",
        body={"liveness_url_template": "http://{executor_id}:8000/healthz"},
    ),
    ("POST", f"{ON_WORKFLOW}/cancel"): Route(PERM_OPERATE, 503, "workflow.cancel", FAILED, REASON),
    # The matrix's workflow is held as poison too: no executor to cancel it through.
    ("POST", "/api/v1/apps/{app}/poison/{workflow_id}/cancel"): Route(
        PERM_OPERATE, 503, "poison.cancel", FAILED, REASON
    ),
    ("POST", "/api/v1/apps/{app}/poison/{workflow_id}/dismiss"): Route(
        PERM_OPERATE, 204, "poison.dismiss", body=REASON
    ),
    ("POST", f"{ON_WORKFLOW}/resume"): Route(PERM_OPERATE, 503, "workflow.resume", FAILED, REASON),
    ("POST", f"{ON_WORKFLOW}/restart"): Route(
        PERM_OPERATE, 503, "workflow.restart", FAILED, REASON
    ),
    ("POST", f"{ON_WORKFLOW}/fork"): Route(
        PERM_OPERATE, 503, "workflow.fork", FAILED, {"start_step": 1, **REASON}
    ),
    ("POST", f"{ON_WORKFLOW}/fork-from-failure"): Route(
        PERM_OPERATE, 503, "workflow.fork_from_failure", FAILED, REASON
    ),
    ("POST", f"{ON_WORKFLOW}/rewind"): Route(PERM_OPERATE, 503, "workflow.rewind", FAILED, REASON),
    ("POST", f"{ON_WORKFLOW}/delete"): Route(PERM_OPERATE, 503, "workflow.delete", FAILED, REASON),
    # A read that takes its selection as a body: allowed, it sends and records nothing.
    ("POST", "/api/v1/apps/{app}/bulk-actions/preview"): Route(
        PERM_OPERATE, 200, None, body=BULK_BODY
    ),
    ("POST", "/api/v1/apps/{app}/bulk-actions"): Route(
        PERM_OPERATE, 201, "bulk.create", body=BULK_BODY
    ),
    ("POST", "/api/v1/apps/{app}/bulk-actions/{job_id}/retry"): Route(
        PERM_OPERATE, 200, "bulk.retry"
    ),
    # No executor to read the versions through or to set one latest: audited as failed.
    ("POST", "/api/v1/apps/{app}/versions/latest"): Route(
        PERM_OPERATE,
        503,
        "application.version.set_latest",
        FAILED,
        {"version_name": "v2", **REASON},
    ),
    # Without a system database a workflow cannot be started: refused, audited as failed.
    ("POST", "/api/v1/apps/{app}/workflows"): Route(
        PERM_OPERATE, 503, "workflow.start", FAILED, {"workflow_name": "greet"}
    ),
    # Without a system database an edited fork cannot be checked, staged or written.
    ("POST", f"{ON_WORKFLOW}/edited-forks"): Route(
        PERM_OPERATE,
        503,
        "edited_fork.stage",
        FAILED,
        {"start_step": 1, **REASON},
    ),
    ("POST", "/api/v1/apps/{app}/edited-forks/{fork_id}/approve"): Route(
        PERM_OPERATE, 200, "edited_fork.approve"
    ),
    ("POST", "/api/v1/apps/{app}/edited-forks/{fork_id}/run"): Route(
        PERM_OPERATE, 503, "edited_fork.run", FAILED
    ),
    ("POST", "/api/v1/apps/{app}/edited-forks/{fork_id}/discard"): Route(
        PERM_OPERATE, 200, "edited_fork.discard"
    ),
    # An empty body is not an export file: refused, nothing written, recorded as failed.
    ("POST", "/api/v1/apps/{app}/imports"): Route(PERM_ADMINISTER, 400, "workflow.import", FAILED),
    # No executor to read the schedule through, nor to act through: recorded as failed.
    ("POST", f"{ON_SCHEDULE}/pause"): Route(PERM_OPERATE, 503, "schedule.pause", FAILED, REASON),
    ("POST", f"{ON_SCHEDULE}/resume"): Route(PERM_OPERATE, 503, "schedule.resume", FAILED, REASON),
    ("POST", f"{ON_SCHEDULE}/trigger"): Route(
        PERM_OPERATE, 503, "schedule.trigger", FAILED, REASON
    ),
    ("POST", f"{ON_SCHEDULE}/backfill"): Route(
        PERM_OPERATE,
        503,
        "schedule.backfill",
        FAILED,
        {"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z", **REASON},
    ),
    ("POST", "/api/v1/apps/{app}/schedule-bulk-actions"): Route(
        PERM_OPERATE, 503, "schedule.bulk_pause", FAILED, {"action": "pause", **REASON}
    ),
    ("POST", "/api/v1/apps/{app}/alert-rules"): Route(
        PERM_ADMINISTER, 201, "alert_rule.create", body=A_RULE
    ),
    ("PUT", ON_RULE): Route(PERM_ADMINISTER, 200, "alert_rule.update", body=A_RULE),
    ("DELETE", ON_RULE): Route(PERM_ADMINISTER, 204, "alert_rule.delete"),
    ("POST", f"{ON_RULE}/mute"): Route(
        PERM_ADMINISTER, 200, "alert_rule.mute", body={"until": None}
    ),
    ("POST", "/api/v1/apps/{app}/alert-channels"): Route(
        PERM_ADMINISTER, 201, "alert_channel.create", body=A_CHANNEL
    ),
    ("PUT", ON_CHANNEL): Route(PERM_ADMINISTER, 200, "alert_channel.update", body=A_CHANNEL),
    ("DELETE", ON_CHANNEL): Route(PERM_ADMINISTER, 204, "alert_channel.delete"),
    ("POST", f"{ON_CHANNEL}/test"): Route(PERM_ADMINISTER, 202, "alert_channel.test"),
    ("POST", "/api/v1/api-keys"): Route(
        PERM_ADMINISTER,
        201,
        "api_key.create",
        body={"name": "matrix key", "applications": [APP], "expires_at": None},
        on_app=False,
    ),
    ("POST", "/api/v1/api-keys/{key_id}/revoke"): Route(
        PERM_ADMINISTER, 200, "api_key.revoke", on_app=False
    ),
}

# The Conductor-compatible API (stepchange/api/conductor_v2.py): bearer tokens only. A bulk
# action answers 202 at once here (no job runner runs): the job is made, and audited.
ON_CONDUCTOR = "/conductor/v2/orgs/{org}/apps/{app}"
ON_CONDUCTOR_WORKFLOW = f"{ON_CONDUCTOR}/workflows/{{workflow_id}}"
ON_CONDUCTOR_SCHEDULE = f"{ON_CONDUCTOR}/schedules/{{schedule_name}}"
CONDUCTOR_BULK = {"workflowIds": [WORKFLOW]}
CONDUCTOR_ROUTES: dict[tuple[str, str], Route] = {
    ("POST", f"{ON_CONDUCTOR_WORKFLOW}/cancel"): Route(
        PERM_OPERATE, 503, "workflow.cancel", FAILED
    ),
    ("POST", f"{ON_CONDUCTOR_WORKFLOW}/resume"): Route(
        PERM_OPERATE, 503, "workflow.resume", FAILED
    ),
    ("POST", f"{ON_CONDUCTOR_WORKFLOW}/fork"): Route(
        PERM_OPERATE, 503, "workflow.fork", FAILED, {"startStep": 1}
    ),
    ("DELETE", ON_CONDUCTOR_WORKFLOW): Route(PERM_OPERATE, 503, "workflow.delete", FAILED),
    ("POST", f"{ON_CONDUCTOR}/workflows/bulk-cancel"): Route(
        PERM_OPERATE, 202, "bulk.create", body=CONDUCTOR_BULK
    ),
    ("POST", f"{ON_CONDUCTOR}/workflows/bulk-resume"): Route(
        PERM_OPERATE, 202, "bulk.create", body=CONDUCTOR_BULK
    ),
    ("POST", f"{ON_CONDUCTOR}/workflows/bulk-delete"): Route(
        PERM_OPERATE, 202, "bulk.create", body=CONDUCTOR_BULK
    ),
    ("POST", f"{ON_CONDUCTOR}/workflows/bulk-fork-from-failure"): Route(
        PERM_OPERATE, 202, "bulk.create", body={**CONDUCTOR_BULK, "fromLastFailure": True}
    ),
    # A read that takes its filters as a body: allowed, nothing recorded. No executor and
    # no system database to read through: 503.
    ("POST", f"{ON_CONDUCTOR}/workflows/search"): Route(PERM_INSPECT, 503, None),
    ("POST", f"{ON_CONDUCTOR}/workflows/aggregates"): Route(
        PERM_INSPECT, 503, None, body={"groupByStatus": True}
    ),
    ("POST", f"{ON_CONDUCTOR_SCHEDULE}/pause"): Route(PERM_OPERATE, 503, "schedule.pause", FAILED),
    ("POST", f"{ON_CONDUCTOR_SCHEDULE}/resume"): Route(
        PERM_OPERATE, 503, "schedule.resume", FAILED
    ),
    ("POST", f"{ON_CONDUCTOR_SCHEDULE}/trigger"): Route(
        PERM_OPERATE, 503, "schedule.trigger", FAILED
    ),
    ("PATCH", f"{ON_CONDUCTOR}/versions/latest"): Route(
        PERM_OPERATE, 503, "application.version.set_latest", FAILED, {"versionName": "v2"}
    ),
}
# A workflow named like a fixed route (`search`, `bulk-cancel`, ...) is deleted there.
CONDUCTOR_ROUTES |= {
    ("DELETE", f"{ON_CONDUCTOR}/workflows/{name}"): Route(
        PERM_OPERATE, 503, "workflow.delete", FAILED
    )
    for name in conductor_v2.FIXED_WORKFLOW_ROUTES
}

ON_APP = {"app_name": "{app}"}
CONSOLE_ROUTES: dict[str, Route] = {
    # Saved views are the viewer's own list filters: any role may keep them (sharing one
    # takes an operator: tests/workflows/test_saved_views.py).
    "save-view": Route(
        PERM_INSPECT, 302, "saved_view.create", body={"name": "failed", "query": "status=ERROR"}
    ),
    "delete-view": Route(
        PERM_INSPECT, 302, "saved_view.delete", kwargs={**ON_APP, "view_id": "{view_id}"}
    ),
    # The list's columns are the caller's own preference: any role, nothing to audit.
    "list-columns": Route(PERM_INSPECT, 302, None, body={"columns": ["id", "created"]}),
    "workflow-action": Route(
        PERM_OPERATE,
        302,
        "workflow.cancel",
        FAILED,
        REASON,
        {**ON_APP, "workflow_id": "{workflow_id}", "action": "cancel"},
    ),
    "bulk-new": Route(
        PERM_OPERATE,
        302,
        "bulk.create",
        body={"action": "cancel", "scope": "selected", "ids": [WORKFLOW], **REASON},
    ),
    "version-set-latest": Route(
        PERM_OPERATE,
        302,
        "application.version.set_latest",
        FAILED,
        {"version_name": "v2", **REASON},
    ),
    "bulk-job-retry": Route(
        PERM_OPERATE, 302, "bulk.retry", kwargs={**ON_APP, "job_id": "{job_id}"}
    ),
    "executor-recover": Route(
        PERM_OPERATE,
        302,
        "executor.recovery",
        kwargs={**ON_APP, "executor_id": "{executor_id}"},
    ),
    # No system database registered: the recovery through it is refused, and recorded.
    "database-recovery": Route(
        PERM_OPERATE,
        503,
        "executor.recovery",
        FAILED,
        {"executor_id": GONE_EXECUTOR, **REASON},
    ),
    "poison-action": Route(
        PERM_OPERATE,
        302,
        "poison.dismiss",
        body=REASON,
        kwargs={**ON_APP, "workflow_id": "{poison}", "action": "dismiss"},
    ),
    "retention": Route(PERM_ADMINISTER, 302, "application.update", body={"retention_days": "30"}),
    # Without a system database the editor cannot read its source: the page says so.
    "edit-fork": Route(
        PERM_OPERATE,
        503,
        "edited_fork.stage",
        FAILED,
        {"start_step": "1", **REASON},
        {**ON_APP, "workflow_id": "{workflow_id}"},
    ),
    # Without a system database the start form says why it cannot start one.
    "start-workflow": Route(
        PERM_OPERATE, 503, "workflow.start", FAILED, {"workflow_name": "greet", "args": "[]"}
    ),
    "schedule-action": Route(
        PERM_OPERATE, 302, "schedule.pause", FAILED, {"name": "nightly", "action": "pause"}
    ),
    "schedule-backfill": Route(
        PERM_OPERATE,
        302,
        "schedule.backfill",
        FAILED,
        {"name": "nightly", "start": "2026-01-01T00:00", "end": "2026-01-02T00:00"},
    ),
    "schedules-bulk": Route(
        PERM_OPERATE, 302, "schedule.bulk_resume", FAILED, {"action": "resume"}
    ),
    # No file uploaded: the form says so; nothing to import, nothing recorded.
    "workflow-import": Route(PERM_ADMINISTER, 400, None),
    "edited-fork-act": Route(
        PERM_OPERATE,
        302,
        "edited_fork.approve",
        kwargs={**ON_APP, "fork_id": "{fork_id}", "verb": "approve"},
    ),
    "alert-rules": Route(PERM_ADMINISTER, 302, "alert_rule.create", body=A_RULE_FORM),
    "alert-rule": Route(
        PERM_ADMINISTER,
        302,
        "alert_rule.update",
        body=A_RULE_FORM,
        kwargs={**ON_APP, "rule_id": "{rule_id}"},
    ),
    "alert-rule-mute": Route(
        PERM_ADMINISTER,
        302,
        "alert_rule.mute",
        body={"until": ""},
        kwargs={**ON_APP, "rule_id": "{rule_id}"},
    ),
    "alert-rule-delete": Route(
        PERM_ADMINISTER, 302, "alert_rule.delete", kwargs={**ON_APP, "rule_id": "{rule_id}"}
    ),
    "alert-channels": Route(PERM_ADMINISTER, 302, "alert_channel.create", body=A_CHANNEL),
    "alert-channel": Route(
        PERM_ADMINISTER,
        302,
        "alert_channel.update",
        body=A_CHANNEL,
        kwargs={**ON_APP, "channel_id": "{channel_id}"},
    ),
    "alert-channel-test": Route(
        PERM_ADMINISTER,
        302,
        "alert_channel.test",
        kwargs={**ON_APP, "channel_id": "{channel_id}"},
    ),
    "alert-delivery-retry": Route(
        PERM_ADMINISTER,
        302,
        "alert_delivery.retry",
        kwargs={**ON_APP, "delivery_id": "{delivery_id}"},
    ),
    # The page shows the new key once: 200, not a redirect.
    "api-keys": Route(
        PERM_ADMINISTER,
        200,
        "api_key.create",
        body={"name": "matrix key", "owner": "{owner_id}", "applications": "{app_id}"},
        kwargs={},
        on_app=False,
    ),
    "api-key-revoke": Route(
        PERM_ADMINISTER, 302, "api_key.revoke", kwargs={"key_id": "{key_id}"}, on_app=False
    ),
    "roles": Route(
        PERM_ADMINISTER,
        302,
        "role.create",
        body={"name": "matrix role", "permissions": PERM_OPERATE},
        kwargs={},
        on_app=False,
    ),
    "role": Route(
        PERM_ADMINISTER,
        302,
        "role.update",
        body={"name": "renamed role", "permissions": PERM_OPERATE},
        kwargs={"role_id": "{role_id}"},
        on_app=False,
    ),
    "role-delete": Route(
        PERM_ADMINISTER, 302, "role.delete", kwargs={"role_id": "{role_id}"}, on_app=False
    ),
}
# Mutating console routes left out, and why.
NOT_IN_MATRIX = {
    "login": "signing in is for anyone; it audits auth.login and auth.login_failed itself",
    "logout": "signing out is for anyone; it audits auth.logout itself",
    "password_change": "about the caller's own account, not an application; audited",
    "tokens": "about the caller's own API tokens, not an application; audited",
    "token-revoke": "revokes one of the caller's own tokens (404 for another's); audited",
    "audit-export": "the audit log's export, for admins, not about one application; audited "
    "(tests/stepchange/test_audit_export.py)",
    "favicon": "a redirect to a static file, GET and HEAD only; it changes nothing",
    "export-open": "opens an export file in the offline viewer, for the caller alone and "
    "under no application: any signed-in user; audited (tests/forks/test_offline_viewer.py)",
}
# Whole URL namespaces left out, and why.
NAMESPACES_NOT_IN_MATRIX = {
    "admin": "Django's admin site checks its own model permissions (StepChangeAdminSite)",
    "api": "the API's operations are walked from its OpenAPI document instead",
    "conductor-api": "the Conductor-compatible API's operations are walked from its own "
    "OpenAPI document instead (CONDUCTOR_ROUTES)",
}


@pytest.fixture(autouse=True)
def _bulk_jobs_select_one_workflow_and_stay_queued(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bulk selection lists one failed workflow, as a system database would (without
    one, no executor to list through: 503, unaudited); a job made is recorded, not run (no
    job runner runs here: nothing starts the background work)."""

    async def one_failed_workflow(application: Application) -> Any:
        return _OneFailedWorkflow()

    monkeypatch.setattr(jobs, "source_for", one_failed_workflow)


class _OneFailedWorkflow:
    """A source with one failed workflow in it."""

    async def list(self, query: ListQuery, *, actor: str = "") -> Listing[Workflow]:
        return Listing([Workflow(WORKFLOW, status="ERROR")], None, "stub")

    async def get(self, workflow_id: str, *, actor: str = "") -> Workflow | None:
        return Workflow(WORKFLOW, status="ERROR") if workflow_id == WORKFLOW else None


@dataclass
class World:
    """`orders` and what its routes act on, another application, and the personas."""

    orders: Application
    job: BulkJob
    fork: EditedFork
    users: dict[str, User]

    def client(self, persona: str) -> Client:
        return Client() if persona == ANONYMOUS else signed_in(self.users[persona])

    def values(self, persona: str) -> dict[str, str]:
        """What fills the routes' path parameters, for this persona."""
        # A saved view can only be deleted by its owner: each persona tries its own.
        owner = self.users.get(persona, self.users[ADMIN])
        view = SavedView.objects.create(application=self.orders, owner=owner, name="mine")
        # Each persona acts on a rule, a channel and a failed message of its own.
        rule = AlertRule.objects.create(application=self.orders, name=persona, kind="poison")
        channel = AlertChannel.objects.create(
            application=self.orders, name=persona, kind="slack", url="https://h.example.com/a"
        )
        delivery = AlertDelivery.objects.create(channel=channel, event="test", state="failed")
        # A key of the admin's own, and a role of each persona's to change or delete.
        admin = self.users[ADMIN]
        key = ApiKey.objects.create(
            name=persona, owner=admin, prefix="sck_x", key_hash=persona, all_applications=True
        )
        role = Group.objects.create(name=f"role of {persona}")
        return {
            "key_id": str(key.pk),
            "role_id": str(role.pk),
            "owner_id": str(admin.pk),
            "app_id": str(self.orders.pk),
            "rule_id": str(rule.pk),
            "channel_id": str(channel.pk),
            "delivery_id": str(delivery.pk),
            "app": APP,
            "workflow_id": WORKFLOW,
            "job_id": str(self.job.pk),
            "fork_id": str(self.fork.pk),
            "executor_id": GONE_EXECUTOR,
            "poison": POISON,
            "view_id": str(view.pk),
            "schedule_name": "nightly",
        }


@pytest.fixture
def world(db: None) -> World:
    # A rule, so that sending retention reaches the (absent) executors.
    orders = make_app(name=APP, retention_days=30)
    billing = make_app(name="billing")
    Executor.objects.create(
        application=orders,
        executor_id=GONE_EXECUTOR,
        state=Executor.State.DISCONNECTED,
        application_version="v1",
        disconnected_at=timezone.now(),
    )
    PoisonWorkflow.objects.create(
        application=orders, workflow_id=WORKFLOW, executors_killed=2, executor_ids=["a", "b"]
    )
    PoisonWorkflow.objects.create(
        application=orders, workflow_id=POISON, executors_killed=2, executor_ids=["a", "b"]
    )
    job = BulkJob.objects.create(
        application=orders,
        action=BulkJob.Action.CANCEL,
        state=BulkJob.State.FAILED,
        created_by_name=OPERATOR,
    )
    # Staged by someone else, so that every operator may approve it.
    fork = EditedFork.objects.create(
        application=orders,
        source_workflow_id=WORKFLOW,
        start_step=1,
        new_workflow_id=f"{WORKFLOW}-edited",
        queue_name="_dbos_internal_queue",
        serialization="portable_json",
        reason="staged for the matrix",
        created_by_name="someone-else",
    )
    users = {
        STRANGER: make_user(username=STRANGER),
        OTHER_APP_OPERATOR: make_user(username=OTHER_APP_OPERATOR, role="operator", apps=[billing]),
        VIEWER: make_user(username=VIEWER, role="viewer"),
        OPERATOR: make_user(username=OPERATOR, role="operator"),
        ADMIN: make_user(username=ADMIN, role="admin"),
    }
    return World(orders, job, fork, users)


# Finding the mutating routes.


def _api_operations(of: Any = api) -> set[tuple[str, str]]:
    schema = of.get_openapi_schema()
    return {
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        for method in operations
        if method in UNSAFE
    }


def _url_patterns(
    patterns: list[Any], namespace: str = ""
) -> Iterator[tuple[str, str, Callable[..., Any]]]:
    """(namespace, name, view) of every URL pattern, through the includes."""
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _url_patterns(pattern.url_patterns, pattern.namespace or namespace)
        elif isinstance(pattern, URLPattern):
            yield namespace, pattern.name or str(pattern.pattern), pattern.callback


def _allowed_methods(view: Callable[..., Any]) -> list[str] | None:
    """The methods a `require_http_methods` (`require_POST`...) around the view lets in."""
    layer: Any = view
    while layer is not None:
        code = getattr(layer, "__code__", None)
        if code is not None and "request_method_list" in code.co_freevars:
            methods: list[str] = layer.__closure__[
                code.co_freevars.index("request_method_list")
            ].cell_contents
            return methods
        layer = getattr(layer, "__wrapped__", None)
    return None


def accepts_post(view: Callable[..., Any]) -> bool:
    """Whether a console view takes a form: by its decorator, its class, or its code."""
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        return hasattr(view_class, "post")
    methods = _allowed_methods(view)
    if methods is not None:
        return "POST" in methods
    # A function view that reads a form, or asks which method it was sent.
    source = inspect.getsource(inspect.unwrap(view))
    return "request.POST" in source or "request.method" in source


def _console_mutating_routes() -> set[str]:
    return {
        name
        for namespace, name, view in _url_patterns(get_resolver().url_patterns)
        if namespace not in NAMESPACES_NOT_IN_MATRIX and accepts_post(view)
    }


def test_every_mutating_api_operation_is_in_the_matrix() -> None:
    assert _api_operations() == set(API_ROUTES)


def test_every_mutating_conductor_api_operation_is_in_the_matrix() -> None:
    assert _api_operations(conductor_v2.api) == set(CONDUCTOR_ROUTES)


def test_every_mutating_console_route_is_in_the_matrix_or_left_out_with_a_reason() -> None:
    assert _console_mutating_routes() == set(CONSOLE_ROUTES) | set(NOT_IN_MATRIX)


def test_the_route_finder_tells_forms_from_pages() -> None:
    assert accepts_post(workflow_views.workflow_action)  # require_POST, async
    assert accepts_post(workflow_views.bulk_new)  # GET previews, POST starts
    assert accepts_post(core_views.LoginView.as_view())
    assert not accepts_post(workflow_views.workflow_detail)
    assert not accepts_post(core_views.audit_log)


# Trying them.


@dataclass(frozen=True)
class Expected:
    status: int
    action: str
    result: str
    detail: str = ""


def expected(route: Route, persona: str) -> Expected:
    if persona == ANONYMOUS:
        # The API answers 401; the console sends the browser to sign in.
        return Expected(401, "access.denied", DENIED)
    if persona not in HOLDS and route.on_app:
        return Expected(404, "access.denied", DENIED, APP_NOT_FOUND.format(name=APP))
    if persona not in HOLDS:
        return Expected(403, "access.denied", DENIED)
    if route.need not in HOLDS[persona]:
        # A page about no application says in its own words who may use it.
        return Expected(403, "access.denied", DENIED, NOT_ALLOWED if route.on_app else "")
    return Expected(route.status, route.audit or "", route.result)


def _last_record() -> int:
    last: int = AuditRecord.objects.aggregate(last=Max("pk"))["last"] or 0
    return last


def assert_audited_once(since: int, persona: str, want: Expected, *, on_app: bool = True) -> None:
    records = list(AuditRecord.objects.filter(pk__gt=since))
    if not want.action:
        assert records == [], [(r.action, r.detail) for r in records]
        return
    assert [(r.action, r.result) for r in records] == [(want.action, want.result)], [
        (r.action, r.result, r.detail) for r in records
    ]
    record = records[0]
    assert record.actor_name == ("" if persona == ANONYMOUS else persona)
    if persona != ANONYMOUS:
        # The middleware that records an anonymous refusal does not know the application.
        assert record.application_name == (APP if on_app else "")
    if want.detail:
        assert record.detail == want.detail


def _cells(routes: dict[Any, Route]) -> list[Any]:
    """Every (route, persona), named like `POST /api/v1/apps/{app}/recovery-vera`; the
    allowed cells of a route with a known hole are expected to fail, strictly."""
    cells = []
    for key, route in routes.items():
        for persona in PERSONAS:
            allowed = route.need in HOLDS.get(persona, set())
            marks = [pytest.mark.xfail(strict=True, reason=route.hole)]
            cells.append(
                pytest.param(
                    key,
                    persona,
                    id=f"{' '.join(key) if isinstance(key, tuple) else key}-{persona}",
                    marks=marks if route.hole and allowed else [],
                )
            )
    return cells


@pytest.mark.parametrize(("operation", "persona"), _cells(API_ROUTES))
def test_the_api_answers_each_persona_as_its_role_allows_and_audits_the_attempt(
    world: World, operation: tuple[str, str], persona: str
) -> None:
    method, path = operation
    route = API_ROUTES[operation]
    url = path.format(**world.values(persona))
    client = world.client(persona)
    since = _last_record()
    response = client.generic(method, url, _json(route.body), content_type="application/json")
    want = expected(route, persona)
    body = response.json() if response.content else None
    assert response.status_code == want.status, body
    if want.detail:
        assert body is not None
        assert body["detail"] == want.detail
    assert_audited_once(since, persona, want, on_app=route.on_app)


@pytest.mark.parametrize(("operation", "persona"), _cells(CONDUCTOR_ROUTES))
def test_the_conductor_api_answers_each_persona_as_its_role_allows_and_audits_the_attempt(
    world: World, operation: tuple[str, str], persona: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(conductor_v2, "BULK_WAIT_SECONDS", 0)
    method, path = operation
    route = CONDUCTOR_ROUTES[operation]
    url = path.format(org="acme", **world.values(persona))
    headers: dict[str, Any] = {}
    if persona != ANONYMOUS:
        _, raw = api_token_create(user=world.users[persona], name="matrix")
        headers["HTTP_AUTHORIZATION"] = f"Bearer {raw}"
    since = _last_record()
    response = Client().generic(
        method, url, _json(route.body), content_type="application/json", **headers
    )
    want = expected(route, persona)
    body = response.json() if response.content else None
    assert response.status_code == want.status, body
    if want.detail:
        assert body is not None
        assert body["detail"] == want.detail
    # Making the token is audited too: only what the request did counts here.
    since = max(since, _token_records(since))
    assert_audited_once(since, persona, want)


def _token_records(since: int) -> int:
    made: int = (
        AuditRecord.objects.filter(pk__gt=since, action="api_token.create").aggregate(
            last=Max("pk")
        )["last"]
        or since
    )
    return made


@pytest.mark.parametrize(("name", "persona"), _cells(CONSOLE_ROUTES))
def test_the_console_answers_each_persona_as_its_role_allows_and_audits_the_attempt(
    world: World, name: str, persona: str
) -> None:
    route = CONSOLE_ROUTES[name]
    values = world.values(persona)
    kwargs = {key: value.format(**values) for key, value in _kwargs(route).items()}
    body = {
        key: value.format(**values) if isinstance(value, str) else value
        for key, value in route.body.items()
    }
    client = world.client(persona)
    since = _last_record()
    response = client.post(reverse(name, kwargs=kwargs), body)
    want = expected(route, persona)
    if persona == ANONYMOUS:
        assert _redirected_to(response) == LOGIN
    else:
        assert response.status_code == want.status
        if want.status == 302:
            # Past the check, wherever the view sends the browser next, not to sign in.
            assert _redirected_to(response) != LOGIN
    assert_audited_once(since, persona, want, on_app=route.on_app)


def _kwargs(route: Route) -> dict[str, str]:
    """The route's URL arguments: the application's name unless it says otherwise."""
    return ON_APP if route.on_app and not route.kwargs else route.kwargs


def _json(body: dict[str, Any]) -> str:
    return json.dumps(body) if body else ""


def _redirected_to(response: HttpResponseBase) -> str:
    assert response.status_code == 302, response.status_code
    return urlsplit(response["Location"]).path


def test_a_read_that_misses_is_not_audited(world: World) -> None:
    stranger = world.client(STRANGER)
    since = _last_record()
    assert stranger.get(f"/api/v1/apps/{APP}/executors").status_code == 404
    assert stranger.get(f"/apps/{APP}/executors/").status_code == 404
    assert _last_record() == since


# Routes that answer anyone, signed in or not, and record nothing: a load balancer's probes.
PUBLIC = {"healthz": 200, "readyz": 200}


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_the_probes_answer_every_persona_and_audit_nothing(
    world: World, persona: str, name: str
) -> None:
    client = world.client(persona)
    since = _last_record()
    response = client.get(reverse(name))
    assert response.status_code == PUBLIC[name], response.content
    assert client.post(reverse(name)).status_code == 405
    assert _last_record() == since


@pytest.mark.parametrize("persona", PERSONAS)
def test_the_go_to_workflow_box_answers_each_persona_as_its_role_allows(
    world: World, persona: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read (so not in the matrix of changes above): whoever may see `orders` is sent to
    the workflow its ID starts; the others learn nothing, and nothing is audited."""

    async def one_failed_workflow(application: Application) -> Any:
        return _OneFailedWorkflow()

    monkeypatch.setattr(workflow_views, "source_for", one_failed_workflow)
    client = world.client(persona)
    since = _last_record()
    response = client.get(reverse("go-to-workflow", args=[APP]), {"id": "wf"})
    if persona == ANONYMOUS:
        assert _redirected_to(response) == LOGIN
    elif persona in HOLDS:
        assert _redirected_to(response) == reverse("workflow-detail", args=[APP, WORKFLOW])
    else:
        assert response.status_code == 404
    assert _last_record() == since


@pytest.mark.parametrize("persona", PERSONAS)
def test_the_metrics_page_of_an_application_answers_each_persona_as_its_role_allows(
    world: World, persona: str
) -> None:
    """A read: whoever may see `orders` reads its Metrics page (no system database: the page
    says its metrics come through an executor); the others learn nothing, nothing audited."""
    client = world.client(persona)
    since = _last_record()
    response = client.get(reverse("app-metrics", args=[APP]), {"window": "7d"})
    if persona == ANONYMOUS:
        assert _redirected_to(response) == LOGIN
    elif persona in HOLDS:
        assert response.status_code == 200
        assert b"Rolled up through a connected executor" in response.content
    else:
        assert response.status_code == 404
    assert _last_record() == since


# `GET /metrics` by session (a scraper's METRICS_TOKEN: tests/stepchange/test_prometheus.py):
# an admin reads it; anyone else is refused, and the refusal is audited.
# Everyone else signed in: 403.
METRICS_STATUS = {ANONYMOUS: 401, ADMIN: 200}


@pytest.mark.parametrize("persona", PERSONAS)
def test_the_metrics_page_answers_only_an_admin_and_audits_every_refusal(
    world: World, persona: str
) -> None:
    client = world.client(persona)
    since = _last_record()
    response = client.get(reverse("metrics"))
    assert response.status_code == METRICS_STATUS.get(persona, 403)
    refusals = AuditRecord.objects.filter(pk__gt=since, action="access.denied")
    if persona == ADMIN:
        assert _last_record() == since
    else:
        [record] = refusals
        assert record.target == "GET /metrics"
        assert record.result == DENIED


def test_a_refusal_naming_an_absurd_application_is_audited_with_the_name_cut(
    world: World,
) -> None:
    name = "x" * 300
    client = world.client(OPERATOR)
    body = {"executor_ids": [GONE_EXECUTOR]}
    response = client.post(f"/api/v1/apps/{name}/recovery", body, "application/json")
    assert response.status_code == 404
    record = AuditRecord.objects.get(action="access.denied")
    assert record.application_name == name[:100]


# The console hides what a role cannot do.


def _page(world: World, persona: str, path: str) -> str:
    response = world.client(persona).get(path)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def test_only_an_admin_sees_retention_in_the_application_nav(world: World) -> None:
    retention = f'href="/apps/{APP}/retention/"'
    for persona in (VIEWER, OPERATOR):
        assert retention not in _page(world, persona, f"/apps/{APP}/executors/")
    assert retention in _page(world, ADMIN, f"/apps/{APP}/executors/")


def test_only_operators_see_recovery_and_poison_buttons(world: World) -> None:
    recover = reverse("executor-recover", args=[APP, GONE_EXECUTOR])
    poison = reverse("poison-action", args=[APP, POISON, "dismiss"])
    as_viewer = _page(world, VIEWER, f"/apps/{APP}/executors/")
    assert recover not in as_viewer
    assert poison not in as_viewer
    assert POISON in as_viewer  # told about it, not offered to act on it
    as_operator = _page(world, OPERATOR, f"/apps/{APP}/executors/")
    assert recover in as_operator
    assert poison in as_operator


def test_only_operators_see_the_retry_of_a_stopped_bulk_job(world: World) -> None:
    retry = reverse("bulk-job-retry", args=[APP, world.job.pk])
    page = reverse("bulk-job", args=[APP, world.job.pk])
    assert retry not in _page(world, VIEWER, page)
    assert retry in _page(world, OPERATOR, page)


def test_only_operators_see_the_approval_of_an_edited_fork(world: World) -> None:
    approve = reverse("edited-fork-act", args=[APP, world.fork.pk, "approve"])
    page = reverse("edited-fork", args=[APP, world.fork.pk])
    assert approve not in _page(world, VIEWER, page)
    assert approve in _page(world, OPERATOR, page)


@pytest.fixture
def sdk_app(system_databases: None, sdk_fixtures: dict[str, dict[str, Any]]) -> dict[str, Any]:
    fixture = sdk_fixtures["py320-sqlite-default"]
    registered(fixture)
    return fixture


def test_only_operators_see_the_actions_on_a_workflow_and_the_bulk_bar(
    sdk_app: dict[str, Any],
) -> None:
    app = sdk_app["app_name"]
    failed = f"/apps/{app}/workflows/{by_role(sdk_app, 'error')}/"
    listing = f"/apps/{app}/workflows/"
    viewer = signed_in(make_user(username=VIEWER, role="viewer"))
    operator = signed_in(make_user(username=OPERATOR, role="operator"))
    assert 'aria-label="Actions"' not in viewer.get(failed).content.decode()
    assert 'aria-label="Actions"' in operator.get(failed).content.decode()
    assert 'id="bulk"' not in viewer.get(listing).content.decode()
    assert 'id="bulk"' in operator.get(listing).content.decode()


def _refused_cells() -> list[Any]:
    """Every (mutating operation, persona) whose attempt is refused."""
    return [
        pytest.param(key, persona, id=f"{' '.join(key)}-{persona}")
        for key, route in API_ROUTES.items()
        for persona in PERSONAS
        if route.need not in HOLDS.get(persona, set())
    ]


@pytest.mark.parametrize(("operation", "persona"), _refused_cells())
def test_a_refusal_does_not_depend_on_the_body(
    world: World, operation: tuple[str, str], persona: str
) -> None:
    """Who asks is checked before the body is read: a malformed body changes nothing."""
    method, path = operation
    url = path.format(**world.values(persona))
    client = world.client(persona)
    since = _last_record()
    response = client.generic(method, url, '{"not": json', content_type="application/json")
    want = expected(API_ROUTES[operation], persona)
    assert response.status_code == want.status, response.content
    assert_audited_once(since, persona, want, on_app=API_ROUTES[operation].on_app)
