"""Labels on the handoff's page, and the labels page."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from agentops.auth import role_required
from agentops.models import Handoff
from agentops.operators.labels import selectors, services
from agentops.operators.labels.forms import LabelForm
from agentops.operators.models import Label, LabelColour
from agentops.operators.pages import handoff_visible
from tracing.platform.errors import ApplicationError
from tracing.platform.forms import form_submit, refusal_message
from tracing.platform.web import HtmxHttpRequest


def handoff_labels_context(handoff: Handoff, error: str = "") -> dict[str, Any]:
    return {
        "handoff": handoff,
        "labels": selectors.session_labels(session=handoff.session),
        "all_labels": selectors.labels_list(),
        "label_colours": LabelColour.choices,
        "label_error": error,
    }


@role_required("operator")
@require_POST
def label_add(request: HtmxHttpRequest, handoff_id: int) -> HttpResponse:
    handoff = handoff_visible(request, handoff_id)
    try:
        services.session_label_add(
            session=handoff.session,
            name=request.POST.get("name", ""),
            colour=request.POST.get("colour", ""),
            actor=request.user,
        )
    except ApplicationError as exc:
        if request.htmx:
            context = handoff_labels_context(handoff, str(exc))
            return render(request, "operators/handoff.html#labels", context, status=exc.status)
        refusal_message(request, exc, refused="Not labelled")
    else:
        if request.htmx:
            return render(request, "operators/handoff.html#labels", handoff_labels_context(handoff))
    return redirect("operators:handoff", handoff_id=handoff_id)


@role_required("operator")
@require_POST
def label_remove(request: HtmxHttpRequest, handoff_id: int, label_id: int) -> HttpResponse:
    handoff = handoff_visible(request, handoff_id)
    label = get_object_or_404(Label, pk=label_id)
    services.session_label_remove(session=handoff.session, label=label, actor=request.user)
    if request.htmx:
        return render(request, "operators/handoff.html#labels", handoff_labels_context(handoff))
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
