from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from agentops.auth import api_key_create, role_required
from agentops.health import services_status
from agentops.models import Agent, ApiKey, Run


@role_required("viewer")
def home(request: HttpRequest) -> HttpResponse:
    context = {
        "agents": Agent.objects.select_related("endpoint").order_by("slug"),
        "runs": Run.objects.select_related("agent", "session").order_by("-created_at")[:10],
        "services": services_status(),
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
