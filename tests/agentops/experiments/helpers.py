from __future__ import annotations

import time
from typing import Any

from agentops.experiments.models import Dataset, Experiment, ExperimentStatus, Result
from agentops.experiments.services import experiment_create, experiment_start


def wait_for_experiment(experiment_id: int, timeout: float = 180.0) -> Experiment:
    deadline = time.monotonic() + timeout
    experiment = Experiment.objects.get(pk=experiment_id)
    while time.monotonic() < deadline:
        experiment = Experiment.objects.get(pk=experiment_id)
        if experiment.status == ExperimentStatus.FINISHED:
            return experiment
        time.sleep(0.2)
    statuses = list(
        Result.objects.filter(experiment_id=experiment_id).values_list("status", flat=True)
    )
    raise AssertionError(f"experiment {experiment_id} still {experiment.status}: {statuses}")


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
