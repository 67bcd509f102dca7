"""What StepChange owns: registered DBOS applications, their executor keys, operators'
access and API tokens, and the append-only audit log."""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from stepchange.roles import KEY_PERMISSIONS, PERM_ADMINISTER, scope_names

# App names and keys travel unencoded in the executor's URL (PROTOCOL.md §1.1).
URL_SAFE = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._~-]*$",
    "Use letters, digits and . _ ~ - only (it travels unencoded in a URL).",
)

# Keys may start with any of those characters: generated ones often start with - or _.
URL_SAFE_KEY = RegexValidator(
    r"^[A-Za-z0-9._~-]+$",
    "Use letters, digits and . _ ~ - only (it travels unencoded in a URL).",
)

AUDIT_IMMUTABLE = "Audit records are append-only: they cannot be changed or deleted."

# The liveness source of a database-managed application (README "Database-managed
# applications"): a URL per executor, the executor id put in URL-quoted.
LIVENESS_PLACEHOLDER = "{executor_id}"
LIVENESS_NO_PLACEHOLDER = "The liveness URL must hold {executor_id}, where the executor id goes."
LIVENESS_OTHER_BRACES = "The liveness URL may hold no braces other than one {executor_id}."
LIVENESS_HTTP_ONLY = "The liveness URL must start with http:// or https:// and name a host."
LIVENESS_SPACES = "The liveness URL may not hold spaces or control characters."
LIVENESS_WHERE = (
    "The liveness URL must hold {executor_id} in its host, path or query, so that each "
    "executor is asked about itself."
)
LIVENESS_USERINFO = (
    "The liveness URL may not hold a user or password: it is shown to everyone who can see "
    "the application, and is never sent."
)
# Stands for an executor id while a template is checked: found nowhere else in a URL.
_CHECKED_ID = "stepchange-checks-this-executor-id"


def liveness_url(template: str, executor_id: str) -> str:
    """The URL that says whether `executor_id` is alive: its id URL-quoted, so an id with
    a slash or a question mark cannot reach another path or host."""
    return template.replace(LIVENESS_PLACEHOLDER, quote(executor_id, safe=""))


def validate_liveness_template(template: str) -> None:
    if LIVENESS_PLACEHOLDER not in template:
        raise ValidationError(LIVENESS_NO_PLACEHOLDER)
    rest = template.replace(LIVENESS_PLACEHOLDER, "")
    if "{" in rest or "}" in rest:
        raise ValidationError(LIVENESS_OTHER_BRACES)
    if any(character.isspace() or ord(character) < 32 for character in template):
        raise ValidationError(LIVENESS_SPACES)
    try:
        parts = urlsplit(liveness_url(template, _CHECKED_ID))
        parts.port  # noqa: B018 (a bad port raises here)
    except ValueError:
        raise ValidationError(LIVENESS_HTTP_ONLY) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(LIVENESS_HTTP_ONLY)
    if parts.username is not None or parts.password is not None:
        raise ValidationError(LIVENESS_USERINFO)
    if _CHECKED_ID not in parts.hostname + parts.path + parts.query:
        raise ValidationError(LIVENESS_WHERE)


class Application(models.Model):
    name = models.CharField(max_length=100, unique=True, validators=[URL_SAFE])
    system_database_url = models.CharField(
        max_length=1000,
        blank=True,
        help_text="postgresql://… or sqlite:///… of the app's DBOS system database (optional).",
    )
    system_database_schema = models.CharField(
        max_length=63, blank=True, default="dbos", help_text="Postgres schema of the DBOS tables."
    )
    recovery_grace_seconds = models.PositiveIntegerField(
        default=60,
        help_text="How long an executor may stay away before its work is recovered elsewhere.",
    )
    liveness_url_template = models.CharField(
        "liveness URL template",
        max_length=1000,
        blank=True,
        validators=[validate_liveness_template],
        help_text="Database-managed executors only: a URL that answers 2xx while the executor "
        "is alive, such as http://{executor_id}:8000/healthz. One that fails for the grace "
        "period has its PENDING workflows recovered through the system database.",
    )
    # Retention (PROTOCOL.md §2.2 `retention`), sent by an admin to one executor; unset = none.
    retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Delete finished workflows completed more than this many days ago.",
    )
    retention_rows = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Keep at most this many finished workflows; older ones are deleted.",
    )
    retention_timeout_hours = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Cancel pending, enqueued and delayed workflows created more than this many "
        "hours ago.",
    )
    retention_sent_at = models.DateTimeField(null=True, blank=True, editable=False)
    fork_approval_required = models.BooleanField(
        default=False,
        help_text="A staged edited fork must be approved by a second operator before it runs.",
    )
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [
            ("inspect_workflows", "Can inspect workflows, steps, queues and executors"),
            ("operate_workflows", "Can act on workflows and run edited forks"),
            ("administer", "Can administer applications, keys, users and the audit log"),
        ]

    def __str__(self) -> str:
        return self.name


class ApplicationAccess(models.Model):
    """Limits one user to some applications. A user without a limiting row sees them all."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="application_access"
    )
    limited = models.BooleanField(
        default=True, help_text="When set, the user sees only the applications chosen here."
    )
    applications = models.ManyToManyField(Application, blank=True, related_name="+")

    class Meta:
        verbose_name_plural = "application access"

    def __str__(self) -> str:
        return f"access of {self.user}"


class ExecutorKey(models.Model):
    """A credential an executor presents in its URL. Only a hash is kept."""

    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="keys")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=8, help_text="The key's first characters.")
    key_hash = models.CharField(max_length=64, db_index=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["application__name", "-created_at"]

    def __str__(self) -> str:
        return f"{self.application.name} key {self.prefix}…"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class ApiToken(models.Model):
    """A personal API token: acts as its user, with that user's permissions."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, help_text="The token's first characters.")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class ApiKey(models.Model):
    """A scoped API key, made by an admin for an owner: it reaches the applications chosen
    (or all) and carries the permissions chosen, never more than its owner holds at the
    moment it is used (`KeyHolder`). Only a hash is kept."""

    name = models.CharField(max_length=100)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )
    prefix = models.CharField(max_length=12, help_text="The key's first characters.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    all_applications = models.BooleanField(default=False)
    applications = models.ManyToManyField(Application, blank=True, related_name="+")
    # Dotted permission names, out of roles.KEY_PERMISSIONS.
    permissions = models.JSONField(default=list)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and not self.is_expired

    @property
    def scope(self) -> list[str]:
        """What it carries, by short name: read, act, admin."""
        return scope_names(self.permissions)

    def carries(self, perm: str) -> bool:
        """Whether the key's scope takes in `perm`. The admin role's other permissions
        (Django's model permissions) go with the admin scope."""
        if perm in KEY_PERMISSIONS:
            return perm in self.permissions
        return PERM_ADMINISTER in self.permissions

    def application_ids(self) -> frozenset[int] | None:
        """The applications the key reaches, or None for all. Read once per key object."""
        if self.all_applications:
            return None
        cached: frozenset[int]
        try:
            cached = self._stepchange_application_ids  # type: ignore[has-type]
        except AttributeError:
            cached = frozenset(self.applications.values_list("pk", flat=True))
            self._stepchange_application_ids = cached
        return cached


class KeyHolder(User):
    """A key's owner, as a request made with the key sees them: every permission is the
    narrower of the key's scope and what the owner holds now, so an owner who loses a
    role loses it through the key at once. `stepchange.access` narrows the applications."""

    api_key: ApiKey

    class Meta:
        proxy = True
        default_permissions = ()

    def has_perm(self, perm: str, obj: Any = None) -> bool:
        return self.api_key.carries(perm) and super().has_perm(perm, obj)

    def has_module_perms(self, app_label: str) -> bool:
        return self.api_key.carries(PERM_ADMINISTER) and super().has_module_perms(app_label)

    def owner_has_perm(self, perm: str) -> bool:
        """What the owner holds without the key: to say why a refusal happened."""
        return super().has_perm(perm)


class SsoIdentity(models.Model):
    """The provider's account (issuer and subject) that signs in as a user through single
    sign-on. A user is found by this, never by a name or address the provider sends."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sso_identity"
    )
    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)
    last_login_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "single sign-on identity"
        verbose_name_plural = "single sign-on identities"
        constraints = [
            models.UniqueConstraint(fields=["issuer", "subject"], name="unique_sso_identity")
        ]

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"


class SavedView(models.Model):
    """A named workflow-list filter (its query string), kept for its owner or the team."""

    application = models.ForeignKey(
        Application, on_delete=models.CASCADE, related_name="saved_views"
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_views"
    )
    name = models.CharField(max_length=100)
    query = models.CharField(max_length=2000, blank=True)
    shared = models.BooleanField(default=False, help_text="Everyone who sees the app sees it.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["application", "owner", "name"], name="unique_saved_view_name"
            )
        ]

    def __str__(self) -> str:
        return f"{self.application.name}: {self.name}"


class AuditImmutableError(Exception):
    pass


class AuditQuerySet(models.QuerySet["AuditRecord"]):
    def update(self, **kwargs: Any) -> int:
        raise AuditImmutableError(AUDIT_IMMUTABLE)

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AuditImmutableError(AUDIT_IMMUTABLE)


class AuditRecord(models.Model):
    """One action or attempt. Append-only here, in the admin, the API and (by trigger) the DB."""

    class Result(models.TextChoices):
        OK = "ok"
        DENIED = "denied"
        FAILED = "failed"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # Plain ids without constraints: deleting a user or an application must not touch history.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_name = models.CharField(max_length=150, blank=True)
    role = models.CharField(max_length=20, blank=True)
    application = models.ForeignKey(
        Application,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    application_name = models.CharField(max_length=100, blank=True, db_index=True)
    action = models.CharField(max_length=64, db_index=True)
    target = models.CharField(max_length=255, blank=True)
    parameters = models.JSONField(default=dict, blank=True)
    result = models.CharField(max_length=10, choices=Result.choices, default=Result.OK)
    detail = models.TextField(blank=True)
    reason = models.TextField(blank=True)
    source_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    # The id of the HTTP request that did it (X-Request-ID, stepchange/logs.py): the same
    # as on its log lines.
    http_request_id = models.CharField(max_length=64, blank=True)
    # The executor's answer to the relayed request, as it sent it (clipped when large).
    response = models.JSONField(null=True, blank=True)
    value_diff = models.JSONField(null=True, blank=True)
    # The API key the actor used, when they used one. Nullable without a default, so that
    # SQLite adds the columns in place and keeps the table's append-only triggers.
    api_key = models.ForeignKey(
        ApiKey,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    api_key_name = models.CharField(max_length=100, null=True, blank=True)  # noqa: DJ001

    objects: ClassVar[AuditQuerySet] = AuditQuerySet.as_manager()  # type: ignore[assignment]

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["actor_name", "-created_at"]),
            # A workflow's page shows the history of what was done to it.
            models.Index(fields=["application_name", "target", "-created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_name or '-'} {self.action}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AuditImmutableError(AUDIT_IMMUTABLE)
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AuditImmutableError(AUDIT_IMMUTABLE)
