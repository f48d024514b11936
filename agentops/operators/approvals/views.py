"""Approve or reject a tool call from the queue."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from agentops.auth import role_required
from agentops.models import ToolCall
from agentops.operators.queue.views import queue_context
from agentops.runtime.services import toolcall_decide
from tracing.platform.errors import ApplicationError
from tracing.platform.forms import refusal_message
from tracing.platform.web import HtmxHttpRequest


@role_required("operator")
@require_POST
def decide(request: HtmxHttpRequest, tool_call_id: int) -> HttpResponse:
    tool_call = ToolCall.objects.filter(pk=tool_call_id).first()
    if tool_call is None:
        raise Http404("No such tool call.")
    verdict = request.POST.get("decision", "")
    if verdict not in ("approve", "reject"):
        messages.error(request, "decision: choose approve or reject.")
        return redirect("operators:queue")
    try:
        toolcall_decide(
            tool_call=tool_call,
            approve=verdict == "approve",
            actor=request.user,
            note=request.POST.get("note", ""),
        )
    except ApplicationError as exc:
        refusal_message(request, exc, refused="Not decided")
    else:
        messages.success(
            request, f"{tool_call.tool_name}: {'approved' if verdict == 'approve' else 'rejected'}."
        )
    if request.htmx:
        return render(request, "operators/queue.html#live", queue_context(request))
    return redirect("operators:queue")
