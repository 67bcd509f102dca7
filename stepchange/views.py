"""Console pages of the core: home, personal API tokens, scoped API keys, custom roles,
password change, the audit log; and `GET /metrics` for Prometheus."""

import hmac
import math
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.models import Group, User
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse_lazy
from django.utils import timezone
from django.views.decorators.http import require_POST, require_safe

from conductor.registry import with_live_executor_counts
from stepchange import prometheus, sso, throttle
from stepchange.access import users_within, visible_to
from stepchange.audit import AuditAction, Result, audit_record, mark_refusal_audited
from stepchange.auditlog import (
    AUDIT_ADMINS_ONLY,
    AuditExportForm,
    AuditFilterForm,
    audit_export,
)
from stepchange.http import HtmxHttpRequest
from stepchange.models import ApiToken, Application, AuditRecord
from stepchange.paging import CURSOR, Page, newest_first, query_without_cursor
from stepchange.roles import (
    KEY_PERMISSIONS,
    PERM_ADMINISTER,
    PERM_INSPECT,
    ROLE_PERMISSIONS,
    Role,
    role_of,
    scope_names,
)
from stepchange.services import (
    api_key_create,
    api_key_revoke,
    api_keys_within,
    api_token_create,
    api_token_revoke,
    custom_roles,
    role_delete,
    role_permissions,
    role_save,
)

AUDIT_PAGE_SIZE = 50


@login_required
def home(request: HttpRequest) -> HttpResponse:
    applications = with_live_executor_counts(visible_to(request.user))
    return render(
        request,
        "stepchange/home.html",
        {"applications": applications, "has_role": role_of(request.user) is not Role.NONE},
    )


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the token is for, e.g. 'deploy script'.")


@login_required
def tokens(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST or None)
    created = None
    if request.method == "POST" and form.is_valid():
        _, created = api_token_create(
            user=request.user, name=form.cleaned_data["name"], request=request
        )
        form = TokenForm()
    return render(
        request,
        "stepchange/tokens.html",
        {"form": form, "created": created, "tokens": request.user.api_tokens.all()},  # type: ignore[union-attr]
    )


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=token_id, user=request.user)
    api_token_revoke(token=token, actor=request.user, request=request)
    messages.success(request, f"Token “{token.name}” revoked.")
    return redirect("tokens")


KEY_ADMINS_ONLY = "Only admins make and revoke API keys."
ROLE_ADMINS_ONLY = "Only admins define roles."
DEFAULT_KEY_DAYS = 90
# What a key or role may carry beyond reading, which comes with every one.
OPTIONAL_PERMISSIONS = [
    (perm, label) for perm, label in KEY_PERMISSIONS.items() if perm != PERM_INSPECT
]


def _default_expiry() -> date:
    return timezone.now().date() + timedelta(days=DEFAULT_KEY_DAYS)


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the key is for, e.g. 'nightly report'.")
    owner = forms.ModelChoiceField(
        queryset=User.objects.none(),
        help_text="The key never does more than its owner may, now or later.",
    )
    permissions = forms.MultipleChoiceField(
        choices=OPTIONAL_PERMISSIONS,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Permissions beyond reading",
    )
    all_applications = forms.BooleanField(required=False, label="Every application")
    applications = forms.ModelMultipleChoiceField(
        queryset=Application.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Or only these applications",
    )
    expires_on = forms.DateField(
        required=False,
        initial=_default_expiry,
        widget=forms.DateInput(attrs={"type": "date"}),
        label="Expires after",
        help_text="The key stops working at the end of this day (UTC). Empty: never.",
    )

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        owner = self.fields["owner"]
        applications = self.fields["applications"]
        assert isinstance(owner, forms.ModelChoiceField)
        assert isinstance(applications, forms.ModelMultipleChoiceField)
        reachable = users_within(user) | User.objects.filter(pk=user.pk)
        owner.queryset = reachable.distinct().order_by("username")
        owner.initial = user.pk
        applications.queryset = visible_to(user).order_by("name")

    def expires_at(self) -> datetime | None:
        day = self.cleaned_data["expires_on"]
        if day is None:
            return None
        return datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC)


@login_required
def api_keys(request: HttpRequest) -> HttpResponse:
    """Scoped API keys: those of the users the admin manages, and a form to make one,
    whose secret this page shows once."""
    _admin_only(request, KEY_ADMINS_ONLY)
    form = ApiKeyForm(request.POST or None, user=request.user)
    created = None
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            everything = form.cleaned_data["all_applications"]
            try:
                _, created = api_key_create(
                    name=form.cleaned_data["name"],
                    owner=form.cleaned_data["owner"],
                    permissions=form.cleaned_data["permissions"],
                    applications=None if everything else form.cleaned_data["applications"],
                    expires_at=form.expires_at(),
                    request=request,
                )
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                status = 200
                form = ApiKeyForm(user=request.user)
    context = {
        "form": form,
        "created": created,
        "keys": api_keys_within(request.user),
        "read_label": KEY_PERMISSIONS[PERM_INSPECT],
    }
    return render(request, "stepchange/keys.html", context, status=status)


def _admin_only(request: HttpRequest, message: str) -> None:
    if not request.user.has_perm(PERM_ADMINISTER):
        raise PermissionDenied(message)


@login_required
@require_POST
def api_key_revoke_view(request: HttpRequest, key_id: int) -> HttpResponse:
    _admin_only(request, KEY_ADMINS_ONLY)
    key = get_object_or_404(api_keys_within(request.user), pk=key_id)
    api_key_revoke(key=key, request=request)
    messages.success(request, f"Key “{key.name}” revoked.")
    return redirect("api-keys")


class RoleForm(forms.Form):
    name = forms.CharField(max_length=150)
    permissions = forms.MultipleChoiceField(
        choices=OPTIONAL_PERMISSIONS,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Permissions beyond reading",
    )


@login_required
def roles(request: HttpRequest) -> HttpResponse:
    """The built-in roles, the custom ones, and a form to define one."""
    _admin_only(request, ROLE_ADMINS_ONLY)
    form = RoleForm(request.POST or None)
    status = 200
    if request.method == "POST":
        saved = _role_saved(request, form, None)
        if saved is not None:
            return saved
        status = 400
    context = {
        "form": form,
        "built_in": [
            (name, scope_names([f"stepchange.{codename}" for codename in codenames]))
            for name, codenames in ROLE_PERMISSIONS.items()
        ],
        "custom": [(role, scope_names(role_permissions(role))) for role in custom_roles()],
        "read_label": KEY_PERMISSIONS[PERM_INSPECT],
    }
    return render(request, "stepchange/roles.html", context, status=status)


@login_required
def role_edit(request: HttpRequest, role_id: int) -> HttpResponse:
    _admin_only(request, ROLE_ADMINS_ONLY)
    role = get_object_or_404(custom_roles(), pk=role_id)
    initial = {"name": role.name, "permissions": role_permissions(role)}
    form = RoleForm(request.POST or None, initial=initial)
    status = 200
    if request.method == "POST":
        saved = _role_saved(request, form, role)
        if saved is not None:
            return saved
        status = 400
    members = role.user_set.order_by("username")
    context = {
        "form": form,
        "role": role,
        "members": members,
        "read_label": KEY_PERMISSIONS[PERM_INSPECT],
    }
    return render(request, "stepchange/role.html", context, status=status)


def _role_saved(request: HttpRequest, form: RoleForm, role: Group | None) -> HttpResponse | None:
    """Save the posted role and go back to the list; None (the form holding why) if not."""
    if not form.is_valid():
        return None
    try:
        saved = role_save(
            role=role,
            name=form.cleaned_data["name"],
            permissions=form.cleaned_data["permissions"],
            request=request,
        )
    except ValidationError as exc:
        form.add_error(None, exc)
        return None
    messages.success(request, f"Role “{saved.name}” saved.")
    return redirect("roles")


@login_required
@require_POST
def role_delete_view(request: HttpRequest, role_id: int) -> HttpResponse:
    _admin_only(request, ROLE_ADMINS_ONLY)
    role = get_object_or_404(custom_roles(), pk=role_id)
    role_delete(role=role, request=request)
    messages.success(request, f"Role “{role.name}” deleted.")
    return redirect("roles")


class PasswordLoginForm(sso.PasswordLoginAllowed, AuthenticationForm):
    pass


class LoginView(auth_views.LoginView):
    redirect_authenticated_user = True
    form_class = PasswordLoginForm

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = {**super().get_context_data(**kwargs), **sso.login_context(self.request)}
        form = context["form"]
        if form.has_error(NON_FIELD_ERRORS, "password_login_off"):
            context["password_refused"] = form.non_field_errors()[0]
        return context

    def form_invalid(self, form: Any) -> HttpResponse:
        if form.has_error(NON_FIELD_ERRORS, "password_login_off"):
            # The password was right, so no failure was recorded: the refusal is.
            username = str(form.cleaned_data.get("username", ""))[:150]
            audit_record(
                action=AuditAction.LOGIN_FAILED,
                request=self.request,
                actor_name=username,
                result=Result.DENIED,
                target=username,
                detail=form.non_field_errors()[0],
            )
        # A wrong password is an authentication failure, and says so in its status.
        response = super().form_invalid(form)
        response.status_code = 401
        return response


LOCKED_OUT = (
    "Too many failed sign-ins for this username or from this address: try again in "
    "{minutes} minutes."
)


def login_locked_out(
    request: HttpRequest, response: HttpResponse | None, credentials: dict[str, Any] | None
) -> HttpResponse:
    """What django-axes answers a sign-in it refused (AXES_LOCKOUT_CALLABLE), on the console
    and the admin form alike: the sign-in page, 429, and when to try again."""
    seconds = settings.THROTTLE_COOLOFF_SECONDS
    context = {
        "form": AuthenticationForm(request),
        "locked_out": LOCKED_OUT.format(minutes=math.ceil(seconds / 60)),
        **sso.login_context(request),
    }
    locked = render(request, "registration/login.html", context, status=429)
    locked["Retry-After"] = str(seconds)
    return locked


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "registration/password_change.html"
    success_url = reverse_lazy("home")

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        audit_record(action=AuditAction.PASSWORD_CHANGE, request=self.request)
        messages.success(self.request, "Your password was changed.")
        return response


def audit_log(request: HtmxHttpRequest) -> HttpResponseBase:
    if not request.user.has_perm(PERM_ADMINISTER):
        raise PermissionDenied(AUDIT_ADMINS_ONLY)
    form = AuditFilterForm(request.GET)
    page = Page[AuditRecord]([], None)
    if form.is_valid():
        page = newest_first(
            form.records(request.user), before=form.cleaned_data["before"], size=AUDIT_PAGE_SIZE
        )
    template = "stepchange/audit.html"
    if request.htmx:
        template += "#audit-rows"
    return render(
        request,
        template,
        {
            "form": form,
            "records": page.items,
            "next_before": page.next_before,
            "query": query_without_cursor(request),
            # What the export buttons post again: the filters, without the cursor.
            "export_filters": [
                (name, value) for name, value in request.GET.items() if name != CURSOR
            ],
        },
    )


@require_POST
def audit_log_export(request: HttpRequest) -> HttpResponseBase:
    """The audit page's export, posted with the page's filters. A POST, under Django's CSRF
    check, since the export writes an audit record: no cross-site link can start one."""
    if not request.user.has_perm(PERM_ADMINISTER):
        raise PermissionDenied(AUDIT_ADMINS_ONLY)
    form = AuditExportForm(request.POST)
    if not form.is_valid():
        return HttpResponseBadRequest(form.errors.as_text(), content_type="text/plain")
    return audit_export(request, form, as_format=form.cleaned_data["export"])


METRICS_NO_TOKEN = "Authentication required: a bearer token (METRICS_TOKEN) or an admin's session."
METRICS_WRONG_TOKEN = "Not the metrics token (METRICS_TOKEN)."
METRICS_ADMINS_ONLY = "Only an admin, or a scraper with the metrics token, may read /metrics."


@require_safe
def metrics(request: HttpRequest) -> HttpResponseBase:
    """Prometheus's scrape (stepchange/prometheus.py): for the bearer of METRICS_TOKEN, or
    a signed-in admin. Tokens are checked as API tokens are (stepchange/throttle.py): a
    locked-out address is refused before its token is looked at, and a wrong or missing
    token is audited and counts against the address."""
    presented = _bearer(request)
    if presented is None and request.user.is_authenticated:
        if not request.user.has_perm(PERM_ADMINISTER):
            raise PermissionDenied(METRICS_ADMINS_ONLY)
        return _scrape()
    address = throttle.request_address(request)
    try:
        throttle.API_TOKENS.check_address(address)
    except throttle.Throttled as exc:
        # Refused without a record each time: the lockout has its own.
        refused = JsonResponse({"detail": str(exc)}, status=429)
        refused["Retry-After"] = str(exc.retry_after)
        return refused
    if presented is not None and _is_metrics_token(presented):
        return _scrape()
    detail = METRICS_NO_TOKEN if presented is None else METRICS_WRONG_TOKEN
    audit_record(
        action=AuditAction.ACCESS_DENIED,
        request=request,
        result=Result.DENIED,
        target=f"{request.method} {request.path}",
        detail=detail,
    )
    mark_refusal_audited(request)
    throttle.API_TOKENS.fail(address=address, name="", request=request)
    response = JsonResponse({"detail": detail}, status=401)
    response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


def _scrape() -> HttpResponse:
    return HttpResponse(prometheus.exposition(), content_type=prometheus.CONTENT_TYPE)


def _bearer(request: HttpRequest) -> str | None:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


def _is_metrics_token(presented: str) -> bool:
    expected = settings.METRICS_TOKEN
    # Compared as bytes: compare_digest refuses text that is not ASCII.
    return bool(expected) and hmac.compare_digest(presented.encode(), expected.encode())
