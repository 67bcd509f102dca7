from django.apps import AppConfig


class MetricsConfig(AppConfig):
    name = "metrics"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from metrics.prometheus import rollups_collect
        from stepchange.prometheus import collector_add

        collector_add("workflow-rollups", rollups_collect)
