"""Reads for datasets and experiments: a turn out of a run or a handoff, the comparison of an
experiment's variants, and the publish gate."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

from django.db.models import Count, QuerySet

from agentops.experiments.models import (
    IN_FLIGHT,
    Check,
    Dataset,
    DatasetItem,
    Experiment,
    ExperimentStatus,
    Result,
    ResultStatus,
    Variant,
)
from agentops.models import AgentVersion, Handoff, Message, Role, Run
from tracing.platform.types import SessionId

CONTEXT_ROLES = (Role.USER, Role.ASSISTANT, Role.OPERATOR)


@dataclass
class Turn:
    """A conversation turn as a dataset item holds it."""

    input: str
    context: list[dict[str, str]]
    reference: str
    run: Run | None


def _context_before(*, session_id: SessionId, seq: int) -> list[dict[str, str]]:
    """The talk before a message: user, assistant and operator text (tool traffic is the
    agent's own business and is redone by whichever version answers)."""
    rows = Message.objects.filter(
        session_id=session_id, seq__lt=seq, role__in=CONTEXT_ROLES
    ).order_by("seq")
    return [{"role": m.role, "content": m.content} for m in rows if m.content.strip()]


def _turn(
    *, trigger: Message, session_id: SessionId, reference: str | None, run: Run | None
) -> Turn:
    """The turn `trigger` opened: its text, the talk before it, and `reference` ("" for none)."""
    return Turn(
        input=trigger.content,
        context=_context_before(session_id=session_id, seq=trigger.seq),
        reference=reference or "",
        run=run,
    )


def turn_from_run(*, run: Run) -> Turn | None:
    """The user message a run answered, the talk before it, and its final answer (empty for
    a failed run: the reference is to be written). None: the run answered no user message."""
    trigger = run.trigger
    if trigger is None or trigger.role != Role.USER:
        return None
    answer = (
        Message.objects.filter(run=run, role=Role.ASSISTANT)
        .exclude(content="")
        .order_by("-seq")
        .values_list("content", flat=True)
        .first()
    )
    return _turn(trigger=trigger, session_id=run.session_id, reference=answer, run=run)


def turn_from_handoff(*, handoff: Handoff) -> Turn | None:
    """The user message the handed-off run was answering, with the operator's first reply
    after it as the reference answer."""
    run = handoff.run
    trigger = run.trigger if run is not None else None
    if trigger is None:
        trigger = (
            Message.objects.filter(
                session_id=handoff.session_id, role=Role.USER, created_at__lte=handoff.created_at
            )
            .order_by("-seq")
            .first()
        )
    if trigger is None:
        return None
    reply = (
        Message.objects.filter(
            session_id=handoff.session_id, role=Role.OPERATOR, seq__gt=trigger.seq
        )
        .order_by("seq")
        .values_list("content", flat=True)
        .first()
    )
    return _turn(trigger=trigger, session_id=handoff.session_id, reference=reply, run=run)


def datasets_list() -> QuerySet[Dataset]:
    return Dataset.objects.annotate(item_count=Count("items")).order_by("name")


def dataset_items(*, dataset: Dataset) -> QuerySet[DatasetItem]:
    return dataset.items.order_by("pk")


def dataset_jsonl(*, dataset: Dataset) -> Iterator[str]:
    """One JSON object a line: input, context, reference (what `dataset_import_jsonl` reads)."""
    for item in dataset.items.order_by("pk").iterator():
        yield (
            json.dumps(
                {"input": item.input, "context": item.context, "reference": item.reference},
                ensure_ascii=False,
            )
            + "\n"
        )


def experiment_progress(*, experiment: Experiment) -> dict[str, int]:
    counts = dict(
        experiment.results.order_by()
        .values_list("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    total = sum(counts.values())
    finished = counts.get(ResultStatus.DONE, 0) + counts.get(ResultStatus.ERROR, 0)
    in_flight = sum(counts.get(s, 0) for s in IN_FLIGHT)
    return {
        "total": total,
        "finished": finished,
        "in_flight": in_flight,
        "pending": counts.get(ResultStatus.PENDING, 0),
        "errors": counts.get(ResultStatus.ERROR, 0),
        "percent": round(100 * finished / total) if total else 0,
    }


@dataclass
class VariantSummary:
    variant: Variant
    done: int = 0
    errors: int = 0
    score: float | None = None
    check_scores: dict[int, float | None] = field(default_factory=dict)
    latency_ms: float | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    tool_calls: int = 0
    regressions: int = 0
    flagged: bool = False

    @property
    def check_list(self) -> list[float | None]:
        return list(self.check_scores.values())


@dataclass
class Cell:
    """One item's result for one variant, with its scores in the checks' order."""

    result: Result | None
    regressed: bool
    scores: list[dict[str, Any]]


@dataclass
class ItemRow:
    item: DatasetItem
    results: list[Result | None]
    regressed: list[bool]
    cells: list[Cell] = field(default_factory=list)


@dataclass
class Comparison:
    experiment: Experiment
    checks: list[Check]
    variants: list[VariantSummary]
    rows: list[ItemRow]
    progress: dict[str, int]


def _regressed(baseline: Result | None, result: Result | None) -> bool:
    """Worse than the baseline on this item: a check the baseline passed that this failed
    (or could not score), or a lower overall score."""
    if baseline is None or result is None or baseline.status != ResultStatus.DONE:
        return False
    if result.status == ResultStatus.ERROR:
        return True
    if result.status != ResultStatus.DONE:
        return False
    for check_id, base in baseline.scores.items():
        mine = result.scores.get(check_id, {})
        if (base.get("score") or 0) > (mine.get("score") or 0):
            return True
    return (baseline.score or 0) > (result.score or 0)


def experiment_comparison(*, experiment: Experiment) -> Comparison:
    checks = list(experiment.checks.order_by("position"))
    variants = list(experiment.variants.select_related("version").order_by("position"))
    results = {
        (r.item_id, r.variant_id): r for r in experiment.results.select_related("run").order_by()
    }
    summaries = [VariantSummary(variant=v) for v in variants]
    rows: list[ItemRow] = []
    for item in experiment.dataset.items.order_by("pk"):
        row_results = [results.get((item.pk, v.pk)) for v in variants]
        if not any(row_results):
            continue
        baseline = row_results[0] if row_results else None
        regressed = [i > 0 and _regressed(baseline, r) for i, r in enumerate(row_results)]
        cells = [
            Cell(
                result=r,
                regressed=flag,
                scores=[
                    {"label": c.label, **(r.scores.get(str(c.pk), {}) if r else {})} for c in checks
                ],
            )
            for r, flag in zip(row_results, regressed, strict=True)
        ]
        rows.append(ItemRow(item=item, results=row_results, regressed=regressed, cells=cells))
    for index, summary in enumerate(summaries):
        mine = [row.results[index] for row in rows]
        done = [r for r in mine if r is not None and r.status == ResultStatus.DONE]
        summary.done = len(done)
        summary.errors = sum(1 for r in mine if r is not None and r.status == ResultStatus.ERROR)
        # A result that could not run scores 0: a version that breaks is not a better one.
        scored = [r.score for r in done if r.score is not None] + [0.0] * summary.errors
        summary.score = fmean(scored) if scored else None
        for check in checks:
            values = [
                r.scores[str(check.pk)]["score"]
                for r in done
                if r.scores.get(str(check.pk), {}).get("score") is not None
            ]
            summary.check_scores[check.pk] = fmean(values) if values else None
        latencies = [r.latency_ms for r in done if r.latency_ms is not None]
        summary.latency_ms = fmean(latencies) if latencies else None
        summary.tokens_in = sum(r.tokens_in for r in done)
        summary.tokens_out = sum(r.tokens_out for r in done)
        summary.cost = float(sum(r.cost for r in done))
        summary.tool_calls = sum(r.tool_calls for r in done)
        summary.regressions = sum(1 for row in rows if row.regressed[index])
        summary.flagged = _below(experiment, summary.score)
    return Comparison(
        experiment=experiment,
        checks=checks,
        variants=summaries,
        rows=rows,
        progress=experiment_progress(experiment=experiment),
    )


def _below(experiment: Experiment, score: float | None) -> bool:
    return (
        experiment.threshold is not None
        and experiment.status == ExperimentStatus.FINISHED
        and (score is None or score < experiment.threshold)
    )


@dataclass
class GateVerdict:
    """The latest finished gating experiment that ran the version, and how it did."""

    flagged: bool
    score: float | None
    threshold: float
    experiment: Experiment


def agent_version_gate(*, version: AgentVersion) -> GateVerdict | None:
    """Whether `version` falls below the threshold of the latest finished experiment with a
    threshold that ran it (None: no such experiment, nothing to say)."""
    variant = (
        Variant.objects.filter(
            version=version,
            experiment__threshold__isnull=False,
            experiment__status=ExperimentStatus.FINISHED,
        )
        .select_related("experiment")
        .order_by("-experiment__finished_at", "-experiment_id")
        .first()
    )
    if variant is None:
        return None
    experiment = variant.experiment
    assert experiment.threshold is not None
    scores = [
        0.0 if status == ResultStatus.ERROR or score is None else score
        for status, score in Result.objects.filter(variant=variant)
        .exclude(status=ResultStatus.DONE, score__isnull=True)
        .values_list("status", "score")
    ]
    mean = fmean(scores) if scores else None
    return GateVerdict(
        flagged=_below(experiment, mean),
        score=mean,
        threshold=experiment.threshold,
        experiment=experiment,
    )
