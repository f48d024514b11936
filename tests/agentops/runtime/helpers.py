from __future__ import annotations

from collections.abc import Collection

from agentops.models import Agent, Run, RunStatus
from agentops.testing.tools import side_effects_log
from tests.kit import until
from tools.services import python_tools_sync
from tracing.models import Span

DONE = {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.HANDED_OFF, RunStatus.CANCELLED}


def wait_for_run(run_id: object, statuses: Collection[str] = DONE, timeout: float = 60.0) -> Run:
    """The run once its status is one of `statuses` (by default: it has ended)."""

    def ended() -> Run | None:
        run = Run.objects.get(pk=run_id)
        return run if run.status in statuses else None

    def still() -> str:
        run = Run.objects.get(pk=run_id)
        return f"run {run_id} still {run.status} ({run.error_class}: {run.error_message})"

    return until(ended, seconds=timeout, message=still)


def agent_with_python_tools(agent: Agent, **fields: object) -> Agent:
    """The agent with the test tools of `agentops.testing.tools` and the given fields saved."""
    agent.tools.add(*python_tools_sync())
    for name, value in fields.items():
        setattr(agent, name, value)
    agent.save()
    return agent


def side_effects_forget() -> None:
    side_effects_log().unlink(missing_ok=True)


def wait_for_side_effects(count: int = 1, timeout: float = 30.0) -> None:
    """Until the test tools have logged `count` executions (one: a tool has started)."""
    log = side_effects_log()
    until(
        lambda: log.exists() and len(log.read_text().splitlines()) >= count,
        seconds=timeout,
        message=f"fewer than {count} tool executions",
    )


def runs_post(agent: Agent, content: str, count: int) -> list:
    """The runs of `count` new sessions of `agent`, each sent `content`."""
    from agentops.runtime.services import session_create, session_post_message

    return [
        session_post_message(
            session=session_create(agent=agent, external_user=f"user{i}"), content=content
        ).pk
        for i in range(count)
    ]


def wait_for_success(run_ids: list, timeout: float = 120.0) -> None:
    for run_id in run_ids:
        run = wait_for_run(run_id, timeout=timeout)
        assert run.status == RunStatus.SUCCEEDED, (run.status, run.error_class, run.error_message)


def span_names(run_id) -> list[str]:
    return list(Span.objects.filter(trace_id=run_id).order_by("seq").values_list("name", flat=True))


def spans(run_id, name: str) -> list[Span]:
    return list(Span.objects.filter(trace_id=run_id, name=name).order_by("seq"))


def wait_for_package(handoff_id, timeout: float = 60.0):
    """The handoff once its context package (written after the handoff) is there."""
    from agentops.models import Handoff

    return until(
        lambda: Handoff.objects.filter(pk=handoff_id).exclude(summary="").first(),
        seconds=timeout,
        message=f"handoff {handoff_id} has no context package",
    )


def recorded_run(*, session=None, earlier_turn: bool = False, question: str = "call echo") -> Run:
    """A finished run built by hand: the user's message, a model step asking for `echo`, its
    result, the answer (steps 1 to 3); with `earlier_turn`, a turn before it in the session."""
    from agentops.models import Message, Role, ToolCall, ToolCallStatus
    from agentops.runtime.checkpoint import messages_append
    from tests.factories import SessionFactory

    session = session or SessionFactory()
    if earlier_turn:
        messages_append(
            session_id=session.pk,
            messages=[
                Message(role=Role.USER, content="hello", token_count=5),
                Message(role=Role.ASSISTANT, content="You said: hello", token_count=7),
            ],
        )
    (user,) = messages_append(
        session_id=session.pk,
        messages=[Message(role=Role.USER, content=question, token_count=6)],
    )
    run = Run.objects.create(
        session=session,
        agent=session.agent,
        trigger=user,
        status=RunStatus.SUCCEEDED,
        step=3,
        model_calls=2,
    )
    call = {"id": "call_1", "type": "function", "function": {"name": "echo", "arguments": "{}"}}
    messages_append(
        session_id=session.pk,
        messages=[
            Message(role=Role.ASSISTANT, tool_calls=[call], run=run, step=1, token_count=20),
            Message(
                role=Role.TOOL, tool_call_id="call_1", name="echo", content="hi", run=run, step=2
            ),
            Message(role=Role.ASSISTANT, content="Tool results: hi", run=run, step=3),
        ],
    )
    ToolCall.objects.create(
        run=run,
        step=2,
        call_id="call_1",
        tool_name="echo",
        arguments={},
        status=ToolCallStatus.SUCCEEDED,
        result="hi",
    )
    return run
