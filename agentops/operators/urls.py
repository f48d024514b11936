from django.urls import path

from agentops.operators.approvals import views as approvals_views
from agentops.operators.assignment import views as assignment_views
from agentops.operators.audit import views as audit_views
from agentops.operators.canned import views as canned_views
from agentops.operators.labels import views as labels_views
from agentops.operators.presence import views as presence_views
from agentops.operators.queue import views as queue_views
from agentops.operators.takeover import views as takeover_views
from agentops.operators.work import views as work_views

app_name = "operators"

urlpatterns = [
    path("", queue_views.queue, name="queue"),
    path("handoffs/bulk-close", work_views.bulk_close, name="bulk_close"),
    path("notifications/sound", queue_views.notification_sound, name="notification_sound"),
    path("handoffs/<int:handoff_id>/", work_views.handoff_detail, name="handoff"),
    path("handoffs/<int:handoff_id>/read", work_views.mark_read, name="read"),
    path("handoffs/<int:handoff_id>/claim", assignment_views.claim, name="claim"),
    path("handoffs/<int:handoff_id>/reply", work_views.reply, name="reply"),
    path("handoffs/<int:handoff_id>/hand-back", work_views.hand_back, name="hand_back"),
    path("handoffs/<int:handoff_id>/close", work_views.close, name="close"),
    path("handoffs/<int:handoff_id>/reassign", assignment_views.reassign, name="reassign"),
    path("handoffs/<int:handoff_id>/note", work_views.note, name="note"),
    path("handoffs/<int:handoff_id>/notes", work_views.notes_after, name="notes"),
    path("handoffs/<int:handoff_id>/transfer", work_views.transfer, name="transfer"),
    path("handoffs/<int:handoff_id>/snooze", queue_views.snooze, name="snooze"),
    path("handoffs/<int:handoff_id>/wake", queue_views.wake, name="wake"),
    path("handoffs/<int:handoff_id>/labels", labels_views.label_add, name="label_add"),
    path(
        "handoffs/<int:handoff_id>/labels/<int:label_id>/remove",
        labels_views.label_remove,
        name="label_remove",
    ),
    path("labels/", labels_views.labels, name="labels"),
    path("labels/<int:label_id>/", labels_views.label_edit, name="label_edit"),
    path("labels/<int:label_id>/delete", labels_views.label_delete, name="label_delete"),
    path("replies/", canned_views.replies, name="replies"),
    path("replies/<int:reply_id>/", canned_views.reply_edit, name="reply_edit"),
    path("replies/<int:reply_id>/delete", canned_views.reply_delete, name="reply_delete"),
    path("tool-calls/<int:tool_call_id>/decide", approvals_views.decide, name="decide"),
    path("audit/", audit_views.audit, name="audit"),
    path("presence", presence_views.presence, name="presence"),
    path("live/", takeover_views.live, name="live"),
    path("live/<uuid:session_id>/", takeover_views.watch, name="watch"),
    path("live/<uuid:session_id>/take-over", takeover_views.take_over, name="take_over"),
]
