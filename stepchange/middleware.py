"""Middleware that audits refused console requests in one place."""

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.utils.deprecation import MiddlewareMixin

from stepchange.audit import audit_denied


class AuditDeniedMiddleware(MiddlewareMixin):
    """Sync and async capable (MiddlewareMixin), so async views stay on the event loop."""

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        if isinstance(exception, PermissionDenied):
            audit_denied(request, exception)
