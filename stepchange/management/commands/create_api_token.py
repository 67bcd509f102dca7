from argparse import ArgumentParser
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from stepchange.services import api_token_create


class Command(BaseCommand):
    help = "Create a personal API token for USERNAME and print it once."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="command line")

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        try:
            user = user_model.objects.get(username=options["username"])
        except user_model.DoesNotExist:
            raise CommandError(f"No user named {options['username']!r}.") from None
        _, raw = api_token_create(user=user, name=options["name"])
        self.stdout.write(raw)
