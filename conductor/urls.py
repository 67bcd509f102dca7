from django.urls import path

import stepchange.converters  # noqa: F401  (registers <workflow:...>)
from conductor import views

urlpatterns = [
    path("apps/<str:app_name>/executors/", views.executors, name="executors"),
    # The executor is named in the query string or the form: any id DBOS wrote fits there.
    path(
        "apps/<str:app_name>/database-recovery/",
        views.database_recovery,
        name="database-recovery",
    ),
    path(
        "apps/<str:app_name>/executors/<str:executor_id>/",
        views.executor_detail,
        name="executor-detail",
    ),
    path(
        "apps/<str:app_name>/executors/<str:executor_id>/recover/",
        views.recover_executor,
        name="executor-recover",
    ),
    path(
        "apps/<str:app_name>/poison/<workflow:workflow_id>/<str:action>/",
        views.poison_action,
        name="poison-action",
    ),
    path("apps/<str:app_name>/requests/", views.requests, name="requests"),
    path("apps/<str:app_name>/retention/", views.retention_settings, name="retention"),
    path(
        "apps/<str:app_name>/requests/<int:entry_id>/", views.request_detail, name="request-detail"
    ),
]
