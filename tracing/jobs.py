"""RQ entry points of the tracing app (scheduled in agentops/cron.py)."""

from __future__ import annotations

from tracing import alerts, retention, rollups
from tracing.platform.logs import bind_context


def rollup_metrics() -> int:
    """Fold new spans into the rollups, then judge the alert rules on them."""
    with bind_context(job="tracing.rollup_metrics"):
        spans = rollups.rollup_metrics()
        alerts.alerts_evaluate()
        return spans


def alerts_evaluate() -> int:
    with bind_context(job="tracing.alerts_evaluate"):
        return len(alerts.alerts_evaluate())


def retention_purge() -> dict[str, int]:
    with bind_context(job="tracing.retention_purge"):
        return retention.retention_purge()
