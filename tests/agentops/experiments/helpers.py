from __future__ import annotations

import time

from agentops.experiments.models import Experiment, ExperimentStatus, Result


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
