from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from conductor.liveness import liveness_update
from stepchange.models import Application, validate_liveness_template
from stepchange.services import application_register, executor_key_check, executor_key_create


class Command(BaseCommand):
    help = (
        "Create or update a DBOS application. Prints the executor key when it generated one "
        "(a new application, or --new-key)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("name", help="The DBOS app name (its config `name`).")
        parser.add_argument("--key", help="Use this executor key instead of generating one.")
        parser.add_argument("--new-key", action="store_true", help="Add a generated key.")
        parser.add_argument("--system-database-url", help="postgresql://… or sqlite:///…")
        parser.add_argument("--schema", help="Postgres schema of the DBOS tables (default dbos).")
        parser.add_argument("--recovery-grace-seconds", type=int)
        parser.add_argument(
            "--fork-approval",
            choices=["required", "optional"],
            help="Whether a staged edited fork needs a second operator's approval to run.",
        )
        parser.add_argument(
            "--liveness-url-template",
            help="Database-managed executors: a URL answering 2xx while the executor is alive, "
            "with {executor_id} in it, such as http://{executor_id}:8000/healthz ('' unsets it).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        liveness = options["liveness_url_template"]
        try:
            if liveness:
                # Checked before anything is written: a bad URL registers nothing.
                validate_liveness_template(liveness)
        except ValidationError as exc:
            raise CommandError(f"--liveness-url-template: {'; '.join(exc.messages)}") from None
        try:
            with transaction.atomic():
                application, created, generated = self._register(options)
                if liveness is not None and liveness != application.liveness_url_template:
                    # Audited, and what the old URL found is forgotten (as the API does).
                    liveness_update(application=application, liveness_url_template=liveness)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        verb = "Registered" if created else "Updated"
        self.stdout.write(f"{verb} application {application.name}.", self.style.SUCCESS)
        if generated is not None:
            self.stdout.write(f"Executor key (shown once): {generated}")

    def _register(self, options: dict[str, Any]) -> tuple[Application, bool, str | None]:
        application, created = application_register(
            name=options["name"],
            system_database_url=options["system_database_url"],
            schema=options["schema"],
            recovery_grace_seconds=options["recovery_grace_seconds"],
            fork_approval_required=None
            if options["fork_approval"] is None
            else options["fork_approval"] == "required",
        )
        generated = None
        if options["key"] is not None:
            # Idempotent: registering a key the application already has changes nothing.
            if executor_key_check(app_name=application.name, key=options["key"]) is None:
                executor_key_create(
                    application=application, name="register_app", key=options["key"]
                )
        elif created or options["new_key"]:
            _, generated = executor_key_create(application=application, name="register_app")
        return application, created, generated
