"""The handoff's page and what is done on it: reply, notes, transfer, hand back, close; the
read marker; closing many from the queue.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from agentops.auth import has_role, role_required
from agentops.models import HandoffStatus
from agentops.operators.access import handoff_workable_by
from agentops.operators.canned.selectors import canned_replies_for_handoff
from agentops.operators.labels.views import handoff_labels_context
from agentops.operators.pages import DRAFTS_KEY, draft_set, handoff_or_404, handoff_visible
from agentops.operators.queue.forms import SNOOZE_CHOICES
from agentops.operators.work import selectors, services
from agentops.people.selectors import teams_all
from agentops.selectors import conversation_get
from tracing.platform.errors import ApplicationError
from tracing.platform.forms import refusal_message
from tracing.platform.web import HtmxHttpRequest


@role_required("operator")
@require_GET
def handoff_detail(request: HtmxHttpRequest, handoff_id: int) -> HttpResponse:
    handoff = handoff_or_404(handoff_id)
    if not handoff_workable_by(handoff=handoff, user=request.user):
        raise PermissionDenied(
            f"{handoff.claimed_by.get_username() if handoff.claimed_by else 'Another operator'} "
            "has this conversation; an admin can reassign it."
        )
    if request.htmx and request.GET.get("part") == "package":  # it was being written
        return render(request, "operators/handoff.html#package", {"handoff": handoff})
    session = handoff.session
    services.handoff_mark_read(handoff=handoff, user=request.user)
    mine = handoff.status == HandoffStatus.CLAIMED and (
        handoff.claimed_by_id == request.user.pk or has_role(request.user, "admin")
    )
    conversation = conversation_get(session=session)
    workable = handoff.status == HandoffStatus.OPEN or mine
    operators = selectors.operators_list()
    context = {
        "handoff": handoff,
        "session": session,
        # The operator's view of the thread: the messages with the private notes among them.
        "items": selectors.thread_with_notes(
            items=conversation.items, notes=selectors.session_notes(session=session)
        ),
        "run": conversation.run,
        "memories": selectors.user_memories(session=session),
        "conversations": selectors.user_conversations(session=session),
        "mine": mine,
        "workable": workable,
        "operators": operators if has_role(request.user, "admin") else [],
        "transfer_operators": [u for u in operators if u.pk != handoff.claimed_by_id],
        "teams": teams_all(),
        "snooze_choices": SNOOZE_CHOICES,
        "canned": canned_replies_for_handoff(handoff=handoff, user=request.user) if mine else [],
        "draft": request.session.get(DRAFTS_KEY, {}).get(str(handoff.pk), handoff.suggested_reply),
        **handoff_labels_context(handoff),
    }
    return render(request, "operators/handoff.html", context)


@role_required("operator")
@require_POST
def mark_read(request: HtmxHttpRequest, handoff_id: int) -> HttpResponse:
    """The handoff page was looking when new messages came: they are read."""
    handoff = handoff_or_404(handoff_id)
    if not handoff_workable_by(handoff=handoff, user=request.user):
        raise PermissionDenied("Another operator has this conversation.")
    services.handoff_mark_read(handoff=handoff, user=request.user)
    return JsonResponse(selectors.unread_counts(user=request.user))


@role_required("operator")
@require_GET
def notes_after(request: HtmxHttpRequest, handoff_id: int) -> HttpResponse:
    """The conversation's private notes above `after` (a note id), as thread items: how an
    open page shows the notes other operators add, and catches up after a reconnect."""
    handoff = handoff_visible(request, handoff_id)
    try:
        after = max(int(request.GET.get("after", "0")), 0)
    except ValueError:
        return HttpResponseBadRequest("after: a note id (a whole number)")
    notes = selectors.session_notes(session=handoff.session, after=after)
    return HttpResponse(
        "".join(render_to_string("operators/_note.html", {"note": n}) for n in notes)
    )


@role_required("operator")
@require_POST
def note(request: HtmxHttpRequest, handoff_id: int) -> HttpResponse:
    handoff = handoff_visible(request, handoff_id)
    content = request.POST.get("content", "")
    try:
        added = services.handoff_note_add(handoff=handoff, user=request.user, content=content)
    except ApplicationError as exc:
        if request.htmx:  # the error sits beside the note's field
            context = {"handoff": handoff, "note_error": exc.message, "note_draft": content}
            return render(request, "operators/handoff.html#note-form", context, status=exc.status)
        refusal_message(request, exc, refused="Note not saved")
        return redirect("operators:handoff", handoff_id=handoff_id)
    if request.htmx:
        return render(
            request,
            "operators/note_added.html",
            {"handoff": handoff, "note": added},
        )
    messages.success(request, "Private note saved (operators only).")
    return redirect("operators:handoff", handoff_id=handoff_id)


@role_required("operator")
@require_POST
def transfer(request: HtmxHttpRequest, handoff_id: int) -> HttpResponse:
    handoff = handoff_visible(request, handoff_id)
    to = request.POST.get("to", "")
    kind, _, name = to.partition(":")
    try:
        moved = services.handoff_transfer(
            handoff=handoff,
            user=request.user,
            to_operator=name if kind == "operator" else "",
            to_team=name if kind == "team" else "",
            note=request.POST.get("note", ""),
        )
    except ApplicationError as exc:
        refusal_message(request, exc, refused="Not transferred")
        return redirect("operators:handoff", handoff_id=handoff_id)
    where = f"operator {name}" if kind == "operator" else f"team {name}"
    messages.success(request, f"Transferred to {where}.")
    if moved.claimed_by_id == request.user.pk:
        return redirect("operators:handoff", handoff_id=handoff_id)
    return redirect("operators:queue")


@role_required("operator")
@require_POST
def reply(request: HtmxHttpRequest, handoff_id: int) -> HttpResponse:
    handoff = handoff_or_404(handoff_id)
    content = request.POST.get("content", "")
    refusal: ApplicationError | None = None
    try:
        services.handoff_reply(handoff=handoff, user=request.user, content=content)
        draft_set(request, handoff_id, None)
        content = ""
    except ApplicationError as exc:
        refusal = exc
    if request.htmx:  # the error sits beside the reply's field
        error = refusal.message if refusal else ""
        context = {"handoff": handoff, "mine": True, "draft": content, "reply_error": error}
        return render(request, "operators/handoff.html#reply", context)
    if refusal:
        refusal_message(request, refusal, refused="Not sent")
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
    handoff = handoff_or_404(handoff_id)
    try:
        resolve(handoff=handoff, user=request.user)
    except ApplicationError as exc:
        refusal_message(request, exc, refused=refused)
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


@role_required("operator")
@require_POST
def bulk_close(request: HtmxHttpRequest) -> HttpResponse:
    raw = request.POST.getlist("handoff")
    try:
        ids = [int(v) for v in raw]
    except ValueError:
        ids = []
        messages.error(request, "handoff: not a list of handoff ids.")
    if not raw:
        messages.error(request, "handoff: select at least one handoff to close.")
    elif ids:
        closed, skipped = services.handoffs_bulk_close(handoff_ids=ids, user=request.user)
        if closed:
            messages.success(
                request, f"Closed {len(closed)} conversation{'s' if len(closed) != 1 else ''}."
            )
        if skipped:
            messages.error(request, "Not closed: " + "; ".join(skipped[:20]) + ".")
    back = request.POST.get("next", "")
    if not back.startswith("/operators/") or back.startswith("//"):
        back = reverse("operators:queue")
    return redirect(back)
