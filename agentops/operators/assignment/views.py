"""Assignment's pages: claim a handoff, reassign it (admins)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from agentops.auth import role_required
from agentops.operators.assignment import services
from agentops.operators.pages import draft_set, handoff_or_404
from agentops.operators.queue.views import queue_context
from tracing.platform.errors import ApplicationError
from tracing.platform.forms import refusal_message
from tracing.platform.web import HtmxHttpRequest


@role_required("operator")
@require_POST
def claim(request: HtmxHttpRequest, handoff_id: int) -> HttpResponse:
    handoff_or_404(handoff_id)
    try:
        services.handoff_claim(handoff_id=handoff_id, user=request.user)
    except ApplicationError as exc:
        if request.htmx:
            context = {**queue_context(request), "claim_error": f"Not claimed: {exc}."}
            return render(request, "operators/queue.html#live", context)
        refusal_message(request, exc, refused="Not claimed")
        return redirect("operators:queue")
    url = reverse("operators:handoff", kwargs={"handoff_id": handoff_id})
    draft_set(request, handoff_id, request.POST.get("draft", ""))
    if request.htmx:
        return HttpResponse(status=204, headers={"HX-Redirect": url})
    return redirect(url)


@role_required("admin")
@require_POST
def reassign(request: HtmxHttpRequest, handoff_id: int) -> HttpResponse:
    handoff = handoff_or_404(handoff_id)
    to = request.POST.get("operator", "")
    try:
        services.handoff_reassign(handoff=handoff, user=request.user, to_username=to)
    except ApplicationError as exc:
        refusal_message(request, exc, refused="Not reassigned")
    else:
        messages.success(request, f"Reassigned to {to}.")
    return redirect("operators:handoff", handoff_id=handoff_id)
