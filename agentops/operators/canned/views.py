"""The canned replies page."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from agentops.auth import role_required
from agentops.operators.canned import selectors, services
from agentops.operators.canned.forms import CannedReplyForm
from agentops.operators.models import CannedReply
from tracing.platform.errors import Forbidden
from tracing.platform.forms import form_submit
from tracing.platform.web import HtmxHttpRequest


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
