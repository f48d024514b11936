"""Alerts: rules evaluated over the rollups; a change of state is recorded, announced on the
ops stream and POSTed to the rule's webhook. A scheduled job (tracing/jobs.py); safe to run
twice at once (rules are locked while evaluated).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from tracing.models import AlertEvent, AlertMetric, AlertRule, AlertState
from tracing.platform.egress import egress_post
from tracing.platform.live import OPS_GROUP, broadcast
from tracing.platform.logs import get_logger

log = get_logger(__name__)

# A gauge reads a metric's value now for an agent slug ("" for all agents).
Gauge = Callable[[str], float | None]
_gauges: dict[str, Gauge] = {}


def alert_gauge_register(*, metric: str, gauge: Gauge) -> None:
    """Let an upper app answer for a metric this app cannot read (the run queue lives in
    agentops' tables): rules on it fire when `gauge(agent)` is above their threshold."""
    _gauges[metric] = gauge


def alert_value(*, rule: AlertRule, now: datetime | None = None) -> float | None:
    """The rule's metric over its window from the rollups, or now from a registered gauge
    (None: not enough data to judge)."""
    from tracing.selectors import metrics_totals

    if rule.metric in _gauges:
        return _gauges[rule.metric](rule.agent)
    now = now or timezone.now()
    totals = metrics_totals(
        since=now - timedelta(minutes=rule.window_minutes), until=now, agent=rule.agent
    )
    runs = totals["run"]
    if rule.metric == AlertMetric.NO_RUNS:
        return float(runs.count + runs.started)
    if rule.metric == AlertMetric.COST:
        return float(totals["cost"])
    if runs.count < max(rule.min_runs, 1):
        return None
    if rule.metric == AlertMetric.ERROR_RATE:
        return runs.errors / runs.count
    if rule.metric == AlertMetric.HANDOFF_RATE:
        return runs.handed_off / runs.count
    if rule.metric == AlertMetric.P95_LATENCY:
        return runs.p95
    return None


def _breached(rule: AlertRule, value: float | None) -> bool:
    if not rule.enabled or value is None:
        return False
    if rule.metric == AlertMetric.NO_RUNS:
        return value == 0
    if rule.metric == AlertMetric.BUDGET:  # "at 80 %" means once 80 % is reached
        return value >= rule.threshold
    return value > rule.threshold


def _describe(rule: AlertRule, state: str, value: float | None) -> str:
    scope = f"agent {rule.agent}" if rule.agent else "all agents"
    if rule.metric == AlertMetric.NO_RUNS:
        what = (
            f"no runs in the last {rule.window_minutes} min"
            if state == AlertState.FIRING
            else "runs again"
        )
    else:
        shown = "n/a" if value is None else f"{value:.4g}"
        window = "now" if rule.metric in _gauges else f"{rule.window_minutes} min"
        what = f"{rule.get_metric_display()} is {shown} (threshold {rule.threshold:g}, {window})"
    return f"{rule.name} {state}: {what} [{scope}]"[:500]


def alerts_evaluate(*, now: datetime | None = None) -> list[AlertEvent]:
    """Evaluate every rule; record, announce and post a webhook for each change of state."""
    now = now or timezone.now()
    changes: list[AlertEvent] = []
    rule_ids = AlertRule.objects.filter(Q(enabled=True) | Q(firing=True)).values_list(
        "id", flat=True
    )
    for rule_id in list(rule_ids):
        with transaction.atomic():
            rule = AlertRule.objects.select_for_update().get(pk=rule_id)
            value = alert_value(rule=rule, now=now) if rule.enabled else None
            firing = _breached(rule, value)
            rule.last_value = value
            rule.last_evaluated_at = now
            if firing != rule.firing:
                rule.firing = firing
                state = AlertState.FIRING if firing else AlertState.RESOLVED
                event = AlertEvent.objects.create(
                    rule=rule,
                    state=state,
                    value=value,
                    threshold=rule.threshold,
                    message=_describe(rule, state, value),
                )
                changes.append(event)
                broadcast(OPS_GROUP, alert_event_payload(event))
            rule.save()
    for event in changes:
        log.warning(
            "alert." + event.state,
            rule=event.rule.name,
            value=event.value,
            threshold=event.threshold,
        )
        if event.rule.webhook_url:
            alert_webhook_send(event=event)
    return changes


def alert_event_payload(event: AlertEvent) -> dict[str, Any]:
    rule = event.rule
    return {
        "kind": f"alert.{event.state}",
        "alert": rule.name,
        "rule_id": rule.pk,
        "state": event.state,
        "metric": rule.metric,
        "agent": rule.agent,
        "value": event.value,
        "threshold": event.threshold,
        "window_minutes": rule.window_minutes,
        "message": event.message,
        "at": event.created_at.isoformat(),
    }


def alert_webhook_send(*, event: AlertEvent, timeout: float = 5.0) -> AlertEvent:
    """POST the event to the rule's webhook; the answer (or the failure) is kept on the event.

    Through the egress guard like every outbound request: no private or loopback address
    unless allowlisted, no proxy from the environment, redirects not followed."""
    result = egress_post(
        url=event.rule.webhook_url,
        content=json.dumps(alert_event_payload(event)).encode(),
        headers={"Content-Type": "application/json"},
        timeout=timeout,
    )
    event.webhook_status = result.status
    event.webhook_error = result.error
    if event.webhook_error:
        log.error("alert.webhook_failed", rule=event.rule.name, error=event.webhook_error)
    event.save(update_fields=["webhook_status", "webhook_error"])
    return event
