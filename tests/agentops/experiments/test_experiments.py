"""Experiments end to end: real RQ concurrent worker, real runs on the dev model, real judge."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from agentops.agents.services import agent_version_create, agent_version_derive
from agentops.experiments.models import (
    Dataset,
    DatasetItem,
    Experiment,
    ExperimentStatus,
    ItemSource,
    Result,
    ResultStatus,
)
from agentops.experiments.selectors import agent_version_gate, experiment_comparison
from agentops.experiments.services import (
    experiment_create,
    experiment_start,
    experiments_reconcile,
)
from agentops.models import Handoff, Run, RunStatus, SessionStatus
from agentops.testing.processes import CONCURRENT_WORKER, Proc, child_env, start_worker
from tests.agentops.experiments.helpers import wait_for_experiment

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def concurrent_worker(django_db_setup) -> Iterator[Proc]:  # type: ignore[no-untyped-def]
    proc = start_worker(
        child_env(WORKER_CONCURRENCY="50"),
        name="experiments",
        worker_class=CONCURRENT_WORKER,
        queues=("runs",),
    )
    yield proc
    proc.stop()


def _dataset(size: int) -> Dataset:
    """Half the items are words (a version replying in capitals gets them wrong), half are
    JSON with digits only (which capitals leave alone)."""
    dataset = Dataset.objects.create(name=f"turns-{size}")
    items = []
    for i in range(size):
        if i % 2 == 0:
            text, reference = f"hello number {i}", f"You said: hello number {i}"
        else:
            text = reference = json.dumps({str(i): i})
        items.append(
            DatasetItem(
                dataset=dataset,
                input=text,
                context=[
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "Hello! How can I help?"},
                ],
                reference=reference,
                source=ItemSource.IMPORT,
            )
        )
    DatasetItem.objects.bulk_create(items)
    return dataset


def test_it_runs_fifty_items_against_two_versions_scores_every_check_and_finds_regressions(
    concurrent_worker, dev_agent, devmodel, model_name, alice
):
    baseline = agent_version_create(agent=dev_agent, author=alice, publish=True)
    shouting = agent_version_derive(
        version=baseline,
        changes={"system_prompt": "You are a test agent. Reply in capitals."},
        author=alice,
    )
    dataset = _dataset(50)
    experiment = experiment_create(
        name="capitals",
        dataset=dataset,
        variants=[{"version": baseline.pk}, {"version": shouting.pk}],
        checks=[
            {"kind": "exact"},
            {"kind": "contains"},
            {"kind": "regex", "expected": r"(?i)^you said: \S+"},
            {"kind": "json_schema", "schema": {"type": "object", "minProperties": 1}},
            {"kind": "judge", "endpoint": dev_agent.endpoint_id, "model": "judge-model"},
        ],
        threshold=0.6,
        actor=alice,
    )
    experiment_start(experiment=experiment, actor=alice)
    experiment = wait_for_experiment(experiment.pk)

    results = Result.objects.filter(experiment=experiment)
    assert results.count() == 100
    assert set(results.values_list("status", flat=True)) == {ResultStatus.DONE}
    runs = Run.objects.filter(pk__in=results.values_list("run_id", flat=True))
    assert set(runs.values_list("status", flat=True)) == {RunStatus.SUCCEEDED}
    # Each run ran its variant's version, in a session pinned to it, after the item's context.
    for result in results.select_related("run", "session", "variant"):
        assert result.run.agent_version_id == result.variant.version_id
        assert result.session.agent_version_id == result.variant.version_id
        assert list(result.session.messages.order_by("seq").values_list("role", flat=True))[:3] == [
            "user",
            "assistant",
            "user",
        ]
    # The judge ran on the dev model, once per answer.
    assert len(devmodel.requests("judge-model")) == 100

    comparison = experiment_comparison(experiment=experiment)
    first, second = comparison.variants
    checks = [c.pk for c in comparison.checks]
    assert first.check_scores == dict(zip(checks, [0.5, 1.0, 1.0, 0.5, 1.0], strict=True))
    assert second.check_scores == dict(zip(checks, [0.0, 0.5, 1.0, 0.5, 0.5], strict=True))
    assert first.score == pytest.approx(0.8)
    assert second.score == pytest.approx(0.5)
    assert (first.done, second.done) == (50, 50)
    assert first.tokens_in > 0 and first.latency_ms is not None
    # The items in words regressed under capitals; the digits did not.
    regressed = {row.item.input for row in comparison.rows if row.regressed[1]}
    assert regressed == {f"hello number {i}" for i in range(0, 50, 2)}
    assert (first.regressions, second.regressions) == (0, 25)
    # The publish gate flags the version below the threshold.
    assert (first.flagged, second.flagged) == (False, True)
    gate = agent_version_gate(version=shouting)
    assert gate is not None and gate.flagged and gate.score == pytest.approx(0.5)
    gate = agent_version_gate(version=baseline)
    assert gate is not None and not gate.flagged
    # The builder shows the flag beside the publish button, and warns on publishing anyway.
    client = Client()
    client.force_login(alice)
    page = client.get(f"/agents/{dev_agent.slug}/versions/{shouting.number}/").content.decode()
    assert "data-gate-flagged" in page
    answer = client.post(
        f"/agents/{dev_agent.slug}/versions/{shouting.number}/publish", follow=True
    ).content.decode()
    assert f"v{shouting.number} is flagged" in answer
    page = client.get(f"/agents/{dev_agent.slug}/versions/{baseline.number}/").content.decode()
    assert "data-gate" in page and "data-gate-flagged" not in page


def test_it_restarts_pairs_whose_start_jobs_were_lost(concurrent_worker, dev_agent, alice):
    version = agent_version_create(agent=dev_agent, author=alice, publish=True)
    dataset = _dataset(2)
    experiment = experiment_create(
        name="lost",
        dataset=dataset,
        variants=[{"version": version.pk}],
        checks=[{"kind": "contains"}],
        actor=alice,
    )
    # As experiment_start leaves it, but the start jobs never reached Redis.
    long_ago = timezone.now() - timedelta(minutes=5)
    Result.objects.bulk_create(
        Result(
            experiment=experiment,
            item=item,
            variant=experiment.variants.get(),
            status=ResultStatus.STARTING,
            started_at=long_ago,
        )
        for item in dataset.items.all()
    )
    Experiment.objects.filter(pk=experiment.pk).update(status=ExperimentStatus.RUNNING)
    assert experiments_reconcile()["restarted"] == 2
    experiment = wait_for_experiment(experiment.pk, timeout=120)
    assert list(experiment.results.values_list("score", flat=True)) == [1.0, 1.0]


def test_it_keeps_an_experiments_handoffs_away_from_the_operators(
    concurrent_worker, tooled_agent, alice
):
    version = agent_version_create(agent=tooled_agent, author=alice, publish=True)
    dataset = Dataset.objects.create(name="handoffs")
    DatasetItem.objects.create(
        dataset=dataset,
        input="I want a human",
        reference="A person will help you.",
        source=ItemSource.HANDOFF,
    )
    experiment = experiment_create(
        name="handoffs",
        dataset=dataset,
        variants=[{"version": version.pk}],
        checks=[{"kind": "contains"}],
        actor=alice,
    )
    experiment_start(experiment=experiment, actor=alice)
    wait_for_experiment(experiment.pk)
    result = Result.objects.select_related("run", "session").get(experiment=experiment)
    assert result.run_status == RunStatus.HANDED_OFF
    assert result.run.wait_reason.startswith("The user asked")
    assert result.score == 0.0
    assert not Handoff.objects.exists()  # nothing in the queue, no notification, no webhook
    assert result.session.status == SessionStatus.CLOSED  # scored: over, not "active" for ever


def test_its_variants_remember_in_scopes_of_their_own(concurrent_worker, tooled_agent, alice):
    """Both variants' runs call `remember`: each memory lands in its own session's scope, so
    one variant's answer can never depend on what the other remembered, and nothing lands
    where production (or a user called `experiment-N`) reads."""
    from memory.models import Memory

    v1 = agent_version_create(agent=tooled_agent, author=alice, publish=True)
    v2 = agent_version_derive(version=v1, changes={"temperature": 0.5}, author=alice)
    dataset = Dataset.objects.create(name="memories")
    DatasetItem.objects.create(
        dataset=dataset, input="remember the door code is 1234", reference="Remembered"
    )
    experiment = experiment_create(
        name="memories",
        dataset=dataset,
        variants=[{"version": v1.pk}, {"version": v2.pk}],
        checks=[{"kind": "contains"}],
        actor=alice,
    )
    experiment_start(experiment=experiment, actor=alice)
    wait_for_experiment(experiment.pk)
    results = list(Result.objects.filter(experiment=experiment))
    assert [r.run_status for r in results] == [RunStatus.SUCCEEDED] * 2
    scopes = set(Memory.objects.filter(agent_id=tooled_agent.pk).values_list("user_key", flat=True))
    assert scopes == {f"sandbox:{r.session_id}" for r in results}


def test_it_scores_the_answer_of_the_agent_a_turn_was_transferred_to(
    concurrent_worker, dev_agent, alice
):
    from agentops.agent_config import transfers_validate
    from tests.factories import AgentFactory

    billing = AgentFactory(slug="billing", name="Billing", endpoint=dev_agent.endpoint)
    agent_version_create(agent=billing, author=alice, publish=True)
    dev_agent.transfers = transfers_validate(
        value=[{"agent": "billing", "description": "Billing: refunds"}], agent_slug=dev_agent.slug
    )
    dev_agent.save()
    version = agent_version_create(agent=dev_agent, author=alice, publish=True)
    dataset = Dataset.objects.create(name="refunds")
    DatasetItem.objects.create(
        dataset=dataset,
        input="I want a refund",
        reference="You said: I want a refund",
        source=ItemSource.IMPORT,
    )
    experiment = experiment_create(
        name="triage",
        dataset=dataset,
        variants=[{"version": version.pk}],
        checks=[{"kind": "contains"}],
        actor=alice,
    )
    experiment_start(experiment=experiment, actor=alice)
    wait_for_experiment(experiment.pk)
    result = Result.objects.select_related("run").get(experiment=experiment)
    (successor,) = Run.objects.filter(transferred_from=result.run)
    assert successor.agent == billing
    assert (result.output, result.score) == ("You said: I want a refund", 1.0)
    assert result.tokens_in == result.run.tokens_in + successor.tokens_in
