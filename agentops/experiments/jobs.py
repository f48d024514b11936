"""RQ entry points of experiments: thin, take ids, call one service."""

from __future__ import annotations

from agentops.experiments.services import experiments_reconcile, result_score, result_start


def result_start_job(result_id: int) -> None:
    result_start(result_id=result_id)


def result_score_job(result_id: int) -> None:
    result_score(result_id=result_id)


def experiments_reconcile_job() -> dict[str, int]:
    return experiments_reconcile()
