from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "alerts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from alerts.prometheus import alerts_collect
        from stepchange.prometheus import collector_add

        collector_add("alerts", alerts_collect)
