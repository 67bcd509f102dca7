"""Create the viewer, operator and admin groups with the permissions their names promise."""

from typing import Any

from django.db import migrations

from stepchange.roles import roles_sync


def create_roles(apps: Any, schema_editor: Any) -> None:
    roles_sync(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("stepchange", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, migrations.RunPython.noop)]
