from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from agentops import views
from agentops.api import api

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    # Browsers ask for /favicon.ico on pages that name no icon (JSON, the API docs).
    path(
        "favicon.ico",
        login_not_required(
            RedirectView.as_view(url=static("agentops/favicon.svg"), permanent=True)
        ),
    ),
    path("login/", views.Login.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("users/<int:user_id>/cap", views.user_cap, name="user_cap"),
    path("", include("agentops.people.urls")),
    path("api/", api.urls),
    path("tools/", include("tools.urls")),
    path("memory/", include("memory.urls")),
    path("agents/", include("agentops.agents.urls")),
    path("console/", include("agentops.console.urls")),
    path("operators/", include("agentops.operators.urls")),
    path("webhooks/", include("agentops.webhooks.urls")),
    path("budgets/", include("agentops.budgets.urls")),
    path("widget/", include("agentops.widget.urls")),
    path("endpoints/", include("agentops.endpoints.urls")),
    path("playground/", include("agentops.playground.urls")),
    path("", include("agentops.experiments.urls")),
    path("", include("agentops.observe.urls")),
    path("admin/django-rq/", include("django_rq.urls")),
    path("admin/", admin.site.urls),
]
