from __future__ import annotations

from typing import Any

from agentops.experiments.models import Dataset, Experiment, ExperimentStatus, Result
from agentops.experiments.services import experiment_create, experiment_start
from tests.kit import until


def wait_for_experiment(experiment_id: int, timeout: float = 180.0) -> Experiment:
    def finished() -> Experiment | None:
        experiment = Experiment.objects.get(pk=experiment_id)
        return experiment if experiment.status == ExperimentStatus.FINISHED else None

    def unfinished() -> str:
        status = Experiment.objects.get(pk=experiment_id).status
        results = Result.objects.filter(experiment_id=experiment_id)
        statuses = list(results.values_list("status", flat=True))
        return f"experiment {experiment_id} still {status}: {statuses}"

    experiment = until(finished, seconds=timeout, every=0.2, message=unfinished)
    assert experiment is not None
    return experiment


def experiment_run(*, dataset: Dataset, version: Any, actor: Any) -> Experiment:
    """The dataset against one version with a `contains` check, started and waited for."""
    experiment = experiment_create(
        name=dataset.name,
        dataset=dataset,
        variants=[{"version": version.pk}],
        checks=[{"kind": "contains"}],
        actor=actor,
    )
    experiment_start(experiment=experiment, actor=actor)
    return wait_for_experiment(experiment.pk)
