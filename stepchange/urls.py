from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from conductor.api import router as conductor_router
from forks.api import router as forks_router
from stepchange import views
from stepchange.api import api
from workflows.api import router as workflows_router

# Each part of StepChange adds its endpoints to the one API.
api.add_router("/", conductor_router)
api.add_router("/", workflows_router)
api.add_router("/", forks_router)

urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password/", views.PasswordChangeView.as_view(), name="password_change"),
    path("tokens/", views.tokens, name="tokens"),
    path("tokens/<int:token_id>/revoke/", views.token_revoke, name="token-revoke"),
    path("audit/", views.audit_log, name="audit"),
    path("", include("conductor.urls")),
    path("", include("workflows.urls")),
    path("", include("forks.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
]
