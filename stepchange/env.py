"""Typed readers for environment variables.

Every reader names the variable in its error, so a malformed value stops start-up with a
message an operator can act on instead of a traceback from deep inside Django.
"""

import ipaddress
import os
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    return None if value is None else value.strip()


def env_str(name: str, default: str = "") -> str:
    value = _raw(name)
    return default if value is None or value == "" else value


def env_bool(name: str, default: bool = False) -> bool:
    value = _raw(name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_int(
    name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    value = _raw(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {number}")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum}, not {number}")
    return number


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default)
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def env_ip(name: str, default: str) -> str:
    """An IP address to bind to (v4 or v6, no brackets), not a host name: binding to a name
    would depend on what it resolves to at start-up."""
    value = env_str(name, default)
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ImproperlyConfigured(
            f"{name} must be an IP address such as 127.0.0.1 or ::1, not {value!r}"
        ) from None


def env_list(name: str, default: list[str]) -> list[str]:
    value = _raw(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_mapping(name: str) -> dict[str, str]:
    """`a=b,c=d` as {"a": "b", "c": "d"}; empty when unset."""
    mapping: dict[str, str] = {}
    for item in env_list(name, []):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ImproperlyConfigured(f"{name} must be a list of value=name pairs, not {item!r}")
        mapping[key.strip()] = value.strip()
    return mapping


def env_url(name: str, default: str = "", *, schemes: tuple[str, ...]) -> str:
    value = env_str(name, default)
    if not value:
        return value
    parts = urlsplit(value)
    if parts.scheme not in schemes:
        allowed = ", ".join(f"{scheme}://" for scheme in schemes)
        raise ImproperlyConfigured(f"{name} must start with one of {allowed}, not {value!r}")
    if not parts.netloc and parts.scheme not in ("sqlite",):
        raise ImproperlyConfigured(f"{name} has no host: {value!r}")
    return value


def env_database(name: str, default: str) -> dict[str, object]:
    """Parse a database URL (postgres://, postgresql://, sqlite:///) into a DATABASES entry."""
    url = env_url(name, default, schemes=("postgres", "postgresql", "sqlite"))
    try:
        config: dict[str, object] = dict(dj_database_url.parse(url))
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} is not a valid database URL: {exc}") from None
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # The embedded default serves executors, the request-log writer and the console
        # from several threads: WAL lets readers run beside the writer, and IMMEDIATE
        # transactions wait for the lock instead of failing when a read turns into a write.
        config["OPTIONS"] = {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    if config["ENGINE"] == "django.db.backends.postgresql":
        # A pool instead of persistent connections: under ASGI every sync_to_async call may run
        # on another thread, and a pool keeps the connection count bounded anyway.
        config["CONN_MAX_AGE"] = 0
        size = env_int("DATABASE_POOL_SIZE", 20, minimum=1)
        config["OPTIONS"] = {"pool": {"min_size": 1, "max_size": size, "timeout": 10}}
    return config
