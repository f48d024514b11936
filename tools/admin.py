from django.contrib import admin
from django.http import HttpRequest

from tools import models
from tools.credentials import credential_save
from tools.services import tool_save


@admin.register(models.ToolDefinition)
class ToolDefinitionAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "kind",
        "version",
        "enabled",
        "requires_approval",
        "idempotent",
        "honours_idempotency_key",
    ]
    list_filter = ["kind", "enabled"]
    search_fields = ["name", "description"]
    readonly_fields = ["version"]

    def save_model(
        self, request: HttpRequest, obj: models.ToolDefinition, form: object, change: bool
    ) -> None:
        # The one write path: a changed definition becomes a new version.
        tool_save(tool=obj)


@admin.register(models.ToolVersion)
class ToolVersionAdmin(admin.ModelAdmin):
    list_display = ["tool", "version", "created_at"]

    def has_change_permission(
        self, request: HttpRequest, obj: models.ToolVersion | None = None
    ) -> bool:
        return False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(models.Credential)
class CredentialAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "last_used_at", "last_failure_at", "token_expires_at"]
    exclude = ["secret_ciphertext", "access_token_ciphertext"]
    readonly_fields = ["last_used_at", "last_failure_at", "last_failure", "token_expires_at"]

    def save_model(
        self, request: HttpRequest, obj: models.Credential, form: object, change: bool
    ) -> None:
        credential_save(credential=obj)


@admin.register(models.McpServer)
class McpServerAdmin(admin.ModelAdmin):
    list_display = ["name", "transport", "url", "command", "enabled", "last_synced_at"]
