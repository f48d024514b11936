"""The live view, watching one conversation, and taking it over."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from agentops.auth import role_required
from agentops.models import HandoffStatus, Session
from agentops.operators.takeover import selectors, services
from agentops.selectors import conversation_get
from tracing.platform.errors import ApplicationError
from tracing.platform.forms import refusal_message
from tracing.platform.web import HtmxHttpRequest


@role_required("viewer")
@require_GET
def live(request: HtmxHttpRequest) -> HttpResponse:
    """Conversations in progress, with the signals that may call for a human; live."""
    agent = request.GET.get("agent", "")
    context = {
        "conversations": selectors.conversations_live(now=timezone.now(), agent=agent),
        "agent": agent,
        "now": timezone.now(),
        "long_wait": selectors.LONG_WAIT_SECONDS,
    }
    template = "operators/live.html#rows" if request.htmx else "operators/live.html"
    return render(request, template, context)


def _session_or_404(session_id: Any) -> Session:
    """A real conversation: a sandbox one (draft chat, experiment, fork) is not watched here."""
    session = (
        Session.objects.production()
        .select_related("agent", "operator")
        .filter(pk=session_id)
        .first()
    )
    if session is None:
        raise Http404("No such conversation.")
    return session


def _watch_context(request: HtmxHttpRequest, session: Session) -> dict[str, Any]:
    conversation = conversation_get(session=session)
    handoff = conversation.handoff
    return {
        "session": session,
        "items": conversation.items,
        "run": conversation.run,
        "handoff": handoff,
        "live": selectors.conversation_live(session=session, now=timezone.now()),
        "mine": handoff is not None and handoff.claimed_by_id == request.user.pk,
        "taking_over": conversation.run is not None
        and conversation.run.takeover_by_id is not None
        and conversation.running,
    }


@role_required("viewer")
@require_GET
def watch(request: HtmxHttpRequest, session_id: Any) -> HttpResponse:
    """One conversation live, with the take-over button. Once the takeover this operator
    asked for has happened, the bar's live refresh takes them to the claimed conversation."""
    session = _session_or_404(session_id)
    context = _watch_context(request, session)
    if request.htmx:
        handoff = context["handoff"]
        if context["mine"] and handoff.status == HandoffStatus.CLAIMED:
            url = reverse("operators:handoff", kwargs={"handoff_id": handoff.pk})
            return HttpResponse(status=204, headers={"HX-Redirect": url})
        return render(request, "operators/watch.html#bar", context)
    return render(request, "operators/watch.html", context)


@role_required("operator")
@require_POST
def take_over(request: HtmxHttpRequest, session_id: Any) -> HttpResponse:
    session = _session_or_404(session_id)
    try:
        outcome = services.session_take_over(session_id=session.pk, user=request.user)
    except ApplicationError as exc:
        refusal_message(request, exc, refused="Not taken over")
        return redirect("operators:watch", session_id=session.pk)
    if outcome.handoff is not None:
        messages.success(request, "You have this conversation now; the end user sees you join.")
        return redirect("operators:handoff", handoff_id=outcome.handoff.pk)
    messages.info(
        request,
        "Taking over: the agent stops at its next step, then the conversation is yours.",
    )
    return redirect("operators:watch", session_id=session.pk)
