from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse_lazy
from django.views.decorators.http import require_POST

from agentops.auth import api_key_create, role_required
from agentops.forms import ROLE_CHOICES, RoleForm, UserCreateForm
from agentops.health import services_status
from agentops.models import Agent, ApiKey, Run
from agentops.selectors import run_queue_summary, users_list
from agentops.services import audit_record, user_create, user_role_set


@role_required("viewer")
def home(request: HttpRequest) -> HttpResponse:
    context = {
        "agents": Agent.objects.select_related("endpoint").order_by("slug"),
        "runs": Run.objects.select_related("agent", "session").order_by("-created_at")[:10],
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


@login_required
def account(request: HttpRequest) -> HttpResponse:
    new_key = None
    if request.method == "POST":
        name = request.POST.get("name", "").strip()
        if not name or len(name) > 100:
            messages.error(request, "Give the key a name of 1 to 100 characters.")
        else:
            _, new_key = api_key_create(user=request.user, name=name)
    keys = ApiKey.objects.filter(user_id=request.user.pk or 0).order_by("-created_at")
    return render(request, "agentops/account.html", {"keys": keys, "new_key": new_key})


@login_required
@require_POST
def api_key_delete(request: HttpRequest, key_id: int) -> HttpResponse:
    get_object_or_404(ApiKey, pk=key_id, user=request.user).delete()
    messages.success(request, "API key revoked.")
    return redirect("account")


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


class PasswordChange(auth_views.PasswordChangeView):
    """`/account/password/`: every user changes their own password (old one required)."""

    template_name = "agentops/password_change.html"
    success_url = reverse_lazy("account")

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        user = self.request.user
        audit_record(actor=user, action="password.changed", target=user.get_username())
        messages.success(self.request, "Password changed.")
        return response


@role_required("admin")
def users(request: HttpRequest) -> HttpResponse:
    form = UserCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = user_create(form=form, role=form.cleaned_data["role"], actor=request.user)
        messages.success(request, f"Created {user.get_username()}.")
        return redirect("users")
    context = {"rows": users_list(), "form": form, "role_choices": ROLE_CHOICES}
    return render(request, "agentops/users.html", context, status=400 if form.errors else 200)


@role_required("admin")
@require_POST
def user_role(request: HttpRequest, user_id: int) -> HttpResponse:
    user = get_object_or_404(get_user_model(), pk=user_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a role from the list.")
        return redirect("users")
    role = form.cleaned_data["role"]
    try:
        user_role_set(user=user, role=role, actor=request.user)
    except ValueError as exc:
        messages.error(request, f"Not changed: {exc}.")
    else:
        messages.success(request, f"{user.get_username()}: {role or 'no role'}.")
    return redirect("users")
