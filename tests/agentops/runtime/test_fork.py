"""Forks end to end: a real worker, the dev model over HTTP, HTTP tools on a loopback server
whose request log shows what was executed."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from agentops.agents.services import agent_version_create
from agentops.devmodel.server import tool_pairing_error
from agentops.models import ForkOutcome, Message, Role, RunStatus, Session, ToolCall
from agentops.runtime.context import to_openai
from agentops.runtime.services import (
    ForkInvalid,
    run_fork,
    session_create,
    session_post_message,
)
from memory.models import Memory, MemoryRecall
from memory.services import memory_remember
from tests.agentops.runtime.helpers import recorded_run, spans, wait_for_run
from tests.kit import until, worker_fixture
from tests.tools.servers import Handler, LoopbackServer
from tools.models import ToolDefinition, ToolKind
from tools.services import python_tools_sync, tool_save

pytestmark = pytest.mark.django_db(transaction=True)

SKU = {"type": "object", "properties": {"sku": {"type": "string"}}, "required": ["sku"]}


def script(sku: str) -> str:
    """Three tool calls in a row: a lookup, an order (not idempotent), a status check."""
    return "\n".join(
        f"call {name} {json.dumps({'sku': sku})}"
        for name in ("stock_lookup", "place_order", "order_status")
    )


# The module's worker may reach the loopback tool server (the egress guard allows it).
worker = worker_fixture(TOOL_EGRESS_ALLOWLIST="127.0.0.1/32")


@pytest.fixture
def shop() -> Iterator[LoopbackServer]:
    server = LoopbackServer()

    @server.route("/stock")
    def stock(h: Handler) -> None:
        h.send_json(200, {"sku": h.query["sku"][0], "in_stock": 3})

    @server.route("/orders")
    def orders(h: Handler) -> None:
        h.send_json(201, {"order": f"order-{server.hits('/orders')}", **json.loads(h.body)})

    @server.route("/status")
    def status(h: Handler) -> None:
        h.send_json(200, {"sku": h.query["sku"][0], "status": "shipped"})

    yield server
    server.stop()


@pytest.fixture
def agent(dev_agent, shop):  # type: ignore[no-untyped-def]
    def http_tool(name: str, path: str, **config: object) -> ToolDefinition:
        return tool_save(
            tool=ToolDefinition(
                name=name,
                description=f"Test tool {name}",
                kind=ToolKind.HTTP,
                parameters=SKU,
                http_config={"url": shop.url(path), **config},
                idempotent=config.get("method") != "POST",
            )
        )

    python_tools_sync()  # the built-in tools (note)
    dev_agent.tools.add(
        http_tool("stock_lookup", "/stock", method="GET", query={"sku": "{{sku}}"}),
        http_tool(
            "place_order", "/orders", method="POST", body_format="json", body='{"sku": "{{sku}}"}'
        ),
        http_tool("order_status", "/status", method="GET", query={"sku": "{{sku}}"}),
    )
    return dev_agent


@pytest.fixture
def origin(worker, agent, shop):  # type: ignore[no-untyped-def]
    """A finished run: model, stock_lookup, model, place_order, model, order_status, answer."""
    session = session_create(agent=agent, external_user="erin")
    run = wait_for_run(session_post_message(session=session, content=script("A")).pk)
    assert run.status == RunStatus.SUCCEEDED, (run.error_class, run.error_message)
    assert run.step == 7
    assert [shop.hits(p) for p in ("/stock", "/orders", "/status")] == [1, 1, 1]
    return run


def fork_messages(run) -> list[Message]:  # type: ignore[no-untyped-def]
    return list(Message.objects.filter(session_id=run.session_id).order_by("seq"))


def assert_valid_for_the_model(messages: list[Message]) -> None:
    """Every tool call is answered by a tool message with its id, and nothing else is."""
    assert tool_pairing_error([to_openai(m) for m in messages]) == ""


def fork_outcomes(run) -> list[str]:  # type: ignore[no-untyped-def]
    return [s.attributes["fork.outcome"] for s in spans(run.pk, "tool.fork")]


def test_it_forks_after_the_order_without_executing_anything_before_it(origin, shop):
    fork = wait_for_run(run_fork(run=origin, step=4).pk)
    assert fork.status == RunStatus.SUCCEEDED, (fork.error_class, fork.error_message)
    # The lookup and the order (steps 2 and 4) ran once, in the origin run; only the
    # status check after the fork point ran again (it is idempotent).
    assert [shop.hits(p) for p in ("/stock", "/orders", "/status")] == [1, 1, 2]
    messages = fork_messages(fork)
    assert [m.role for m in messages] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
        "assistant",
        "tool",
        "assistant",
    ]
    assert_valid_for_the_model(messages)
    origin_messages = fork_messages(origin)
    assert [m.content for m in messages[:5]] == [m.content for m in origin_messages[:5]]
    assert messages[-1].content == origin_messages[-1].content  # the same answer, recomputed
    assert [m.step for m in messages] == [None, 1, 2, 3, 4, 5, 6, 7]
    assert fork.trigger_id == messages[0].pk and fork.forked_from_id == origin.pk
    copied = ToolCall.objects.filter(run=fork, fork_outcome=ForkOutcome.COPIED)
    assert sorted(copied.values_list("tool_name", "step")) == [
        ("place_order", 4),
        ("stock_lookup", 2),
    ]
    assert fork_outcomes(fork) == ["executed"]
    assert fork.session.forked_from_id == origin.session_id
    assert list(origin.forks.all()) == [fork]


def test_it_answers_a_non_idempotent_call_after_the_fork_point_from_the_recording(origin, shop):
    fork = wait_for_run(run_fork(run=origin, step=2).pk)
    assert fork.status == RunStatus.SUCCEEDED, (fork.error_class, fork.error_message)
    assert [shop.hits(p) for p in ("/stock", "/orders", "/status")] == [1, 1, 2]
    recorded = ToolCall.objects.get(run=origin, tool_name="place_order")
    replayed = ToolCall.objects.get(run=fork, tool_name="place_order")
    assert replayed.fork_outcome == ForkOutcome.REPLAYED and replayed.result == recorded.result
    tool_message = Message.objects.get(session_id=fork.session_id, role=Role.TOOL, step=4)
    assert tool_message.content == recorded.result and "order-1" in recorded.result
    assert fork_outcomes(fork) == ["replayed", "executed"]
    event = spans(fork.pk, "tool.fork")[0]
    assert event.attributes["fork.recorded_call_id"] == recorded.pk
    assert_valid_for_the_model(fork_messages(fork))


def test_it_refuses_a_non_idempotent_call_it_has_no_recording_of(origin, shop):
    fork = wait_for_run(run_fork(run=origin, step=0, content=script("B")).pk)
    assert fork.status == RunStatus.SUCCEEDED, (fork.error_class, fork.error_message)
    assert shop.hits("/orders") == 1  # only the origin's order
    assert [r["query"] for r in shop.requests if r["path"] == "/stock"][-1] == {"sku": ["B"]}
    refused = Message.objects.get(session_id=fork.session_id, role=Role.TOOL, name="place_order")
    assert refused.content.startswith("Not executed in a fork: place_order")
    assert fork_outcomes(fork) == ["executed", "refused", "executed"]
    assert ToolCall.objects.get(run=fork, tool_name="place_order").fork_outcome == "refused"
    answer = fork_messages(fork)[-1]
    assert answer.role == Role.ASSISTANT and "Not executed in a fork" in answer.content
    assert fork.fork_edit["original"] == script("A")


def test_it_runs_a_non_idempotent_call_when_the_fork_allows_it(origin, shop):
    fork = run_fork(run=origin, step=0, content=script("B"), allow_side_effects=True)
    fork = wait_for_run(fork.pk)
    assert fork.status == RunStatus.SUCCEEDED, (fork.error_class, fork.error_message)
    orders = [r for r in shop.requests if r["path"] == "/orders"]
    assert [json.loads(r["body"]) for r in orders] == [{"sku": "A"}, {"sku": "B"}]
    assert fork_outcomes(fork) == ["executed", "executed", "executed"]
    assert ToolCall.objects.get(run=fork, tool_name="place_order").fork_outcome == "executed"


def test_it_goes_on_from_an_edited_tool_result(origin, shop, devmodel):
    edited = '{"sku": "A", "in_stock": 0}'
    fork = wait_for_run(run_fork(run=origin, step=2, content=edited).pk)
    assert fork.status == RunStatus.SUCCEEDED, (fork.error_class, fork.error_message)
    assert shop.hits("/stock") == 1
    assert fork_messages(fork)[-1].content.startswith(f"Tool results: {edited} ; ")
    assert fork.fork_edit == {
        "seq": 3,
        "role": "tool",
        "original": ToolCall.objects.get(run=origin, tool_name="stock_lookup").result,
    }
    # The fork's tool-call record says what its conversation says: the edited result.
    lookup = ToolCall.objects.get(run=fork, tool_name="stock_lookup")
    assert (lookup.result, lookup.fork_outcome) == (edited, ForkOutcome.EDITED)
    assert ToolCall.objects.get(run=fork, tool_name="place_order").fork_outcome == "replayed"


def test_an_edited_result_stands_for_the_recording_it_replaced(worker, agent, shop):
    """The n-th call after the fork point takes the n-th recording, counting the edited one:
    an order placed twice is replayed as the second one, not the first again."""
    session = session_create(agent=agent, external_user="erin")
    twice = "\n".join(f"call place_order {json.dumps({'sku': 'A'})}" for _ in range(2))
    origin = wait_for_run(session_post_message(session=session, content=twice).pk)
    assert origin.status == RunStatus.SUCCEEDED, (origin.error_class, origin.error_message)
    first, second = ToolCall.objects.filter(run=origin, tool_name="place_order").order_by("step")
    assert first.step == 2 and "order-1" in first.result and "order-2" in second.result

    fork = wait_for_run(run_fork(run=origin, step=2, content='{"order": "edited"}').pk)
    assert fork.status == RunStatus.SUCCEEDED, (fork.error_class, fork.error_message)
    assert shop.hits("/orders") == 2  # nothing placed again
    calls = ToolCall.objects.filter(run=fork, tool_name="place_order").order_by("step")
    assert [(c.fork_outcome, c.result) for c in calls] == [
        (ForkOutcome.EDITED, '{"order": "edited"}'),
        (ForkOutcome.REPLAYED, second.result),
    ]


def test_a_fork_recalls_its_end_users_memories_and_writes_only_its_own(worker, agent):
    """A fork reads the scope of the conversation it continues (read only) and remembers into
    a scope of its own, which the end user's conversations never read."""
    tea = memory_remember(agent_id=agent.pk, user_key="erin", text="Erin likes green tea")
    session = session_create(agent=agent, external_user="erin")
    origin = wait_for_run(session_post_message(session=session, content="which tea?").pk)
    assert origin.status == RunStatus.SUCCEEDED, (origin.error_class, origin.error_message)

    fork = wait_for_run(run_fork(run=origin, step=0, content="remember erin likes mint tea").pk)
    assert fork.status == RunStatus.SUCCEEDED, (fork.error_class, fork.error_message)
    # Recall's bookkeeping is written behind the run (memory.deferred), moments later.
    until(lambda: MemoryRecall.objects.filter(run_id=fork.pk, memory=tea).exists(), seconds=10)
    mint = Memory.objects.get(text__icontains="mint")
    assert mint.user_key == fork.session.memory_scope != "erin"
    erin = session_create(agent=agent, external_user="erin")
    again = wait_for_run(session_post_message(session=erin, content="mint tea?").pk)
    until(lambda: MemoryRecall.objects.filter(run_id=again.pk, memory=tea).exists(), seconds=10)
    assert not MemoryRecall.objects.filter(run_id=again.pk, memory=mint).exists()


def test_it_goes_on_from_an_edited_assistant_message(origin, shop, devmodel, model_name):
    fork = wait_for_run(run_fork(run=origin, step=1, content="Let me check the stock.").pk)
    assert fork.status == RunStatus.SUCCEEDED, (fork.error_class, fork.error_message)
    # Its tool call was still to be answered: stock_lookup is idempotent and ran again.
    assert shop.hits("/stock") == 2 and shop.hits("/orders") == 1
    first_call = devmodel.requests(model_name)[4]  # the origin made four model calls
    assert first_call["transcript"][-2] == ["assistant", "Let me check the stock."]
    assert_valid_for_the_model(fork_messages(fork))


def test_it_keeps_the_working_notes_as_they_stood_at_the_fork_point(
    worker, agent, devmodel, model_name
):
    session = session_create(agent=agent, external_user="erin")
    content = 'call note {"key": "plan", "value": "one"}\ncall note {"key": "plan", "value": "two"}'
    origin = wait_for_run(session_post_message(session=session, content=content).pk)
    assert origin.status == RunStatus.SUCCEEDED, (origin.error_class, origin.error_message)
    session.refresh_from_db()
    assert session.scratchpad == {"plan": "two"}
    fork = wait_for_run(run_fork(run=origin, step=2).pk)
    assert fork.status == RunStatus.SUCCEEDED, (fork.error_class, fork.error_message)
    first_call = devmodel.requests(model_name)[3]  # after the origin's three
    system = first_call["transcript"][0][1]
    assert "Working notes:\n- plan: one" in system


@pytest.mark.django_db
def test_it_keeps_the_summary_when_it_covers_only_what_came_before_the_run():
    origin = recorded_run(earlier_turn=True)
    Session.objects.filter(pk=origin.session_id).update(
        summary="They said hello.", summary_upto_seq=2
    )
    fork = run_fork(run=origin, step=1)
    session = Session.objects.get(pk=fork.session_id)
    assert (session.summary, session.summary_upto_seq) == ("They said hello.", 2)
    contents = [m.content for m in fork_messages(fork)]
    assert contents == ["hello", "You said: hello", "call echo", ""]
    assert session.last_seq == 4 and fork.step == 1 and fork.model_calls == 1
    assert fork.status == RunStatus.QUEUED


@pytest.mark.django_db
def test_it_leaves_out_a_summary_that_covers_the_run_and_copies_everything_verbatim():
    origin = recorded_run(earlier_turn=True)
    Session.objects.filter(pk=origin.session_id).update(summary="All of it.", summary_upto_seq=6)
    fork = run_fork(run=origin, step=2)
    session = Session.objects.get(pk=fork.session_id)
    assert (session.summary, session.summary_upto_seq) == ("", 0)
    assert [m.content for m in fork_messages(fork)] == [
        "hello",
        "You said: hello",
        "call echo",
        "",
        "hi",
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("step", "content", "field", "complaint"),
    [
        (4, None, "step", "has steps 0 to 3"),
        (-1, None, "step", "has steps 0 to 3"),
        (0, " ", "content", "the user message must not be empty"),
        (3, "", "content", "the assistant message must not be empty"),
        (2, "x" * 40_000, "content", "longer than"),
    ],
)
def test_it_refuses_a_fork_it_cannot_make_naming_the_input(step, content, field, complaint):
    origin = recorded_run()
    with pytest.raises(ForkInvalid) as error:
        run_fork(run=origin, step=step, content=content)
    assert error.value.field == field and complaint in error.value.message
    assert Session.objects.count() == 1  # nothing was made


def test_it_forks_onto_the_runs_version_another_version_or_another_model(
    worker, agent, devmodel, model_name
):
    agent.system_prompt = "You are v1."
    agent.save()
    v1 = agent_version_create(agent=agent, author=None, publish=True)
    agent.refresh_from_db()
    agent.system_prompt = "You are v2."
    agent.save()
    agent_version_create(agent=agent, author=None)  # saved, not published
    session = session_create(agent=agent, external_user="erin")
    origin = wait_for_run(session_post_message(session=session, content="hello").pk)
    assert origin.status == RunStatus.SUCCEEDED and origin.agent_version == v1

    def system_prompt(request: dict) -> str:
        return request["transcript"][0][1]

    same = wait_for_run(run_fork(run=origin, step=0).pk)
    assert same.status == RunStatus.SUCCEEDED and same.agent_version == v1
    other = wait_for_run(run_fork(run=origin, step=0, agent_version=2).pk)
    assert other.status == RunStatus.SUCCEEDED and other.agent_version.number == 2
    assert other.session.agent_version == other.agent_version  # later turns run it too
    assert [system_prompt(r) for r in devmodel.requests(model_name)] == [
        "You are v1.",
        "You are v1.",
        "You are v2.",
    ]
    another = f"{model_name}-b"
    by_model = wait_for_run(run_fork(run=origin, step=0, model=another).pk)
    assert by_model.status == RunStatus.SUCCEEDED and by_model.model_used == another
    derived = by_model.agent_version
    assert derived.derived_from == v1 and derived.config["model"] == another
    assert derived.config["system_prompt"] == "You are v1."
    assert [system_prompt(r) for r in devmodel.requests(another)] == ["You are v1."]
    agent.refresh_from_db()
    assert agent.published_version == v1  # a fork publishes nothing


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("options", "field", "complaint"),
    [
        ({"agent_version": 9}, "agent_version", "has no version 9"),
        ({"model": " "}, "model", "give a model name"),
    ],
)
def test_it_refuses_a_version_or_model_it_cannot_run(options, field, complaint):
    origin = recorded_run()
    with pytest.raises(ForkInvalid) as error:
        run_fork(run=origin, step=1, **options)
    assert error.value.field == field and complaint in error.value.message
