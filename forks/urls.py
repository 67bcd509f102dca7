from django.urls import path

import stepchange.converters  # noqa: F401  (registers <workflow:...>)
from forks import viewer, views

urlpatterns = [
    path(
        "apps/<str:app_name>/workflows/<workflow:workflow_id>/edit-fork/",
        views.edit_fork,
        name="edit-fork",
    ),
    path(
        "apps/<str:app_name>/workflows/<workflow:workflow_id>/export/",
        views.export_workflow,
        name="workflow-export",
    ),
    path("apps/<str:app_name>/import/", views.import_workflow, name="workflow-import"),
    path("apps/<str:app_name>/start/", views.start_workflow, name="start-workflow"),
    path("apps/<str:app_name>/edited-forks/", views.edited_forks, name="edited-forks"),
    path("apps/<str:app_name>/edited-forks/<int:fork_id>/", views.edited_fork, name="edited-fork"),
    path(
        "apps/<str:app_name>/edited-forks/<int:fork_id>/compare/",
        views.compare,
        name="edited-fork-compare",
    ),
    path(
        "apps/<str:app_name>/edited-forks/<int:fork_id>/<str:verb>/",
        views.edited_fork_act,
        name="edited-fork-act",
    ),
]

# The offline viewer: about the caller's own files, under no application.
urlpatterns += [
    path("exports/", viewer.export_open, name="export-open"),
    path("exports/<int:opened_id>/", viewer.opened_export, name="opened-export"),
    path(
        "exports/<int:opened_id>/workflows/<workflow:workflow_id>/",
        viewer.export_workflow,
        name="export-workflow",
    ),
]
