"""What the API answers for an error: always `{"detail": ...}` with the status DESIGN.md
names. Each kind of error has an answer (detail, status); `stepchange/urls.py` registers
these and the other apps' with `register`."""

import functools
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError
from ninja.errors import ValidationError as NinjaValidationError

from stepchange.audit import audit_denied
from stepchange.throttle import Throttled

# Where the API lives: answers under it are JSON, errors included.
API_PREFIX = "/api/"
# Where the Conductor-compatible API lives (conductor_v2.py): its errors are problem details.
CONDUCTOR_PREFIX = "/conductor/"
PROBLEM_CONTENT_TYPE = "application/problem+json"
Answer = Callable[[HttpRequest, Any], tuple[Any, int]]
UNAUTHENTICATED = "Authentication required: a session or a bearer token."
TOO_BIG = (
    "The request body is larger than {limit} bytes, the MAX_REQUEST_BODY_BYTES setting "
    "of this StepChange."
)


def problem(status: int, detail: Any) -> dict[str, Any]:
    """The Conductor-compatible API's error body (RFC 9457 problem details): a text detail,
    or a list of what is wrong with the request."""
    body: dict[str, Any] = {"title": HTTPStatus(status).phrase, "status": status}
    if isinstance(detail, str):
        body["detail"] = detail
    else:
        body["detail"] = "The request is not valid."
        body["errors"] = detail
    return body


def permission_denied(request: HttpRequest, exc: PermissionDenied) -> tuple[Any, int]:
    audit_denied(request, exc)
    return str(exc) or "Forbidden", 403


def unauthenticated(request: HttpRequest, exc: AuthenticationError) -> tuple[Any, int]:
    return UNAUTHENTICATED, 401


def not_found(request: HttpRequest, exc: Http404) -> tuple[Any, int]:
    return str(exc) or "Not found.", 404


def invalid(request: HttpRequest, exc: NinjaValidationError) -> tuple[Any, int]:
    return exc.errors, 400


def too_big(request: HttpRequest, exc: RequestDataTooBig) -> tuple[Any, int]:
    return TOO_BIG.format(limit=settings.DATA_UPLOAD_MAX_MEMORY_SIZE), 400


ANSWERS: dict[type[Exception], Answer] = {
    PermissionDenied: permission_denied,
    AuthenticationError: unauthenticated,
    Http404: not_found,
    NinjaValidationError: invalid,
    RequestDataTooBig: too_big,
}


def _respond(api: NinjaAPI, answer: Answer, request: HttpRequest, exc: Exception) -> HttpResponse:
    detail, status = answer(request, exc)
    return api.create_response(request, {"detail": detail}, status=status)


def _throttled(api: NinjaAPI, request: HttpRequest, exc: Throttled) -> HttpResponse:
    response = api.create_response(request, {"detail": str(exc)}, status=429)
    response["Retry-After"] = str(exc.retry_after)
    return response


def register(api: NinjaAPI, answers: Mapping[type[Exception], Answer]) -> None:
    for kind, answer in answers.items():
        api.add_exception_handler(kind, functools.partial(_respond, api, answer))
    # A bearer token refused by the throttle (stepchange/throttle.py): 429 and Retry-After.
    api.add_exception_handler(Throttled, functools.partial(_throttled, api))
