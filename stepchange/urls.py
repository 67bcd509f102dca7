from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.decorators.http import require_safe
from django.views.generic import RedirectView

import stepchange.converters  # noqa: F401  (registers <workflow:...>, {workflow:...})
from alerts import api as alerts_api
from conductor import api as conductor_api
from conductor.protocol import ProtocolError
from conductor.relay import RelayError
from forks import api as forks_api
from forks.plans import ForkError
from stepchange import health, sso, views
from stepchange.api import conductor_v2, endpoints, errors
from stepchange.api.base import new_api
from workflows import api as workflows_api
from workflows import schedules_api

# The one API: its own endpoints, then each part of StepChange's. A workflow's own route
# takes any path under it (ids may hold slashes): it comes last.
api = new_api()
errors.register(
    api,
    {
        **errors.ANSWERS,
        RelayError: conductor_api.relay_failed,
        ProtocolError: conductor_api.unsendable,
        ForkError: forks_api.fork_failed,
    },
)
api.add_router("/", endpoints.router)
api.add_router("/", conductor_api.router)
api.add_router("/", workflows_api.router)
api.add_router("/", forks_api.router)
api.add_router("/", forks_api.transfer_router)
api.add_router("/", schedules_api.router)
api.add_router("/", alerts_api.router)
api.add_router("/", workflows_api.workflow_router)

urlpatterns = [
    path("", views.home, name="home"),
    # For load balancers: no sign-in, no audit (stepchange/health.py).
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    # Browsers ask for /favicon.ico whatever the page's <link rel="icon"> says.
    path(
        "favicon.ico",
        require_safe(RedirectView.as_view(url=static("stepchange/favicon.svg"), permanent=True)),
        name="favicon",
    ),
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    # Single sign-on (stepchange/sso.py); the names are the ones mozilla-django-oidc reverses.
    path("accounts/sso/start/", sso.SsoStartView.as_view(), name="oidc_authentication_init"),
    path(
        "accounts/sso/callback/",
        sso.SsoCallbackView.as_view(),
        name="oidc_authentication_callback",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password/", views.PasswordChangeView.as_view(), name="password_change"),
    path("tokens/", views.tokens, name="tokens"),
    path("tokens/<int:token_id>/revoke/", views.token_revoke, name="token-revoke"),
    path("keys/", views.api_keys, name="api-keys"),
    path("keys/<int:key_id>/revoke/", views.api_key_revoke_view, name="api-key-revoke"),
    path("roles/", views.roles, name="roles"),
    path("roles/<int:role_id>/", views.role_edit, name="role"),
    path("roles/<int:role_id>/delete/", views.role_delete_view, name="role-delete"),
    path("audit/", views.audit_log, name="audit"),
    path("audit/export/", views.audit_log_export, name="audit-export"),
    path("metrics", views.metrics, name="metrics"),
    path("", include("conductor.urls")),
    path("", include("alerts.urls")),
    path("", include("metrics.urls")),
    # A workflow id may hold slashes: its page's route takes the rest of the path, so the
    # routes under a workflow (its edited fork, its actions) come before it.
    path("", include("forks.urls")),
    path("", include("workflows.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    # DBOS Conductor's REST API, the part its clients use, over the same services.
    path("conductor/v2/", conductor_v2.api.urls),
]
