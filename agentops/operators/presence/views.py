"""The operator's own online/away/offline switch."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from agentops.auth import role_required
from agentops.operators.presence import selectors, services
from tracing.platform.errors import ApplicationError
from tracing.platform.forms import refusal_message
from tracing.platform.web import HtmxHttpRequest, next_url


@role_required("operator")
@require_POST
def presence(request: HtmxHttpRequest) -> HttpResponse:
    """The operator's own online/away/offline switch in the navigation."""
    refusal: ApplicationError | None = None
    try:
        services.operator_presence_set(user=request.user, presence=request.POST.get("presence", ""))
    except ApplicationError as exc:
        refusal = exc
    if request.htmx:
        presence = selectors.operator_presence(user=request.user)
        context = {"presence": presence, "error": str(refusal) if refusal else ""}
        return render(request, "operators/_presence.html", context, status=400 if refusal else 200)
    if refusal:
        refusal_message(request, refusal, refused="Not changed")
    return redirect(next_url(request, fallback=reverse("operators:queue")))  # never off-site
