from django.urls import path

from metrics import views

urlpatterns = [
    path("apps/<str:app_name>/metrics/", views.metrics_page, name="app-metrics"),
]
