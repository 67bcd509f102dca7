"""StepChange settings: one module, driven by environment variables.

With no configuration at all StepChange runs embedded: a SQLite app database and the
in-memory channel layer in one Daphne process. `DATABASE_URL` and `REDIS_URL` switch to
Postgres and Redis for running at scale. A malformed value raises ImproperlyConfigured
naming the variable (see stepchange/env.py).
"""

import os
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import django_stubs_ext
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from stepchange.env import (
    env_bool,
    env_choice,
    env_database,
    env_int,
    env_ip,
    env_list,
    env_mapping,
    env_str,
    env_url,
)

# Lets generic admin and queryset classes be subscripted at run time, as mypy wants them.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("STEPCHANGE_DATA_DIR", str(BASE_DIR / "var"))).resolve()
try:
    # The embedded SQLite database, the generated secret key and collected static files live here.
    (DATA_DIR / "static").mkdir(parents=True, exist_ok=True)
except OSError as exc:
    raise ImproperlyConfigured(f"STEPCHANGE_DATA_DIR {DATA_DIR} cannot be created: {exc}") from None


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once and kept in DATA_DIR."""
    key = env_str("SECRET_KEY")
    if key:
        if len(key) < 32:
            raise ImproperlyConfigured("SECRET_KEY must be at least 32 characters long")
        return key
    path = DATA_DIR / "secret_key"
    if not path.exists():
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG", False)

# SITE_URL is where operators reach StepChange. An https:// URL turns on the cookie and
# header settings that only make sense behind TLS.
SITE_URL = env_url("SITE_URL", "http://127.0.0.1:8001", schemes=("http", "https")).rstrip("/")
_site = urlsplit(SITE_URL)
BEHIND_TLS = _site.scheme == "https"
ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS", sorted({_site.hostname or "127.0.0.1", "127.0.0.1", "localhost", "[::1]"})
)
CSRF_TRUSTED_ORIGINS = [f"{_site.scheme}://{_site.netloc}"]

INSTALLED_APPS = [
    "daphne",
    "stepchange.apps.StepChangeAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "servestatic.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "axes",
    # Its templates and static files: the API docs page serves Swagger UI from here, not a CDN.
    "ninja",
    "django_htmx",
    "template_partials",
    "stepchange",
    "conductor",
    "workflows",
    "forks",
    "alerts",
    "metrics",
]

# One chain for the console, the API and the admin.
MIDDLEWARE = [
    # First: whatever answers, answers the request's id (stepchange/logs.py).
    "stepchange.logs.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "stepchange.middleware.RefuseNulMiddleware",
    "servestatic.middleware.ServeStaticMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Turns a sign-in refused by the throttle into its 429 page (AXES_LOCKOUT_CALLABLE).
    "axes.middleware.AxesMiddleware",
    "stepchange.middleware.AuditRefusalsMiddleware",
]
# Flash messages in a signed cookie rather than the session.
MESSAGE_STORAGE = "django.contrib.messages.storage.cookie.CookieStorage"

ROOT_URLCONF = "stepchange.urls"
ASGI_APPLICATION = "stepchange.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "stepchange.context_processors.console",
            ],
        },
    },
]

DATABASES = {
    "default": env_database("DATABASE_URL", f"sqlite:///{DATA_DIR / 'stepchange.sqlite3'}"),
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Each application's DBOS system database is an alias of its own (workflows/systemdb.py).
DATABASE_ROUTERS = ["workflows.systemdb.SystemDatabaseRouter"]

REDIS_URL = env_url("REDIS_URL", schemes=("redis", "rediss", "unix"))
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "capacity": 1000, "expiry": 60},
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 1000}}
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Axes's backend first: it refuses a locked-out sign-in before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Single sign-on (README "Single sign-on"), when OIDC_ISSUER is set: one more backend.
if env_url("OIDC_ISSUER", schemes=("http", "https")):
    AUTHENTICATION_BACKENDS.append("stepchange.sso.SsoBackend")
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Throttling (README "Throttling"): THROTTLE_FAILURE_LIMIT failed attempts within
# THROTTLE_COOLOFF_SECONDS lock out their account name and, separately, their address for
# that long. One rule for the sign-in forms (django-axes), API tokens and executor keys.
THROTTLE_FAILURE_LIMIT = env_int("THROTTLE_FAILURE_LIMIT", 10, minimum=1)
THROTTLE_COOLOFF_SECONDS = env_int("THROTTLE_COOLOFF_SECONDS", 300, minimum=1)
AXES_FAILURE_LIMIT = THROTTLE_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(seconds=THROTTLE_COOLOFF_SECONDS)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
# The address the rest of StepChange sees: REMOTE_ADDR, which Daphne's --proxy-headers
# fills from X-Forwarded-For only when it is started behind a proxy.
AXES_CLIENT_IP_CALLABLE = "stepchange.throttle.request_address"
AXES_LOCKOUT_CALLABLE = "stepchange.views.login_locked_out"
# A failure during a lockout does not extend it: the Retry-After we answer stays true.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# Sign-ins are in the audit log already (auth.login, auth.login_failed).
AXES_DISABLE_ACCESS_LOG = True

# The throttle's counters. One process needs nothing; several share Redis when it is set.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # One connection pool per process, not one per thread (stepchange/cache.py).
            "OPTIONS": {"pool_class": "stepchange.cache.SharedConnectionPool"},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Sessions: an operator console, so a working day rather than Django's two weeks.
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 12 * 3600, minimum=60)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = BEHIND_TLS
CSRF_COOKIE_SECURE = BEHIND_TLS
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Only StepChange's own files: no inline script or style, no eval, no other origin. The
# console's JavaScript and CSS are static files; htmx is told not to inject its indicator
# style (base.html), and no template uses hx-on, which htmx would evaluate.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        # Swagger UI draws its icons from data: URLs.
        "img-src": [SELF, "data:"],
        # The console's live updates come over a WebSocket to this same origin.
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
if BEHIND_TLS:
    # TLS ends at the proxy in front of Daphne, which says so in X-Forwarded-Proto.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    # A load balancer's probes come over plain HTTP, from inside.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Serve straight from the app directories, so no collectstatic step is needed to start.
SERVESTATIC_USE_FINDERS = True

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# LOG_FORMAT=json: one JSON object per line (stepchange/logs.py); every line carries the
# id of the request it was written for.
LOG_FORMAT = env_choice("LOG_FORMAT", "plain", ("plain", "json"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "stepchange.logs.RequestIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "stepchange.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": env_choice("LOG_LEVEL", "INFO", _LOG_LEVELS)},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}

# StepChange's own knobs.
# Executors answer list and export requests with frames of many MB (PROTOCOL.md §1.3).
EXECUTOR_MAX_MESSAGE_BYTES = env_int("EXECUTOR_MAX_MESSAGE_BYTES", 64 * 1024 * 1024, minimum=1024)
# Each process marks the executors it holds as seen this often; three missed beats and an
# executor counts as gone even if the process that held it died without saying so.
EXECUTOR_HEARTBEAT_SECONDS = env_int("EXECUTOR_HEARTBEAT_SECONDS", 15, minimum=1)
RELAY_TIMEOUT_SECONDS = env_int("RELAY_TIMEOUT_SECONDS", 30, minimum=1)
# Each process also beats in the shared cache (Redis) this often, the beat lasting this long:
# a request waiting on an executor held by a process whose beat is gone fails at once (502).
PROCESS_BEAT_SECONDS = env_int("PROCESS_BEAT_SECONDS", 1, minimum=1)
PROCESS_BEAT_EXPIRY_SECONDS = env_int("PROCESS_BEAT_EXPIRY_SECONDS", 3, minimum=2)
# On SIGTERM a server process stops taking connections, lets its relayed requests finish
# for at most this long, sends its executors elsewhere and exits (stepchange/server.py).
SHUTDOWN_GRACE_SECONDS = env_int("SHUTDOWN_GRACE_SECONDS", 10, minimum=1)
# How long /readyz waits for the app database and the channel layer each.
READY_TIMEOUT_SECONDS = env_int("READY_TIMEOUT_SECONDS", 2, minimum=1)
# A read (never an action) that its executor has not answered this soon is asked of another
# live executor once: a frozen executor costs a read this long, not the whole timeout.
RELAY_READ_FAILOVER_SECONDS = env_int("RELAY_READ_FAILOVER_SECONDS", 3, minimum=1)
# An executor that has not answered executor_info this long after connecting is closed.
EXECUTOR_INFO_TIMEOUT_SECONDS = env_int("EXECUTOR_INFO_TIMEOUT_SECONDS", 30, minimum=1)
REQUEST_LOG_BODY_BYTES = env_int("REQUEST_LOG_BODY_BYTES", 16 * 1024, minimum=0)
REQUEST_LOG_RETENTION_DAYS = env_int("REQUEST_LOG_RETENTION_DAYS", 14, minimum=1)
# Tests write request-log entries at once instead of through the batching thread.
REQUEST_LOG_INLINE = False
# The longest a query of StepChange's may run on a Postgres system database.
SYSTEM_DB_STATEMENT_TIMEOUT_MS = env_int("SYSTEM_DB_STATEMENT_TIMEOUT_MS", 5000, minimum=1)
RECOVERY_SWEEP_SECONDS = env_int("RECOVERY_SWEEP_SECONDS", 2, minimum=1)
# Database-managed executors' liveness URLs: how often they are probed, how long one may
# take to answer, and how many are probed at once.
LIVENESS_PROBE_SECONDS = env_int("LIVENESS_PROBE_SECONDS", 5, minimum=1)
LIVENESS_TIMEOUT_SECONDS = env_int("LIVENESS_TIMEOUT_SECONDS", 3, minimum=1)
LIVENESS_CONCURRENCY = env_int("LIVENESS_CONCURRENCY", 16, minimum=1)
# How often an application with a retention rule has it sent (to one executor) again.
RETENTION_INTERVAL_SECONDS = env_int("RETENTION_INTERVAL_SECONDS", 3600, minimum=60)
# Retention written into a system database (no executor connected): workflows per batch
# transaction, and each batch's statement timeout on Postgres (a batch past it stops the sweep).
RETENTION_BATCH_ROWS = env_int("RETENTION_BATCH_ROWS", 1000, minimum=1, maximum=10_000)
RETENTION_STATEMENT_TIMEOUT_MS = env_int("RETENTION_STATEMENT_TIMEOUT_MS", 30_000, minimum=1)
# Alerts: how often rules are evaluated and the outbox is sent, and the first retry's wait
# (doubled after each failure).
ALERT_EVALUATE_SECONDS = env_int("ALERT_EVALUATE_SECONDS", 15, minimum=1)
ALERT_DELIVERY_SECONDS = env_int("ALERT_DELIVERY_SECONDS", 2, minimum=1)
ALERT_RETRY_BASE_SECONDS = env_int("ALERT_RETRY_BASE_SECONDS", 10, minimum=0)
# Metrics (README "Metrics"): how often new workflows are rolled up, how long a stamped
# row is given to commit before its minute is counted, and how far back a first roll-up
# of an application's system database reaches.
METRICS_ROLLUP_SECONDS = env_int("METRICS_ROLLUP_SECONDS", 15, minimum=1)
METRICS_SETTLE_SECONDS = env_int("METRICS_SETTLE_SECONDS", 10, minimum=0)
METRICS_BACKFILL_HOURS = env_int("METRICS_BACKFILL_HOURS", 24 * 30, minimum=1)
# Email alerts go through Django's mail settings.
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "stepchange@localhost")
STEPCHANGE_API_TOKEN_PREFIX = "sc_"
# Scoped API keys (README "API keys") start with this, so a bearer credential says which it is.
STEPCHANGE_API_KEY_PREFIX = "sck_"
# GET /metrics (README "Prometheus"): a scraper presents this as its bearer token; without
# it, only a signed-in admin may read the page.
METRICS_TOKEN = env_str("METRICS_TOKEN")
if METRICS_TOKEN and len(METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("METRICS_TOKEN must be at least 16 characters long")
# The organisations the Conductor-compatible API (/conductor/v2/orgs/<org>/) answers for:
# StepChange has one tenant, so any name when this names none.
CONDUCTOR_API_ORGS = env_list("CONDUCTOR_API_ORGS", [])
# Where the server processes of one host share their counters (stepchange/server.py); the
# standard PROMETHEUS_MULTIPROC_DIR, when set, wins.
METRICS_MULTIPROC_DIR = Path(env_str("PROMETHEUS_MULTIPROC_DIR", str(DATA_DIR / "prometheus")))
# The same scrape without a token, on a listener of its own (stepchange/server.py):
# 0 leaves it closed. Loopback by default: who can reach the port can read it.
METRICS_PORT = env_int("METRICS_PORT", 0, minimum=0, maximum=65535)
METRICS_BIND = env_ip("METRICS_BIND", "127.0.0.1")
# The largest request body (Django's own limit, which is 2.5 MB): an edited fork's input
# and step outputs arrive in one, as JSON or as the console's form.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("MAX_REQUEST_BODY_BYTES", 32 * 1024 * 1024, minimum=1024)
# The largest pickle read from a Python executor's export (an edited fork of an application
# whose system database StepChange cannot reach travels as one).
PYTHON_EXPORT_MAX_BYTES = env_int("PYTHON_EXPORT_MAX_BYTES", 32 * 1024 * 1024, minimum=1024)
# The largest workflow export file StepChange reads (to import it, or to view it offline),
# zipped or once unzipped.
EXPORT_FILE_MAX_BYTES = env_int("EXPORT_FILE_MAX_BYTES", 32 * 1024 * 1024, minimum=1024)

# Single sign-on with OpenID Connect (stepchange/sso.py, README "Single sign-on"), through
# mozilla-django-oidc, whose own setting names (OIDC_RP_*, OIDC_OP_*) are filled here. Off
# unless OIDC_ISSUER is set. Endpoints left unset are read from the issuer's discovery
# document when first needed, so a provider that is down never stops StepChange starting.
OIDC_ISSUER = env_url("OIDC_ISSUER", schemes=("http", "https")).rstrip("/")
SSO_ENABLED = bool(OIDC_ISSUER)
SSO_PROVIDER_NAME = env_str("OIDC_PROVIDER_NAME", "single sign-on")
OIDC_RP_CLIENT_ID = env_str("OIDC_CLIENT_ID")
OIDC_RP_CLIENT_SECRET = env_str("OIDC_CLIENT_SECRET")
OIDC_RP_SCOPES = env_str("OIDC_SCOPES", "openid email profile")
OIDC_RP_SIGN_ALGO = env_choice(
    "OIDC_SIGN_ALGO", "RS256", ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "HS256")
)
_ENDPOINT_SCHEMES = ("http", "https")
OIDC_OP_AUTHORIZATION_ENDPOINT = env_url("OIDC_AUTHORIZATION_ENDPOINT", schemes=_ENDPOINT_SCHEMES)
OIDC_OP_TOKEN_ENDPOINT = env_url("OIDC_TOKEN_ENDPOINT", schemes=_ENDPOINT_SCHEMES)
OIDC_OP_USER_ENDPOINT = env_url("OIDC_USERINFO_ENDPOINT", schemes=_ENDPOINT_SCHEMES)
OIDC_OP_JWKS_ENDPOINT = env_url("OIDC_JWKS_ENDPOINT", schemes=_ENDPOINT_SCHEMES)
# PKCE as well as the state and nonce: every provider in use today supports it.
OIDC_USE_PKCE = env_bool("OIDC_USE_PKCE", True)
OIDC_TIMEOUT = env_int("OIDC_TIMEOUT_SECONDS", 10, minimum=1)
# The clocks of StepChange and the provider may differ by this much (expiry, issue time).
SSO_CLOCK_LEEWAY_SECONDS = env_int("OIDC_CLOCK_LEEWAY_SECONDS", 30, minimum=0)
# Which claims say who someone is, which roles they hold and which applications they see.
SSO_USERNAME_CLAIM = env_str("OIDC_USERNAME_CLAIM", "preferred_username")
SSO_ROLE_CLAIM = env_str("OIDC_ROLE_CLAIM", "groups")
# Claim value → role (a Django group: viewer, operator, admin or a custom one). Empty: each
# claim value that names a group is that group.
SSO_ROLE_MAP = env_mapping("OIDC_ROLE_MAP")
# Unset: single sign-on leaves a user's applications to the admins. Set: its values are
# application names, "*" for all, and they replace the user's access at every sign-in.
SSO_APPLICATION_CLAIM = env_str("OIDC_APPLICATION_CLAIM")
# Whether the sign-in page offers the password form. Off, only a superuser may still sign
# in with a password, at /accounts/login/?password (the way in when the provider is down).
PASSWORD_LOGIN = env_bool("OIDC_PASSWORD_LOGIN", True)
if SSO_ENABLED and not (OIDC_RP_CLIENT_ID and OIDC_RP_CLIENT_SECRET):
    raise ImproperlyConfigured(
        "OIDC_ISSUER is set: OIDC_CLIENT_ID and OIDC_CLIENT_SECRET must be too"
    )
if not SSO_ENABLED and not PASSWORD_LOGIN:
    raise ImproperlyConfigured("OIDC_PASSWORD_LOGIN=false needs single sign-on (OIDC_ISSUER)")
