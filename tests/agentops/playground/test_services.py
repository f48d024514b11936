"""The playground: a model call a run made, reopened exactly, edited and sent again through
the real client and retry owner; the session is never touched."""

from __future__ import annotations

import uuid

import pytest

from agentops.models import BreakerState, BreakerTransition, Message, PlaygroundRun
from agentops.playground.selectors import model_call_source, output_diff, output_text
from agentops.playground.services import playground_run
from agentops.runtime.services import session_create, session_post_message
from tests.agentops.runtime.helpers import spans, wait_for_run
from tools.services import python_tools_sync
from tracing.models import ModelPrice, Span

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_reruns_a_recorded_call_with_an_edited_message(worker, dev_agent, devmodel, bob):
    dev_agent.tools.add(*python_tools_sync())
    ModelPrice.objects.create(model=dev_agent.model_name, input_per_million=1, output_per_million=2)
    session = session_create(agent=dev_agent, external_user="erin")
    run = wait_for_run(session_post_message(session=session, content="hello there").pk)
    assert run.status == "succeeded", run.error_message
    call = spans(run.pk, "model.call")[0]
    source = model_call_source(trace_id=run.pk, span_id=call.span_id)
    assert source is not None and source.recorded and not source.truncated
    sent = devmodel.requests(dev_agent.model_name)[0]["body"]
    # What the trace kept is what the model got: messages, tools.
    assert source.messages == sent["messages"]
    assert source.tools == sent["tools"] and {t["function"]["name"] for t in source.tools} >= {
        "echo"
    }
    assert source.output_content == "You said: hello there"
    assert source.endpoint == dev_agent.endpoint and source.cost is not None
    before = list(Message.objects.filter(session=session).values_list("pk", "content"))

    edited = [dict(m) for m in source.messages]
    edited[-1]["content"] = "goodbye there"
    rerun = playground_run(
        source_trace_id=source.trace_id,
        source_span_id=source.span_id,
        endpoint=dev_agent.endpoint,
        model=source.model,
        temperature=0.3,
        messages=edited,
        tools=source.tools,
        actor=bob,
    )
    rerun.refresh_from_db()
    assert rerun.succeeded and rerun.output_content == "You said: goodbye there"
    assert rerun.input_tokens > 0 and rerun.output_tokens > 0 and rerun.latency_ms > 0
    received = devmodel.requests(dev_agent.model_name)[-1]["body"]
    assert received["messages"] == edited and received["temperature"] == 0.3
    # Its own trace, not the run's; the conversation is as it was.
    assert Span.objects.filter(trace_id=rerun.pk, name="model.call").count() == 1
    assert list(Message.objects.filter(session=session).values_list("pk", "content")) == before

    diff = output_diff(
        original=output_text(content=source.output_content, tool_calls=source.output_tool_calls),
        new=output_text(content=rerun.output_content, tool_calls=rerun.output_tool_calls),
    )
    assert [(p.op, p.text) for p in diff] == [
        ("equal", "You said: "),
        ("delete", "hello"),
        ("insert", "goodbye"),
        ("equal", " there"),
    ]


def test_it_shows_proposed_tool_calls_without_running_them(worker, dev_agent, devmodel, alice):
    from agentops.models import ToolCall

    dev_agent.tools.add(*python_tools_sync())
    session = session_create(agent=dev_agent, external_user="erin")
    run = wait_for_run(session_post_message(session=session, content="hello").pk)
    source = model_call_source(trace_id=run.pk, span_id=spans(run.pk, "model.call")[0].span_id)
    assert source is not None
    edited = [*source.messages[:-1], {"role": "user", "content": 'call echo {"text": "ping"}'}]
    rerun = playground_run(
        source_trace_id=run.pk,
        source_span_id=source.span_id,
        endpoint=dev_agent.endpoint,
        model=source.model,
        temperature=None,
        messages=edited,
        tools=source.tools,
        actor=alice,
    )
    assert rerun.succeeded and rerun.output_tool_calls[0]["function"]["name"] == "echo"
    assert not ToolCall.objects.exists()  # proposed, shown, never executed
    assert "temperature" not in devmodel.requests(dev_agent.model_name)[-1]["body"]


def test_it_retries_through_the_retry_owner_and_records_a_failure(
    db, dev_agent, devmodel, alice, settings
):
    """Two 500s then success: three attempts, two `retry.wait` spans. The breaker counts them
    like runtime calls (each playground run a source of its own): once the next run's failure
    opens it, that run is not retried against the open breaker."""
    model = dev_agent.model_name
    devmodel.script(model, faults=[{"status": 500}, {"status": 500}])
    messages = [{"role": "user", "content": "hi"}]
    ok = playground_run(
        source_trace_id=uuid.uuid4(),
        source_span_id="0" * 16,
        endpoint=dev_agent.endpoint,
        model=model,
        temperature=None,
        messages=messages,
        tools=[],
        actor=alice,
    )
    assert ok.succeeded and ok.attempts == 3
    names = list(Span.objects.filter(trace_id=ok.pk).values_list("name", flat=True))
    assert names.count("retry.wait") == 2 and names.count("model.call") == 3

    settings.BREAKER_MIN_CALLS, settings.BREAKER_MIN_SESSIONS = 1, 2
    devmodel.script(model, faults=[{"status": 500}] * 3)
    failed = playground_run(
        source_trace_id=ok.source_trace_id,
        source_span_id="0" * 16,
        endpoint=dev_agent.endpoint,
        model=model,
        temperature=None,
        messages=messages,
        tools=[],
        actor=alice,
    )
    failed.refresh_from_db()
    assert not failed.succeeded and failed.error_class == "server_error"
    assert "circuit breaker open" in failed.error_message
    assert failed.attempts == 2 and len(devmodel.requests(model)) == 1  # never retried
    opened = BreakerTransition.objects.get(endpoint=dev_agent.endpoint)
    assert opened.state == BreakerState.OPEN and opened.trace_id == failed.pk
    assert PlaygroundRun.objects.count() == 2
