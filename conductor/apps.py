from django.apps import AppConfig


class ConductorConfig(AppConfig):
    name = "conductor"

    def ready(self) -> None:
        from conductor import prometheus as series
        from stepchange.prometheus import collector_add

        collector_add("executors", series.executors_collect)
        collector_add("poison-workflows", series.poison_collect)
