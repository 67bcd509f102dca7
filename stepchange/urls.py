from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

import stepchange.converters  # noqa: F401  (registers <workflow:...>, {workflow:...})
from conductor.api import router as conductor_router
from forks.api import router as forks_router
from stepchange import views
from stepchange.api import api
from workflows.api import router as workflows_router
from workflows.api import workflow_router

# Each part of StepChange adds its endpoints to the one API. A workflow's own route takes
# any path under it (ids may hold slashes): it comes last.
api.add_router("/", conductor_router)
api.add_router("/", workflows_router)
api.add_router("/", forks_router)
api.add_router("/", workflow_router)

urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password/", views.PasswordChangeView.as_view(), name="password_change"),
    path("tokens/", views.tokens, name="tokens"),
    path("tokens/<int:token_id>/revoke/", views.token_revoke, name="token-revoke"),
    path("audit/", views.audit_log, name="audit"),
    path("", include("conductor.urls")),
    # A workflow id may hold slashes: its page's route takes the rest of the path, so the
    # routes under a workflow (its edited fork, its actions) come before it.
    path("", include("forks.urls")),
    path("", include("workflows.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
]
