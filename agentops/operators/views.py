"""The takeover queue: handed-off conversations, approvals, the claimed view, audit."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from agentops.auth import has_role, role_required
from agentops.models import Handoff, HandoffStatus, Session, ToolCall
from agentops.operators import selectors, services
from agentops.operators.forms import SNOOZE_CHOICES, SNOOZE_HOURS, CannedReplyForm, LabelForm
from agentops.operators.models import CannedReply, Label, LabelColour
from agentops.people.selectors import teams_all
from agentops.runtime.services import toolcall_decide
from agentops.selectors import conversation_get
from tracing.platform.errors import ApplicationError, Forbidden
from tracing.platform.forms import form_submit, refusal_message
from tracing.platform.web import HtmxHttpRequest, error_status, next_url, page_query

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


def _queue_filters(request: HtmxHttpRequest) -> tuple[dict[str, str], str]:
    """The list's filters from the query string, and an error naming a bad one ("" if none)."""
    filters = {
        "status": request.GET.get("status", "") or "open",
        "team": request.GET.get("team", "").strip(),
        "waiting": request.GET.get("waiting", ""),
        "q": request.GET.get("q", "").strip()[:200],
        "label": request.GET.get("label", "").strip()[:100],
    }
    if filters["status"] not in selectors.QUEUE_STATUSES:
        return {**filters, "status": "open"}, (
            f"status: choose one of {', '.join(selectors.QUEUE_STATUSES)}."
        )
    if filters["waiting"] and filters["waiting"] not in selectors.QUEUE_WAITING:
        return {**filters, "waiting": ""}, (
            f"waiting: choose one of {', '.join(selectors.QUEUE_WAITING)}."
        )
    return filters, ""


def _queue_context(request: HtmxHttpRequest) -> dict[str, Any]:
    window = request.GET.get("window", "7d")
    if window not in FIGURE_WINDOWS:
        window = "7d"
    filters, filter_error = _queue_filters(request)
    listed = selectors.handoffs_queue(
        user=request.user,
        status=filters["status"],
        team=filters["team"],
        waiting=filters["waiting"],
        q=filters["q"],
        label=filters["label"],
    )
    page = Paginator(listed, selectors.QUEUE_PAGE_SIZE).get_page(request.GET.get("page"))
    return {
        "open": list(page.object_list),
        "page": page,
        "filters": filters,
        "filter_error": filter_error,
        "filtered": any(v for k, v in filters.items() if k != "status")
        or filters["status"] != "open",
        "teams": teams_all(),
        "sound": has_role(request.user, "operator")
        and selectors.notification_sound(user=request.user),
        "waiting_choices": list(selectors.QUEUE_WAITING),
        "statuses": selectors.QUEUE_STATUSES,
        "query": page_query(request),
        "list_url": request.get_full_path()
        if request.method == "GET"
        else reverse("operators:queue"),
        "claimed": list(selectors.handoffs_claimed(user=request.user, label=filters["label"])),
        "snoozed": list(selectors.handoffs_snoozed(user=request.user, label=filters["label"])),
        "label": filters["label"],
        "approvals": list(selectors.approvals_pending()),
        "figures": selectors.handoff_figures(since=timezone.now() - FIGURE_WINDOWS[window]),
        "sla": selectors.sla_figures(since=timezone.now() - FIGURE_WINDOWS[window]),
        "csat": selectors.csat_figures(since=timezone.now() - FIGURE_WINDOWS[window]),
        "window": window,
        "windows": list(FIGURE_WINDOWS),
        "now": timezone.now(),
    }


@role_required("viewer")
@require_GET
def queue(request: HtmxHttpRequest) -> HttpResponse:
    template = "operators/queue.html#live" if request.htmx else "operators/queue.html"
    context = _queue_context(request)
    status = error_status(request) if context["filter_error"] else 200
    return render(request, template, context, status=status)


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


@role_required("operator")
@require_POST
def mark_read(request: HtmxHttpRequest, handoff_id: int) -> HttpResponse:
    """The handoff page was looking when new messages came: they are read."""
    handoff = _handoff_or_404(handoff_id)
    if not _may_see(request, handoff):
        raise PermissionDenied("Another operator has this conversation.")
    services.handoff_mark_read(handoff=handoff, user=request.user)
    return JsonResponse(selectors.unread_counts(user=request.user))


@role_required("operator")
@require_POST
def notification_sound(request: HtmxHttpRequest) -> HttpResponse:
    value = request.POST.get("sound", "")
    if value not in ("on", "off"):
        return JsonResponse({"error": "sound: send on or off"}, status=400)
    services.notification_sound_set(user=request.user, on=value == "on")
    return JsonResponse({"sound": value == "on"})


@role_required("operator")
@require_POST
def claim(request: HtmxHttpRequest, handoff_id: int) -> HttpResponse:
    _handoff_or_404(handoff_id)
    try:
        services.handoff_claim(handoff_id=handoff_id, user=request.user)
    except ApplicationError as exc:
        if request.htmx:
            context = {**_queue_context(request), "claim_error": f"Not claimed: {exc}."}
            return render(request, "operators/queue.html#live", context)
        refusal_message(request, exc, refused="Not claimed")
        return redirect("operators:queue")
    url = reverse("operators:handoff", kwargs={"handoff_id": handoff_id})
    _draft_set(request, handoff_id, request.POST.get("draft", ""))
    if request.htmx:
        return HttpResponse(status=204, headers={"HX-Redirect": url})
    return redirect(url)


def _may_see(request: HtmxHttpRequest, handoff: Handoff) -> bool:
    return selectors.handoff_workable_by(handoff=handoff, user=request.user)


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
        "canned": selectors.canned_replies_for_handoff(handoff=handoff, user=request.user)
        if mine
        else [],
        "draft": request.session.get(DRAFTS_KEY, {}).get(str(handoff.pk), handoff.suggested_reply),
        **_labels_context(handoff),
    }
    return render(request, "operators/handoff.html", context)


def _labels_context(handoff: Handoff, error: str = "") -> dict[str, Any]:
    return {
        "handoff": handoff,
        "labels": selectors.session_labels(session=handoff.session),
        "all_labels": selectors.labels_list(),
        "label_colours": LabelColour.choices,
        "label_error": error,
    }


def _visible_handoff(request: HtmxHttpRequest, handoff_id: int) -> Handoff:
    handoff = _handoff_or_404(handoff_id)
    if not _may_see(request, handoff):
        raise PermissionDenied("Another operator has this conversation.")
    return handoff


@role_required("operator")
@require_GET
def notes_after(request: HtmxHttpRequest, handoff_id: int) -> HttpResponse:
    """The conversation's private notes above `after` (a note id), as thread items: how an
    open page shows the notes other operators add, and catches up after a reconnect."""
    handoff = _visible_handoff(request, handoff_id)
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
    handoff = _visible_handoff(request, handoff_id)
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
    handoff = _visible_handoff(request, handoff_id)
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
def snooze(request: HtmxHttpRequest, handoff_id: int) -> HttpResponse:
    handoff = _visible_handoff(request, handoff_id)
    choice = request.POST.get("for", "")
    if choice not in dict(SNOOZE_CHOICES):
        messages.error(request, "Not snoozed: for: choose how long.")
        return redirect("operators:handoff", handoff_id=handoff_id)
    hours = SNOOZE_HOURS.get(choice)
    until = timezone.now() + timedelta(hours=hours) if hours else None
    try:
        services.handoff_snooze(handoff=handoff, user=request.user, until=until)
    except ApplicationError as exc:
        refusal_message(request, exc, refused="Not snoozed")
        return redirect("operators:handoff", handoff_id=handoff_id)
    messages.success(request, f"Snoozed {dict(SNOOZE_CHOICES)[choice]}.")
    return redirect("operators:queue")


@role_required("operator")
@require_POST
def wake(request: HtmxHttpRequest, handoff_id: int) -> HttpResponse:
    handoff = _visible_handoff(request, handoff_id)
    try:
        services.handoff_wake(handoff=handoff, user=request.user)
    except ApplicationError as exc:
        refusal_message(request, exc, refused="Not woken")
    else:
        messages.success(request, "Back in the queue.")
    return redirect("operators:handoff", handoff_id=handoff_id)


@role_required("operator")
@require_POST
def label_add(request: HtmxHttpRequest, handoff_id: int) -> HttpResponse:
    handoff = _visible_handoff(request, handoff_id)
    try:
        services.session_label_add(
            session=handoff.session,
            name=request.POST.get("name", ""),
            colour=request.POST.get("colour", ""),
            actor=request.user,
        )
    except ApplicationError as exc:
        if request.htmx:
            context = _labels_context(handoff, str(exc))
            return render(request, "operators/handoff.html#labels", context, status=exc.status)
        refusal_message(request, exc, refused="Not labelled")
    else:
        if request.htmx:
            return render(request, "operators/handoff.html#labels", _labels_context(handoff))
    return redirect("operators:handoff", handoff_id=handoff_id)


@role_required("operator")
@require_POST
def label_remove(request: HtmxHttpRequest, handoff_id: int, label_id: int) -> HttpResponse:
    handoff = _visible_handoff(request, handoff_id)
    label = get_object_or_404(Label, pk=label_id)
    services.session_label_remove(session=handoff.session, label=label, actor=request.user)
    if request.htmx:
        return render(request, "operators/handoff.html#labels", _labels_context(handoff))
    return redirect("operators:handoff", handoff_id=handoff_id)


def _labels_page(
    request: HtmxHttpRequest, *, form: LabelForm | None, label: Label | None, status: int = 200
) -> HttpResponse:
    context = {"labels": selectors.labels_with_counts(), "form": form, "label": label}
    return render(request, "operators/labels.html", context, status=status)


@role_required("operator")
@require_GET
def labels(request: HtmxHttpRequest) -> HttpResponse:
    """Every label with its conversations; admins rename, recolour and delete them."""
    return _labels_page(request, form=None, label=None)


@role_required("admin")
def label_edit(request: HtmxHttpRequest, label_id: int) -> HttpResponse:
    label = get_object_or_404(Label, pk=label_id)
    initial = {"name": label.name, "colour": label.colour}
    form = LabelForm(request.POST or None, initial=initial)
    if request.method == "POST":
        saved = form_submit(
            request,
            form,
            lambda: services.label_update(label=label, actor=request.user, **form.cleaned_data),
            done=lambda saved: f"Label {saved.name} saved.",
        )
        if saved is not None:
            return redirect("operators:labels")
    status = 400 if form.is_bound else 200
    return _labels_page(request, form=form, label=label, status=status)


@role_required("admin")
@require_POST
def label_delete(request: HtmxHttpRequest, label_id: int) -> HttpResponse:
    label = get_object_or_404(Label, pk=label_id)
    carried = services.label_delete(label=label, actor=request.user)
    messages.success(request, f"Label {label.name} deleted (it was on {carried} conversations).")
    return redirect("operators:labels")


def _replies_page(
    request: HtmxHttpRequest,
    *,
    form: CannedReplyForm,
    reply: CannedReply | None,
    status: int = 200,
) -> HttpResponse:
    rows = [
        (r, selectors.canned_reply_may_edit(reply=r, user=request.user))
        for r in selectors.canned_replies_manageable(user=request.user)
    ]
    context = {"rows": rows, "form": form, "reply": reply}
    return render(request, "operators/replies.html", context, status=status)


def _reply_form_save(
    request: HtmxHttpRequest, form: CannedReplyForm, reply: CannedReply | None
) -> HttpResponse:
    saved = form_submit(
        request,
        form,
        lambda: services.canned_reply_save(reply=reply, actor=request.user, **form.cleaned_data),
        done=lambda saved: f"Canned reply /{saved.shortcut} saved.",
    )
    if saved is not None:
        return redirect("operators:replies")
    return _replies_page(request, form=form, reply=reply, status=400)


@role_required("operator")
def replies(request: HtmxHttpRequest) -> HttpResponse:
    form = CannedReplyForm(request.POST or None, user=request.user)
    if request.method == "POST":
        return _reply_form_save(request, form, None)
    return _replies_page(request, form=form, reply=None)


@role_required("operator")
def reply_edit(request: HtmxHttpRequest, reply_id: int) -> HttpResponse:
    reply = get_object_or_404(CannedReply.objects.select_related("team"), pk=reply_id)
    if not selectors.canned_reply_may_edit(reply=reply, user=request.user):
        raise PermissionDenied("You may not change this canned reply.")
    form = CannedReplyForm(request.POST or None, user=request.user, reply=reply)
    if request.method == "POST":
        return _reply_form_save(request, form, reply)
    return _replies_page(request, form=form, reply=reply)


@role_required("operator")
@require_POST
def reply_delete(request: HtmxHttpRequest, reply_id: int) -> HttpResponse:
    reply = get_object_or_404(CannedReply, pk=reply_id)
    try:
        services.canned_reply_delete(reply=reply, actor=request.user)
    except Forbidden as exc:
        raise PermissionDenied(str(exc)) from exc
    messages.success(request, f"Canned reply /{reply.shortcut} deleted.")
    return redirect("operators:replies")


@role_required("operator")
@require_POST
def reply(request: HtmxHttpRequest, handoff_id: int) -> HttpResponse:
    handoff = _handoff_or_404(handoff_id)
    content = request.POST.get("content", "")
    refusal: ApplicationError | None = None
    try:
        services.handoff_reply(handoff=handoff, user=request.user, content=content)
        _draft_set(request, handoff_id, None)
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
    handoff = _handoff_or_404(handoff_id)
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


@role_required("admin")
@require_POST
def reassign(request: HtmxHttpRequest, handoff_id: int) -> HttpResponse:
    handoff = _handoff_or_404(handoff_id)
    to = request.POST.get("operator", "")
    try:
        services.handoff_reassign(handoff=handoff, user=request.user, to_username=to)
    except ApplicationError as exc:
        refusal_message(request, exc, refused="Not reassigned")
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
    except ApplicationError as exc:
        refusal_message(request, exc, refused="Not decided")
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
