"""Single sign-on with OpenID Connect, through mozilla-django-oidc's documented extension
points: its authentication backend (how a user is found, made and kept up to date) and its
two views (start the sign-in, take the provider's answer).

What this module adds to the library: the provider's endpoints from its discovery document;
an ID token checked for its audience, issuer and expiry as well as its signature and nonce;
users found by (issuer, subject), never by an address; the role claim mapped onto Django
groups and the application claim onto ApplicationAccess at every sign-in; and every
sign-in refused with a page that says why, audited, with nothing created.
"""

import threading
from dataclasses import dataclass
from typing import Any

import jwt
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import SuspiciousOperation, ValidationError
from django.core.validators import MaxLengthValidator
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from stepchange.audit import AuditAction, Result, audit_record, mark_refusal_audited
from stepchange.models import Application, ApplicationAccess, SsoIdentity

SSO_OFF = "Single sign-on is not configured."
# Django's username column.
USERNAME_MAX_LENGTH = 150
ALL_APPLICATIONS = "*"

# Why a sign-in was refused: shown on the refusal page and kept in the audit record.
PROVIDER_UNREACHABLE = "The sign-in provider could not be reached: try again later."
CODE_NOT_ACCEPTED = (
    "The sign-in provider did not accept this sign-in's code (used already, expired, or "
    "issued to another application): start again."
)
PROVIDER_REFUSED = "The sign-in provider refused the sign-in: {error}."
NO_SIGN_IN_STARTED = (
    "This browser did not start a sign-in with the provider, or it expired: start again."
)
NOT_VERIFIED = (
    "The provider's answer could not be verified (its state, nonce or signature did not "
    "match what this sign-in sent): it was refused."
)
WRONG_AUDIENCE = "The provider's ID token was issued to another application: it was refused."
WRONG_ISSUER = "The ID token was not issued by the configured provider: it was refused."
EXPIRED = "The provider's ID token has expired: start the sign-in again."
BAD_TOKEN = "The provider's ID token is not valid ({error}): it was refused."
SUBJECT_MISMATCH = "The provider's user information names another user than its ID token."
NO_USERNAME = "The provider sent no {claim!r} claim to name your StepChange account."
BAD_USERNAME = "The provider's {claim!r} claim, {value!r}, cannot name a StepChange account."
USERNAME_TAKEN = (
    "A StepChange account named {username!r} already exists and signs in with a password: an "
    "admin must remove or rename it before it can sign in through {provider}."
)
NO_ROLE = (
    "Your {provider} account grants no StepChange role (claim {claim!r}): ask your "
    "administrator for access."
)
NO_APPLICATION = (
    "Your {provider} account grants no StepChange application (claim {claim!r}): ask your "
    "administrator for access."
)
DEACTIVATED = "Your StepChange account is deactivated: ask your administrator."
NOT_SIGNED_IN = "The sign-in did not complete."


class SsoRefusal(Exception):
    """A sign-in refused: `message` for the person, `detail` for the audit log only."""

    def __init__(self, message: str, *, detail: str = "", status: int = 403, who: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.status = status
        self.who = who


@dataclass(frozen=True)
class Endpoints:
    authorization: str
    token: str
    userinfo: str
    jwks: str


_discovered: dict[str, dict[str, Any]] = {}
_discovery_lock = threading.Lock()


def provider_endpoints() -> Endpoints:
    """The provider's endpoints: those set explicitly, the rest from the issuer's discovery
    document, fetched once per process (a failure is not kept, so the next sign-in retries)."""
    explicit = Endpoints(
        settings.OIDC_OP_AUTHORIZATION_ENDPOINT,
        settings.OIDC_OP_TOKEN_ENDPOINT,
        settings.OIDC_OP_USER_ENDPOINT,
        settings.OIDC_OP_JWKS_ENDPOINT,
    )
    if explicit.authorization and explicit.token and explicit.jwks:
        return explicit
    document = _discovery(settings.OIDC_ISSUER)
    return Endpoints(
        explicit.authorization or str(document.get("authorization_endpoint", "")),
        explicit.token or str(document.get("token_endpoint", "")),
        explicit.userinfo or str(document.get("userinfo_endpoint", "")),
        explicit.jwks or str(document.get("jwks_uri", "")),
    )


def _discovery(issuer: str) -> dict[str, Any]:
    with _discovery_lock:
        if issuer in _discovered:
            return _discovered[issuer]
    url = f"{issuer}/.well-known/openid-configuration"
    try:
        response = requests.get(url, timeout=settings.OIDC_TIMEOUT)
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise SsoRefusal(PROVIDER_UNREACHABLE, detail=f"{url}: {exc}", status=502) from None
    # OpenID Connect Discovery §4.3: the document must name the issuer it was asked of.
    if not isinstance(document, dict) or document.get("issuer", "").rstrip("/") != issuer:
        detail = f"{url} names issuer {document.get('issuer')!r}, not {issuer!r}"
        raise SsoRefusal(PROVIDER_UNREACHABLE, detail=detail, status=502)
    with _discovery_lock:
        _discovered[issuer] = document
    return document


@dataclass(frozen=True)
class Grant:
    """What the claims grant: the groups (roles), and the applications (None: all)."""

    groups: frozenset[str]
    applications: frozenset[str] | None


def _values(claims: dict[str, Any], name: str) -> list[str]:
    """A claim as a list of text: providers send a list, or one value, or a spaced string."""
    value = claims.get(name)
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list | tuple):
        return [str(item) for item in value]
    return [str(value)]


def grant_from_claims(claims: dict[str, Any]) -> Grant:
    """The roles and applications `claims` grant, as the settings map them. Role values
    are mapped by SSO_ROLE_MAP, or name groups themselves when it is empty; a value that
    maps to no existing group grants nothing."""
    role_map: dict[str, str] = settings.SSO_ROLE_MAP
    values = _values(claims, settings.SSO_ROLE_CLAIM)
    wanted = {role_map.get(value, "") if role_map else value for value in values} - {""}
    groups = frozenset(Group.objects.filter(name__in=wanted).values_list("name", flat=True))
    applications: frozenset[str] | None = None
    if settings.SSO_APPLICATION_CLAIM:
        names = set(_values(claims, settings.SSO_APPLICATION_CLAIM))
        if ALL_APPLICATIONS not in names:
            applications = frozenset(names)
    return Grant(groups, applications)


def _provider() -> str:
    return str(settings.SSO_PROVIDER_NAME)


class SsoBackend(OIDCAuthenticationBackend):  # type: ignore[misc]
    """mozilla-django-oidc's backend, with StepChange's checks and its mapping of claims."""

    def authenticate(self, request: HttpRequest | None, **kwargs: Any) -> Any:
        # Only the callback passes a nonce: a password sign-in is not this backend's.
        if request is None or "nonce" not in kwargs or not settings.SSO_ENABLED:
            return None
        endpoints = provider_endpoints()
        self.OIDC_OP_TOKEN_ENDPOINT = endpoints.token
        self.OIDC_OP_USER_ENDPOINT = endpoints.userinfo
        self.OIDC_OP_JWKS_ENDPOINT = endpoints.jwks
        return super().authenticate(request, **kwargs)

    def get_payload_data(self, token: bytes | str, key: Any) -> dict[str, Any]:
        # The library checks the signature only; an ID token must also be for this client,
        # from this issuer, and still valid (OpenID Connect Core §3.1.3.7).
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[settings.OIDC_RP_SIGN_ALGO],
                audience=settings.OIDC_RP_CLIENT_ID,
                issuer=settings.OIDC_ISSUER,
                leeway=settings.SSO_CLOCK_LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.InvalidAudienceError as exc:
            raise SsoRefusal(WRONG_AUDIENCE, detail=_unverified(token, exc)) from None
        except jwt.InvalidIssuerError as exc:
            raise SsoRefusal(WRONG_ISSUER, detail=_unverified(token, exc)) from None
        except jwt.ExpiredSignatureError as exc:
            raise SsoRefusal(EXPIRED, detail=_unverified(token, exc)) from None
        except jwt.InvalidTokenError as exc:
            raise SsoRefusal(BAD_TOKEN.format(error=exc), detail=_unverified(token, exc)) from None
        # An ID token with several audiences names this client as the one it was given to.
        audiences = payload["aud"] if isinstance(payload["aud"], list) else [payload["aud"]]
        if len(audiences) > 1 and payload.get("azp") != settings.OIDC_RP_CLIENT_ID:
            raise SsoRefusal(WRONG_AUDIENCE, detail=f"azp {payload.get('azp')!r}, aud {audiences}")
        return payload

    def get_userinfo(self, access_token: str, id_token: str, payload: dict[str, Any]) -> Any:
        # The ID token's claims, and the user-info endpoint's when the provider has one.
        claims = dict(payload)
        if self.OIDC_OP_USER_ENDPOINT:
            extra = super().get_userinfo(access_token, id_token, payload)
            if extra.get("sub") != payload.get("sub"):
                raise SsoRefusal(SUBJECT_MISMATCH, detail=f"{extra.get('sub')!r}")
            claims.update(extra)
        return claims

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict[str, Any]) -> Any:
        claims = self.get_userinfo(access_token, id_token, payload)
        subject = str(claims["sub"])
        grant = grant_from_claims(claims)
        identity = (
            SsoIdentity.objects.select_related("user")
            .filter(issuer=settings.OIDC_ISSUER, subject=subject)
            .first()
        )
        username = identity.user.get_username() if identity else _username(claims)
        refusal = _refusal_for(grant, username)
        if identity is None:
            if refusal is not None:
                raise refusal
            return sso_user_create(
                request=self.request, username=username, subject=subject, claims=claims, grant=grant
            )
        if not identity.user.is_active:
            raise SsoRefusal(DEACTIVATED, who=username)
        # A grant withdrawn upstream is withdrawn here, even when the sign-in is refused.
        sso_access_update(request=self.request, user=identity.user, grant=grant)
        if refusal is not None:
            raise refusal
        identity.last_login_at = timezone.now()
        identity.save(update_fields=["last_login_at"])
        return identity.user


def _unverified(token: bytes | str, exc: Exception) -> str:
    """What a refused token said, for the audit log (its claims, unverified)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return str(exc)
    shown = {name: claims.get(name) for name in ("iss", "aud", "azp", "sub", "exp")}
    return f"{exc}; token: {shown}"


def _refusal_for(grant: Grant, username: str) -> SsoRefusal | None:
    if not grant.groups:
        message = NO_ROLE.format(provider=_provider(), claim=settings.SSO_ROLE_CLAIM)
        return SsoRefusal(message, who=username)
    if grant.applications is not None and not grant.applications:
        message = NO_APPLICATION.format(provider=_provider(), claim=settings.SSO_APPLICATION_CLAIM)
        return SsoRefusal(message, who=username)
    return None


def _username(claims: dict[str, Any]) -> str:
    claim = settings.SSO_USERNAME_CLAIM
    value = claims.get(claim)
    if not isinstance(value, str) or not value.strip():
        raise SsoRefusal(NO_USERNAME.format(claim=claim))
    try:
        UnicodeUsernameValidator()(value)
        MaxLengthValidator(USERNAME_MAX_LENGTH)(value)
    except ValidationError:
        raise SsoRefusal(BAD_USERNAME.format(claim=claim, value=value[:200])) from None
    return value


def _access_of(user: Any) -> dict[str, Any]:
    """A user's roles and applications as the audit log shows them."""
    access = ApplicationAccess.objects.filter(user=user).first()
    applications: list[str] | str = "all"
    if access is not None and access.limited:
        applications = sorted(access.applications.values_list("name", flat=True))
    return {
        "roles": sorted(user.groups.values_list("name", flat=True)),
        "applications": applications,
    }


def _apply(user: Any, grant: Grant) -> None:
    user.groups.set(Group.objects.filter(name__in=grant.groups))
    if grant.applications is None:
        if settings.SSO_APPLICATION_CLAIM:
            ApplicationAccess.objects.filter(user=user).delete()
        return
    access, _ = ApplicationAccess.objects.update_or_create(user=user, defaults={"limited": True})
    access.applications.set(Application.objects.filter(name__in=grant.applications))


def sso_user_create(
    *, request: HttpRequest, username: str, subject: str, claims: dict[str, Any], grant: Grant
) -> Any:
    """Make the user a first sign-in names, linked to its provider account, with the
    roles and applications its claims grant."""
    users = get_user_model()
    if users.objects.filter(**{users.USERNAME_FIELD: username}).exists():
        message = USERNAME_TAKEN.format(username=username, provider=_provider())
        raise SsoRefusal(message, who=username)
    with transaction.atomic():
        # No password: this account signs in through the provider only.
        user = users.objects.create_user(username, email=str(claims.get("email") or ""))
        SsoIdentity.objects.create(
            user=user, issuer=settings.OIDC_ISSUER, subject=subject, last_login_at=timezone.now()
        )
        _apply(user, grant)
        audit_record(
            action=AuditAction.SSO_USER_CREATE,
            request=request,
            actor=user,
            target=username,
            parameters={"issuer": settings.OIDC_ISSUER, "subject": subject, **_access_of(user)},
        )
    return user


def sso_access_update(*, request: HttpRequest, user: Any, grant: Grant) -> None:
    """Make a user's roles and applications what its claims grant now; audited when that
    changes anything."""
    with transaction.atomic():
        before = _access_of(user)
        _apply(user, grant)
        after = _access_of(user)
        if before != after:
            audit_record(
                action=AuditAction.SSO_ACCESS_UPDATE,
                request=request,
                actor=user,
                target=user.get_username(),
                parameters=after,
                value_diff={"before": before, "after": after},
            )


def refuse(request: HttpRequest, refusal: SsoRefusal) -> HttpResponse:
    """The refusal page, and its audit record."""
    audit_record(
        action=AuditAction.SSO_REFUSED,
        request=request,
        actor_name=refusal.who[:150],
        result=Result.DENIED,
        target=refusal.who[:255],
        detail=f"{refusal.message} {refusal.detail}".strip(),
    )
    mark_refusal_audited(request)
    context = {"message": refusal.message, "provider": _provider()}
    return render(request, "registration/sso_refused.html", context, status=refusal.status)


class SsoStartView(OIDCAuthenticationRequestView):  # type: ignore[misc]
    """Sends the browser to the provider, with a fresh state, nonce and PKCE challenge."""

    def get(self, request: HttpRequest) -> HttpResponse:
        if not settings.SSO_ENABLED:
            raise Http404(SSO_OFF)
        try:
            self.OIDC_OP_AUTH_ENDPOINT = provider_endpoints().authorization
        except SsoRefusal as refusal:
            return refuse(request, refusal)
        response: HttpResponse = super().get(request)
        return response


class SsoCallbackView(OIDCAuthenticationCallbackView):  # type: ignore[misc]
    """Takes the provider's answer. Every way it can fail ends on the refusal page."""

    def get(self, request: HttpRequest) -> HttpResponse:
        if not settings.SSO_ENABLED:
            raise Http404(SSO_OFF)
        try:
            response: HttpResponse = super().get(request)
        except SsoRefusal as refusal:
            return refuse(request, refusal)
        except SuspiciousOperation as exc:
            # A state this browser never started, a nonce that is not the one sent, a key
            # the provider does not publish.
            return refuse(request, SsoRefusal(NOT_VERIFIED, detail=str(exc), status=400))
        except requests.HTTPError as exc:
            # The token endpoint's answer to the code (RFC 6749 §5.2).
            return refuse(request, SsoRefusal(CODE_NOT_ACCEPTED, detail=str(exc), status=400))
        except requests.RequestException as exc:
            unreachable = SsoRefusal(PROVIDER_UNREACHABLE, detail=str(exc), status=502)
            return refuse(request, unreachable)
        return response

    def login_failure(self) -> HttpResponse:
        request = self.request
        if request.GET.get("error"):
            error = request.GET.get("error_description") or request.GET["error"]
            message = PROVIDER_REFUSED.format(error=error[:200])
            return refuse(request, SsoRefusal(message))
        if "code" not in request.GET or "state" not in request.GET:
            return refuse(request, SsoRefusal(NO_SIGN_IN_STARTED, status=400))
        if "oidc_states" not in request.session:
            return refuse(request, SsoRefusal(NO_SIGN_IN_STARTED, status=400))
        user = getattr(self, "user", None)
        if user is not None and not user.is_active:
            return refuse(request, SsoRefusal(DEACTIVATED, who=user.get_username()))
        return refuse(request, SsoRefusal(NOT_SIGNED_IN))


PASSWORD_LOGIN_OFF = "Password sign-in is turned off: sign in with {provider}."


class PasswordLoginAllowed:
    """Refuses a right password when password sign-in is off (PASSWORD_LOGIN), but a
    superuser's: the way in when the provider is down. For the console's and the admin's
    sign-in forms."""

    def confirm_login_allowed(self, user: Any) -> None:
        super().confirm_login_allowed(user)  # type: ignore[misc]
        if not settings.PASSWORD_LOGIN and not user.is_superuser:
            raise ValidationError(
                PASSWORD_LOGIN_OFF.format(provider=settings.SSO_PROVIDER_NAME),
                code="password_login_off",
            )


def login_context(request: HttpRequest) -> dict[str, Any]:
    """What the sign-in page needs to offer single sign-on and, or not, the password form."""
    return {
        "sso_enabled": settings.SSO_ENABLED,
        "sso_provider": _provider(),
        # Off, the form is still there for a superuser who asks for it (?password).
        "password_form": settings.PASSWORD_LOGIN or "password" in request.GET,
        "password_login_on": settings.PASSWORD_LOGIN,
    }
