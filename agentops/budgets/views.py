"""The budgets page (`/budgets/`, admins only): every budget with its spend; add, turn off,
delete. The same through the API (`/api/budgets`)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from agentops.auth import role_required
from agentops.budgets.forms import BudgetForm
from agentops.budgets.models import Budget
from agentops.budgets.selectors import budget_get
from agentops.budgets.services import budget_create, budget_delete, budget_update
from tracing.platform.errors import ApplicationError
from tracing.platform.forms import form_submit, refusal_message


@role_required("admin")
def index(request: HttpRequest) -> HttpResponse:
    form = BudgetForm(request.POST or None)
    if request.method == "POST":

        def save() -> Budget:
            return budget_create(actor=request.user, **form.cleaned_data)

        if form_submit(request, form, save, done=lambda b: f"Budget {b.name} added.") is not None:
            return redirect("budgets:index")
    return render(request, "budgets/index.html", {"form": form}, status=400 if form.errors else 200)


@role_required("admin")
@require_POST
def enable(request: HttpRequest, budget_id: int) -> HttpResponse:
    budget = budget_get(budget_id=budget_id)
    if budget is not None:
        on = request.POST.get("enabled") == "1"
        budget_update(budget=budget, actor=request.user, enabled=on)
        messages.success(request, f"Budget {budget.name} turned {'on' if on else 'off'}.")
    return redirect("budgets:index")


@role_required("admin")
@require_POST
def delete(request: HttpRequest, budget_id: int) -> HttpResponse:
    try:
        budget_delete(budget_id=budget_id, actor=request.user)
    except ApplicationError as exc:
        refusal_message(request, exc, refused="Not deleted")
    else:
        messages.success(request, "Budget deleted.")
    return redirect("budgets:index")
