from django.urls import path

from agentops.console import views

app_name = "console"

urlpatterns = [
    path("", views.index, name="index"),
    path("sessions/new", views.session_new, name="session_new"),
    path("sessions/<uuid:session_id>/", views.session_detail, name="session"),
    path("sessions/<uuid:session_id>/send", views.session_send, name="session_send"),
    path("sessions/<uuid:session_id>/items", views.session_items, name="session_items"),
    path("sessions/<uuid:session_id>/tool-calls", views.session_tool_calls, name="tool_calls"),
    path("sessions/<uuid:session_id>/rating", views.session_rate, name="session_rate"),
]
