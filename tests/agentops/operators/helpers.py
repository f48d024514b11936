from __future__ import annotations

from agentops.models import Handoff, Message, Role, Run, RunStatus, SessionStatus
from agentops.runtime.checkpoint import messages_append
from tests.factories import SessionFactory


def make_handoff(
    *, agent=None, priority: int = 2, reason: str = "The user asked for a human", **extra
) -> Handoff:
    """A session the agent handed off, as the runtime leaves it (no worker needed)."""
    kwargs = {"agent": agent} if agent is not None else {}
    session = SessionFactory(status=SessionStatus.HANDED_OFF, **kwargs)
    messages_append(
        session_id=session.pk,
        messages=[Message(role=Role.USER, content="I want a human")],
    )
    run = Run.objects.create(
        session=session, agent=session.agent, status=RunStatus.HANDED_OFF, wait_reason=reason
    )
    return Handoff.objects.create(
        session=session,
        run=run,
        reason=reason,
        priority=priority,
        summary="Summary: the user wants a human.",
        suggested_reply="Hello, I am here to help.",
        last_tool_calls=[
            {"tool": "echo", "arguments": {"text": "x"}, "status": "succeeded", "result": "x"}
        ],
        **extra,
    )
