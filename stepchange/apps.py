from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class StepChangeConfig(AppConfig):
    default = True
    name = "stepchange"
    verbose_name = "StepChange"

    def ready(self) -> None:
        from stepchange import signals  # noqa: F401  (connects the audit receivers)


class StepChangeAdminConfig(admin_apps.AdminConfig):
    default = False
    default_site = "stepchange.sites.StepChangeAdminSite"
