"""The takeover queue: handed-off conversations, approvals, the claimed view, audit."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from agentops.auth import has_role, role_required
from agentops.models import Handoff, HandoffStatus, Session, ToolCall
from agentops.operators import selectors, services
from agentops.operators.services import HandoffConflict
from agentops.runtime.services import RuntimeConflict, toolcall_decide
from agentops.selectors import conversation_get
from tracing.web import HtmxHttpRequest, error_status, page_query

FIGURE_WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
DRAFTS_KEY = "handoff_drafts"


def _draft_set(request: HtmxHttpRequest, handoff_id: int, draft: str | None) -> None:
    """The operator's draft reply waits in their server-side session, never in a URL
    (browser history, access logs): it is the customer's conversation."""
    drafts = dict(request.session.get(DRAFTS_KEY, {}))
    if draft:
        drafts[str(handoff_id)] = draft[:32000]
    else:
        drafts.pop(str(handoff_id), None)
    request.session[DRAFTS_KEY] = drafts


def _handoff_or_404(handoff_id: int) -> Handoff:
    handoff = selectors.handoff_get(handoff_id=handoff_id)
    if handoff is None:
        raise Http404("No such handoff.")
    return handoff


def _queue_context(request: HtmxHttpRequest) -> dict[str, Any]:
    window = request.GET.get("window", "7d")
    if window not in FIGURE_WINDOWS:
        window = "7d"
    return {
        "open": list(selectors.handoffs_open()),
        "claimed": list(selectors.handoffs_claimed(user=request.user)),
        "approvals": list(selectors.approvals_pending()),
        "figures": selectors.handoff_figures(since=timezone.now() - FIGURE_WINDOWS[window]),
        "csat": selectors.csat_figures(since=timezone.now() - FIGURE_WINDOWS[window]),
        "window": window,
        "windows": list(FIGURE_WINDOWS),
        "now": timezone.now(),
    }


@role_required("viewer")
@require_GET
def queue(request: HtmxHttpRequest) -> HttpResponse:
    template = "operators/queue.html#live" if request.htmx else "operators/queue.html"
    return render(request, template, _queue_context(request))


@role_required("operator")
@require_POST
def claim(request: HtmxHttpRequest, handoff_id: int) -> HttpResponse:
    _handoff_or_404(handoff_id)
    try:
        services.handoff_claim(handoff_id=handoff_id, user=request.user)
    except HandoffConflict as exc:
        if request.htmx:
            context = {**_queue_context(request), "claim_error": f"Not claimed: {exc}."}
            return render(request, "operators/queue.html#live", context)
        messages.error(request, f"Not claimed: {exc}.")
        return redirect("operators:queue")
    url = reverse("operators:handoff", kwargs={"handoff_id": handoff_id})
    _draft_set(request, handoff_id, request.POST.get("draft", ""))
    if request.htmx:
        return HttpResponse(status=204, headers={"HX-Redirect": url})
    return redirect(url)


def _may_see(request: HtmxHttpRequest, handoff: Handoff) -> bool:
    """Operators see open handoffs, their own and resolved ones; admins see all."""
    if has_role(request.user, "admin") or handoff.status != HandoffStatus.CLAIMED:
        return True
    return handoff.claimed_by_id == request.user.pk


@role_required("operator")
@require_GET
def handoff_detail(request: HtmxHttpRequest, handoff_id: int) -> HttpResponse:
    handoff = _handoff_or_404(handoff_id)
    if not _may_see(request, handoff):
        raise PermissionDenied(
            f"{handoff.claimed_by.get_username() if handoff.claimed_by else 'Another operator'} "
            "has this conversation; an admin can reassign it."
        )
    if request.htmx and request.GET.get("part") == "package":  # it was being written
        return render(request, "operators/handoff.html#package", {"handoff": handoff})
    session = handoff.session
    mine = handoff.status == HandoffStatus.CLAIMED and (
        handoff.claimed_by_id == request.user.pk or has_role(request.user, "admin")
    )
    conversation = conversation_get(session=session)
    context = {
        "handoff": handoff,
        "session": session,
        "items": conversation.items,
        "run": conversation.run,
        "memories": selectors.user_memories(session=session),
        "mine": mine,
        "operators": selectors.operators_list() if has_role(request.user, "admin") else [],
        "draft": request.session.get(DRAFTS_KEY, {}).get(str(handoff.pk), handoff.suggested_reply),
    }
    return render(request, "operators/handoff.html", context)


@role_required("operator")
@require_POST
def reply(request: HtmxHttpRequest, handoff_id: int) -> HttpResponse:
    handoff = _handoff_or_404(handoff_id)
    content = request.POST.get("content", "")
    error = ""
    try:
        services.handoff_reply(handoff=handoff, user=request.user, content=content)
        _draft_set(request, handoff_id, None)
        content = ""
    except (HandoffConflict, ValueError) as exc:
        error = str(exc)
    if request.htmx:
        context = {"handoff": handoff, "mine": True, "draft": content, "reply_error": error}
        return render(request, "operators/handoff.html#reply", context)
    if error:
        messages.error(request, f"Not sent: {error}.")
    return redirect("operators:handoff", handoff_id=handoff_id)


def _resolve(
    request: HtmxHttpRequest,
    handoff_id: int,
    resolve: Callable[..., object],
    *,
    refused: str,
    done: str,
) -> HttpResponse:
    """Resolve the handoff with `resolve`; back to the queue, or to the handoff if refused."""
    handoff = _handoff_or_404(handoff_id)
    try:
        resolve(handoff=handoff, user=request.user)
    except HandoffConflict as exc:
        messages.error(request, f"{refused}: {exc}.")
        return redirect("operators:handoff", handoff_id=handoff_id)
    messages.success(request, done)
    return redirect("operators:queue")


@role_required("operator")
@require_POST
def hand_back(request: HtmxHttpRequest, handoff_id: int) -> HttpResponse:
    return _resolve(
        request,
        handoff_id,
        services.handoff_hand_back,
        refused="Not handed back",
        done="Handed back to the agent; it is answering now.",
    )


@role_required("operator")
@require_POST
def close(request: HtmxHttpRequest, handoff_id: int) -> HttpResponse:
    return _resolve(
        request,
        handoff_id,
        services.handoff_close,
        refused="Not closed",
        done="Conversation closed.",
    )


@role_required("admin")
@require_POST
def reassign(request: HtmxHttpRequest, handoff_id: int) -> HttpResponse:
    handoff = _handoff_or_404(handoff_id)
    to = request.POST.get("operator", "")
    try:
        services.handoff_reassign(handoff=handoff, user=request.user, to_username=to)
    except (HandoffConflict, ValueError) as exc:
        messages.error(request, f"Not reassigned: {exc}.")
    else:
        messages.success(request, f"Reassigned to {to}.")
    return redirect("operators:handoff", handoff_id=handoff_id)


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
    except RuntimeConflict as exc:
        messages.error(request, f"Not decided: {exc}.")
    else:
        messages.success(
            request, f"{tool_call.tool_name}: {'approved' if verdict == 'approve' else 'rejected'}."
        )
    if request.htmx:
        return render(request, "operators/queue.html#live", _queue_context(request))
    return redirect("operators:queue")


@role_required("admin")
@require_GET
def audit(request: HtmxHttpRequest) -> HttpResponse:
    action = request.GET.get("action", "")
    actor = request.GET.get("actor", "").strip()
    session_id = request.GET.get("session", "").strip()
    error = ""
    if session_id:
        import uuid

        try:
            session_id = str(uuid.UUID(session_id))
        except ValueError:
            error = "session: not a session id (a UUID)."
            session_id = ""
    entries = selectors.audit_entries(action=action, actor=actor, session_id=session_id or None)
    page = Paginator(entries, 100).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "actions": selectors.audit_actions(),
        "action": action,
        "actor": actor,
        "session_filter": request.GET.get("session", ""),
        "error": error,
        "query": page_query(request),
        "filtered": bool(action or actor or session_id),
    }
    template = "operators/audit.html#entries" if request.htmx else "operators/audit.html"
    return render(request, template, context, status=error_status(request) if error else 200)


# --- the live view and takeover -------------------------------------------------------------


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
    session = Session.objects.select_related("agent", "operator").filter(pk=session_id).first()
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
    except HandoffConflict as exc:
        messages.error(request, f"Not taken over: {exc}.")
        return redirect("operators:watch", session_id=session.pk)
    if outcome.handoff is not None:
        messages.success(request, "You have this conversation now; the end user sees you join.")
        return redirect("operators:handoff", handoff_id=outcome.handoff.pk)
    messages.info(
        request,
        "Taking over: the agent stops at its next step, then the conversation is yours.",
    )
    return redirect("operators:watch", session_id=session.pk)
