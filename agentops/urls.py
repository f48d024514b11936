from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from agentops import views
from agentops.api import api

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/", views.account, name="account"),
    path("account/keys/<int:key_id>/delete", views.api_key_delete, name="api_key_delete"),
    path("account/password/", views.PasswordChange.as_view(), name="password_change"),
    path("users/", views.users, name="users"),
    path("users/<int:user_id>/role", views.user_role, name="user_role"),
    path("api/", api.urls),
    path("tools/", include("tools.urls")),
    path("memory/", include("memory.urls")),
    path("console/", include("agentops.console.urls")),
    path("operators/", include("agentops.operators.urls")),
    path("widget/", include("agentops.widget.urls")),
    path("", include("agentops.observe.urls")),
    path("admin/django-rq/", include("django_rq.urls")),
    path("admin/", admin.site.urls),
]
