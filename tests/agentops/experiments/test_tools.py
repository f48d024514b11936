"""Tools in experiments never touch the real world: a non-idempotent call is answered from the
item's recorded run, else refused with a message the model reads (the forks' policy)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agentops.agents.services import agent_version_create
from agentops.experiments.models import Dataset, Result
from agentops.experiments.services import (
    dataset_item_create,
    dataset_item_from_run,
)
from agentops.models import RunStatus, ToolCall
from agentops.runtime.services import session_create, session_post_message
from agentops.testing.processes import CONCURRENT_WORKER, Proc, child_env, start_worker
from agentops.testing.tools import side_effects_log
from tests.agentops.experiments.helpers import experiment_run
from tests.agentops.runtime.helpers import side_effects_forget, wait_for_run
from tools.models import ToolDefinition

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def concurrent_worker(django_db_setup) -> Iterator[Proc]:  # type: ignore[no-untyped-def]
    proc = start_worker(
        child_env(), name="exp-tools", worker_class=CONCURRENT_WORKER, queues=("runs",)
    )
    yield proc
    proc.stop()


def _executions() -> list[str]:
    log = side_effects_log()
    return log.read_text().splitlines() if log.exists() else []


def test_it_replays_recorded_non_idempotent_calls_and_refuses_the_others(
    concurrent_worker, tooled_agent, alice
):
    side_effects_forget()
    version = agent_version_create(agent=tooled_agent, author=alice, publish=True)
    session = session_create(agent=tooled_agent, external_user="customer")
    live = session_post_message(
        session=session, content='call side_effect {"label": "refund-1", "seconds": 0}'
    )
    assert live is not None
    assert wait_for_run(live.pk).status == RunStatus.SUCCEEDED
    assert len(_executions()) == 1  # the real refund, once

    dataset = Dataset.objects.create(name="refunds")
    recorded = dataset_item_from_run(dataset=dataset, run=live, actor=alice)
    unrecorded = dataset_item_create(
        dataset=dataset,
        input='call side_effect {"label": "refund-2", "seconds": 0}',
        reference="changed refund-2",
        actor=alice,
    )
    experiment_run(dataset=dataset, version=version, actor=alice)

    assert len(_executions()) == 1  # the experiment changed nothing in the world
    replayed = Result.objects.get(item=recorded)
    refused = Result.objects.get(item=unrecorded)
    assert replayed.output == "Tool results: changed refund-1"
    assert replayed.score == 1.0
    assert refused.output.startswith("Tool results: Not executed")
    assert refused.score == 0.0
    calls = {c.run_id: c for c in ToolCall.objects.filter(tool_name="side_effect")}
    assert calls[replayed.run_id].fork_outcome == "replayed"
    assert calls[refused.run_id].fork_outcome == "refused"


def test_it_refuses_a_tool_that_needs_an_operators_approval(concurrent_worker, tooled_agent, alice):
    ToolDefinition.objects.filter(name="slow_lookup").update(requires_approval=True)
    version = agent_version_create(agent=tooled_agent, author=alice, publish=True)
    dataset = Dataset.objects.create(name="approvals")
    item = dataset_item_create(
        dataset=dataset,
        input='call slow_lookup {"label": "x", "seconds": 0}',
        reference="found x",
        actor=alice,
    )
    experiment_run(dataset=dataset, version=version, actor=alice)
    result = Result.objects.get(item=item)
    assert result.run_status == RunStatus.SUCCEEDED
    assert "needs an operator's approval" in result.output
    assert not ToolCall.objects.filter(status="awaiting_approval").exists()
