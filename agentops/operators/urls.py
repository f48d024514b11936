from django.urls import path

from agentops.operators import views

app_name = "operators"

urlpatterns = [
    path("", views.queue, name="queue"),
    path("handoffs/<int:handoff_id>/", views.handoff_detail, name="handoff"),
    path("handoffs/<int:handoff_id>/claim", views.claim, name="claim"),
    path("handoffs/<int:handoff_id>/reply", views.reply, name="reply"),
    path("handoffs/<int:handoff_id>/hand-back", views.hand_back, name="hand_back"),
    path("handoffs/<int:handoff_id>/close", views.close, name="close"),
    path("handoffs/<int:handoff_id>/reassign", views.reassign, name="reassign"),
    path("tool-calls/<int:tool_call_id>/decide", views.decide, name="decide"),
    path("audit/", views.audit, name="audit"),
    path("live/", views.live, name="live"),
    path("live/<uuid:session_id>/", views.watch, name="watch"),
    path("live/<uuid:session_id>/take-over", views.take_over, name="take_over"),
]
