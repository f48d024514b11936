"""Datasets and experiments through the API (agentops/api.py's conventions: reads need the
viewer role, writes operator; bad input is a 4xx JSON naming the field)."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any, Literal

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest
from ninja import Path, Router, Schema, Status
from ninja.errors import HttpError
from pydantic import Field

from agentops.api import BODY_ERRORS, FOUND_ERRORS, ErrorOut, Text
from agentops.auth import role_require
from agentops.experiments import selectors, services
from agentops.experiments.models import Check, Dataset, DatasetItem, Experiment, Result
from agentops.models import AgentVersion, Handoff, ModelEndpoint, Run
from tracing.platform.errors import Conflict

router: Router = Router(tags=["datasets and experiments"])

Id = Annotated[int, Path(ge=1, le=2**63 - 1)]
WRITE_ERRORS = {409: ErrorOut, **FOUND_ERRORS, **BODY_ERRORS}


class Unsatisfiable(Conflict):
    """Well-formed by the schema, but naming what does not exist or asking for what cannot go
    together: 409 naming the field (422 is for what the schema itself refuses)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field=field)


class DatasetIn(Schema):
    name: Text = Field(min_length=1, max_length=200, pattern=r"\S")
    description: Text = Field(default="", max_length=5000)


class DatasetOut(Schema):
    id: int
    name: str
    description: str
    items: int
    created_at: str


class ContextMessage(Schema):
    role: Literal["user", "assistant", "operator"]
    content: Text = Field(min_length=1)


class ItemIn(Schema):
    """Either the turn itself (`input`, `context`, `reference`), or where to take it from:
    a run (`run`; a failed run makes a failure item) or a handoff (`handoff`: the operator's
    reply is the reference). `reference` given with a source replaces the one found."""

    input: Text | None = Field(default=None, min_length=1)
    context: list[ContextMessage] = []
    reference: Text | None = None
    run: uuid.UUID | None = None
    handoff: int | None = Field(default=None, ge=1, le=2**63 - 1)


class ItemPatch(Schema):
    input: Text | None = Field(default=None, min_length=1)
    reference: Text | None = None


class ItemOut(Schema):
    id: int
    dataset: int
    input: str
    context: list[dict[str, str]]
    reference: str
    source: str
    source_run: uuid.UUID | None
    created_at: str


class ItemsOut(Schema):
    items: list[ItemOut]


class VariantIn(Schema):
    version: int = Field(ge=1, le=2**63 - 1, description="An agent version id")
    model: Text = Field(
        default="", max_length=200, description="Run the version with this model instead"
    )


class CheckIn(Schema):
    kind: Literal["exact", "contains", "regex", "json_schema", "judge"]
    expected: Text = Field(
        default="", description="Text or pattern; empty: the item's reference answer"
    )
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    rubric: Text = Field(default="", max_length=10_000)
    endpoint: int | None = Field(default=None, description="The judge's model endpoint id")
    model: Text = Field(default="", max_length=200, description="The judge's model")


class ExperimentIn(Schema):
    name: Text = Field(min_length=1, max_length=200)
    dataset: int = Field(ge=1, le=2**63 - 1)
    variants: list[VariantIn] = Field(min_length=1, description="The first is the baseline")
    checks: list[CheckIn] = Field(min_length=1)
    threshold: float | None = Field(
        default=None, ge=0, le=1, description="Publish gate: the mean score a version needs"
    )


class CheckOut(Schema):
    id: int
    kind: str
    expected: str
    schema_: dict[str, Any] | None = Field(alias="schema")
    rubric: str
    endpoint: int | None
    model: str


class VariantOut(Schema):
    id: int
    version: int
    label: str
    done: int
    errors: int
    score: float | None
    check_scores: dict[str, float | None]
    latency_ms: float | None
    tokens_in: int
    tokens_out: int
    cost: float
    tool_calls: int
    regressions: int
    flagged: bool


class ExperimentOut(Schema):
    id: int
    name: str
    dataset: int
    status: str
    threshold: float | None
    checks: list[CheckOut]
    variants: list[VariantOut]
    progress: dict[str, int]
    created_at: str
    started_at: str | None
    finished_at: str | None


class ResultOut(Schema):
    id: int
    item: int
    variant: int
    status: str
    run: uuid.UUID | None
    run_status: str
    output: str
    latency_ms: int | None
    tokens_in: int
    tokens_out: int
    cost: float
    tool_calls: int
    scores: dict[str, Any]
    score: float | None
    regressed: bool = Field(description="Worse than the baseline variant on this item")
    error: str


class ResultsOut(Schema):
    results: list[ResultOut]


def _dataset(dataset_id: int) -> Dataset:
    dataset = Dataset.objects.filter(pk=dataset_id).first()
    if dataset is None:
        raise HttpError(404, f"no dataset {dataset_id}")
    return dataset


def _experiment(experiment_id: int) -> Experiment:
    experiment = Experiment.objects.filter(pk=experiment_id).first()
    if experiment is None:
        raise HttpError(404, f"no experiment {experiment_id}")
    return experiment


def dataset_out(dataset: Dataset) -> dict[str, Any]:
    return {
        "id": dataset.pk,
        "name": dataset.name,
        "description": dataset.description,
        "items": getattr(dataset, "item_count", None) or dataset.items.count(),
        "created_at": dataset.created_at.isoformat(),
    }


def item_out(item: DatasetItem) -> dict[str, Any]:
    return {
        "id": item.pk,
        "dataset": item.dataset_id,
        "input": item.input,
        "context": item.context,
        "reference": item.reference,
        "source": item.source,
        "source_run": item.source_run_id,
        "created_at": item.created_at.isoformat(),
    }


def check_out(check: Check) -> dict[str, Any]:
    return {
        "id": check.pk,
        "kind": check.kind,
        "expected": check.expected,
        "schema": check.schema,
        "rubric": check.rubric,
        "endpoint": check.endpoint_id,
        "model": check.model,
    }


def experiment_out(experiment: Experiment) -> dict[str, Any]:
    comparison = selectors.experiment_comparison(experiment=experiment)
    return {
        "id": experiment.pk,
        "name": experiment.name,
        "dataset": experiment.dataset_id,
        "status": experiment.status,
        "threshold": experiment.threshold,
        "checks": [check_out(c) for c in comparison.checks],
        "variants": [
            {
                "id": s.variant.pk,
                "version": s.variant.version_id,
                "label": s.variant.label,
                "done": s.done,
                "errors": s.errors,
                "score": s.score,
                "check_scores": {str(k): v for k, v in s.check_scores.items()},
                "latency_ms": s.latency_ms,
                "tokens_in": s.tokens_in,
                "tokens_out": s.tokens_out,
                "cost": s.cost,
                "tool_calls": s.tool_calls,
                "regressions": s.regressions,
                "flagged": s.flagged,
            }
            for s in comparison.variants
        ],
        "progress": comparison.progress,
        "created_at": experiment.created_at.isoformat(),
        "started_at": experiment.started_at.isoformat() if experiment.started_at else None,
        "finished_at": experiment.finished_at.isoformat() if experiment.finished_at else None,
    }


def result_out(result: Result, regressed: bool) -> dict[str, Any]:
    return {
        "id": result.pk,
        "item": result.item_id,
        "variant": result.variant_id,
        "status": result.status,
        "run": result.run_id,
        "run_status": result.run_status,
        "output": result.output,
        "latency_ms": result.latency_ms,
        "tokens_in": result.tokens_in,
        "tokens_out": result.tokens_out,
        "cost": float(result.cost),
        "tool_calls": result.tool_calls,
        "scores": result.scores,
        "score": result.score,
        "regressed": regressed,
        "error": f"{result.error_class}: {result.error_message}" if result.error_class else "",
    }


@router.get("/datasets", response={200: list[DatasetOut], **FOUND_ERRORS}, summary="Datasets")
def list_datasets(request: HttpRequest) -> list[dict[str, Any]]:
    role_require(user=request.user, role="viewer")
    return [dataset_out(d) for d in selectors.datasets_list()]


@router.post("/datasets", response={201: DatasetOut, **WRITE_ERRORS}, summary="Create a dataset")
def create_dataset(request: HttpRequest, payload: DatasetIn) -> Status[dict[str, Any]]:
    role_require(user=request.user, role="operator")
    if Dataset.objects.filter(name=payload.name.strip()).exists():
        raise Unsatisfiable("name", f"A dataset named {payload.name.strip()!r} exists already.")
    dataset = services.dataset_create(
        name=payload.name, description=payload.description, actor=request.user
    )
    return Status(201, dataset_out(dataset))


@router.get("/datasets/{dataset_id}", response={200: DatasetOut, **FOUND_ERRORS})
def get_dataset(request: HttpRequest, dataset_id: Id) -> dict[str, Any]:
    role_require(user=request.user, role="viewer")
    return dataset_out(_dataset(dataset_id))


@router.delete("/datasets/{dataset_id}", response={204: None, **WRITE_ERRORS})
def delete_dataset(request: HttpRequest, dataset_id: Id) -> Status[None]:
    role_require(user=request.user, role="operator")
    services.dataset_delete(dataset=_dataset(dataset_id), actor=request.user)
    return Status(204, None)


@router.get("/datasets/{dataset_id}/items", response={200: ItemsOut, **FOUND_ERRORS})
def list_items(request: HttpRequest, dataset_id: Id) -> dict[str, Any]:
    role_require(user=request.user, role="viewer")
    items = selectors.dataset_items(dataset=_dataset(dataset_id))
    return {"items": [item_out(i) for i in items]}


@router.post(
    "/datasets/{dataset_id}/items",
    response={201: ItemOut, **WRITE_ERRORS},
    summary="Add a conversation turn: given, or taken from a run, a failure or a handoff",
)
def add_item(request: HttpRequest, dataset_id: Id, payload: ItemIn) -> Status[dict[str, Any]]:
    role_require(user=request.user, role="operator")
    dataset = _dataset(dataset_id)
    sources = [s for s in ("input", "run", "handoff") if getattr(payload, s) is not None]
    if len(sources) != 1:
        raise Unsatisfiable("input", "Give exactly one of input (the turn itself), run or handoff.")
    if payload.run is not None:
        run = Run.objects.filter(pk=payload.run).first()
        if run is None:
            raise Unsatisfiable("run", f"No run {payload.run}.")
        item = services.dataset_item_from_run(
            dataset=dataset, run=run, actor=request.user, reference=payload.reference
        )
    elif payload.handoff is not None:
        handoff = Handoff.objects.filter(pk=payload.handoff).first()
        if handoff is None:
            raise Unsatisfiable("handoff", f"No handoff {payload.handoff}.")
        item = services.dataset_item_from_handoff(
            dataset=dataset, handoff=handoff, actor=request.user, reference=payload.reference
        )
    else:
        assert payload.input is not None
        item = services.dataset_item_create(
            dataset=dataset,
            input=payload.input,
            context=[m.dict() for m in payload.context],
            reference=payload.reference or "",
            actor=request.user,
        )
    return Status(201, item_out(item))


def _item(dataset_id: int, item_id: int) -> DatasetItem:
    item = DatasetItem.objects.filter(pk=item_id, dataset_id=dataset_id).first()
    if item is None:
        raise HttpError(404, f"no item {item_id} in dataset {dataset_id}")
    return item


@router.patch("/datasets/{dataset_id}/items/{item_id}", response={200: ItemOut, **WRITE_ERRORS})
def update_item(
    request: HttpRequest, dataset_id: Id, item_id: Id, payload: ItemPatch
) -> dict[str, Any]:
    role_require(user=request.user, role="operator")
    # Every field is optional, so django-ninja would read a body that is not an object (a
    # list, a number) as "no change"; it is refused instead.
    body = json.loads(request.body or b"{}")  # the API's parser has read it already
    if not isinstance(body, dict):
        raise DjangoValidationError({"body": ["Send a JSON object: {input?, reference?}."]})
    item = services.dataset_item_update(
        item=_item(dataset_id, item_id), reference=payload.reference, input=payload.input
    )
    return item_out(item)


@router.delete("/datasets/{dataset_id}/items/{item_id}", response={204: None, **WRITE_ERRORS})
def delete_item(request: HttpRequest, dataset_id: Id, item_id: Id) -> Status[None]:
    role_require(user=request.user, role="operator")
    services.dataset_item_delete(item=_item(dataset_id, item_id), actor=request.user)
    return Status(204, None)


@router.post(
    "/experiments",
    response={201: ExperimentOut, **WRITE_ERRORS},
    summary="Create an experiment: a dataset against agent versions (or a version with another model)",
)
def create_experiment(request: HttpRequest, payload: ExperimentIn) -> Status[dict[str, Any]]:
    role_require(user=request.user, role="operator")
    dataset = Dataset.objects.filter(pk=payload.dataset).first()
    if dataset is None:
        raise Unsatisfiable("dataset", f"No dataset {payload.dataset}.")
    for i, variant in enumerate(payload.variants):
        if not AgentVersion.objects.filter(pk=variant.version).exists():
            raise Unsatisfiable(f"variants.{i}.version", "No such agent version.")
    for i, check in enumerate(payload.checks):
        if (
            check.endpoint is not None
            and not ModelEndpoint.objects.filter(pk=check.endpoint).exists()
        ):
            raise Unsatisfiable(f"checks.{i}.endpoint", f"No model endpoint {check.endpoint}.")
    experiment = services.experiment_create(
        name=payload.name,
        dataset=dataset,
        variants=[v.dict() for v in payload.variants],
        checks=[c.dict(by_alias=True) for c in payload.checks],
        threshold=payload.threshold,
        actor=request.user,
    )
    return Status(201, experiment_out(experiment))


@router.post(
    "/experiments/{experiment_id}/run",
    response={202: ExperimentOut, **WRITE_ERRORS},
    summary="Run the experiment (as RQ jobs; poll GET for progress and results)",
)
def run_experiment(request: HttpRequest, experiment_id: Id) -> Status[dict[str, Any]]:
    role_require(user=request.user, role="operator")
    experiment = services.experiment_start(
        experiment=_experiment(experiment_id), actor=request.user
    )
    return Status(202, experiment_out(experiment))


@router.get("/experiments/{experiment_id}", response={200: ExperimentOut, **FOUND_ERRORS})
def get_experiment(request: HttpRequest, experiment_id: Id) -> dict[str, Any]:
    role_require(user=request.user, role="viewer")
    return experiment_out(_experiment(experiment_id))


@router.get(
    "/experiments/{experiment_id}/results",
    response={200: ResultsOut, **FOUND_ERRORS},
    summary="Per item and variant: answer, scores, latency, tokens, cost, regression",
)
def get_results(request: HttpRequest, experiment_id: Id) -> dict[str, Any]:
    role_require(user=request.user, role="viewer")
    comparison = selectors.experiment_comparison(experiment=_experiment(experiment_id))
    return {
        "results": [
            result_out(result, regressed)
            for row in comparison.rows
            for result, regressed in zip(row.results, row.regressed, strict=True)
            if result is not None
        ]
    }
