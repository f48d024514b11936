from django.contrib import admin

from memory import models


class ReadOnlyAdmin(admin.ModelAdmin):
    """Changes go through the memory pages, which keep revisions and the audit trail."""

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(models.Memory)
class MemoryAdmin(ReadOnlyAdmin):
    list_display = ["text", "agent_id", "user_key", "kind", "pinned", "access_count", "created_at"]
    list_filter = ["kind", "pinned"]
    search_fields = ["text", "user_key"]
    exclude = ["embedding"]


@admin.register(models.MemoryRevision)
class MemoryRevisionAdmin(ReadOnlyAdmin):
    list_display = ["memory", "edited_by", "created_at"]


@admin.register(models.MemoryEvent)
class MemoryEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "action", "memory_ref", "agent_id", "user_key", "actor_label"]
    list_filter = ["action"]
    search_fields = ["user_key", "actor_label"]
