"""RQ entry points of the runtime: thin, take ids, call one service. (The inbox's, the
webhooks' and the experiments' jobs are in their own packages.)"""

from __future__ import annotations

from rq import get_current_job

from agentops.runtime.agent_calls import parents_reconcile
from agentops.runtime.breaker import breaker_window_prune
from agentops.runtime.handoff_package import handoff_package_write
from agentops.runtime.loop import run_execute
from agentops.runtime.services import runs_reconcile as reconcile
from tracing import otlp


def run_job(run_id: str) -> str:
    job = get_current_job()
    try:
        return run_execute(run_id=run_id, job_id=job.id if job else "")  # releases its runs
    finally:
        # A forking worker's horse ends with os._exit, which runs no exit handler.
        otlp.force_flush()


def handoff_package_job(handoff_id: int) -> None:
    handoff_package_write(handoff_id=handoff_id)


def runs_reconcile() -> dict[str, int]:
    return {**reconcile(), "callers_woken": parents_reconcile()}


def breaker_window_prune_job() -> int:
    """Model calls older than the circuit breakers' window are forgotten."""
    return breaker_window_prune()
