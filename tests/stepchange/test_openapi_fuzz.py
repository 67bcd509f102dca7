"""Schemathesis against /api/v1/openapi.json: every operation, fuzzed in process through
the ASGI application StepChange is served by, answers without a server error and as its
schema documents.

An admin's bearer token takes each request past its permission check, and `{app}` always
names a registered application (`{job_id}` one of its bulk jobs), so the generated inputs
reach the handlers instead of stopping at a 401 or a 404. No executor is connected: what
needs one answers 503 with a detail, as DESIGN.md documents.
"""

import re
from typing import Any

import pytest
import schemathesis
from django.contrib.auth.models import User
from hypothesis import HealthCheck, settings
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.specs.openapi.checks import positive_data_acceptance

from alerts.channels import BAD_RECIPIENT
from stepchange.api.endpoints import APPLICATIONS_UNKNOWN, OWNER_UNKNOWN
from stepchange.asgi import application
from stepchange.models import (
    LIVENESS_HTTP_ONLY,
    LIVENESS_NO_PLACEHOLDER,
    LIVENESS_OTHER_BRACES,
    LIVENESS_SPACES,
    LIVENESS_USERINFO,
    LIVENESS_WHERE,
)
from stepchange.services import KEY_EXPIRY_PAST, api_token_create
from tests.conftest import make_app
from workflows.models import BulkJob
from workflows.sources import BACKWARDS, TWICE_ATTRIBUTE

# The ASGI application does its database work on asgiref's thread, not the test's, so it
# sees only committed rows.
pytestmark = pytest.mark.django_db(transaction=True)

APP = "orders"
# Path parameters are fixed when the tests are built, before any fixture has run, so the
# bulk job is created with a known id.
JOB_ID = 7
EXAMPLES_PER_OPERATION = 20
# The relay's answers (DESIGN.md "The JSON API"): the executor failed, none is connected,
# it timed out. Any other 5xx is a server error.
RELAY_STATUSES = frozenset({502, 503, 504})


async def served_by_daphne(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The application as Daphne serves it, without lifespan events. Schemathesis starts an
    application's lifespan when it loads the schema and keeps it for the rest of the run:
    the background loops would do database work behind every other test."""
    if scope["type"] == "lifespan":
        # Refused before a message is read: Schemathesis then serves it without one.
        raise ValueError("served without lifespan events")
    await application(scope, receive, send)


# Loaded at import rather than through `schemathesis.pytest.from_fixture`, whose tests fail
# on pytest 9 (they rename `request.node._nodeid`, which pytest 9 items no longer have).
# Its client calls itself "testserver", as Django's does; the test environment that lets
# that name through is not set up yet at import.
schema = schemathesis.openapi.from_asgi(
    "/api/v1/openapi.json", served_by_daphne, headers={"Host": "127.0.0.1"}
)
# Deterministic and without a failure database, so CI replays the same requests every run.
# Security parameters are left out: the test sends the admin's token on every request, and
# a generated (invalid) Authorization header it replaces would be reported as accepted.
schema.config.generation.update(
    max_examples=EXAMPLES_PER_OPERATION,
    deterministic=True,
    database="none",
    with_security_parameters=False,
    # No text may hold a NUL: the document says so once, for the whole API, rather than on
    # every string (and every string inside a free JSON value such as an edited input).
    allow_x00=False,
)
# A list's cursor is opaque: only those an answer gave out are valid, which no schema can
# say (a made-up one is a 400 that says so, tested in the list's own stories). Each list is
# asked for its first page.
schema.config.update(parameters={"path.app": APP, "path.job_id": JOB_ID, "query.cursor": ""})


def no_server_error(
    ctx: CheckContext, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> None:
    """No 500, and a 5xx only as a relay status with its `{"detail": ...}`."""
    status = response.status_code
    if status < 500:
        return
    assert status in RELAY_STATUSES, f"{case.operation.label} answered {status}"
    try:
        body = response.json()
    except ValueError:
        body = None
    assert isinstance(body, dict), f"{status} without a JSON body: {response.text[:200]!r}"
    assert "detail" in body, f"{status} without a detail: {body!r}"


# Rules that relate one parameter to another, which a JSON schema cannot state: a time
# range that ends before it starts, an attribute given twice with different values; and
# those that relate one to what exists or to now: a key's owner and applications must be
# ones the caller manages, its expiry in the future.
ACROSS_PARAMETERS = [
    re.compile(re.sub(r"\\\{[a-z]+(?:!r)?\\\}", ".*", re.escape(rule)))
    for rule in (BACKWARDS, TWICE_ATTRIBUTE, OWNER_UNKNOWN, APPLICATIONS_UNKNOWN, KEY_EXPIRY_PAST)
]


def schema_valid_data_accepted(
    ctx: CheckContext, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> None:
    """Schemathesis's check that schema-valid data is accepted, but for a 400 that names
    a rule across parameters."""
    if response.status_code == 400:
        detail = response.json().get("detail")
        if isinstance(detail, str) and any(rule.search(detail) for rule in ACROSS_PARAMETERS):
            return
        # An import's body is a file StepChange signed: no schema can produce one.
        if case.operation.path.endswith("/imports") and isinstance(detail, str):
            return
        # A liveness URL's rules are stated in words (each refusal names its rule), and so
        # is an email address's beyond the shape the schema gives (Django's EmailValidator:
        # no hyphen at either end of a domain label, and more), so that the 400 names the
        # address it refuses.
        if case.operation.path.endswith("/liveness") and str(detail) in LIVENESS_RULES:
            return
        if case.operation.path.endswith("/alert-channels") and str(detail).startswith(
            BAD_RECIPIENT.split("{", 1)[0]
        ):
            return
    positive_data_acceptance(ctx, response, case)


LIVENESS_RULES = {
    LIVENESS_HTTP_ONLY,
    LIVENESS_NO_PLACEHOLDER,
    LIVENESS_OTHER_BRACES,
    LIVENESS_SPACES,
    LIVENESS_USERINFO,
    LIVENESS_WHERE,
}


EXCLUDED_CHECKS: list[Any] = [
    # Replaced by no_server_error, which accepts the relay's documented 502, 503 and 504.
    not_a_server_error,
    # Replaced by schema_valid_data_accepted.
    positive_data_acceptance,
]


@pytest.fixture
def admin_token(admin: User) -> str:
    orders = make_app(name=APP)
    BulkJob.objects.create(
        pk=JOB_ID,
        application=orders,
        action=BulkJob.Action.CANCEL,
        created_by=admin,
        created_by_name=admin.get_username(),
        # Finished: a retry answers 409 instead of starting the background job runner.
        state=BulkJob.State.DONE,
    )
    return api_token_create(user=admin, name="schemathesis")[1]


@schema.parametrize()
# The token and the rows behind it are made once per operation and shared by its examples.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_operation_answers_without_a_server_error_and_as_documented(
    case: schemathesis.Case[Any], admin_token: str
) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Bearer {admin_token}"},
        additional_checks=[no_server_error, schema_valid_data_accepted],
        excluded_checks=EXCLUDED_CHECKS,
    )
