from django.urls import path

import stepchange.converters  # noqa: F401  (registers <workflow:...>)
from workflows import schedule_views, views

urlpatterns = [
    path("apps/<str:app_name>/", views.dashboard, name="dashboard"),
    path("apps/<str:app_name>/workflows/", views.workflow_list, name="workflows"),
    path(
        "apps/<str:app_name>/queued/",
        views.workflow_list,
        {"queued": True},
        name="queued-workflows",
    ),
    path("apps/<str:app_name>/go/", views.go_to_workflow, name="go-to-workflow"),
    path("apps/<str:app_name>/views/", views.save_view, name="save-view"),
    # Not under workflows/: any text there may be a workflow id.
    path("apps/<str:app_name>/columns/", views.list_columns, name="list-columns"),
    path("apps/<str:app_name>/views/<int:view_id>/delete/", views.delete_view, name="delete-view"),
    # Workflow ids may hold slashes (`path`): the routes under a workflow come first.
    path(
        "apps/<str:app_name>/workflows/<workflow:workflow_id>/act/<str:action>/",
        views.workflow_action,
        name="workflow-action",
    ),
    path(
        "apps/<str:app_name>/workflows/<workflow:workflow_id>/",
        views.workflow_detail,
        name="workflow-detail",
    ),
    path("apps/<str:app_name>/schedules/", schedule_views.schedules_page, name="schedules"),
    path(
        "apps/<str:app_name>/schedules/act/",
        schedule_views.schedule_action,
        name="schedule-action",
    ),
    path(
        "apps/<str:app_name>/schedules/backfill/",
        schedule_views.schedule_backfill,
        name="schedule-backfill",
    ),
    path(
        "apps/<str:app_name>/schedules/bulk/",
        schedule_views.schedules_bulk_view,
        name="schedules-bulk",
    ),
    path("apps/<str:app_name>/versions/", views.versions_page, name="versions"),
    path(
        "apps/<str:app_name>/versions/latest/",
        views.version_set_latest_view,
        name="version-set-latest",
    ),
    path("apps/<str:app_name>/bulk/new/", views.bulk_new, name="bulk-new"),
    path("apps/<str:app_name>/jobs/", views.bulk_jobs_page, name="bulk-jobs"),
    path("apps/<str:app_name>/jobs/<int:job_id>/", views.bulk_job_page, name="bulk-job"),
    path(
        "apps/<str:app_name>/jobs/<int:job_id>/retry/",
        views.bulk_job_retry_view,
        name="bulk-job-retry",
    ),
]
