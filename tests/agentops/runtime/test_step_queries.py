"""The queries a run's steps cost: a fixed, small number per step, whatever the step records.

The run is driven in this process (the loop's own entry point, `run_execute`, against the
dev model server over HTTP), so every statement it sends is captured. A step's statements
end with its checkpoint, the one statement that stores the step's messages, tool call
records and spans; a query per span, per message or per re-read creeping in fails here.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agentops.models import Agent, Run, RunStatus
from agentops.runtime.loop import run_execute
from agentops.runtime.services import session_create, session_post_message
from tools.services import python_tools_sync
from tracing.models import Span

pytestmark = pytest.mark.django_db(transaction=True)

# The statement that ends a step (agentops.runtime.checkpoint.step_commit).
CHECKPOINT = "held AS (UPDATE"
# What one step may send besides its checkpoint: a model step, the breaker's window row
# (agentops.runtime.breaker); the answer, also the webhooks' subscription lookup for its
# message event (one statement: no transaction is opened around it when nobody is
# subscribed). Nothing per span or per message.
STEP_QUERIES_MAX = 2
# Over a whole run, besides the checkpoints: that row per model call and one event's lookup.
EXTRA_PER_MODEL_CALL = 1
EXTRA_PER_RUN = 1
# Claiming the run and loading what it drives with (run, config, span numbering, transcript,
# tools), and after the last checkpoint (the run's status event, its children to cancel, its
# agent's held runs once the job is done with it): fixed, however many steps.
RUN_QUERIES_MAX = 12


def run_queries(agent: Agent, content: str) -> tuple[Run, list[str]]:
    session = session_create(agent=agent, external_user="queries")
    run = session_post_message(session=session, content=content)
    with CaptureQueriesContext(connection) as captured:
        run_execute(run_id=run.pk)
    run.refresh_from_db()
    return run, [query["sql"] for query in captured.captured_queries]


def steps_of(queries: list[str]) -> list[list[str]]:
    """The statements of each step, its checkpoint last; then those after the last one."""
    steps: list[list[str]] = [[]]
    for sql in queries:
        steps[-1].append(sql)
        if CHECKPOINT in sql:
            steps.append([])
    return steps


def test_a_step_costs_a_fixed_number_of_queries(dev_agent: Agent) -> None:
    agent = dev_agent
    agent.memory_enabled = False
    agent.save()
    agent.tools.add(*python_tools_sync())
    # Three tool calls one after the other: model, tool, model, tool, model, tool, model.
    run, queries = run_queries(
        agent, 'call echo {"text": "one"}\ncall echo {"text": "two"}\ncall echo {"text": "3"}'
    )
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    steps = steps_of(queries)
    checkpoints = [sql for sql in queries if CHECKPOINT in sql]
    # Seven steps (model, tool, ..., model) and the finish: one checkpoint statement each.
    assert len(checkpoints) == run.step + 1 == 8
    spans = Span.objects.filter(trace_id=run.pk).count()
    assert spans > 3 * len(checkpoints)  # many spans, stored with the checkpoints
    stored_apart = [s for s in queries if 'INTO "tracing_span"' in s and CHECKPOINT not in s]
    assert not stored_apart
    setup, *middle, after = steps  # setup: the claim and loads, then step 1
    extra = [len(step) - 1 for step in middle]  # what each step sent besides its checkpoint
    assert max(extra) <= STEP_QUERIES_MAX, [step[:-1] for step in middle]
    assert sum(extra) <= EXTRA_PER_MODEL_CALL * run.model_calls + EXTRA_PER_RUN, middle
    assert len(setup) + len(after) <= RUN_QUERIES_MAX, setup + after
