"""Stories about configuration: embedded defaults, and clear errors for malformed values."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from stepchange.env import env_bool, env_database, env_int, env_ip, env_mapping, env_url

ROOT = Path(__file__).resolve().parents[2]
PRINT_SETTINGS = (
    "import django; django.setup(); from django.conf import settings as s; "
    "print(s.DATABASES['default']['ENGINE']); print(s.CHANNEL_LAYERS['default']['BACKEND']); "
    "print(s.DEBUG, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE); print(s.ALLOWED_HOSTS)"
)


def start(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DEBUG"}}
    clean.update(
        {"DJANGO_SETTINGS_MODULE": "stepchange.settings", "STEPCHANGE_DATA_DIR": str(tmp_path)}
    )
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_with_no_configuration_it_runs_embedded_and_safe(tmp_path: Path) -> None:
    result = start(tmp_path)
    assert result.returncode == 0, result.stderr
    engine, layer, flags, hosts = result.stdout.splitlines()
    assert engine == "django.db.backends.sqlite3"
    assert layer == "channels.layers.InMemoryChannelLayer"
    assert flags == "False False False"
    assert "127.0.0.1" in hosts
    key_file = tmp_path / "secret_key"
    assert len(key_file.read_text()) >= 50
    assert key_file.stat().st_mode & 0o077 == 0


def test_database_and_redis_urls_switch_to_postgres_and_redis(tmp_path: Path) -> None:
    result = start(
        tmp_path,
        DATABASE_URL="postgres://u:p@127.0.0.1:5432/sc",
        REDIS_URL="redis://127.0.0.1:6379/0",
        SITE_URL="https://stepchange.example.com",
    )
    assert result.returncode == 0, result.stderr
    engine, layer, flags, hosts = result.stdout.splitlines()
    assert engine == "django.db.backends.postgresql"
    assert layer == "channels_redis.core.RedisChannelLayer"
    assert flags == "False True True"
    assert "stepchange.example.com" in hosts


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DEBUG", "maybe", "DEBUG must be true or false"),
        ("DATABASE_URL", "mysql://x/y", "DATABASE_URL must start with one of"),
        ("DATABASE_URL", "postgres://", "DATABASE_URL has no host"),
        ("REDIS_URL", "127.0.0.1:6379", "REDIS_URL must start with one of"),
        ("SESSION_COOKIE_AGE", "a day", "SESSION_COOKIE_AGE must be a whole number"),
        ("SECRET_KEY", "too-short", "SECRET_KEY must be at least 32 characters"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL must be one of"),
        ("SITE_URL", "stepchange.example.com", "SITE_URL must start with one of"),
        ("METRICS_PORT", "99999", "METRICS_PORT must be at most 65535, not 99999"),
        ("METRICS_PORT", "nine", "METRICS_PORT must be a whole number"),
        ("METRICS_BIND", "localhost", "METRICS_BIND must be an IP address"),
    ],
)
def test_a_malformed_setting_stops_start_up_naming_the_variable(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    result = start(tmp_path, **{variable: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


def test_the_typed_readers_accept_what_operators_write(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAG", " Yes ")
    monkeypatch.setenv("COUNT", "12")
    assert env_bool("FLAG") is True
    assert env_int("COUNT", 1) == 12
    assert env_int("UNSET_COUNT", 7) == 7
    monkeypatch.setenv("COUNT", "-1")
    with pytest.raises(ImproperlyConfigured, match="COUNT must be at least 0"):
        env_int("COUNT", 1, minimum=0)
    monkeypatch.setenv("DB", "sqlite:///relative/x.sqlite3")
    assert env_database("DB", "")["ENGINE"] == "django.db.backends.sqlite3"
    monkeypatch.setenv("URL", "https://example.com")
    assert env_url("URL", schemes=("https",)) == "https://example.com"
    monkeypatch.setenv("BIND", " ::1 ")
    assert env_ip("BIND", "127.0.0.1") == "::1"
    assert env_ip("UNSET_BIND", "127.0.0.1") == "127.0.0.1"


def test_a_role_map_reads_as_pairs_and_a_pair_without_a_name_stops_start_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OIDC_ROLE_MAP", "/ops/admins=admin, on-call = operator")
    assert env_mapping("OIDC_ROLE_MAP") == {"/ops/admins": "admin", "on-call": "operator"}
    monkeypatch.setenv("OIDC_ROLE_MAP", "/ops/admins=admin,on-call")
    with pytest.raises(ImproperlyConfigured, match="OIDC_ROLE_MAP must be a list of value=name"):
        env_mapping("OIDC_ROLE_MAP")


def test_single_sign_on_needs_its_client_and_the_password_form_needs_single_sign_on(
    tmp_path: Path,
) -> None:
    no_client = start(tmp_path, OIDC_ISSUER="https://sso.example.com/realms/ops")
    assert no_client.returncode != 0
    assert "OIDC_CLIENT_ID and OIDC_CLIENT_SECRET must be too" in no_client.stderr
    no_sso = start(tmp_path, OIDC_PASSWORD_LOGIN="false")
    assert no_sso.returncode != 0
    assert "OIDC_PASSWORD_LOGIN=false needs single sign-on" in no_sso.stderr
    configured = start(
        tmp_path,
        OIDC_ISSUER="https://sso.example.com/realms/ops",
        OIDC_CLIENT_ID="stepchange",
        OIDC_CLIENT_SECRET="secret",
    )
    assert configured.returncode == 0, configured.stderr
