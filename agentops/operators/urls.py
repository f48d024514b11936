from django.urls import path

from agentops.operators import views

app_name = "operators"

urlpatterns = [
    path("", views.queue, name="queue"),
    path("handoffs/bulk-close", views.bulk_close, name="bulk_close"),
    path("notifications/sound", views.notification_sound, name="notification_sound"),
    path("handoffs/<int:handoff_id>/", views.handoff_detail, name="handoff"),
    path("handoffs/<int:handoff_id>/read", views.mark_read, name="read"),
    path("handoffs/<int:handoff_id>/claim", views.claim, name="claim"),
    path("handoffs/<int:handoff_id>/reply", views.reply, name="reply"),
    path("handoffs/<int:handoff_id>/hand-back", views.hand_back, name="hand_back"),
    path("handoffs/<int:handoff_id>/close", views.close, name="close"),
    path("handoffs/<int:handoff_id>/reassign", views.reassign, name="reassign"),
    path("handoffs/<int:handoff_id>/note", views.note, name="note"),
    path("handoffs/<int:handoff_id>/notes", views.notes_after, name="notes"),
    path("handoffs/<int:handoff_id>/transfer", views.transfer, name="transfer"),
    path("handoffs/<int:handoff_id>/snooze", views.snooze, name="snooze"),
    path("handoffs/<int:handoff_id>/wake", views.wake, name="wake"),
    path("handoffs/<int:handoff_id>/labels", views.label_add, name="label_add"),
    path(
        "handoffs/<int:handoff_id>/labels/<int:label_id>/remove",
        views.label_remove,
        name="label_remove",
    ),
    path("labels/", views.labels, name="labels"),
    path("labels/<int:label_id>/", views.label_edit, name="label_edit"),
    path("labels/<int:label_id>/delete", views.label_delete, name="label_delete"),
    path("replies/", views.replies, name="replies"),
    path("replies/<int:reply_id>/", views.reply_edit, name="reply_edit"),
    path("replies/<int:reply_id>/delete", views.reply_delete, name="reply_delete"),
    path("tool-calls/<int:tool_call_id>/decide", views.decide, name="decide"),
    path("audit/", views.audit, name="audit"),
    path("presence", views.presence, name="presence"),
    path("live/", views.live, name="live"),
    path("live/<uuid:session_id>/", views.watch, name="watch"),
    path("live/<uuid:session_id>/take-over", views.take_over, name="take_over"),
]
