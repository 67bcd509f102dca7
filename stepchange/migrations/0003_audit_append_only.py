"""Make the audit table append-only in the database itself, below the ORM."""

from typing import Any

from django.db import migrations

TABLE = "stepchange_auditrecord"
MESSAGE = "audit records are append-only"

SQLITE = [
    f"CREATE TRIGGER {TABLE}_no_update BEFORE UPDATE ON {TABLE} "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END",
    f"CREATE TRIGGER {TABLE}_no_delete BEFORE DELETE ON {TABLE} "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END",
]
POSTGRES = [
    f"CREATE FUNCTION {TABLE}_refuse() RETURNS trigger LANGUAGE plpgsql AS "
    f"$$ BEGIN RAISE EXCEPTION '{MESSAGE}'; END $$",
    f"CREATE TRIGGER {TABLE}_no_update BEFORE UPDATE ON {TABLE} "
    f"FOR EACH ROW EXECUTE FUNCTION {TABLE}_refuse()",
    f"CREATE TRIGGER {TABLE}_no_delete BEFORE DELETE ON {TABLE} "
    f"FOR EACH ROW EXECUTE FUNCTION {TABLE}_refuse()",
    f"CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE} "
    f"FOR EACH STATEMENT EXECUTE FUNCTION {TABLE}_refuse()",
]
# What the test suite drops so that Django can empty tables between transactional tests.
DELETE_GUARDS = {
    "sqlite": [f"DROP TRIGGER {TABLE}_no_delete"],
    "postgresql": [
        f"DROP TRIGGER {TABLE}_no_delete ON {TABLE}",
        f"DROP TRIGGER {TABLE}_no_truncate ON {TABLE}",
    ],
}
UNDO = {
    "sqlite": [f"DROP TRIGGER {TABLE}_no_update", f"DROP TRIGGER {TABLE}_no_delete"],
    "postgresql": [f"DROP FUNCTION {TABLE}_refuse() CASCADE"],
}


def forwards(apps: Any, schema_editor: Any) -> None:
    statements = {"sqlite": SQLITE, "postgresql": POSTGRES}.get(schema_editor.connection.vendor, [])
    for statement in statements:
        schema_editor.execute(statement)


def backwards(apps: Any, schema_editor: Any) -> None:
    for statement in UNDO.get(schema_editor.connection.vendor, []):
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("stepchange", "0002_roles")]

    operations = [migrations.RunPython(forwards, backwards)]
