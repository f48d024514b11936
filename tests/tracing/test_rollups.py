import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tests.tracing.helpers import TraceBuilder, fixed_runs
from tracing.metrics import percentile
from tracing.models import MetricRollup, ModelPrice, RollupState, Span
from tracing.rollups import rollup_metrics
from tracing.selectors import metrics_overview, metrics_series, metrics_totals

STEP = 2**0.25


def within_bucket(value: float | None, true: float) -> bool:
    """A percentile read from the log histogram is the upper bound of its bucket."""
    return value is not None and true <= value < true * STEP


@pytest.fixture
def start():
    now = datetime.now(UTC).replace(second=5, microsecond=0)
    return now - timedelta(minutes=10)


@pytest.fixture
def window(start):
    return {"since": start - timedelta(minutes=1), "until": start + timedelta(minutes=5)}


@pytest.fixture
def rolled(db, start):
    ModelPrice.objects.create(
        model="gpt-x", input_per_million=Decimal("1.00"), output_per_million=Decimal("2.00")
    )
    runs = fixed_runs(start)
    assert (
        rollup_metrics(settle_seconds=0)
        == Span.objects.filter(
            name__in=[
                "model.call",
                "tool.call",
                "retry.wait",
                "fallback",
                "handoff",
                "run.status",
                "tool.rejected",
            ]
        ).count()
    )
    return runs


def test_it_rolls_up_runs_per_agent_as_computed_by_hand(rolled, window):
    overview = metrics_overview(**window)
    alpha = next(e for e in overview.by_agent if e["agent"] == "alpha")["run"]
    # A1 succeeded, A2 failed, A3 handed off.
    assert (alpha.count, alpha.succeeded, alpha.errors, alpha.handed_off) == (3, 1, 1, 1)
    assert alpha.success_rate == pytest.approx(1 / 3)
    assert alpha.error_rate == pytest.approx(1 / 3)
    assert alpha.handoff_rate == pytest.approx(1 / 3)
    assert alpha.retries_per_run == pytest.approx(1 / 3)  # one retry.wait in A2
    assert alpha.fallbacks_per_run == pytest.approx(1 / 3)  # one fallback in A3
    assert alpha.started == 3
    # Run latencies 1000, 2000, 3000 ms: p50 is the 2nd (2000), p95 and p99 the 3rd (3000).
    assert within_bucket(alpha.p50, 2000)
    assert within_bucket(alpha.p95, 3000)
    assert within_bucket(alpha.p99, 3000)
    assert alpha.latency_sum_ms == pytest.approx(6000)

    # All four runs: 500, 1000, 2000, 3000 ms -> p50 is the 2nd (1000), p95 the 4th (3000).
    runs = overview.runs
    assert (runs.count, runs.succeeded) == (4, 2)
    assert runs.success_rate == pytest.approx(0.5)
    assert within_bucket(runs.p50, 1000)
    assert within_bucket(runs.p95, 3000)


def test_it_rolls_up_model_calls_with_tokens_and_cost(rolled, window):
    overview = metrics_overview(**window)
    by_model = {s.key: s for s in overview.by_model}
    # gpt-x: A1 100 ms (100 in/50 out), 200 ms (150/30); A2 400 ms failed, 300 ms failed (80/0).
    gx = by_model["gpt-x"]
    assert (gx.count, gx.errors, gx.tokens_in, gx.tokens_out) == (4, 2, 330, 80)
    assert gx.error_rate == pytest.approx(0.5)
    # $1 per million in, $2 per million out: 330 * 1e-6 + 80 * 2e-6.
    assert gx.cost == Decimal("0.00049")
    assert within_bucket(gx.p50, 200)
    assert within_bucket(gx.p95, 400)
    assert within_bucket(gx.p99, 400)
    # gpt-y has no price: tokens counted, no cost.
    gy = by_model["gpt-y"]
    assert (gy.count, gy.errors, gy.tokens_in, gy.tokens_out, gy.cost) == (1, 0, 10, 5, 0)
    assert within_bucket(gy.p50, 50)
    assert overview.models_total.cost == Decimal("0.00049")
    assert (overview.models_total.tokens_in, overview.models_total.tokens_out) == (340, 85)


def test_it_rolls_up_tool_calls_with_their_error_rate(rolled, window):
    overview = metrics_overview(**window)
    by_tool = {s.key: s for s in overview.by_tool}
    # search: 20 ms ok (A1), 30 ms failed (A3); nope: rejected once (A3).
    assert (by_tool["search"].count, by_tool["search"].errors) == (2, 1)
    assert by_tool["search"].error_rate == pytest.approx(0.5)
    assert within_bucket(by_tool["search"].p50, 20)
    assert within_bucket(by_tool["search"].p95, 30)
    assert (by_tool["nope"].count, by_tool["nope"].errors) == (1, 1)
    assert overview.tools_total.count == 3


def test_it_filters_metrics_by_agent(rolled, window):
    totals = metrics_totals(**window, agent="beta")
    assert (totals["run"].count, totals["run"].succeeded, totals["model"].count) == (1, 1, 1)
    assert within_bucket(totals["run"].p50, 500)
    assert totals["cost"] == 0


def test_it_keeps_minute_hour_and_all_time_rows_in_agreement(rolled):
    for kind in ("run", "model", "tool"):
        sums = {
            seconds: sum(
                MetricRollup.objects.filter(bucket_seconds=seconds, kind=kind).values_list(
                    "count", flat=True
                )
            )
            for seconds in (60, 3600, 0)
        }
        assert sums[60] == sums[3600] == sums[0] > 0


def test_it_counts_each_span_once_across_runs(rolled, window, start):
    assert rollup_metrics(settle_seconds=0) == 0
    later = TraceBuilder(start + timedelta(minutes=1), "alpha")
    later.status("running", at_ms=0)
    later.status("succeeded", at_ms=250)
    later.save()
    assert rollup_metrics(settle_seconds=0) == 2
    alpha = metrics_totals(**window, agent="alpha")["run"]
    assert (alpha.count, alpha.succeeded, alpha.started) == (4, 2, 4)


def test_it_waits_for_spans_to_settle_before_rolling_them_up(db, start):
    builder = TraceBuilder(start, "alpha")
    builder.status("running", at_ms=0)
    builder.save()
    now = datetime.now(UTC)
    # First pass only notes the highest id; it is rolled up once it is older than the settle time.
    assert rollup_metrics(settle_seconds=30, now=now) == 0
    assert rollup_metrics(settle_seconds=30, now=now + timedelta(seconds=10)) == 0
    # At least this test's span: a worker of an earlier test module may still write one.
    assert rollup_metrics(settle_seconds=30, now=now + timedelta(seconds=31)) >= 1
    assert RollupState.objects.get().done_upto >= Span.objects.get(trace_id=builder.trace_id).id


def test_it_cuts_a_window_into_series_points(rolled, window, start):
    series = metrics_series(**window, points=6)
    assert sum(p.runs.count for p in series) == 4
    assert sum(p.models.tokens_in for p in series) == 340
    assert all(a.start < b.start for a, b in itertools.pairwise(series))


def test_it_reads_percentiles_from_histograms():
    from tracing.metrics import bucket_index, hist_new

    hist = hist_new()
    for ms in [5] * 90 + [100] * 9 + [2000]:
        hist[bucket_index(ms)] += 1
    assert within_bucket(percentile(hist, 0.5), 5)
    assert within_bucket(percentile(hist, 0.95), 100)
    assert within_bucket(percentile(hist, 0.99), 100)
    assert within_bucket(percentile(hist, 1.0), 2000)
    assert percentile(hist_new(), 0.5) is None
