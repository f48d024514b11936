"""RQ entry points: thin, take ids, call one service."""

from __future__ import annotations

from rq import get_current_job

from agentops.experiments.services import result_run_finished
from agentops.operators.services import handoffs_sweep, handoffs_wake_due, operators_away_sweep
from agentops.runtime.breaker import breaker_window_prune
from agentops.runtime.handoff_package import handoff_package_write
from agentops.runtime.loop import run_execute
from agentops.runtime.services import run_slot_free
from agentops.runtime.services import runs_reconcile as reconcile
from tracing import otlp


def run_job(run_id: str) -> str:
    job = get_current_job()
    try:
        return run_execute(run_id=run_id, job_id=job.id if job else "")
    finally:
        run_slot_free(run_id=run_id)
        result_run_finished(run_id=run_id)  # an experiment's run is scored once it ends
        # A forking worker's horse ends with os._exit, which runs no exit handler.
        otlp.force_flush()


def handoff_package_job(handoff_id: int) -> None:
    handoff_package_write(handoff_id=handoff_id)


def runs_reconcile() -> dict[str, int]:
    return reconcile()


def handoffs_sweep_job() -> dict[str, int]:
    return handoffs_sweep()


def operators_away_job() -> int:
    """Online operators with no operator page open for a while become away."""
    return operators_away_sweep()


def handoffs_wake_job() -> int:
    """Snoozed handoffs whose time has come return to the queue."""
    return handoffs_wake_due()


def breaker_window_prune_job() -> int:
    """Model calls older than the circuit breakers' window are forgotten."""
    return breaker_window_prune()
