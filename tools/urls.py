from django.urls import path

from tools import views

app_name = "tools"

urlpatterns = [
    path("", views.tools_index, name="list"),
    path("new/", views.tool_create, name="create"),
    path("<int:pk>/", views.tool_detail, name="detail"),
    path("<int:pk>/edit/", views.tool_edit, name="edit"),
    path("<int:pk>/try/", views.tool_try_view, name="try"),
    path("<int:pk>/toggle/", views.tool_toggle, name="toggle"),
    path("credentials/", views.credentials_index, name="credentials"),
    path("credentials/new/", views.credential_create, name="credential_create"),
    path("credentials/<int:pk>/", views.credential_detail, name="credential"),
    path("credentials/<int:pk>/test/", views.credential_test_view, name="credential_test"),
    path("mcp/", views.mcp_index, name="mcp_list"),
    path("mcp/new/", views.mcp_create, name="mcp_create"),
    path("mcp/<int:pk>/", views.mcp_detail, name="mcp"),
    path("mcp/<int:pk>/sync/", views.mcp_sync_view, name="mcp_sync"),
]
