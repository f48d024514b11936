"""Metric rollups: spans folded into minute, hour and all-time buckets per agent and model/tool,
with costs from the price table. A scheduled job (tracing/jobs.py); safe to run twice at once
(it takes an advisory lock) and counts each span exactly once.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import Max, Min
from django.db.models.fields.json import KeyTextTransform
from django.utils import timezone

from tracing import semconv
from tracing.metrics import COUNTERS, Totals, hist_new, sums_add
from tracing.models import MetricRollup, ModelPrice, RollupKind, RollupState, Span, SpanStatus
from tracing.platform.logs import get_logger

log = get_logger(__name__)

# Minute and hour buckets, and one all-time bucket (seconds 0) for the Prometheus counters.
BUCKETS = (60, 3600, 0)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ROLLUP_LOCK_KEY = 0x74726163  # pg advisory lock id of the rollup job
_ROLLED_NAMES = (
    semconv.MODEL_CALL,
    semconv.TOOL_CALL,
    semconv.RETRY_WAIT,
    semconv.FALLBACK,
    semconv.HANDOFF,
    semconv.RUN_STATUS,
    semconv.TOOL_REJECTED,
    semconv.GUARDRAIL,
)


class PriceBook:
    """Model prices: an exact name match, else the longest price name the model starts with."""

    def __init__(self) -> None:
        rows = list(ModelPrice.objects.all())
        self.exact = {p.model: p for p in rows}
        self.by_length = sorted(rows, key=lambda p: len(p.model), reverse=True)

    def price(self, model: str) -> ModelPrice | None:
        if model in self.exact:
            return self.exact[model]
        return next((p for p in self.by_length if model.startswith(p.model)), None)

    def cost(self, model: str, tokens_in: int, tokens_out: int) -> Decimal:
        price = self.price(model)
        if price is None:
            return Decimal(0)
        return (
            price.input_per_million * tokens_in + price.output_per_million * tokens_out
        ) / 1_000_000


def _floor(moment: datetime, seconds: int) -> datetime:
    if seconds == 0:
        return EPOCH
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=UTC)


def _int(value: str | None) -> int:
    if value is None:
        return 0
    try:
        return max(int(float(value)), 0)
    except (TypeError, ValueError):
        return 0


def _eligible_upto(
    state: RollupState, current_max: int, now: datetime, settle_seconds: float
) -> int:
    """The highest span id old enough to have committed (see RollupState)."""
    if settle_seconds <= 0:
        return current_max
    settled = state.candidate_at is not None and state.candidate_at <= now - timedelta(
        seconds=settle_seconds
    )
    if settled:
        upto = max(state.candidate_upto, state.done_upto)
        state.candidate_upto, state.candidate_at = current_max, now
        return upto
    if state.candidate_at is None:
        state.candidate_upto, state.candidate_at = current_max, now
    return state.done_upto


def rollup_metrics(
    *,
    settle_seconds: float = 5.0,
    now: datetime | None = None,
    batch_size: int = 5000,
    max_spans: int = 500_000,
) -> int:
    """Fold spans written since the last run into the minute and hour rollups.

    Returns how many spans were read. Each span is counted exactly once.
    """
    now = now or timezone.now()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_ROLLUP_LOCK_KEY])
            if not cursor.fetchone()[0]:
                return 0
        state = RollupState.objects.select_for_update().order_by("pk").first()
        if state is None:
            state = RollupState.objects.create()
        current_max = Span.objects.aggregate(m=Max("id"))["m"] or 0
        upto = _eligible_upto(state, current_max, now, settle_seconds)
        accs: dict[tuple[int, datetime, str, str, str], Totals] = {}
        prices = PriceBook()
        cursor_id, read = state.done_upto, 0
        while cursor_id < upto and read < max_spans:
            rows = list(_span_rows(cursor_id, upto, batch_size))
            _fold(rows, accs, prices)
            read += len(rows)
            cursor_id = rows[-1][0] if len(rows) == batch_size else upto
        _write(accs)
        state.done_upto = cursor_id
        state.last_run_at = now
        state.last_spans = read
        state.save()
    if read:
        log.info("tracing.rollup", spans=read, buckets=len(accs), upto=cursor_id)
    return read


def _span_rows(after: int, upto: int, limit: int) -> Iterable[tuple[Any, ...]]:
    return (
        Span.objects.filter(id__gt=after, id__lte=upto, name__in=_ROLLED_NAMES)
        .exclude(attributes__has_key=semconv.SANDBOX)  # no traffic: semconv.SANDBOX
        .order_by("id")
        .annotate(
            a_model=KeyTextTransform(semconv.RESPONSE_MODEL, "attributes"),
            a_req_model=KeyTextTransform(semconv.REQUEST_MODEL, "attributes"),
            a_in=KeyTextTransform(semconv.INPUT_TOKENS, "attributes"),
            a_out=KeyTextTransform(semconv.OUTPUT_TOKENS, "attributes"),
            a_tool=KeyTextTransform(semconv.TOOL_NAME, "attributes"),
            a_guardrail=KeyTextTransform(semconv.GUARDRAIL_NAME, "attributes"),
            a_outcome=KeyTextTransform(semconv.GUARDRAIL_OUTCOME, "attributes"),
            a_status=KeyTextTransform("status", "attributes"),
            a_run_status=KeyTextTransform("run.status", "attributes"),
        )
        .values_list(
            "id",
            "trace_id",
            "name",
            "status",
            "end_time",
            "duration_ms",
            "agent",
            "a_model",
            "a_req_model",
            "a_in",
            "a_out",
            "a_tool",
            "a_guardrail",
            "a_outcome",
            "a_status",
            "a_run_status",
        )[:limit]
    )


def _fold(rows: list[tuple], accs: dict, prices: PriceBook) -> None:
    def acc(kind: str, agent: str, key: str, moment: datetime) -> list[Totals]:
        out = []
        for seconds in BUCKETS:
            k = (seconds, _floor(moment, seconds), kind, agent, key[:200])
            if k not in accs:
                accs[k] = Totals()
            out.append(accs[k])
        return out

    terminal: list[tuple[Any, datetime, str, str]] = []
    for (
        _id,
        trace_id,
        name,
        status,
        end,
        duration,
        agent,
        model,
        req_model,
        tin,
        tout,
        tool,
        guardrail,
        outcome,
        a_status,
        a_run_status,
    ) in rows:
        failed = status == SpanStatus.ERROR
        if name == semconv.MODEL_CALL:
            model = model or req_model or "unknown"
            tokens_in, tokens_out = _int(tin), _int(tout)
            cost = prices.cost(model, tokens_in, tokens_out)
            for a in acc(RollupKind.MODEL, agent, model, end):
                a.count += 1
                a.errors += failed
                a.tokens_in += tokens_in
                a.tokens_out += tokens_out
                a.cost += cost
                a.observe(duration)
        elif name == semconv.TOOL_CALL:
            for a in acc(RollupKind.TOOL, agent, tool or "unknown", end):
                a.count += 1
                a.errors += failed
                a.observe(duration)
        elif name == semconv.RETRY_WAIT:
            for a in acc(RollupKind.RUN, agent, "", end):
                a.retries += 1
        elif name == semconv.FALLBACK:
            for a in acc(RollupKind.RUN, agent, "", end):
                a.fallbacks += 1
        elif name == semconv.HANDOFF:
            # A handoff ends its run: the run's handed_off outcome is counted from this span.
            for a in acc(RollupKind.RUN, agent, "", end):
                a.handoffs += 1
            if not failed:
                terminal.append((trace_id, end, agent, semconv.RUN_HANDED_OFF))
        elif name == semconv.GUARDRAIL:
            for a in acc(RollupKind.GUARDRAIL, agent, guardrail or "unknown", end):
                a.count += 1
                a.errors += outcome != "pass"  # tripped: redacted, flagged, or stopped
                a.observe(duration)
        elif name == semconv.TOOL_REJECTED:
            for a in acc(RollupKind.TOOL, agent, tool or "unknown", end):
                a.count += 1
                a.errors += 1
        elif name == semconv.RUN_STATUS:
            run_status = a_status or a_run_status or ""
            if run_status in semconv.RUN_STARTED:
                for a in acc(RollupKind.RUN, agent, "", end):
                    a.started += 1
            elif run_status in semconv.RUN_TERMINAL and run_status != semconv.RUN_HANDED_OFF:
                terminal.append((trace_id, end, agent, run_status))
    if not terminal:
        return
    firsts = dict(
        Span.objects.filter(trace_id__in={t[0] for t in terminal})
        .values("trace_id")
        .annotate(first=Min("start_time"))
        .values_list("trace_id", "first")
    )
    for trace_id, end, agent, run_status in terminal:
        duration = max((end - firsts.get(trace_id, end)).total_seconds() * 1000, 0.0)
        for a in acc(RollupKind.RUN, agent, "", end):
            a.count += 1
            a.errors += run_status == semconv.RUN_FAILED
            a.succeeded += run_status == semconv.RUN_SUCCEEDED
            a.handed_off += run_status == semconv.RUN_HANDED_OFF
            a.cancelled += run_status == semconv.RUN_CANCELLED
            a.observe(duration)


def _write(accs: dict[tuple[int, datetime, str, str, str], Totals]) -> None:
    if not accs:
        return
    starts = {k[1] for k in accs}
    existing = {
        (r.bucket_seconds, r.start, r.kind, r.agent, r.key): r
        for r in MetricRollup.objects.filter(start__in=starts)
    }
    to_create, to_update = [], []
    for key, a in accs.items():
        row = existing.get(key)
        if row is None:
            seconds, start, kind, agent, name = key
            row = MetricRollup(
                bucket_seconds=seconds,
                start=start,
                kind=kind,
                agent=agent,
                key=name,
                latency_hist=hist_new(),
            )
            to_create.append(row)
        else:
            to_update.append(row)
        sums_add(row, a)
    MetricRollup.objects.bulk_create(to_create, batch_size=500)
    MetricRollup.objects.bulk_update(
        to_update, [*COUNTERS, "cost", "latency_sum_ms", "latency_hist"], batch_size=500
    )
