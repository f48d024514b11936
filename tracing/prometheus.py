"""A Prometheus collector over the all-time rollup rows (monotonic, cheap to read)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from tracing.metrics import LATENCY_BOUNDS_MS
from tracing.models import AlertRule, MetricRollup, RollupKind, RollupState

# Every fourth bound: buckets that double (1 ms, 2 ms, 4 ms, ... 70 min).
EXPORTED_BOUNDS = list(range(0, len(LATENCY_BOUNDS_MS), 4))


def histogram_buckets(hist: list[int]) -> list[tuple[str, float]]:
    buckets, running, upto = [], 0, 0
    for index in EXPORTED_BOUNDS:
        running += sum(hist[upto : index + 1])
        upto = index + 1
        buckets.append((f"{LATENCY_BOUNDS_MS[index] / 1000:g}", float(running)))
    buckets.append(("+Inf", float(sum(hist))))
    return buckets


class RollupCollector:
    def collect(self) -> Iterator[Any]:
        runs = CounterMetricFamily(
            "agentops_runs_finished", "Runs that ended, by outcome.", labels=["agent", "outcome"]
        )
        starts = CounterMetricFamily(
            "agentops_runs_started", "Run starts and resumptions.", labels=["agent"]
        )
        retries = CounterMetricFamily(
            "agentops_retries", "Retry waits (model and tool calls).", labels=["agent"]
        )
        fallbacks = CounterMetricFamily(
            "agentops_fallbacks", "Fallbacks to another model or tool.", labels=["agent"]
        )
        handoffs = CounterMetricFamily(
            "agentops_handoffs", "Handoffs to a human.", labels=["agent"]
        )
        model_calls = CounterMetricFamily(
            "agentops_model_calls", "Model calls.", labels=["agent", "model", "status"]
        )
        tokens = CounterMetricFamily(
            "agentops_model_tokens", "Tokens.", labels=["agent", "model", "direction"]
        )
        cost = CounterMetricFamily(
            "agentops_model_cost_usd", "Estimated cost (price table).", labels=["agent", "model"]
        )
        tool_calls = CounterMetricFamily(
            "agentops_tool_calls", "Tool calls.", labels=["agent", "tool", "status"]
        )
        guardrails = CounterMetricFamily(
            "agentops_guardrail_checks",
            "Guardrail decisions: passed, or tripped (redacted, flagged, blocked, handed off).",
            labels=["agent", "guardrail", "outcome"],
        )
        durations: dict[str, HistogramMetricFamily] = {
            RollupKind.RUN: HistogramMetricFamily(
                "agentops_run_duration_seconds", "Run wall time.", labels=["agent"]
            ),
            RollupKind.MODEL: HistogramMetricFamily(
                "agentops_model_call_duration_seconds",
                "Model call latency.",
                labels=["agent", "model"],
            ),
            RollupKind.TOOL: HistogramMetricFamily(
                "agentops_tool_call_duration_seconds",
                "Tool call latency.",
                labels=["agent", "tool"],
            ),
            RollupKind.GUARDRAIL: HistogramMetricFamily(
                "agentops_guardrail_duration_seconds",
                "Guardrail check latency.",
                labels=["agent", "guardrail"],
            ),
        }
        for row in MetricRollup.objects.filter(bucket_seconds=0).order_by("kind", "agent", "key"):
            agent = row.agent
            labels = [agent] if row.kind == RollupKind.RUN else [agent, row.key]
            if row.kind == RollupKind.RUN:
                for outcome, value in (
                    ("succeeded", row.succeeded),
                    ("failed", row.errors),
                    ("handed_off", row.handed_off),
                    ("cancelled", row.cancelled),
                ):
                    runs.add_metric([agent, outcome], value)
                starts.add_metric([agent], row.started)
                retries.add_metric([agent], row.retries)
                fallbacks.add_metric([agent], row.fallbacks)
                handoffs.add_metric([agent], row.handoffs)
            elif row.kind == RollupKind.MODEL:
                model_calls.add_metric([agent, row.key, "ok"], row.count - row.errors)
                model_calls.add_metric([agent, row.key, "error"], row.errors)
                tokens.add_metric([agent, row.key, "input"], row.tokens_in)
                tokens.add_metric([agent, row.key, "output"], row.tokens_out)
                cost.add_metric([agent, row.key], float(row.cost))
            elif row.kind == RollupKind.GUARDRAIL:
                guardrails.add_metric([agent, row.key, "passed"], row.count - row.errors)
                guardrails.add_metric([agent, row.key, "tripped"], row.errors)
            else:
                tool_calls.add_metric([agent, row.key, "ok"], row.count - row.errors)
                tool_calls.add_metric([agent, row.key, "error"], row.errors)
            hist = list(row.latency_hist or [])
            if sum(hist):
                durations[row.kind].add_metric(
                    labels, histogram_buckets(hist), row.latency_sum_ms / 1000
                )
        yield from (
            runs,
            starts,
            retries,
            fallbacks,
            handoffs,
            model_calls,
            tokens,
            cost,
            tool_calls,
            guardrails,
        )
        yield from durations.values()

        firing = GaugeMetricFamily(
            "agentops_alert_firing", "1 while an alert rule fires.", labels=["alert", "metric"]
        )
        for rule in AlertRule.objects.filter(enabled=True).order_by("name"):
            firing.add_metric([rule.name, rule.metric], 1.0 if rule.firing else 0.0)
        yield firing
        state = RollupState.objects.order_by("pk").first()
        last = GaugeMetricFamily(
            "agentops_rollup_last_run_timestamp_seconds",
            "When the rollup job last ran (metrics lag behind by up to this).",
        )
        last.add_metric([], state.last_run_at.timestamp() if state and state.last_run_at else 0.0)
        yield last
