"""The audit record's HTTP request id.

Added with plain ALTER TABLE on both databases: Django's own AddField rebuilds a SQLite
table for a column with a default, and the rebuild would drop the append-only triggers
(0003_audit_append_only).
"""

from django.db import migrations, models

TABLE = "stepchange_auditrecord"


class Migration(migrations.Migration):
    dependencies = [("stepchange", "0007_api_keys")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    f"ALTER TABLE {TABLE} ADD COLUMN http_request_id varchar(64) "
                    "NOT NULL DEFAULT ''",
                    f"ALTER TABLE {TABLE} DROP COLUMN http_request_id",
                )
            ],
            state_operations=[
                migrations.AddField(
                    model_name="auditrecord",
                    name="http_request_id",
                    field=models.CharField(blank=True, max_length=64),
                )
            ],
        )
    ]
