"""The agent loop end to end: real worker process, real openai client, dev model over HTTP."""

import json
import random

import pytest

from agentops.models import Handoff, Message, Role, RunStatus, SessionStatus, ToolCall
from agentops.observe.selectors import failures_grouped
from agentops.runtime.checkpoint import messages_append
from agentops.runtime.context import NOT_RUN, message_tokens, tool_calls_answered
from agentops.runtime.services import session_create, session_post_message
from tests.agentops.runtime.helpers import span_names, spans, wait_for_package, wait_for_run
from tools.models import ToolDefinition
from tools.services import python_tools_sync

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def session(dev_agent):
    dev_agent.tools.add(*python_tools_sync())
    return session_create(agent=dev_agent, external_user="erin")


def test_it_answers_a_message(worker, session):
    run = session_post_message(session=session, content="hello there")
    run = wait_for_run(run.pk)
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    answer = Message.objects.get(session=session, role=Role.ASSISTANT)
    assert answer.content == "You said: hello there"
    assert run.model_calls == 1 and run.tokens_in > 0 and run.tokens_out > 0
    names = span_names(run.pk)
    assert "model.call" in names and "step" in names and "checkpoint" in names
    call = spans(run.pk, "model.call")[0]
    assert call.attributes["gen_ai.request.model"] == session.agent.model_name
    assert call.attributes["gen_ai.usage.output_tokens"] > 0


def test_it_calls_a_tool_and_feeds_back_the_result(worker, session):
    run = session_post_message(session=session, content='call echo {"text": "ping"}')
    run = wait_for_run(run.pk)
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    roles = list(
        Message.objects.filter(session=session).order_by("seq").values_list("role", "content")
    )
    assert [r for r, _ in roles] == ["user", "assistant", "tool", "assistant"]
    assert roles[2][1] == "ping"
    assert roles[3][1] == "Tool results: ping"
    call = ToolCall.objects.get(run=run)
    assert call.status == "succeeded" and call.attempts == 1
    tool_span = spans(run.pk, "tool.call")[0]
    assert tool_span.attributes["gen_ai.tool.name"] == "echo"


def test_it_keeps_output_holding_a_nul_character(worker, session):
    """Postgres stores no NUL: a tool result holding one is kept with U+FFFD in its place."""
    run = session_post_message(session=session, content='call echo {"text": "a\\u0000b"}')
    run = wait_for_run(run.pk)
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    contents = dict(Message.objects.filter(session=session).values_list("role", "content"))
    assert contents["tool"] == "a\ufffdb"
    assert contents["assistant"] == "Tool results: a\ufffdb"
    call = ToolCall.objects.get(run=run)
    assert call.result == "a\ufffdb" and call.arguments == {"text": "a\ufffdb"}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('call no_such_tool {"a": 1}', "there is no tool named 'no_such_tool'"),
        ('call echo {"text": ', "not valid JSON"),
        ('call echo {"text": 5}', "do not fit its schema"),
        # json.loads raised RecursionError here and the run failed as a bug.
        ('call echo {"text": ' + "[" * 1100 + "]" * 1100 + "}", "nested more than 64 levels"),
        # json.loads accepted it; storing the tool's result then failed in Postgres.
        ('call echo {"text": "\\ud800"}', "lone surrogate (U+D800)"),
    ],
)
def test_it_tells_the_model_about_bad_tool_calls(worker, session, content, expected):
    run = session_post_message(session=session, content=content)
    run = wait_for_run(run.pk)
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    tool_message = Message.objects.get(session=session, role=Role.TOOL)
    assert expected in tool_message.content
    assert not ToolCall.objects.filter(run=run).exists()


def test_it_tells_the_model_about_a_recursive_tool_schema(worker, session):
    # Stored before tools/schemas.py refused recursive schemas at entry.
    ToolDefinition.objects.filter(name="echo").update(parameters={"$ref": "#"})
    run = wait_for_run(session_post_message(session=session, content='call echo {"text": "hi"}').pk)
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    tool_message = Message.objects.get(session=session, role=Role.TOOL)
    assert "refers to itself without end" in tool_message.content
    (rejected,) = spans(run.pk, "tool.rejected")
    assert "refers to itself without end" in rejected.error_message
    assert not ToolCall.objects.filter(run=run).exists()


def test_it_hands_off_when_the_model_asks(worker, session):
    run = session_post_message(session=session, content="I want a human please")
    run = wait_for_run(run.pk)
    assert run.status == RunStatus.HANDED_OFF
    handoff = Handoff.objects.get(session=session)
    assert "The user asked" in handoff.reason
    assert run.error_class == "" and not failures_grouped(since=None)  # asked for: no failure
    assert wait_for_package(handoff.pk).summary.startswith("Summary:")
    session.refresh_from_db()
    assert session.status == SessionStatus.HANDED_OFF
    assert "handoff" in span_names(run.pk)


def test_it_stops_a_repeated_identical_call(worker, session):
    run = session_post_message(session=session, content="loop")
    run = wait_for_run(run.pk)
    assert run.status == RunStatus.HANDED_OFF
    assert "repeated identical tool call" in Handoff.objects.get(session=session).reason
    assert ToolCall.objects.filter(run=run).count() == 2


def test_it_hands_off_at_max_steps(worker, session):
    agent = session.agent
    agent.max_steps = 1
    agent.save()
    run = session_post_message(session=session, content='call echo {"text": "x"}')
    run = wait_for_run(run.pk)
    assert run.status == RunStatus.HANDED_OFF
    assert "max_steps" in Handoff.objects.get(session=session).reason
    assert run.error_class == "limit"
    assert [(g.error_class, g.status) for g in failures_grouped(since=None)] == [
        ("limit", "handed_off")
    ]


def test_it_keeps_arguments_json_in_the_stored_assistant_message(worker, session):
    run = session_post_message(session=session, content='call echo {"text": "a"}')
    wait_for_run(run.pk)
    assistant = Message.objects.filter(session=session, role=Role.ASSISTANT).first()
    assert json.loads(assistant.tool_calls[0]["function"]["arguments"]) == {"text": "a"}


@pytest.mark.parametrize("counter", ["retries", "fallbacks"])
def test_it_fences_the_retry_and_fallback_counters(session, devmodel, model_name, counter):
    """A job whose run was taken over writes nothing more, counters included."""
    from django.db.models import F

    from agentops.models import AgentFallback, Run
    from agentops.runtime.checkpoint import messages_append, run_claim
    from agentops.runtime.errors import LeaseLost
    from agentops.runtime.loop import Heartbeat, RunDriver
    from tests.factories import EndpointFactory

    agent = session.agent
    if counter == "fallbacks":
        fallback = EndpointFactory(base_url=devmodel.url, default_model=model_name + "-b")
        AgentFallback.objects.create(agent=agent, position=1, endpoint=fallback)
        devmodel.script(model_name, [{"status": 400}])
    else:
        devmodel.script(model_name, [{"status": 429, "retry_after": 0}])
    (trigger,) = messages_append(
        session_id=session.pk, messages=[Message(role=Role.USER, content="hi", token_count=5)]
    )
    run = Run.objects.create(session=session, agent=agent, trigger=trigger)
    epoch = run_claim(run_id=run.pk, worker="orphan")
    driver = RunDriver(
        Run.objects.select_related("agent__endpoint", "session").get(pk=run.pk),
        epoch,
        Heartbeat(run.pk, epoch),
    )
    driver.start()
    Run.objects.filter(pk=run.pk).update(epoch=F("epoch") + 1)  # another worker took it over
    with pytest.raises(LeaseLost):
        driver.drive()
    run.refresh_from_db()
    assert (run.retries, run.fallbacks) == (0, 0)
    assert not Message.objects.filter(session=session, role=Role.ASSISTANT).exists()


# --- the context window: the current turn always reaches the model verbatim, or the run fails

WORDS = [
    "order",
    "refund",
    "parcel",
    "invoice",
    "address",
    "courier",
    "delay",
    "weekend",
    "tracking",
    "number",
]


def text_of(chars: int, seed: int) -> str:
    rng = random.Random(seed)
    out = f"message {seed}:"
    while len(out) < chars:
        out += " " + rng.choice(WORDS)
    return out[:chars]


@pytest.fixture
def long_session(dev_agent):
    dev_agent.tools.add(*python_tools_sync())
    dev_agent.context_token_budget = 2000
    dev_agent.save()
    session = session_create(agent=dev_agent, external_user="erin")
    history = [
        Message(
            role=Role.USER if index % 2 == 0 else Role.ASSISTANT,
            content=text_of(2000, index),
            token_count=message_tokens(content=text_of(2000, index)),
        )
        for index in range(40)
    ]
    messages_append(session_id=session.pk, messages=history)
    return session


def chat_requests(devmodel, model_name) -> list[list[list[str]]]:
    return [
        r["transcript"]
        for r in devmodel.requests(model_name)
        if not r["transcript"][0][1].startswith("Summarize")
    ]


def test_it_always_shows_the_model_the_latest_user_message(
    worker, long_session, devmodel, model_name
):
    """Turn after turn, with the summary and the tools taking most of the budget."""
    session = long_session
    devmodel.script(model_name)
    for turn in range(4):
        question = text_of(2000, 1000 + turn)
        run = wait_for_run(session_post_message(session=session, content=question).pk)
        assert run.status == RunStatus.SUCCEEDED, run.error_message
        answer = Message.objects.get(session=session, run=run, role=Role.ASSISTANT)
        assert answer.content == f"You said: {question}", f"turn {turn}"
        assert chat_requests(devmodel, model_name)[-1][-1] == ["user", question]
        session.refresh_from_db()
        assert session.summary_upto_seq < run.trigger.seq  # older turns folded, never this one


def test_it_fails_with_context_overflow_when_the_turn_alone_does_not_fit(
    worker, long_session, devmodel, model_name
):
    session = long_session
    devmodel.script(model_name)
    run = wait_for_run(session_post_message(session=session, content=text_of(12_000, 7)).pk)
    assert (run.status, run.error_class) == (RunStatus.FAILED, "context_overflow")
    assert "current turn" in run.error_message and "2000 tokens" in run.error_message
    assert chat_requests(devmodel, model_name) == []  # no answer to a question it was not shown
    assert not Message.objects.filter(session=session, run=run, role=Role.ASSISTANT).exists()


def test_it_answers_tool_calls_a_run_left_without_results_and_keeps_the_answered_ones():
    def asks(*ids):  # type: ignore[no-untyped-def]
        call = {"type": "function", "function": {"name": "echo", "arguments": "{}"}}
        return {"role": "assistant", "content": "", "tool_calls": [{"id": i, **call} for i in ids]}

    def result(i):  # type: ignore[no-untyped-def]
        return {"role": "tool", "tool_call_id": i, "content": "ok"}

    user = {"role": "user", "content": "hi"}
    answered = [user, asks("a", "b"), result("a"), result("b"), user]
    assert tool_calls_answered(answered) == answered
    left = [
        user,
        asks("a", "b"),
        result("a"),
        {"role": "assistant", "content": "[Human operator] hi"},
    ]
    assert tool_calls_answered(left) == [
        user,
        asks("a", "b"),
        result("a"),
        {"role": "tool", "tool_call_id": "b", "content": NOT_RUN},
        left[-1],
    ]
    trailing = [user, asks("c")]  # a run taken over while "c" awaited approval, handed back
    assert tool_calls_answered(trailing)[-1] == {
        "role": "tool",
        "tool_call_id": "c",
        "content": NOT_RUN,
    }
