"""The failure throttle for the credentials that are not passwords (API bearer tokens and
executor keys), by the rule django-axes applies to the sign-in forms: THROTTLE_FAILURE_LIMIT
failures within THROTTLE_COOLOFF_SECONDS lock out their address, and separately their
account name (an application's name, a token's prefix), for THROTTLE_COOLOFF_SECONDS.

Only failures count, so an executor reconnecting every second with a valid key is never
slowed. A locked address is refused before its credential is looked at. A locked name
still lets a valid credential through: keys and tokens are too long to guess, and anyone
who knows an application's name could otherwise keep its executors out; its wrong
credentials are refused with the lockout and are not audited one by one.

The counters live in Django's cache: per process by default, shared when REDIS_URL is set.
"""

import hashlib
import ipaddress
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

from stepchange.audit import AuditAction, Result, audit_record

logger = logging.getLogger(__name__)

THROTTLED = "Too many failed attempts from {scope}: try again in {seconds} s."


class Throttled(Exception):
    """Refused by a lockout: `retry_after` seconds until it ends."""

    def __init__(self, *, retry_after: int, scope: str) -> None:
        super().__init__(THROTTLED.format(scope=scope, seconds=retry_after))
        self.retry_after = retry_after


def valid_address(address: Any) -> str | None:
    if not isinstance(address, str):
        return None
    try:
        return str(ipaddress.ip_address(address.strip()))
    except ValueError:
        return None


def request_address(request: HttpRequest) -> str | None:
    """The client's address as Daphne put it in REMOTE_ADDR (from X-Forwarded-For only when
    it runs with --proxy-headers). Also django-axes's AXES_CLIENT_IP_CALLABLE."""
    return valid_address(request.META.get("REMOTE_ADDR"))


def scope_address(scope: dict[str, Any]) -> str | None:
    """The same for a WebSocket's ASGI scope."""
    return valid_address((scope.get("client") or [None])[0])


def cache_key(kind: str, part: str, value: str, what: str) -> str:
    # Hashed: a name may hold anything, and cache keys may not.
    digest = hashlib.sha256(value.encode()).hexdigest()[:32]
    return f"throttle:{kind}:{part}:{digest}:{what}"


@dataclass(frozen=True)
class FailureThrottle:
    """One kind of credential: `api_token` or `executor_key`."""

    kind: str
    audit_action: AuditAction

    def check_address(self, address: str | None) -> None:
        """Raises Throttled if `address` is locked out."""
        if address is not None:
            self._check("address", address)

    def check_name(self, name: str) -> None:
        """Raises Throttled if the account name `name` is locked out."""
        if name:
            self._check("name", name)

    def _check(self, part: str, value: str) -> None:
        until = cache.get(cache_key(self.kind, part, value, "until"))
        if until is not None:
            scope = "this address" if part == "address" else "this name"
            raise Throttled(retry_after=max(1, math.ceil(until - time.time())), scope=scope)

    def fail(
        self,
        *,
        address: str | None,
        name: str,
        request: HttpRequest | None = None,
        application_name: str = "",
    ) -> None:
        """Counts one failure against the address and the name, and audits each lockout
        this failure begins (once: later failures find the lockout already there)."""
        window = settings.THROTTLE_COOLOFF_SECONDS
        for part, value in (("address", address), ("name", name)):
            if not value:
                continue
            counter = cache_key(self.kind, part, value, "count")
            cache.add(counter, 0, timeout=window)
            try:
                failures = cache.incr(counter)
            except ValueError:
                # Expired between the two calls: this failure starts a new window.
                failures = 1
                cache.set(counter, failures, timeout=window)
            if failures < settings.THROTTLE_FAILURE_LIMIT:
                continue
            until = time.time() + window
            if cache.add(cache_key(self.kind, part, value, "until"), until, timeout=window):
                self._audit_lockout(part, value, failures, request, address, application_name)

    def _audit_lockout(
        self,
        part: str,
        value: str,
        failures: int,
        request: HttpRequest | None,
        address: str | None,
        application_name: str,
    ) -> None:
        target = f"address {value}" if part == "address" else f"{self.kind} {value}"
        logger.warning("Locked out %s after %d failures", target, failures)
        audit_record(
            action=self.audit_action,
            request=request,
            application_name=application_name,
            result=Result.DENIED,
            target=target,
            detail=(
                f"{failures} failures within {settings.THROTTLE_COOLOFF_SECONDS} s: locked "
                f"out for {settings.THROTTLE_COOLOFF_SECONDS} s"
            ),
            source_address=address,
        )


API_TOKENS = FailureThrottle("api_token", AuditAction.API_TOKEN_LOCKOUT)
EXECUTOR_KEYS = FailureThrottle("executor_key", AuditAction.EXECUTOR_KEY_LOCKOUT)
