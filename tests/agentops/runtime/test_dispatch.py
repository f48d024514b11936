"""Per-agent limits on runs in flight, and fair order between agents."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import django_rq
import pytest
from django.conf import settings
from django.test import TestCase
from django.utils import timezone

from agentops.models import Run, RunStatus
from agentops.runtime.services import (
    run_cancel,
    run_slot_free,
    runs_dispatch,
    runs_reconcile,
    session_create,
    session_post_message,
)
from tests.agentops.runtime.helpers import wait_for_run
from tests.factories import AgentFactory

# A sent run is one whose job id is set. A post dispatches once it has committed: in a test
# transaction, its on_commit hooks run as the post returns, so its jobs reach Redis; each
# test empties the run queue after itself, or the end-to-end test's worker would take them.


@pytest.fixture(autouse=True)
def _run_queue_emptied() -> Iterator[None]:
    yield
    django_rq.get_queue(settings.RUN_QUEUE).empty()


def _post(agent, count: int, content: str = "hello") -> list[Run]:
    runs = []
    for i in range(count):
        session = session_create(agent=agent, external_user=f"{agent.slug}-{i}")
        with TestCase.captureOnCommitCallbacks(execute=True):
            run = session_post_message(session=session, content=f"{content} {i}")
        assert run is not None
        runs.append(run)
    return runs


def _sent(runs: list[Run]) -> list[bool]:
    return [Run.objects.get(pk=run.pk).job_id != "" for run in runs]


def _finish(run: Run) -> None:
    Run.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED, finished_at=timezone.now())


def test_it_holds_runs_beyond_the_agents_limit(dev_agent):
    dev_agent.max_concurrent_runs = 2
    dev_agent.save()
    runs = _post(dev_agent, 5)
    assert _sent(runs) == [True, True, False, False, False]
    assert {Run.objects.get(pk=run.pk).status for run in runs} == {RunStatus.QUEUED}


def test_it_sends_the_oldest_held_run_when_a_slot_frees(dev_agent):
    dev_agent.max_concurrent_runs = 2
    dev_agent.save()
    runs = _post(dev_agent, 5)
    _finish(runs[0])
    run_slot_free(run_id=runs[0].pk)
    assert _sent(runs) == [True, True, True, False, False]
    # A running run still holds its slot.
    Run.objects.filter(pk=runs[1].pk).update(status=RunStatus.RUNNING)
    assert runs_dispatch(agent_id=dev_agent.pk) == 0


def test_it_skips_a_held_run_cancelled_meanwhile(dev_agent):
    dev_agent.max_concurrent_runs = 1
    dev_agent.save()
    runs = _post(dev_agent, 3)
    run_cancel(run=runs[1])
    _finish(runs[0])
    run_slot_free(run_id=runs[0].pk)
    assert _sent(runs) == [True, False, True]
    assert Run.objects.get(pk=runs[1].pk).status == RunStatus.CANCELLED


def test_it_sends_everything_when_the_limit_is_zero(dev_agent, settings):
    settings.AGENT_MAX_CONCURRENT_RUNS = 3
    assert _sent(_post(dev_agent, 5)) == [True, True, True, False, False]
    dev_agent.max_concurrent_runs = 0
    dev_agent.save()
    assert runs_dispatch(agent_id=dev_agent.pk) == 2


def test_it_limits_each_agent_on_its_own(dev_agent):
    dev_agent.max_concurrent_runs = 1
    dev_agent.save()
    other = AgentFactory(endpoint=dev_agent.endpoint, max_concurrent_runs=1)
    flood = _post(dev_agent, 4)
    trickle = _post(other, 1)
    assert _sent(flood) == [True, False, False, False]
    assert _sent(trickle) == [True]


def test_it_sends_held_runs_from_the_sweep_when_a_worker_died(dev_agent):
    dev_agent.max_concurrent_runs = 1
    dev_agent.save()
    runs = _post(dev_agent, 2)
    _finish(runs[0])  # ...and its worker died before it could free the slot
    assert runs_reconcile()["dispatched"] == 1
    assert _sent(runs) == [True, True]
    assert runs_reconcile()["requeued"] == 0  # a held run is not a lost job


@pytest.mark.django_db(transaction=True)
def test_it_starts_another_agents_run_before_a_flood_ends(dev_agent, worker, devmodel, model_name):
    """One worker slot (the session's forking worker): the flooding agent may hold one run in
    flight, so the other agent's run goes second, not after the whole flood."""
    devmodel.script(model_name, latency=0.3)
    dev_agent.max_concurrent_runs = 1
    dev_agent.save()
    other = AgentFactory(endpoint=dev_agent.endpoint)
    flood = _post(dev_agent, 5)
    (trickle,) = _post(other, 1)
    flood = [wait_for_run(run.pk) for run in flood]
    trickle = wait_for_run(trickle.pk)
    assert {run.status for run in [*flood, trickle]} == {RunStatus.SUCCEEDED}
    assert trickle.started_at < sorted(run.started_at for run in flood)[2]
    spans = sorted((run.started_at, run.finished_at) for run in flood)
    assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(spans))
