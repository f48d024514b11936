"""A call in flight when its worker is killed (SIGKILL of a real RQ worker's work horse): a
tool that honours an idempotency key is sent again with the same key, as a new attempt, and
its service makes the change once; a tool that honours none is handed to a person."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from django.utils import timezone

from agentops.models import Handoff, Message, Run, ToolCall
from agentops.runtime.services import runs_reconcile, session_create, session_post_message
from agentops.runtime.tooling import MAX_KEYED_RESENDS
from agentops.testing.chaos import kill
from agentops.testing.processes import child_env, start_worker
from agentops.testing.tools import KeyedChargeServer, keyed_charge_tool, side_effects_log
from tests.agentops.runtime.helpers import side_effects_forget, spans, wait_for_run
from tests.kit import until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def charges() -> Iterator[KeyedChargeServer]:
    server = KeyedChargeServer()
    yield server
    server.stop()


def effects_started(tool: str, charges: KeyedChargeServer) -> bool:
    if tool == "keyed_charge":
        return bool(charges.charges)
    log = side_effects_log()
    return log.exists() and bool(log.read_text().strip())


def effect_keys(tool: str, charges: KeyedChargeServer) -> list[str]:
    if tool == "keyed_charge":
        return [charge.key for charge in charges.charges.values()]
    return [json.loads(line)["key"] for line in side_effects_log().read_text().splitlines()]


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("tool", "keyed"),
    [("keyed_charge", True), ("keyed_side_effect", True), ("side_effect", False)],
)
def test_a_call_in_doubt_is_sent_again_only_when_its_tool_honours_a_key(  # type: ignore[no-untyped-def]
    tooled_agent, charges, tool, keyed
):
    side_effects_forget()
    tooled_agent.tools.add(keyed_charge_tool(charges.url))
    env = child_env(TOOL_EGRESS_ALLOWLIST="127.0.0.1/32")
    victim = start_worker(env, name="victim")
    try:
        session = session_create(agent=tooled_agent, external_user="erin")
        run = session_post_message(session=session, content=f"chain 1 {tool} 3")
        assert run is not None
        until(lambda: effects_started(tool, charges), message=f"{tool} never started")
        assert kill(victim, "horse") is not None  # mid-call: the change is made, no answer
    finally:
        victim.stop()
    call = ToolCall.objects.get(run=run)
    assert (call.status, call.attempts) == ("started", 1)
    rescuer = start_worker(env, name="rescuer")
    try:
        run.refresh_from_db()
        recovered = runs_reconcile(now=run.heartbeat_at + timezone.timedelta(seconds=30))
        assert recovered["recovered"] == 1
        run = wait_for_run(run.pk)
    finally:
        rescuer.stop()
    call.refresh_from_db()
    # One change, under the call's own key, however many times it was sent.
    assert effect_keys(tool, charges) == [call.idempotency_key]
    if not keyed:
        assert run.status == "handed_off" and call.status == "unknown" and call.attempts == 1
        assert Handoff.objects.get(run=run).reason.startswith("tool outcome unknown")
        assert not spans(run.pk, "tool.resend")
        return
    assert run.status == "succeeded", (run.status, run.wait_reason, run.error_message)
    assert not Handoff.objects.filter(run=run).exists()
    assert (call.status, call.attempts) == ("succeeded", 2)
    (resend,) = spans(run.pk, "tool.resend")
    assert resend.attributes["idempotency_key"] == call.idempotency_key
    assert resend.attributes["attempts_before"] == 1
    attempts = [s.attributes["attempt"] for s in spans(run.pk, "tool.call")]
    assert 2 in attempts and all(a <= 2 for a in attempts)
    answer = Message.objects.get(session=session, role="tool", tool_call_id=call.call_id)
    if tool == "keyed_charge":
        # The service answered the repeat with its first answer: charge 1, not a new one.
        assert json.loads(answer.content) == {"charge": 1, "label": "1"}
        assert charges.requests[call.idempotency_key] == 2
    else:
        assert answer.content == f"changed 1 once for {call.idempotency_key}"
    assert Run.objects.get(pk=run.pk).epoch == 2


@pytest.mark.parametrize("resent_before", [MAX_KEYED_RESENDS - 1, MAX_KEYED_RESENDS])
def test_a_keyed_call_is_re_sent_at_most_max_keyed_resends_times(
    tooled_agent, worker, resent_before
):  # type: ignore[no-untyped-def]
    """A keyed call whose every send died with its worker: re-sent while fewer than
    MAX_KEYED_RESENDS re-sends are stored for it, then handed to a person as "outcome
    unknown after N re-sends", and not sent again. (The state that many kills leave, written
    directly: the call's row in flight, the re-sends' events in its run's trace.)"""
    from agentops.runtime.checkpoint import messages_append
    from agentops.runtime.services import run_enqueue
    from tracing.models import Span

    side_effects_forget()
    session = session_create(agent=tooled_agent, external_user="erin")
    (trigger,) = messages_append(
        session_id=session.pk,
        messages=[Message(role="user", content="chain 1 keyed_side_effect 0")],
    )
    call = {
        "id": "call_k",
        "type": "function",
        "function": {"name": "keyed_side_effect", "arguments": '{"label": "1", "seconds": 0}'},
    }
    run = Run.objects.create(
        session=session,
        agent=tooled_agent,
        trigger=trigger,
        step=1,
        jobs_started=resent_before + 1,
    )
    messages_append(
        session_id=session.pk,
        messages=[Message(role="assistant", tool_calls=[call], run=run, step=1)],
    )
    row = ToolCall.objects.create(
        run=run,
        step=2,
        call_id="call_k",
        tool_name="keyed_side_effect",
        idempotent=False,
        status="started",
        attempts=resent_before + 1,
        arguments={"label": "1", "seconds": 0},
    )
    now = timezone.now()
    for seq in range(1, resent_before + 1):
        Span.objects.create(
            trace_id=run.pk,
            seq=seq,
            span_id=f"{seq:016x}",
            name="tool.resend",
            is_event=True,
            start_time=now,
            end_time=now,
            attributes={"idempotency_key": row.idempotency_key, "resend": seq},
        )
    run_enqueue(run=run)
    run = wait_for_run(run.pk)
    row.refresh_from_db()
    resends = spans(run.pk, "tool.resend")
    if resent_before < MAX_KEYED_RESENDS:
        assert run.status == "succeeded", (run.status, run.wait_reason, run.error_message)
        assert (row.status, row.attempts) == ("succeeded", resent_before + 2)
        assert [s.attributes["resend"] for s in resends] == list(range(1, resent_before + 2))
        done = [json.loads(line)["key"] for line in side_effects_log().read_text().splitlines()]
        assert done == [row.idempotency_key]
        return
    assert run.status == "handed_off"
    assert run.wait_reason == (
        f"tool outcome unknown: keyed_side_effect (call call_k) after {MAX_KEYED_RESENDS} re-sends"
    )
    assert Handoff.objects.get(run=run).reason == run.wait_reason
    assert (row.status, row.attempts) == ("unknown", resent_before + 1)  # not sent again
    assert len(resends) == resent_before
    assert not side_effects_log().exists()
    answer = Message.objects.get(session=session, role="tool", tool_call_id="call_k")
    assert answer.content.startswith("Error: the outcome of keyed_side_effect is unknown")
