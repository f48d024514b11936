"""Model endpoint pages (admins edit and test; operators reset the breaker; everyone with a
role reads) and the model price table. A test sends a request to the endpoint's address,
which the egress guard does not check (an admin's destination, like DATABASE_URL: see
docs/architecture.md), so only those who may set that address may make it send one."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from agentops.auth import has_role, role_require, role_required
from agentops.endpoints import selectors, services
from agentops.endpoints.forms import EndpointForm, EndpointTestForm, PriceForm
from agentops.models import ModelEndpoint
from tracing.models import ModelPrice
from tracing.platform.forms import form_submit
from tracing.platform.web import HtmxHttpRequest, error_status

CHANGE_NEEDS_ADMIN = "Changing this needs the admin role."


def _save(request: HtmxHttpRequest, form: EndpointForm) -> ModelEndpoint | None:
    return form_submit(
        request,
        form,
        lambda: services.endpoint_save(
            endpoint=form.save(commit=False),
            api_key=form.cleaned_data.get("api_key") or None,
            clear_api_key=form.cleaned_data.get("clear_api_key", False),
            actor=request.user,
        ),
        done=lambda endpoint: f"Endpoint {endpoint.name} saved.",
    )


@role_required("viewer")
@require_http_methods(["GET"])
def endpoints(request: HtmxHttpRequest) -> HttpResponse:
    return render(request, "endpoints/list.html", {"endpoints": selectors.endpoint_list()})


@role_required("admin")
@require_http_methods(["GET", "POST"])
def endpoint_create(request: HtmxHttpRequest) -> HttpResponse:
    form = EndpointForm(request.POST or None)
    if request.method == "POST":
        endpoint = _save(request, form)
        if endpoint is not None:
            return redirect("endpoints:detail", pk=endpoint.pk)
    status = error_status(request) if form.errors else 200
    return render(request, "endpoints/detail.html", {"form": form, "endpoint": None}, status=status)


def _detail(request: HtmxHttpRequest, endpoint: ModelEndpoint, form: EndpointForm, **extra):  # type: ignore[no-untyped-def]
    if not has_role(request.user, "admin"):
        for field in form.fields.values():
            field.disabled = True
    status = extra.pop("status", 200)
    context = {
        "form": form,
        "endpoint": endpoint,
        "test_form": extra.pop("test_form", None) or EndpointTestForm(),
        "transitions": selectors.endpoint_transitions(endpoint=endpoint),
        "breaker_window": selectors.endpoint_breaker_window(endpoint=endpoint),
        "agents": endpoint.agents.order_by("slug"),
        **extra,
    }
    return render(request, "endpoints/detail.html", context, status=status)


@role_required("viewer")
@require_http_methods(["GET", "POST"])
def endpoint_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    endpoint = get_object_or_404(ModelEndpoint, pk=pk)
    if request.method == "POST":
        role_require(user=request.user, role="admin", refusal=CHANGE_NEEDS_ADMIN)
        form = EndpointForm(request.POST, instance=endpoint)
        saved = _save(request, form)
        if saved is not None:
            return redirect("endpoints:detail", pk=saved.pk)
        endpoint = ModelEndpoint.objects.get(pk=pk)
        return _detail(request, endpoint, form, status=error_status(request))
    return _detail(request, endpoint, EndpointForm(instance=endpoint))


@role_required("admin")
@require_POST
def endpoint_test(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    endpoint = get_object_or_404(ModelEndpoint, pk=pk)
    test_form = EndpointTestForm(request.POST)
    check = None
    if test_form.is_valid():
        check = services.endpoint_test(endpoint=endpoint, model=test_form.cleaned_data["model"])
    if request.htmx:
        context = {"endpoint": endpoint, "test_form": test_form, "check": check}
        return render(request, "endpoints/detail.html#test", context)
    form = EndpointForm(instance=endpoint)
    return _detail(request, endpoint, form, test_form=test_form, check=check)


@role_required("operator")
@require_POST
def endpoint_reset(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    endpoint = get_object_or_404(ModelEndpoint, pk=pk)
    services.endpoint_breaker_reset(endpoint=endpoint, actor=request.user)
    messages.success(request, f"Circuit breaker of {endpoint.name} reset: closed.")
    return redirect("endpoints:detail", pk=endpoint.pk)


# --- prices ---------------------------------------------------------------------------------


def _price_submit(request: HtmxHttpRequest, form: PriceForm) -> bool:
    """Save the price the form describes (a new one or the one it edits); True when saved."""
    saved = form_submit(
        request,
        form,
        lambda: services.price_save(price=form.save(commit=False), actor=request.user),
        done=lambda price: f"Price of {price.model} saved.",
    )
    return saved is not None


@role_required("viewer")
@require_http_methods(["GET", "POST"])
def prices(request: HtmxHttpRequest) -> HttpResponse:
    form = PriceForm(request.POST or None)
    if request.method == "POST":
        role_require(user=request.user, role="admin", refusal=CHANGE_NEEDS_ADMIN)
        if _price_submit(request, form):
            return redirect("endpoints:prices")
    status = error_status(request) if form.errors else 200
    return render(
        request,
        "endpoints/prices.html",
        {"prices": selectors.price_list(), "form": form},
        status=status,
    )


@role_required("admin")
@require_http_methods(["GET", "POST"])
def price_edit(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    price = get_object_or_404(ModelPrice, pk=pk)
    form = PriceForm(request.POST or None, instance=price)
    if request.method == "POST" and _price_submit(request, form):
        return redirect("endpoints:prices")
    status = error_status(request) if form.errors else 200
    return render(
        request, "endpoints/price_form.html", {"form": form, "price": price}, status=status
    )


@role_required("admin")
@require_POST
def price_delete(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    price = get_object_or_404(ModelPrice, pk=pk)
    services.price_delete(price=price, actor=request.user)
    messages.success(request, f"Price of {price.model} deleted.")
    return redirect("endpoints:prices")
