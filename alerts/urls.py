from django.urls import path

from alerts import views

urlpatterns = [
    path("apps/<str:app_name>/alerts/", views.history_page, name="alert-history"),
    path("apps/<str:app_name>/alerts/rules/", views.rules_page, name="alert-rules"),
    path("apps/<str:app_name>/alerts/rules/<int:rule_id>/", views.rule_page, name="alert-rule"),
    path(
        "apps/<str:app_name>/alerts/rules/<int:rule_id>/mute/",
        views.rule_mute,
        name="alert-rule-mute",
    ),
    path(
        "apps/<str:app_name>/alerts/rules/<int:rule_id>/delete/",
        views.rule_delete,
        name="alert-rule-delete",
    ),
    path("apps/<str:app_name>/alerts/channels/", views.channels_page, name="alert-channels"),
    path(
        "apps/<str:app_name>/alerts/channels/<int:channel_id>/",
        views.channel_page,
        name="alert-channel",
    ),
    path(
        "apps/<str:app_name>/alerts/channels/<int:channel_id>/test/",
        views.channel_test,
        name="alert-channel-test",
    ),
    path(
        "apps/<str:app_name>/alerts/deliveries/<int:delivery_id>/retry/",
        views.delivery_retry,
        name="alert-delivery-retry",
    ),
]
