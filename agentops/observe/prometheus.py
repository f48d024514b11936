"""The /metrics endpoint's registry: rollups (tracing) plus live counts from the core tables."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db.models import Count
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

from agentops.models import ACTIVE_RUN_STATUSES, Handoff, HandoffStatus, Run
from agentops.selectors import run_queue_summary
from tracing.prometheus import RollupCollector


class RuntimeCollector:
    def collect(self) -> Iterator[Any]:
        active = GaugeMetricFamily(
            "agentops_runs_active", "Runs queued, running or waiting.", labels=["status"]
        )
        counts = dict(
            Run.objects.filter(status__in=ACTIVE_RUN_STATUSES)
            .values("status")
            .annotate(n=Count("pk"))
            .values_list("status", "n")
        )
        for status in ACTIVE_RUN_STATUSES:
            active.add_metric([str(status)], counts.get(status, 0))
        yield active
        queued = GaugeMetricFamily(
            "agentops_runs_queued", "Runs queued and not yet picked up.", labels=["agent"]
        )
        oldest = GaugeMetricFamily(
            "agentops_queue_oldest_wait_seconds",
            "Time the oldest queued run has waited (0 when none is queued).",
            labels=["agent"],
        )
        for row in run_queue_summary().agents:
            queued.add_metric([row.agent], row.queued)
            wait = row.oldest_wait.total_seconds() if row.oldest_wait else 0.0
            oldest.add_metric([row.agent], wait)
        yield queued
        yield oldest
        handoffs = GaugeMetricFamily(
            "agentops_handoffs_open",
            "Handoffs waiting for or held by an operator.",
            labels=["status"],
        )
        open_counts = dict(
            Handoff.objects.exclude(status=HandoffStatus.RESOLVED)
            .values("status")
            .annotate(n=Count("pk"))
            .values_list("status", "n")
        )
        for handoff_status in (HandoffStatus.OPEN, HandoffStatus.CLAIMED):
            handoffs.add_metric([str(handoff_status)], open_counts.get(handoff_status, 0))
        yield handoffs


def registry() -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(RollupCollector())
    reg.register(RuntimeCollector())
    return reg
