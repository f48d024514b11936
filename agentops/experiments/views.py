"""Datasets and experiments pages (thin: forms in, services and selectors do the work)."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from agentops.auth import role_require, role_required
from agentops.experiments import forms, selectors, services
from agentops.experiments.models import Check, Dataset, DatasetItem, Experiment, ExperimentStatus
from agentops.models import Handoff, Run
from tracing.platform.errors import ApplicationError
from tracing.platform.forms import form_submit, refusal_text
from tracing.platform.web import HtmxHttpRequest, error_status, id_param


def _experiment_field(form: forms.ExperimentForm, key: str) -> str:
    """The experiment form's field for what the service names: a check by its kind (checks.1
    is the second check the form made), a variant's model or version."""
    if key.startswith("checks."):
        kinds = [check["kind"] for check in form.checks()]
        index = int(key.split(".")[1])
        return forms.CHECK_FIELDS.get(kinds[index], "") if index < len(kinds) else ""
    if key.startswith("variants."):
        return "model" if key.endswith(".model") else "baseline"
    return key


# -- datasets ------------------------------------------------------------------------------
@role_required("viewer")
def datasets(request: HtmxHttpRequest) -> HttpResponse:
    form = forms.DatasetForm(request.POST or None)
    if request.method == "POST":
        role_require(user=request.user, role="operator")
        dataset = form_submit(
            request,
            form,
            lambda: services.dataset_create(
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
                actor=request.user,
            ),
        )
        if dataset is not None:
            return redirect("experiments:dataset", dataset.pk)
    status = 400 if form.errors else 200
    return render(
        request,
        "experiments/datasets.html",
        {"datasets": selectors.datasets_list(), "form": form},
        status=status,
    )


@role_required("viewer")
@require_GET
def dataset(request: HtmxHttpRequest, dataset_id: int) -> HttpResponse:
    dataset = get_object_or_404(Dataset, pk=dataset_id)
    return render(
        request,
        "experiments/dataset.html",
        {
            "dataset": dataset,
            "items": selectors.dataset_items(dataset=dataset),
            "import_form": forms.ImportForm(),
            "experiments": dataset.experiments.order_by("-created_at")[:20],
        },
    )


@role_required("viewer")
@require_GET
def dataset_export(request: HtmxHttpRequest, dataset_id: int) -> HttpResponse:
    dataset = get_object_or_404(Dataset, pk=dataset_id)
    response = HttpResponse(
        "".join(selectors.dataset_jsonl(dataset=dataset)), content_type="application/jsonl"
    )
    response["Content-Disposition"] = f'attachment; filename="dataset-{dataset.pk}.jsonl"'
    return response


@role_required("operator")
@require_POST
def dataset_import(request: HtmxHttpRequest, dataset_id: int) -> HttpResponse:
    dataset = get_object_or_404(Dataset, pk=dataset_id)
    form = forms.ImportForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            text = form.cleaned_data["file"].read().decode("utf-8")
            count = services.dataset_import_jsonl(dataset=dataset, text=text, actor=request.user)
        except UnicodeDecodeError:
            messages.error(request, "The file is not UTF-8 text.")
        except (ApplicationError, ValidationError) as exc:
            messages.error(request, refusal_text(exc))
        else:
            messages.success(request, f"{count} item{'s' if count != 1 else ''} imported.")
    else:
        messages.error(request, "Choose a JSONL file.")
    return redirect("experiments:dataset", dataset.pk)


@role_required("operator")
@require_POST
def dataset_delete(request: HtmxHttpRequest, dataset_id: int) -> HttpResponse:
    services.dataset_delete(dataset=get_object_or_404(Dataset, pk=dataset_id), actor=request.user)
    messages.success(request, "Dataset deleted.")
    return redirect("experiments:datasets")


@role_required("operator")
@require_POST
def item_reference(request: HtmxHttpRequest, item_id: int) -> HttpResponse:
    item = get_object_or_404(DatasetItem, pk=item_id)
    form = forms.ReferenceForm(request.POST)
    error = ""
    if form.is_valid():
        try:
            services.dataset_item_update(item=item, reference=form.cleaned_data["reference"])
        except (ApplicationError, ValidationError) as exc:
            error = refusal_text(exc)
    status = error_status(request) if error else 200
    if request.htmx:
        return render(
            request,
            "experiments/dataset.html#item",
            {"item": item, "error": error, "saved": not error, "is_operator": True},
            status=status,
        )
    if error:
        messages.error(request, error)
    return redirect("experiments:dataset", item.dataset_id)


@role_required("operator")
@require_POST
def item_delete(request: HtmxHttpRequest, item_id: int) -> HttpResponse:
    item = get_object_or_404(DatasetItem, pk=item_id)
    dataset_id = item.dataset_id
    services.dataset_item_delete(item=item, actor=request.user)
    if request.htmx:
        return HttpResponse("")
    return redirect("experiments:dataset", dataset_id)


def _source(request: HtmxHttpRequest) -> tuple[Any, selectors.Turn | None, str]:
    """The run or handoff named by ?run= / ?handoff=, its turn, and where to go back to."""
    run_id = request.GET.get("run", "")
    handoff_id = request.GET.get("handoff", "")
    if run_id:
        try:
            run_pk = uuid.UUID(run_id)
        except ValueError:
            raise Http404("No such run.") from None
        run = Run.objects.select_related("trigger").filter(pk=run_pk).first()
        if run is None:
            raise Http404("No such run.")
        return run, selectors.turn_from_run(run=run), reverse("observe:run", args=[run.pk])
    if handoff_id:
        pk = id_param(handoff_id)
        handoff = (
            Handoff.objects.select_related("run__trigger").filter(pk=pk).first() if pk else None
        )
        if handoff is None:
            raise Http404("No such handoff.")
        back = reverse("operators:handoff", args=[handoff.pk])
        return handoff, selectors.turn_from_handoff(handoff=handoff), back
    raise Http404("Give ?run=<id> or ?handoff=<id>.")


@role_required("operator")
def dataset_add(request: HtmxHttpRequest) -> HttpResponse:
    """Add a conversation turn from a run, a failure or a handoff to a dataset."""
    source, turn, back = _source(request)
    initial = {"reference": turn.reference if turn else ""}
    form = forms.AddTurnForm(request.POST or None, initial=initial)
    if request.method == "POST" and turn is not None:

        @transaction.atomic
        def add() -> DatasetItem:
            dataset = form.cleaned_data["dataset"] or services.dataset_create(
                name=form.cleaned_data["new_dataset"], actor=request.user
            )
            reference = form.cleaned_data["reference"]
            if isinstance(source, Run):
                return services.dataset_item_from_run(
                    dataset=dataset, run=source, actor=request.user, reference=reference
                )
            return services.dataset_item_from_handoff(
                dataset=dataset, handoff=source, actor=request.user, reference=reference
            )

        item = form_submit(
            request,
            form,
            add,
            done=lambda item: f"Added to the dataset {item.dataset.name} (item {item.pk}).",
            rename=lambda key: "new_dataset" if key == "name" else "",
        )
        if item is not None:
            return redirect(back)
    return render(
        request,
        "experiments/add_turn.html",
        {"form": form, "turn": turn, "back": back, "source": source},
        status=400 if form.errors else 200,
    )


# -- experiments ---------------------------------------------------------------------------
@role_required("viewer")
def experiments(request: HtmxHttpRequest) -> HttpResponse:
    form = forms.ExperimentForm(request.POST or None, initial={"exact": True})
    if request.method == "POST":
        role_require(user=request.user, role="operator")
        experiment = form_submit(
            request,
            form,
            lambda: services.experiment_create(
                name=form.cleaned_data["name"],
                dataset=form.cleaned_data["dataset"],
                variants=form.variants(),
                checks=form.checks(),
                threshold=form.cleaned_data["threshold"],
                actor=request.user,
            ),
            rename=lambda key: _experiment_field(form, key),
        )
        if experiment is not None:
            return redirect("experiments:experiment", experiment.pk)
    return render(
        request,
        "experiments/experiments.html",
        {"experiments": Experiment.objects.select_related("dataset")[:100], "form": form},
        status=400 if form.errors else 200,
    )


@role_required("viewer")
@require_GET
def experiment(request: HtmxHttpRequest, experiment_id: int) -> HttpResponse:
    experiment = get_object_or_404(Experiment.objects.select_related("dataset"), pk=experiment_id)
    comparison = selectors.experiment_comparison(experiment=experiment)
    template = "experiments/experiment.html"
    if request.htmx and request.GET.get("part") == "live":
        template += "#live"
    return render(
        request,
        template,
        {
            "experiment": experiment,
            "cmp": comparison,
            "running": experiment.status == ExperimentStatus.RUNNING,
        },
    )


@role_required("operator")
@require_POST
def experiment_run(request: HtmxHttpRequest, experiment_id: int) -> HttpResponse:
    experiment = get_object_or_404(Experiment, pk=experiment_id)
    try:
        services.experiment_start(experiment=experiment, actor=request.user)
    except (ApplicationError, ValidationError) as exc:
        messages.error(request, refusal_text(exc))
    return redirect("experiments:experiment", experiment.pk)


@role_required("operator")
@require_POST
def check_edit(request: HtmxHttpRequest, experiment_id: int, check_id: int) -> HttpResponse:
    check = get_object_or_404(Check, pk=check_id, experiment_id=experiment_id)
    try:
        services.check_update(
            check=check,
            rubric=request.POST.get("rubric"),
            expected=request.POST.get("expected"),
        )
    except (ApplicationError, ValidationError) as exc:
        messages.error(request, refusal_text(exc))
    else:
        count = services.experiment_rescore(experiment=check.experiment, actor=request.user)
        messages.success(request, f"Check saved; {count} answers are being scored again.")
    return redirect("experiments:experiment", experiment_id)
