"""Admin pages for applications, keys, access, tokens and the (read-only) audit log.

Writes go through stepchange.services, so the admin audits exactly like the console.
"""

from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from stepchange.audit import AuditAction, audit_record
from stepchange.models import ApiToken, Application, ApplicationAccess, AuditRecord, ExecutorKey
from stepchange.services import api_token_revoke, executor_key_create, executor_key_revoke


class ExecutorKeyInline(admin.TabularInline[ExecutorKey, Application]):
    model = ExecutorKey
    fields = ["prefix", "name", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["prefix", "name", "created_at", "last_used_at", "revoked_at"]
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Application)
class ApplicationAdmin(admin.ModelAdmin[Application]):
    list_display = ["name", "system_database_schema", "recovery_grace_seconds", "active_keys"]
    search_fields = ["name", "notes"]
    fields = [
        "name",
        "system_database_url",
        "system_database_schema",
        "recovery_grace_seconds",
        "fork_approval_required",
        "notes",
    ]
    inlines = [ExecutorKeyInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Application]:
        return (
            super()
            .get_queryset(request)
            .annotate(_active_keys=Count("keys", filter=Q(keys__revoked_at__isnull=True)))
        )

    @admin.display(description="active keys", ordering="_active_keys")
    def active_keys(self, obj: Any) -> int:
        return int(obj._active_keys)

    def save_model(self, request: HttpRequest, obj: Application, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        fields = [name for name in form.changed_data if name != "system_database_url"]
        audit_record(
            action=AuditAction.APPLICATION_UPDATE if change else AuditAction.APPLICATION_CREATE,
            request=request,
            application=obj,
            target=obj.name,
            parameters={
                "changed": fields,
                "system_database_url_changed": "system_database_url" in form.changed_data,
            },
        )

    def delete_model(self, request: HttpRequest, obj: Application) -> None:
        audit_record(
            action=AuditAction.APPLICATION_DELETE, request=request, application=obj, target=obj.name
        )
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Application]) -> None:
        for application in queryset:
            self.delete_model(request, application)


@admin.register(ExecutorKey)
class ExecutorKeyAdmin(admin.ModelAdmin[ExecutorKey]):
    list_display = ["application", "prefix", "name", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["application", ("revoked_at", admin.EmptyFieldListFilter)]
    actions = ["revoke"]

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
        key, secret = executor_key_create(
            application=obj.application, name=obj.name, request=request
        )
        obj.pk = key.pk
        messages.warning(
            request,
            f"The new key for {obj.application.name} is {secret} . "
            "Copy it now: it is stored hashed and will not be shown again.",
        )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ExecutorKey]) -> None:
        for key in queryset.select_related("application"):
            executor_key_revoke(executor_key=key, request=request)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")


@admin.register(ApplicationAccess)
class ApplicationAccessAdmin(admin.ModelAdmin[ApplicationAccess]):
    list_display = ["user", "limited"]
    filter_horizontal = ["applications"]
    autocomplete_fields = ["user"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin[ApiToken]):
    list_display = ["user", "name", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    fields = ["user", "name", "prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["user", "name", "prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

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

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [field.name for field in AuditRecord._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
