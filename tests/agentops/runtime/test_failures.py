"""Every failure class end to end: real worker, real openai client, dev model faults over HTTP."""

from datetime import timedelta

import pytest
from django.utils import timezone

from agentops.models import AgentFallback, Handoff, Message, Role, RunStatus
from agentops.observe.selectors import failures_grouped
from agentops.runtime.services import runs_reconcile, session_create, session_post_message
from agentops.testing.processes import free_port
from tests.agentops.runtime.helpers import agent_with_python_tools, spans, wait_for_run
from tests.factories import EndpointFactory
from tracing.models import Span

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def session(dev_agent):
    agent = agent_with_python_tools(dev_agent, retry_max_attempts=3)
    return session_create(agent=agent, external_user="erin")


def attempts(run_id):
    return [(s.attributes["attempt"], s.error_class) for s in spans(run_id, "model.call")]


def test_it_retries_a_rate_limit_honouring_retry_after(worker, session, devmodel, model_name):
    devmodel.script(
        model_name, [{"status": 429, "retry_after": 0.3}, {"status": 429, "retry_after": 0.3}]
    )
    run = wait_for_run(session_post_message(session=session, content="hi").pk)
    assert run.status == RunStatus.SUCCEEDED
    assert attempts(run.pk) == [(1, "rate_limit"), (2, "rate_limit"), (3, "")]
    waits = spans(run.pk, "retry.wait")
    assert len(waits) == 2 and all(w.duration_ms >= 290 for w in waits)
    assert run.retries == 2


def test_it_hands_off_after_exhausting_retries_on_server_errors(
    worker, session, devmodel, model_name
):
    devmodel.script(model_name, [{"status": 500}] * 3 + [{"status": 500}] * 2)
    run = wait_for_run(session_post_message(session=session, content="hi").pk)
    assert run.status == RunStatus.HANDED_OFF
    assert attempts(run.pk)[:3] == [(1, "server_error"), (2, "server_error"), (3, "server_error")]
    assert "model unavailable" in Handoff.objects.get(run=run).reason


def test_it_falls_back_to_the_next_model(worker, session, devmodel, model_name):
    fallback = EndpointFactory(base_url=devmodel.url, default_model=model_name + "-b")
    AgentFallback.objects.create(agent=session.agent, position=1, endpoint=fallback)
    devmodel.script(model_name, [{"status": 500}] * 3)
    run = wait_for_run(session_post_message(session=session, content="hi").pk)
    assert run.status == RunStatus.SUCCEEDED
    assert run.fallbacks == 1 and run.model_used == model_name + "-b"
    (event,) = spans(run.pk, "fallback")
    assert (
        event.attributes["to_endpoint"] == fallback.name
        and event.attributes["reason"] == "server_error"
    )


def test_it_times_out_slow_responses_and_retries(worker, session, devmodel, model_name):
    endpoint = session.agent.endpoint
    endpoint.timeout_seconds = 0.5
    endpoint.save()
    devmodel.script(model_name, [{"delay": 1.5}])
    run = wait_for_run(session_post_message(session=session, content="hi").pk)
    assert run.status == RunStatus.SUCCEEDED
    assert attempts(run.pk) == [(1, "timeout"), (2, "")]


def test_it_classifies_an_unreachable_endpoint_as_connection(worker, session):
    endpoint = session.agent.endpoint
    endpoint.base_url = f"http://127.0.0.1:{free_port()}/v1"
    endpoint.save()
    run = wait_for_run(session_post_message(session=session, content="hi").pk)
    assert run.status == RunStatus.HANDED_OFF
    assert {cls for _, cls in attempts(run.pk)} == {"connection"}


def test_it_refreshes_credentials_once_then_fails_clearly_on_auth(
    worker, session, devmodel, model_name
):
    devmodel.script(model_name, api_key="the-right-key")
    endpoint = session.agent.endpoint
    endpoint.set_api_key("a-wrong-key-1234")
    endpoint.save()
    run = wait_for_run(session_post_message(session=session, content="hi").pk)
    assert run.status == RunStatus.FAILED
    assert run.error_class == "auth" and "401" in run.error_message
    assert attempts(run.pk) == [(1, "auth"), (2, "auth")]
    assert len(spans(run.pk, "credential.refresh")) == 1
    assert "a-wrong-key-1234" not in str(run.error_message) + str(run.error_traceback)


def test_it_fails_an_invalid_request_without_retrying(worker, session, devmodel, model_name):
    devmodel.script(model_name, [{"status": 400}])
    run = wait_for_run(session_post_message(session=session, content="hi").pk)
    assert run.status == RunStatus.FAILED and run.error_class == "invalid_request"
    assert attempts(run.pk) == [(1, "invalid_request")]


def test_it_compacts_the_context_once_on_overflow(worker, session, devmodel, model_name):
    from agentops.runtime.checkpoint import messages_append
    from agentops.runtime.context import message_tokens

    agent = session.agent
    agent.context_token_budget = 4000
    agent.save()
    history = []
    for index in range(30):
        text = f"message {index}: " + "lorem ipsum dolor sit amet " * 8
        history.append(
            Message(
                role=Role.USER if index % 2 == 0 else Role.ASSISTANT,
                content=text,
                token_count=message_tokens(content=text),
            )
        )
    messages_append(session_id=session.pk, messages=history)
    devmodel.script(model_name, context_limit=1500)
    run = wait_for_run(session_post_message(session=session, content="and now?").pk)
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert [cls for _, cls in attempts(run.pk) if cls] == ["context_overflow"]
    session.refresh_from_db()
    assert session.summary.startswith("Summary:") and session.summary_upto_seq > 0
    assert Message.objects.filter(session=session).count() == 32  # nothing deleted


def test_it_fails_context_overflow_that_compaction_cannot_fix(
    worker, session, devmodel, model_name
):
    devmodel.script(model_name, context_limit=5)
    run = wait_for_run(session_post_message(session=session, content="hi").pk)
    assert run.status == RunStatus.FAILED and run.error_class == "context_overflow"


def test_it_fails_a_bug_with_its_traceback_and_no_retry(worker, session, devmodel, model_name):
    devmodel.script(model_name, [{"garbage_stream": True}])
    run = wait_for_run(session_post_message(session=session, content="hi").pk)
    assert run.status == RunStatus.FAILED and run.error_class == "bug"
    assert "Traceback" in run.error_traceback and run.error_message
    assert len(attempts(run.pk)) == 1
    assert not Message.objects.filter(session=session, role=Role.ASSISTANT).exists()


def test_it_feeds_a_tool_error_back_to_the_model(worker, session):
    run = wait_for_run(
        session_post_message(session=session, content='call get_time {"timezone": "Mars/Base"}').pk
    )
    assert run.status == RunStatus.SUCCEEDED
    tool = Message.objects.get(session=session, role=Role.TOOL)
    assert "tool_error" in tool.content and "Unknown time zone" in tool.content


def test_it_releases_the_worker_for_a_long_backoff_and_resumes(
    worker, session, devmodel, model_name
):
    devmodel.script(model_name, [{"status": 429, "retry_after": 30}])
    run = wait_for_run(
        session_post_message(session=session, content="hi").pk, statuses={RunStatus.WAITING}
    )
    assert "rate_limit" in run.wait_reason and run.wake_at > timezone.now() + timedelta(seconds=20)
    assert run.state["model_retry"] == {"candidate": 0, "attempt": 1}
    assert runs_reconcile()["woken"] == 0
    assert runs_reconcile(now=run.wake_at + timedelta(seconds=1))["woken"] == 1
    run = wait_for_run(run.pk)
    assert run.status == RunStatus.SUCCEEDED and run.jobs_started == 2
    assert attempts(run.pk) == [(1, "rate_limit"), (2, "")]


def test_it_traces_a_backoff_wait_as_a_wait_not_an_error(worker, session, devmodel, model_name):
    devmodel.script(model_name, [{"status": 429, "retry_after": 5}])
    run = wait_for_run(
        session_post_message(session=session, content="hi").pk, statuses={RunStatus.WAITING}
    )
    errors = [(s.name, s.error_class) for s in Span.objects.filter(trace_id=run.pk, status="error")]
    assert errors == [("model.call", "rate_limit")]  # the failed attempt, nothing else
    (step,) = spans(run.pk, "step")
    assert step.attributes["outcome"] == "wait" and "exception.stacktrace" not in step.attributes
    (wait,) = spans(run.pk, "run.wait")
    assert wait.status == "ok" and "rate_limit" in wait.attributes["wait.reason"]
    assert wait.attributes["wait.wake_at"] == run.wake_at.isoformat()
    assert not failures_grouped(since=None)
