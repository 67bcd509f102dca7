import os
import secrets
from argparse import ArgumentParser
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

WEAK_PASSWORD = "STEPCHANGE_ADMIN_PASSWORD is refused, so no admin was created: {problems}"


class Command(BaseCommand):
    help = (
        "Create the first admin if no user exists yet. The password comes from "
        "STEPCHANGE_ADMIN_PASSWORD, or is generated and printed once."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--username", default=os.environ.get("STEPCHANGE_ADMIN_USER", "admin"))

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        if user_model.objects.exists():
            return
        password = os.environ.get("STEPCHANGE_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        # The validators the password-change form uses; the user is checked unsaved, so a
        # refused password leaves no admin behind.
        candidate = user_model(username=options["username"])
        try:
            validate_password(password, user=candidate)
        except ValidationError as exc:
            raise CommandError(WEAK_PASSWORD.format(problems=" ".join(exc.messages))) from None
        with transaction.atomic():
            user = user_model.objects.create_superuser(
                username=options["username"], email="", password=password
            )
            user.groups.add(Group.objects.get(name="admin"))
        self.stdout.write(f"Created the first admin: {user.get_username()}", self.style.SUCCESS)
        if "STEPCHANGE_ADMIN_PASSWORD" not in os.environ:
            self.stdout.write(f"Password (shown once; change it after signing in): {password}")
