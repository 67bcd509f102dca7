"""Create the viewer, operator and admin groups with the permissions their names promise."""

from typing import Any

from django.contrib.auth.management import create_permissions
from django.db import migrations

from stepchange.access import ROLE_PERMISSIONS


def create_roles(apps: Any, schema_editor: Any) -> None:
    # Permissions are normally created after all migrations; this migration needs them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    for role, codenames in ROLE_PERMISSIONS.items():
        group, _ = group_model.objects.get_or_create(name=role)
        for dotted in codenames:
            app_label, codename = dotted.split(".") if "." in dotted else ("stepchange", dotted)
            group.permissions.add(
                permission_model.objects.get(content_type__app_label=app_label, codename=codename)
            )


class Migration(migrations.Migration):
    dependencies = [
        ("stepchange", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, migrations.RunPython.noop)]
