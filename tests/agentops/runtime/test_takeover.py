"""Taking a conversation over mid-run, with a real worker and the dev model: the run stops at
its next checkpoint, nothing is lost or repeated, the end user sees the operator join, and
hand-back resumes the agent where it stopped."""

from __future__ import annotations

import json
import time

import pytest

from agentops.models import Handoff, HandoffStatus, Message, Run, RunStatus, Session, ToolCall
from agentops.testing.tools import side_effects_log
from tests.agentops.runtime.helpers import (
    side_effects_forget,
    wait_for_package,
    wait_for_run,
    wait_for_side_effects,
)
from tests.factories import UserFactory
from tests.kit import until

pytestmark = pytest.mark.django_db(transaction=True)


def executions() -> list[dict]:
    log = side_effects_log()
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def assert_nothing_repeated(session: Session) -> None:
    seqs = list(Message.objects.filter(session=session).values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    keys = [e["key"] for e in executions()]
    assert len(keys) == len(set(keys)), keys  # no tool call ran twice
    calls = list(ToolCall.objects.filter(run__session=session).values_list("call_id", flat=True))
    assert len(calls) == len(set(calls))
    asked = [
        c["id"]
        for m in Message.objects.filter(session=session, role="assistant")
        for c in m.tool_calls
    ]
    answered = list(
        Message.objects.filter(session=session, role="tool").values_list("tool_call_id", flat=True)
    )
    assert sorted(asked) == sorted(answered)  # every call asked for has exactly one result


def test_it_stops_a_running_run_at_its_next_checkpoint_and_hands_back(tooled_agent, worker, client):
    from agentops.operators.takeover.services import session_take_over
    from agentops.operators.work.services import handoff_hand_back
    from agentops.runtime.services import session_create, session_post_message

    bob = UserFactory(username="bob", role="operator")
    side_effects_forget()
    session = session_create(agent=tooled_agent, external_user="erin")
    run = session_post_message(session=session, content="chain 3 side_effect 1.5")
    wait_for_side_effects(1)  # the first call is running in the worker

    outcome = session_take_over(session_id=session.pk, user=bob)
    assert outcome.handoff is None and outcome.run.pk == run.pk  # it stops at its next step
    run = wait_for_run(run.pk)

    assert run.status == RunStatus.HANDED_OFF
    assert run.wait_reason == "taken over by bob"
    assert len(executions()) == 1  # the call in flight finished; no further step was taken
    handoff = Handoff.objects.get(session=session)
    assert handoff.reason == "taken over by bob" and handoff.taken_over
    assert handoff.status == HandoffStatus.CLAIMED and handoff.claimed_by == bob
    assert handoff.run_id == run.pk
    session.refresh_from_db()
    assert session.status == "handed_off" and session.operator == bob
    roles = list(Message.objects.filter(session=session).values_list("role", flat=True))
    assert roles == ["user", "assistant", "tool"]  # the finished call's result was kept
    assert ToolCall.objects.get(run=run).status == "succeeded"
    assert_nothing_repeated(session)

    # The end user's side (the API a client polls) names the operator who joined.
    erin = UserFactory(username="erin-client", role="viewer")
    client.force_login(erin)
    body = client.get(f"/api/sessions/{session.pk}/messages").json()
    assert body["status"] == "handed_off"
    assert body["handoff"]["claimed_by"] == "bob"

    wait_for_package(handoff.pk)
    resumed = handoff_hand_back(handoff=handoff, user=bob)
    resumed = wait_for_run(resumed.pk)
    assert resumed.status == RunStatus.SUCCEEDED, (resumed.error_class, resumed.error_message)
    # The agent went on with the chain where it stopped: calls 2 and 3, then its answer.
    assert [e["label"] for e in executions()] == ["1", "2", "3"]
    last = Message.objects.filter(session=session).order_by("-seq").first()
    assert last.role == "assistant" and last.content == "Chain of 3 done."
    assert_nothing_repeated(session)


def test_it_hands_over_an_answer_written_while_the_takeover_was_asked(
    dev_agent, devmodel, model_name, worker
):
    """The takeover is asked for during the model call that writes the run's answer: the
    answer is kept (once), and the run hands off instead of ending as succeeded."""
    from agentops.operators.takeover.services import session_take_over
    from agentops.runtime.services import session_create, session_post_message

    bob = UserFactory(username="bob", role="operator")
    devmodel.script(model_name, latency=2.0)
    session = session_create(agent=dev_agent, external_user="erin")
    run = session_post_message(session=session, content="hello there")
    until(lambda: devmodel.requests(model_name))  # the model call has started
    assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING
    assert session_take_over(session_id=session.pk, user=bob).run is not None
    run = wait_for_run(run.pk)
    assert run.status == RunStatus.HANDED_OFF and run.wait_reason == "taken over by bob"
    answers = list(Message.objects.filter(session=session, role="assistant"))
    assert [m.content for m in answers] == ["You said: hello there"]
    assert Handoff.objects.get(session=session).claimed_by == bob
    assert len(devmodel.requests(model_name)) == 1


def test_it_gives_one_handoff_to_the_operator_when_the_agent_hands_off_at_the_same_time(
    tooled_agent, worker
):
    """The agent hands off (the user asked for a human) while an operator takes over: each
    conversation ends with exactly one handoff, and the operator holds it."""
    from agentops.operators.access import HandoffConflict
    from agentops.operators.takeover.services import session_take_over
    from agentops.runtime.services import session_create, session_post_message

    bob = UserFactory(username="bob", role="operator")
    sessions = []
    for i in range(6):
        session = session_create(agent=tooled_agent, external_user=f"user{i}")
        run = session_post_message(session=session, content="I want a human please")
        time.sleep(0.05 * i)  # on purpose: take over at different points of the run
        try:
            session_take_over(session_id=session.pk, user=bob)
        except HandoffConflict as exc:  # pragma: no cover - would fail the assertions below
            pytest.fail(f"takeover refused: {exc}")
        sessions.append((session, run))
    for session, run in sessions:
        wait_for_run(run.pk)
        until(lambda s=session: Handoff.objects.filter(session=s, status=HandoffStatus.CLAIMED))
        handoffs = list(Handoff.objects.filter(session=session))
        assert len(handoffs) == 1, handoffs
        assert handoffs[0].claimed_by == bob and handoffs[0].status == HandoffStatus.CLAIMED
        session.refresh_from_db()
        assert session.status == "handed_off" and session.operator == bob


def test_it_hands_off_a_run_whose_takeover_came_after_its_last_checkpoint(dev_agent):
    """The takeover lands between the answer's checkpoint and the run's end: the run's end
    reads it under the row's lock and hands off rather than ending as succeeded."""
    from agentops.models import Message
    from agentops.runtime.checkpoint import messages_append, run_claim
    from agentops.runtime.errors import HandoffRequired
    from agentops.runtime.loop import RunDriver, heartbeat_thread
    from agentops.runtime.services import session_create

    bob = UserFactory(username="bob", role="operator")
    session = session_create(agent=dev_agent, external_user="erin")
    (trigger,) = messages_append(
        session_id=session.pk, messages=[Message(role="user", content="hi")]
    )
    run = Run.objects.create(session=session, agent=dev_agent, trigger=trigger)
    epoch = run_claim(run_id=run.pk, worker="test")
    messages_append(
        session_id=session.pk,
        messages=[Message(role="assistant", content="Hello!", run=run, step=1)],
    )
    run = Run.objects.select_related("agent__endpoint", "session").get(pk=run.pk)
    beat = heartbeat_thread(run.pk, epoch)
    try:
        driver = RunDriver(run, epoch, beat)
        driver.start()
        Run.objects.filter(pk=run.pk).update(takeover_by=bob)  # after the run read its state
        with pytest.raises(HandoffRequired) as stopped:
            driver.drive()
        driver.hand_off(stopped.value.reason)
    finally:
        beat.stop()
    run.refresh_from_db()
    assert run.status == RunStatus.HANDED_OFF and run.wait_reason == "taken over by bob"
    handoff = Handoff.objects.get(session=session)
    assert handoff.claimed_by == bob and handoff.status == HandoffStatus.CLAIMED


def test_it_answers_calls_not_yet_run_and_never_runs_them(tooled_agent):
    """The model asked for two calls; the takeover is there before they run: both get a
    "Not run" result (the conversation stays whole for after hand-back) and neither runs."""
    from agentops.runtime.checkpoint import messages_append, run_claim
    from agentops.runtime.errors import HandoffRequired
    from agentops.runtime.loop import RunDriver, heartbeat_thread
    from agentops.runtime.services import session_create

    bob = UserFactory(username="bob", role="operator")
    side_effects_forget()
    session = session_create(agent=tooled_agent, external_user="erin")
    (trigger,) = messages_append(
        session_id=session.pk, messages=[Message(role="user", content="do two things")]
    )
    run = Run.objects.create(session=session, agent=tooled_agent, trigger=trigger)
    epoch = run_claim(run_id=run.pk, worker="test")
    calls = [
        {
            "id": f"call_{n}",
            "type": "function",
            "function": {"name": "side_effect", "arguments": json.dumps({"label": n})},
        }
        for n in ("a", "b")
    ]
    messages_append(
        session_id=session.pk,
        messages=[Message(role="assistant", tool_calls=calls, run=run, step=1)],
    )
    Run.objects.filter(pk=run.pk).update(step=1, takeover_by=bob)
    run = Run.objects.select_related("agent__endpoint", "session").get(pk=run.pk)
    beat = heartbeat_thread(run.pk, epoch)
    try:
        driver = RunDriver(run, epoch, beat)
        driver.start()
        with pytest.raises(HandoffRequired, match="taken over by bob"):
            driver.drive()
        driver.hand_off("taken over by bob")
    finally:
        beat.stop()
    assert executions() == []
    assert not ToolCall.objects.filter(run=run).exists()
    results = list(Message.objects.filter(session=session, role="tool").order_by("seq"))
    assert [m.tool_call_id for m in results] == ["call_a", "call_b"]
    assert all(m.content.startswith("Not run: bob") for m in results)
    assert_nothing_repeated(session)
    assert Handoff.objects.get(session=session).claimed_by == bob
