from __future__ import annotations

from typing import TYPE_CHECKING

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import UserChangeForm
from django.http import HttpRequest

from agentops import models
from agentops.agents.services import agent_version_create
from agentops.auth import role_changeable, user_role
from agentops.people.forms import ROLE_CHOICES
from agentops.people.services import user_active_set, user_role_set
from tracing.admin import HistoryAdmin
from tracing.platform.errors import ApplicationError
from tracing.platform.forms import refusal_message

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.forms import ModelForm


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
    readonly_fields = ["published_version"]

    def save_related(
        self, request: HttpRequest, form: ModelForm[models.Agent], formsets: object, change: bool
    ) -> None:
        # The admin is for emergencies: what is saved here runs at once, as a published version.
        super().save_related(request, form, formsets, change)
        agent_version_create(
            agent=form.instance, author=request.user, note="saved in the Django admin", publish=True
        )


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


class UserRoleChangeForm(UserChangeForm):
    """One role, chosen once: the role groups are not offered as a multi-select."""

    role = forms.ChoiceField(
        choices=ROLE_CHOICES,
        required=False,
        help_text="A superuser is always an admin. Change roles on the People page too.",
    )


class PersonAdmin(UserAdmin):
    form = UserRoleChangeForm
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name", "email")}),
        ("Access", {"fields": ("role", "is_active", "is_staff", "is_superuser")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    list_display = ["username", "email", "is_active", "is_staff", "is_superuser", "last_login"]
    list_filter = ["is_active", "is_staff", "is_superuser", "groups"]

    def get_form(self, request, obj=None, change=False, **kwargs):  # type: ignore[no-untyped-def]
        form = super().get_form(request, obj, change=change, **kwargs)
        if obj is not None and "role" in form.base_fields:
            form.base_fields["role"].initial = user_role(obj) or ""
        return form

    def save_model(
        self, request: HttpRequest, obj: User, form: ModelForm[User], change: bool
    ) -> None:
        if not change:
            super().save_model(request, obj, form, change)
            return
        # Deactivation and role go through the services: audited, and streams closed at once.
        active_changed = "is_active" in form.changed_data
        if active_changed:
            obj.is_active = not obj.is_active
        super().save_model(request, obj, form, change)
        try:
            if active_changed:
                user_active_set(user=obj, active=not obj.is_active, actor=request.user)
            role = form.cleaned_data.get("role", "")
            if "role" in form.changed_data and role_changeable(obj):
                user_role_set(user=obj, role=role, actor=request.user)
        except ApplicationError as exc:
            refusal_message(request, exc, refused="Not changed")


admin.site.unregister(get_user_model())
admin.site.register(get_user_model(), PersonAdmin)


@admin.register(models.Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "timezone"]
    filter_horizontal = ["members"]


@admin.register(models.Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["id", "note", "role", "created_by", "expires_at", "accepted_by", "revoked_at"]
    readonly_fields = ["token_hash", "accepted_at", "accepted_by"]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False  # the People page creates them and shows the link
