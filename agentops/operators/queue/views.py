"""The queue's page (handed-off conversations, approvals, figures), snooze and wake, the
notification sound.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from agentops.auth import has_role, role_required
from agentops.operators.approvals.selectors import approvals_pending
from agentops.operators.pages import handoff_visible
from agentops.operators.queue import selectors, services
from agentops.operators.queue.forms import SNOOZE_CHOICES, SNOOZE_HOURS
from agentops.operators.ratings.selectors import csat_figures
from agentops.people.selectors import teams_all
from tracing.platform.errors import ApplicationError
from tracing.platform.forms import refusal_message
from tracing.platform.web import HtmxHttpRequest, error_status, page_query

FIGURE_WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}


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


def queue_context(request: HtmxHttpRequest) -> dict[str, Any]:
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
        "approvals": list(approvals_pending()),
        "figures": selectors.handoff_figures(since=timezone.now() - FIGURE_WINDOWS[window]),
        "sla": selectors.sla_figures(since=timezone.now() - FIGURE_WINDOWS[window]),
        "csat": csat_figures(since=timezone.now() - FIGURE_WINDOWS[window]),
        "window": window,
        "windows": list(FIGURE_WINDOWS),
        "now": timezone.now(),
    }


@role_required("viewer")
@require_GET
def queue(request: HtmxHttpRequest) -> HttpResponse:
    template = "operators/queue.html#live" if request.htmx else "operators/queue.html"
    context = queue_context(request)
    status = error_status(request) if context["filter_error"] else 200
    return render(request, template, context, status=status)


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
def snooze(request: HtmxHttpRequest, handoff_id: int) -> HttpResponse:
    handoff = handoff_visible(request, handoff_id)
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
    handoff = handoff_visible(request, handoff_id)
    try:
        services.handoff_wake(handoff=handoff, user=request.user)
    except ApplicationError as exc:
        refusal_message(request, exc, refused="Not woken")
    else:
        messages.success(request, "Back in the queue.")
    return redirect("operators:handoff", handoff_id=handoff_id)
