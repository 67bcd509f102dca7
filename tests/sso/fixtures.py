"""The OpenID Connect provider the single sign-on tests sign in through: django-oidc-provider
in its own Django project (tests/sso/provider/), its own SQLite database, on a free port of
127.0.0.1, with an RSA signing key the tests made (so they can sign a tampered token
with it, as the provider would)."""

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.e2e.servers import ROOT, Process, free_port, wait_for_http

STEPCHANGE_CLIENT, STEPCHANGE_SECRET = "stepchange", "stepchange-client-secret"
OTHER_CLIENT, OTHER_SECRET = "other-app", "other-app-client-secret"


class Provider:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.issuer = f"{self.url}/openid"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.sso.provider.settings",
            "IDP_DATABASE": str(directory / "idp.sqlite3"),
            "IDP_URL": self.url,
        }
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.process: Process | None = None

    def manage(self, *args: str) -> None:
        subprocess.run(
            [sys.executable, "-m", "django", *args],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> "Provider":
        self.manage("migrate", "--noinput")
        pem = self.directory / "signing-key.pem"
        pem.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        self.manage("idp", "key", str(pem))
        argv = [sys.executable, "-m", "django", "runserver", f"127.0.0.1:{self.port}", "--noreload"]
        self.process = Process(f"idp-{self.port}", argv, self.env, self.directory)
        discovery = f"{self.issuer}/.well-known/openid-configuration"
        wait_for_http(discovery, process=self.process.popen)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def client(self, client_id: str, secret: str, *redirects: str) -> None:
        self.manage(
            "idp", "client", client_id, "--secret", secret, "--redirect", "\n".join(redirects)
        )

    def user(self, username: str, password: str, *, roles: str = "", apps: str = "") -> None:
        """Make or update a provider user; `roles` and `apps` are its claims, comma-separated."""
        self.manage(
            "idp", "user", username, "--password", password, "--roles", roles, "--apps", apps
        )

    def kid(self) -> str:
        with urllib.request.urlopen(f"{self.issuer}/jwks", timeout=10) as response:
            return str(json.load(response)["keys"][0]["kid"])

    def sign(self, claims: dict[str, Any]) -> str:
        """`claims` signed with the provider's own key, as it signs an ID token."""
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid()})


@pytest.fixture(scope="module")
def sso_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    provider = Provider(tmp_path_factory.mktemp("idp")).start()
    yield provider
    provider.stop()
