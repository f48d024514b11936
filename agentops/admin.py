from django import forms
from django.contrib import admin

from agentops import models
from tracing.admin import HistoryAdmin


class ModelEndpointForm(forms.ModelForm):
    api_key = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only: leave empty to keep the stored key.",
    )
    clear_api_key = forms.BooleanField(required=False)

    class Meta:
        model = models.ModelEndpoint
        fields = [
            "name",
            "base_url",
            "default_model",
            "timeout_seconds",
            "breaker_threshold",
            "breaker_cooldown_seconds",
        ]

    def save(self, commit: bool = True) -> models.ModelEndpoint:
        endpoint = super().save(commit=False)
        if self.cleaned_data.get("clear_api_key"):
            endpoint.set_api_key("")
        elif self.cleaned_data.get("api_key"):
            endpoint.set_api_key(self.cleaned_data["api_key"])
        if commit:
            endpoint.save()
        return endpoint


@admin.register(models.ModelEndpoint)
class ModelEndpointAdmin(admin.ModelAdmin):
    form = ModelEndpointForm
    list_display = [
        "name",
        "base_url",
        "default_model",
        "breaker_state",
        "breaker_failures",
        "breaker_opened_at",
    ]
    readonly_fields = ["breaker_state", "breaker_failures", "breaker_opened_at", "has_api_key"]

    @admin.display(boolean=True)
    def has_api_key(self, obj: models.ModelEndpoint) -> bool:
        return bool(obj.api_key_ciphertext)


class AgentFallbackInline(admin.TabularInline):
    model = models.AgentFallback
    extra = 0


@admin.register(models.Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "endpoint", "model", "max_steps", "max_concurrent_runs"]
    search_fields = ["slug", "name"]
    filter_horizontal = ["tools"]
    inlines = [AgentFallbackInline]


@admin.register(models.Session)
class SessionAdmin(admin.ModelAdmin):
    list_display = ["id", "agent", "external_user", "status", "operator", "updated_at"]
    list_filter = ["status", "agent"]
    search_fields = ["id", "external_user", "title"]
    raw_id_fields = ["operator", "created_by"]


@admin.register(models.Message)
class MessageAdmin(HistoryAdmin):
    list_display = ["session", "seq", "role", "token_count", "created_at"]
    list_filter = ["role"]
    raw_id_fields = ["session", "run", "author"]


@admin.register(models.Run)
class RunAdmin(HistoryAdmin):
    list_display = ["id", "agent", "status", "step", "error_class", "created_at", "finished_at"]
    list_filter = ["status", "agent", "error_class"]
    search_fields = ["id", "session__id", "session__external_user"]
    raw_id_fields = ["session", "trigger"]


@admin.register(models.ToolCall)
class ToolCallAdmin(HistoryAdmin):
    list_display = ["tool_name", "run", "step", "status", "attempts", "started_at"]
    list_filter = ["status", "tool_name"]
    raw_id_fields = ["run", "decided_by"]


@admin.register(models.Handoff)
class HandoffAdmin(admin.ModelAdmin):
    list_display = ["id", "session", "status", "team", "priority", "claimed_by", "created_at"]
    list_filter = ["status", "team"]
    raw_id_fields = ["session", "run", "claimed_by"]


@admin.register(models.AuditEntry)
class AuditEntryAdmin(HistoryAdmin):
    list_display = ["created_at", "actor", "action", "session", "target"]
    list_filter = ["action"]
    raw_id_fields = ["actor", "session"]

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False  # the audit trail must be complete


@admin.register(models.ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "prefix", "created_at", "last_used_at"]
    readonly_fields = ["prefix", "key_hash"]
