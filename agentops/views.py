"""The site's own pages: Home, the health check, signing in (and django-axes' lockout page,
AXES_LOCKOUT_CALLABLE), and a person's cap, which is the inbox's write shown on the People
page (the people package, part of the core, imports nothing of the inbox)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from agentops import auth
from agentops.auth import role_required
from agentops.health import services_status
from agentops.models import MAX_CAP, Agent, Run
from agentops.selectors import run_queue_summary
from tracing.platform.web import id_param


@role_required("viewer")
def home(request: HttpRequest) -> HttpResponse:
    context = {
        "agents": Agent.objects.select_related("endpoint").order_by("slug"),
        "runs": Run.objects.production()
        .select_related("agent", "session")
        .order_by("-created_at")[:10],
        "services": services_status(),
        "queue": run_queue_summary(),
    }
    return render(request, "agentops/home.html", context)


def healthz(request: HttpRequest) -> JsonResponse:
    statuses = services_status()
    core_up = all(s.up for s in statuses if s.name in {"Postgres", "Redis"})
    return JsonResponse(
        {s.name.lower(): {"up": s.up, "detail": s.detail} for s in statuses},
        status=200 if core_up else 503,
    )


def login_locked_out(
    request: HttpRequest, original_response: Any = None, credentials: Any = None
) -> HttpResponse:
    """django-axes' answer to a login of a locked-out account or address (HTTP 429)."""
    context = {
        "failure_limit": settings.AXES_FAILURE_LIMIT,
        "minutes": int(settings.AXES_COOLOFF_TIME.total_seconds() // 60),
        "username": (credentials or {}).get("username", ""),
    }
    return render(request, "registration/locked_out.html", context, status=429)


class Login(auth_views.LoginView):
    """Operators land on their queue; everyone else on Home (a `next` page wins)."""

    def get_default_redirect_url(self) -> str:
        if auth.user_role(self.request.user) == "operator":
            return reverse("operators:queue")
        return super().get_default_redirect_url()


@role_required("admin")
@require_POST
def user_cap(request: HttpRequest, user_id: int) -> HttpResponse:
    """How many conversations the person is given at once (empty: their team's cap)."""
    from agentops.operators.assignment.services import operator_cap_set

    user = get_object_or_404(get_user_model(), pk=user_id)
    raw = request.POST.get("cap", "").strip()
    cap = id_param(raw)
    if raw and (cap is None or cap > MAX_CAP):
        messages.error(request, f"cap: give a whole number from 1 to {MAX_CAP}, or leave it empty.")
        return redirect("users")
    operator_cap_set(user=user, cap=cap, actor=request.user)
    shown = cap if cap is not None else "the team's"
    messages.success(request, f"{user.get_username()}: {shown} conversations at once.")
    return redirect("users")
