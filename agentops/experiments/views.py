"""Datasets and experiments pages (thin: forms in, services and selectors do the work)."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from agentops.auth import has_role, role_required
from agentops.experiments import forms, selectors, services
from agentops.experiments.models import Check, Dataset, DatasetItem, Experiment, ExperimentStatus
from agentops.models import Handoff, Run
from tracing.platform.web import HtmxHttpRequest, error_status, id_param


def _form_errors(form: Any, exc: ValidationError, fields: dict[str, str] | None = None) -> None:
    """A service's errors on the form: on the field they name when the form has it."""
    for key, errors in exc.message_dict.items():
        name = key
        if fields and key.startswith("checks."):
            index = int(key.split(".")[1])
            kinds = [c["kind"] for c in form.checks()]
            name = fields.get(kinds[index], "") if index < len(kinds) else ""
        elif key.startswith("variants."):
            name = "model" if key.endswith(".model") else "baseline"
        for error in errors:
            form.add_error(name if name in form.fields else None, error)


# -- datasets ------------------------------------------------------------------------------
@role_required("viewer")
def datasets(request: HtmxHttpRequest) -> HttpResponse:
    form = forms.DatasetForm(request.POST or None)
    if request.method == "POST":
        if not has_role(request.user, "operator"):
            raise PermissionDenied("This needs the operator role.")
        if form.is_valid():
            try:
                dataset = services.dataset_create(
                    name=form.cleaned_data["name"],
                    description=form.cleaned_data["description"],
                    actor=request.user,
                )
            except ValidationError as exc:
                _form_errors(form, exc)
            else:
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
        except ValidationError as exc:
            messages.error(request, "; ".join(exc.messages))
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
        except ValidationError as exc:
            error = "; ".join(exc.messages)
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
            run = Run.objects.select_related("trigger").filter(pk=uuid.UUID(run_id)).first()
        except ValueError:
            run = None
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
    if request.method == "POST" and turn is not None and form.is_valid():
        try:
            dataset = form.cleaned_data["dataset"] or services.dataset_create(
                name=form.cleaned_data["new_dataset"], actor=request.user
            )
            reference = form.cleaned_data["reference"]
            if isinstance(source, Run):
                item = services.dataset_item_from_run(
                    dataset=dataset, run=source, actor=request.user, reference=reference
                )
            else:
                item = services.dataset_item_from_handoff(
                    dataset=dataset, handoff=source, actor=request.user, reference=reference
                )
        except ValidationError as exc:
            for key, errors in exc.message_dict.items():
                for error in errors:
                    form.add_error("new_dataset" if key == "name" else None, error)
        else:
            messages.success(request, f"Added to the dataset {dataset.name} (item {item.pk}).")
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
        if not has_role(request.user, "operator"):
            raise PermissionDenied("This needs the operator role.")
        if form.is_valid():
            try:
                experiment = services.experiment_create(
                    name=form.cleaned_data["name"],
                    dataset=form.cleaned_data["dataset"],
                    variants=form.variants(),
                    checks=form.checks(),
                    threshold=form.cleaned_data["threshold"],
                    actor=request.user,
                )
            except ValidationError as exc:
                _form_errors(form, exc, forms.CHECK_FIELDS)
            else:
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
    except ValidationError as exc:
        messages.error(request, "; ".join(exc.messages))
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
    except ValidationError as exc:
        messages.error(request, "; ".join(exc.messages))
    else:
        count = services.experiment_rescore(experiment=check.experiment, actor=request.user)
        messages.success(request, f"Check saved; {count} answers are being scored again.")
    return redirect("experiments:experiment", experiment_id)
