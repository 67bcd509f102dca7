"""Set up the test provider: `idp client`, `idp user`, `idp key`."""

from typing import Any

from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandParser
from oidc_provider.models import Client, ResponseType, RSAKey


class Command(BaseCommand):
    help = "Set up the single sign-on tests' provider."

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest="what", required=True)
        client = commands.add_parser("client", help="a confidential client of the code flow")
        client.add_argument("client_id")
        client.add_argument("--secret", required=True)
        client.add_argument("--redirect", required=True)
        user = commands.add_parser("user", help="make or update a user and its claims")
        user.add_argument("username")
        user.add_argument("--password", required=True)
        user.add_argument("--roles", default="")
        user.add_argument("--apps", default="")
        key = commands.add_parser("key", help="the RSA key that signs ID tokens (PEM file)")
        key.add_argument("path")

    def handle(self, *args: Any, what: str, **options: Any) -> None:
        getattr(self, f"_{what}")(**options)

    def _client(self, *, client_id: str, secret: str, redirect: str, **_: Any) -> None:
        client, _ = Client.objects.update_or_create(
            client_id=client_id,
            defaults={
                "name": client_id,
                "client_type": "confidential",
                "client_secret": secret,
                "jwt_alg": "RS256",
                "require_consent": False,
                "_redirect_uris": redirect,
            },
        )
        client.response_types.set([ResponseType.objects.get(value="code")])

    def _user(self, *, username: str, password: str, roles: str, apps: str, **_: Any) -> None:
        user = User.objects.filter(username=username).first()
        if user is None:
            user = User.objects.create_user(username, email=f"{username}@example.com")
        # Only when it changes: a new password hash ends the user's sessions at the provider.
        if not user.check_password(password):
            user.set_password(password)
            user.save()
        names = [f"role:{r}" for r in roles.split(",") if r]
        names += [f"app:{a}" for a in apps.split(",") if a]
        user.groups.set([Group.objects.get_or_create(name=name)[0] for name in names])

    def _key(self, *, path: str, **_: Any) -> None:
        with open(path) as file:
            pem = file.read()
        RSAKey.objects.all().delete()
        RSAKey.objects.create(key=pem)
