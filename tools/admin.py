from django.contrib import admin

from tools import models


@admin.register(models.ToolDefinition)
class ToolDefinitionAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "version", "enabled", "requires_approval", "idempotent"]
    list_filter = ["kind", "enabled"]
    search_fields = ["name", "description"]


@admin.register(models.ToolVersion)
class ToolVersionAdmin(admin.ModelAdmin):
    list_display = ["tool", "version", "created_at"]


@admin.register(models.Credential)
class CredentialAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "last_used_at", "last_failure_at", "token_expires_at"]
    exclude = ["secret_ciphertext", "access_token_ciphertext"]


@admin.register(models.McpServer)
class McpServerAdmin(admin.ModelAdmin):
    list_display = ["name", "transport", "url", "command", "enabled", "last_synced_at"]
