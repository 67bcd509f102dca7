"""Admin pages for applications, keys, access, tokens, users and groups, and the
(read-only) audit log.

An admin limited to some applications sees and manages only those, and only the users
limited to them (`stepchange.access`). Only a superuser grants superuser or admin powers.
Every change made here is an audit record, as on the console: keys and tokens through
stepchange.services, the rest through the admin's own log hooks (`AuditedAdmin`).
"""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, Permission, User
from django.db.models import Count, Q, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from stepchange.access import audit_records_for, limited_to, require, users_within, visible_to
from stepchange.audit import AuditAction, Result, audit_record
from stepchange.models import ApiToken, Application, ApplicationAccess, AuditRecord, ExecutorKey
from stepchange.roles import PERM_ADMINISTER, ROLE_PERMISSIONS
from stepchange.services import (
    api_token_revoke,
    executor_key_create,
    executor_key_revoke,
    redact_url,
)

MASKED_URL_HELP = (
    "The password shows as ***: leave it so to keep it, or type the whole URL to change it."
)
# A post naming what the form does not offer this admin (`_auditing_refusals`).
REFUSED_FIELDS = "Not offered to this admin: {fields}."
# What the admin role holds beyond the operator's: only a superuser may grant it.
ADMIN_ONLY = [
    name for name in ROLE_PERMISSIONS["admin"] if name not in ROLE_PERMISSIONS["operator"]
]


def _limit(request: HttpRequest) -> frozenset[int] | None:
    """The applications the signed-in admin is limited to, or None."""
    user: Any = request.user
    return None if user.is_superuser else limited_to(user)


def _admin_only_permissions() -> QuerySet[Permission]:
    wanted = Q()
    for dotted in ADMIN_ONLY:
        app_label, codename = dotted.split(".") if "." in dotted else ("stepchange", dotted)
        wanted |= Q(content_type__app_label=app_label, codename=codename)
    return Permission.objects.filter(wanted)


def grantable_groups(user: Any) -> QuerySet[Group]:
    """The groups `user` may give or take away: all for a superuser; for anyone else
    those that carry none of the admin role's own permissions."""
    if user.is_superuser:
        return Group.objects.all()
    return Group.objects.exclude(permissions__in=_admin_only_permissions())


class AuditedAdmin(admin.ModelAdmin[Any]):
    """Writes an audit record for each addition, change and deletion made through these
    pages, where Django writes its own log entry: `<audit_name>.create`, `.update` and
    `.delete`, with the before and after of `audited_fields` (never a secret)."""

    audit_name = ""
    audited_fields: tuple[str, ...] = ()
    # False where a service has already recorded the addition.
    audit_additions = True

    def audit_state(self, obj: Any) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for name in self.audited_fields:
            field = obj._meta.get_field(name)
            value = getattr(obj, name)
            if field.many_to_many:
                state[name] = sorted(str(item) for item in value.all())
            elif value is None or isinstance(value, bool | int | str):
                state[name] = value
            else:
                state[name] = str(value)
        return state

    def audit_application(self, obj: Any) -> Application | None:
        return None

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        model_fields = {field.name for field in self.model._meta.get_fields()}
        readonly = [n for n in self.get_readonly_fields(request, obj) if n in model_fields]
        application = self.audit_application(obj) if obj is not None else None
        return _auditing_refusals(form, request, readonly=readonly, application=application)

    def _audit(self, request: HttpRequest, obj: Any, verb: str, **fields: Any) -> None:
        audit_record(
            action=f"{self.audit_name}.{verb}",
            request=request,
            application=self.audit_application(obj),
            target=f"{self.audit_name} {obj.pk} ({obj})"[:255],
            **fields,
        )

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            # The row as it stands, many-to-many fields too: they are saved after this.
            stored = type(obj)._default_manager.get(pk=obj.pk)
            _before(request)[(self.audit_name, obj.pk)] = self.audit_state(stored)
        super().save_model(request, obj, form, change)

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        entry = super().log_addition(request, obj, message)
        if self.audit_additions:
            self._audit(request, obj, "create", parameters=self.audit_state(obj))
        return entry

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        entry = super().log_change(request, obj, message)
        before = _before(request).pop((self.audit_name, obj.pk), None)
        after = self.audit_state(obj)
        diff = None
        if before is not None:
            diff = {
                name: {"before": before[name], "after": after[name]}
                for name in after
                if before.get(name) != after[name]
            }
        # Django's own message names the fields (or "Changed password."), never values.
        self._audit(request, obj, "update", parameters={"changes": message}, value_diff=diff)
        return entry

    def log_deletions(self, request: HttpRequest, queryset: Any) -> Any:
        # Called before the rows go, so their last state can be recorded.
        for obj in queryset:
            self._audit(request, obj, "delete", parameters=self.audit_state(obj))
        return super().log_deletions(request, queryset)


def _auditing_refusals(
    form: type[forms.BaseForm],
    request: HttpRequest,
    *,
    readonly: list[str],
    application: Application | None,
) -> type[forms.BaseForm]:
    """`form`, recording one `access.denied` for a post that names a choice this admin is
    not offered (but that exists) or a field she may not edit. Django refuses both quietly
    (the form's error, or the value ignored); a browser sends neither, so it is an attempt."""

    class AuditingRefusals(form):  # type: ignore[valid-type,misc]
        def full_clean(self) -> None:
            super().full_clean()
            refused = [name for name in readonly if name in self.data]
            refused += [name for name in self.errors if _withheld_choice(self, name)]
            if self.is_bound and refused:
                audit_record(
                    action=AuditAction.ACCESS_DENIED,
                    request=request,
                    application=application,
                    result=Result.DENIED,
                    target=f"{request.method} {request.path}",
                    detail=REFUSED_FIELDS.format(fields=", ".join(refused)),
                )

    AuditingRefusals.__name__ = form.__name__
    return AuditingRefusals


def _withheld_choice(form: forms.BaseForm, name: str) -> bool:
    """Whether field `name` was refused a choice that exists but is not offered."""
    field = form.fields.get(name)
    if not isinstance(field, forms.ModelChoiceField):
        return False
    if not any(error.code == "invalid_choice" for error in form.errors.as_data()[name]):
        return False
    values = form.data.getlist(name) if hasattr(form.data, "getlist") else [form.data.get(name)]
    offered: QuerySet[Any] = field.queryset  # type: ignore[assignment]
    try:
        withheld = offered.model._default_manager.filter(pk__in=values).exclude(pk__in=offered)
        return bool(withheld.exists())
    except (ValueError, TypeError):
        return False


def _before(request: HttpRequest) -> dict[tuple[str, Any], dict[str, Any]]:
    states: dict[tuple[str, Any], dict[str, Any]]
    try:
        states = request._stepchange_audit_before  # type: ignore[attr-defined]
    except AttributeError:
        states = request._stepchange_audit_before = {}  # type: ignore[attr-defined]
    return states


class ExecutorKeyInline(admin.TabularInline[ExecutorKey, Application]):
    model = ExecutorKey
    fields = ["prefix", "name", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["prefix", "name", "created_at", "last_used_at", "revoked_at"]
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


APPLICATION_FIELDS = [
    "name",
    "system_database_url",
    "system_database_schema",
    "recovery_grace_seconds",
    "liveness_url_template",
    "fork_approval_required",
    "notes",
]


class ApplicationForm(forms.ModelForm[Application]):
    """Shows the system database URL with its password masked, and keeps the stored
    password when the masked URL comes back unchanged."""

    class Meta:
        model = Application
        fields = APPLICATION_FIELDS
        help_texts = {"system_database_url": MASKED_URL_HELP}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["system_database_url"] = redact_url(self.instance.system_database_url)

    def clean_system_database_url(self) -> str:
        url: str = self.cleaned_data["system_database_url"]
        stored = self.instance.system_database_url if self.instance.pk else ""
        return stored if stored and url == redact_url(stored) else url


@admin.register(Application)
class ApplicationAdmin(AuditedAdmin):
    form = ApplicationForm
    list_display = ["name", "system_database_schema", "recovery_grace_seconds", "active_keys"]
    search_fields = ["name", "notes"]
    fields = tuple(APPLICATION_FIELDS)
    inlines = [ExecutorKeyInline]
    audit_name = "application"
    audited_fields = tuple(APPLICATION_FIELDS)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Application]:
        applications: QuerySet[Application] = super().get_queryset(request)
        return applications.filter(pk__in=visible_to(request.user)).annotate(
            _active_keys=Count("keys", filter=Q(keys__revoked_at__isnull=True))
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        # An application made by an admin limited to others would be one they cannot see.
        return _limit(request) is None and super().has_add_permission(request)

    @admin.display(description="active keys", ordering="_active_keys")
    def active_keys(self, obj: Any) -> int:
        return int(obj._active_keys)

    def audit_state(self, obj: Any) -> dict[str, Any]:
        state = super().audit_state(obj)
        state["system_database_url"] = redact_url(state["system_database_url"])
        return state

    def audit_application(self, obj: Any) -> Application | None:
        return obj if isinstance(obj, Application) else None

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change and "liveness_url_template" in form.changed_data:
            # conductor imports this app's models: imported here, once both are loaded.
            from conductor.liveness import liveness_forget

            liveness_forget(obj)


@admin.register(ExecutorKey)
class ExecutorKeyAdmin(AuditedAdmin):
    list_display = ["application", "prefix", "name", "created_at", "last_used_at", "revoked_at"]
    list_filter = [
        ("application", admin.RelatedOnlyFieldListFilter),
        ("revoked_at", admin.EmptyFieldListFilter),
    ]
    actions = ["revoke"]
    audit_name = "executor_key"
    audited_fields = ("name",)
    # executor_key_create records a new key.
    audit_additions = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[ExecutorKey]:
        keys: QuerySet[ExecutorKey] = super().get_queryset(request)
        return keys.filter(application__in=visible_to(request.user))

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "application":
            kwargs["queryset"] = visible_to(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        if obj is None:
            return ("application", "name")
        return ("application", "name", "prefix", "created_at", "last_used_at", "revoked_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return []
        return ["application", "prefix", "created_at", "last_used_at", "revoked_at"]

    def save_model(
        self, request: HttpRequest, obj: ExecutorKey, form: ModelForm[ExecutorKey], change: bool
    ) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        require(request.user, PERM_ADMINISTER, obj.application)
        key, secret = executor_key_create(
            application=obj.application, name=obj.name, request=request
        )
        obj.pk = key.pk
        messages.warning(
            request,
            f"The new key for {obj.application.name} is {secret} . "
            "Copy it now: it is stored hashed and will not be shown again.",
        )

    def audit_application(self, obj: Any) -> Application | None:
        return obj.application if isinstance(obj, ExecutorKey) else None

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ExecutorKey]) -> None:
        for key in queryset.select_related("application"):
            executor_key_revoke(executor_key=key, request=request)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")


@admin.register(ApplicationAccess)
class ApplicationAccessAdmin(AuditedAdmin):
    list_display = ["user", "limited"]
    filter_horizontal = ["applications"]
    autocomplete_fields = ["user"]
    audit_name = "application_access"
    audited_fields = ("user", "limited", "applications")

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApplicationAccess]:
        rows: QuerySet[ApplicationAccess] = super().get_queryset(request)
        if request.user.is_superuser:
            return rows
        # Nobody but a superuser changes their own access.
        return rows.filter(user__in=users_within(request.user)).exclude(user=request.user.pk)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # A limited admin can only limit: every row she makes or changes stays limited.
        return ["limited"] if _limit(request) is not None else []

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "user":
            users = users_within(request.user)
            if not request.user.is_superuser:
                users = users.exclude(pk=request.user.pk)
            kwargs["queryset"] = users
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "applications":
            kwargs["queryset"] = visible_to(request.user)
        return super().formfield_for_manytomany(db_field, request, **kwargs)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin[ApiToken]):
    list_display = ["user", "name", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    fields = ["user", "name", "prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["user", "name", "prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiToken]:
        tokens: QuerySet[ApiToken] = super().get_queryset(request)
        return tokens.filter(Q(user__in=users_within(request.user)) | Q(user=request.user.pk))

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Tokens are made by their owner on the console, or by `create_api_token`.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        for token in queryset.select_related("user"):
            api_token_revoke(token=token, actor=request.user, request=request)
        self.message_user(request, f"Revoked {queryset.count()} token(s).")


@admin.register(AuditRecord)
class AuditRecordAdmin(admin.ModelAdmin[AuditRecord]):
    list_display = [
        "created_at",
        "actor_name",
        "role",
        "application_name",
        "action",
        "target",
        "result",
    ]
    list_filter = ["action", "result", "role", "application_name"]
    search_fields = ["actor_name", "target", "action", "request_id"]
    date_hierarchy = "created_at"

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditRecord]:
        return audit_records_for(request.user)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [field.name for field in AuditRecord._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class StepChangeUserAdmin(AuditedAdmin, UserAdmin[User]):
    """Django's user pages, within the admin's reach (`users_within`). Only a superuser
    makes a superuser, sets permissions one by one, or gives (or takes) a group that
    carries the admin role's permissions."""

    audit_name = "user"
    audited_fields = (
        "username",
        "first_name",
        "last_name",
        "email",
        "is_active",
        "is_staff",
        "is_superuser",
        "groups",
        "user_permissions",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        users: QuerySet[User] = super().get_queryset(request)
        return users.filter(pk__in=users_within(request.user))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            fields += ["is_superuser", "user_permissions"]
        return fields

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "groups":
            kwargs["queryset"] = grantable_groups(request.user)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        ids = _limit(request)
        if not change and ids is not None:
            # A user made by a limited admin sees no more than she does.
            access = ApplicationAccess.objects.create(user=obj, limited=True)
            access.applications.set(ids)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        user = form.instance
        # The groups this admin may not give or take away stay as they were.
        kept = list(user.groups.exclude(pk__in=grantable_groups(request.user))) if change else []
        super().save_related(request, form, formsets, change)
        user.groups.add(*kept)


@admin.register(Group)
class StepChangeGroupAdmin(AuditedAdmin, GroupAdmin):
    audit_name = "group"
    audited_fields = ("name", "permissions")
