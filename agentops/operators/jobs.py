"""RQ entry points of the inbox (periodic, registered by OperatorsConfig.ready)."""

from __future__ import annotations

from agentops.operators.presence.services import operators_away_sweep
from agentops.operators.queue.services import handoffs_sweep, handoffs_wake_due


def handoffs_sweep_job() -> dict[str, int]:
    return handoffs_sweep()


def operators_away_job() -> int:
    """Online operators with no operator page open for a while become away."""
    return operators_away_sweep()


def handoffs_wake_job() -> int:
    """Snoozed handoffs whose time has come return to the queue."""
    return handoffs_wake_due()
