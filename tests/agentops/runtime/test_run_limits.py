"""Per-run limits (an agent version's run_max_*): each stops a runaway loop, a model that
keeps calling tools, with a clear reason, handed off under the `limit` failure class as at
max_steps. Real worker, dev model over HTTP."""

from decimal import Decimal

import pytest

from agentops.models import Handoff, Message, Role, RunStatus, ToolCall
from agentops.observe.selectors import failures_grouped
from agentops.runtime.services import session_create, session_post_message
from tests.agentops.runtime.helpers import agent_with_python_tools, span_names, wait_for_run
from tracing.models import ModelPrice

pytestmark = pytest.mark.django_db(transaction=True)

RUNAWAY = "chain 40 slow_lookup 0.05"  # forty tool calls in a row before an answer


def _runaway(agent, **limits):  # type: ignore[no-untyped-def]
    agent_with_python_tools(agent, max_steps=100, **limits)
    session = session_create(agent=agent, external_user="erin")
    run = wait_for_run(session_post_message(session=session, content=RUNAWAY).pk, timeout=90)
    assert run.status == RunStatus.HANDED_OFF, (run.status, run.error_message)
    assert run.error_class == "limit"
    assert run.model_calls < 40
    assert "run.limit" in span_names(run.pk)
    assert [(g.error_class, g.status) for g in failures_grouped(since=None)] == [
        ("limit", "handed_off")
    ]
    return run, Handoff.objects.get(session=session).reason


def test_max_tool_calls_stops_a_runaway_loop(worker, dev_agent):
    run, reason = _runaway(dev_agent, run_max_tool_calls=3)
    assert reason == "max tool calls per run reached (3 tool calls)"
    assert ToolCall.objects.filter(run=run).count() == 3
    # The fourth call the model asked for is answered "not run": the conversation stays whole.
    last = Message.objects.filter(run=run).order_by("-seq").first()
    assert last.role == Role.TOOL and last.content.startswith("Not run: max tool calls")


def test_max_tokens_stops_a_runaway_loop(worker, dev_agent):
    run, reason = _runaway(dev_agent, run_max_tokens=600)
    assert reason.startswith("max tokens per run reached (")
    assert run.tokens_in + run.tokens_out >= 600


def test_max_cost_stops_a_runaway_loop(worker, dev_agent):
    ModelPrice.objects.create(
        model=dev_agent.endpoint.default_model, input_per_million=1000, output_per_million=1000
    )  # a thousandth of a dollar a token
    run, reason = _runaway(dev_agent, run_max_cost=0.5)
    assert reason.startswith("max cost per run reached ($")
    spent = Decimal(run.tokens_in + run.tokens_out) / 1000
    assert spent >= Decimal("0.5"), spent


def test_max_wall_time_stops_a_runaway_loop(worker, dev_agent):
    run, reason = _runaway(dev_agent, run_max_seconds=1)
    assert reason.startswith("max wall time per run reached (")
    assert (run.finished_at - run.started_at).total_seconds() < 10


def test_a_run_within_its_limits_answers(worker, dev_agent):
    agent_with_python_tools(
        dev_agent,
        run_max_tool_calls=3,
        run_max_tokens=100_000,
        run_max_cost=100,
        run_max_seconds=600,
    )
    session = session_create(agent=dev_agent, external_user="erin")
    run = wait_for_run(session_post_message(session=session, content="chain 3 slow_lookup 0").pk)
    assert run.status == RunStatus.SUCCEEDED, run.error_message
