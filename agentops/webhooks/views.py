"""The webhooks page (`/webhooks/`, admins only): endpoints, deliveries, send again."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from agentops.auth import role_required
from agentops.webhooks.forms import WebhookEndpointForm
from agentops.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from agentops.webhooks.selectors import webhook_deliveries, webhook_endpoints
from agentops.webhooks.services import (
    webhook_delivery_resend,
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_enable,
)
from tracing.platform.errors import ApplicationError
from tracing.platform.forms import refusal_message
from tracing.platform.web import id_param


@role_required("admin")
def index(request: HttpRequest) -> HttpResponse:
    form = WebhookEndpointForm(request.POST or None)
    secret = ""
    if request.method == "POST" and form.is_valid():
        _, secret = webhook_endpoint_create(
            url=form.cleaned_data["url"],
            event_types=form.cleaned_data["event_types"],
            description=form.cleaned_data["description"],
            actor=request.user,
        )
        form = WebhookEndpointForm()
    endpoint_id = request.GET.get("endpoint", "")
    status = request.GET.get("status", "")
    context = {
        "form": form,
        "new_secret": secret,
        "endpoints": webhook_endpoints(),
        "deliveries": webhook_deliveries(
            endpoint_id=id_param(endpoint_id),
            status=status if status in DeliveryStatus.values else "",
        ),
        "statuses": DeliveryStatus.values,
        "selected_endpoint": endpoint_id,
        "selected_status": status,
    }
    return render(request, "webhooks/index.html", context, status=400 if form.errors else 200)


@role_required("admin")
@require_POST
def endpoint_enable(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = get_object_or_404(WebhookEndpoint, pk=endpoint_id)
    enabled = request.POST.get("enabled") == "1"
    webhook_endpoint_enable(endpoint=endpoint, enabled=enabled, actor=request.user)
    messages.success(request, f"{endpoint.url}: {'enabled' if enabled else 'disabled'}.")
    return redirect("webhooks:index")


@role_required("admin")
@require_POST
def endpoint_delete(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = get_object_or_404(WebhookEndpoint, pk=endpoint_id)
    webhook_endpoint_delete(endpoint=endpoint, actor=request.user)
    messages.success(request, f"Deleted {endpoint.url} and its deliveries.")
    return redirect("webhooks:index")


@role_required("admin")
@require_POST
def delivery_resend(request: HttpRequest, delivery_id: int) -> HttpResponse:
    delivery = get_object_or_404(WebhookDelivery, pk=delivery_id)
    try:
        webhook_delivery_resend(delivery=delivery, actor=request.user)
    except ApplicationError as exc:
        refusal_message(request, exc, refused="Not sent")
    else:
        messages.success(request, f"{delivery.event_id} will be sent again now.")
    return redirect("webhooks:index")
