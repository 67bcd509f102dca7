from typing import Any

from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    name = "workflows"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from stepchange.models import Application

        # A saved application may have a new system database URL or schema.
        post_save.connect(_forget_alias, sender=Application, dispatch_uid="workflows-alias")
        post_delete.connect(_forget_alias, sender=Application, dispatch_uid="workflows-alias-del")

        from stepchange.prometheus import collector_add
        from workflows.prometheus import bulk_jobs_collect

        collector_add("bulk-jobs", bulk_jobs_collect)


def _forget_alias(sender: Any, instance: Any, **kwargs: Any) -> None:
    from workflows.systemdb import forget

    forget(instance)
