from django.contrib import admin

from memory import models


@admin.register(models.Memory)
class MemoryAdmin(admin.ModelAdmin):
    list_display = ["text", "agent_id", "user_key", "kind", "pinned", "access_count", "created_at"]
    list_filter = ["kind", "pinned"]
    search_fields = ["text", "user_key"]
    exclude = ["embedding"]


@admin.register(models.MemoryRevision)
class MemoryRevisionAdmin(admin.ModelAdmin):
    list_display = ["memory", "edited_by", "created_at"]
