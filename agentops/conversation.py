"""The conversation read model: what a conversation is (messages, tool calls with their results,
status and duration, the latest run, the handoff) and its one JSON shape.

`agentops.selectors.conversation_get` reads it (a fixed number of queries, whatever its
length); the console, the operator's view, the `/ws/sessions/<id>/` snapshot and the API's
`GET /api/sessions/<id>/messages` all use it, and the live `message` and `run.status` events
carry the same message and run shapes (`message_serialise`, `run_status_serialise`). The
browser renders a stored message with one server template (console/session.html#message),
for the first paint and for the live ones alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from agentops.models import ACTIVE_RUN_STATUSES, Handoff, Message, Run, Session, ToolCall

# A widget end user's `Session.external_user` (and memory scope): "key:<widget key id>:" then
# "user:<the host site's id>" or "visitor:<random>". Unscoped "user:…"/"visitor:…" are from
# before identities were scoped by key (reachable from no key now).
WIDGET_END_USER = re.compile(r"(?:key:\d+:)?(user|visitor):(.*)", re.DOTALL)


def widget_end_user(*, key_id: int, identity: str) -> str:
    """How the widget stores an end user: per key, since a key's secret vouches only for
    its own site's users."""
    return f"key:{key_id}:{identity}"


def end_user_name(*, external_user: str) -> str:
    """What to call a conversation's end user: a widget user's id as their site gave it,
    nothing for an anonymous visitor, else the external id as the API client gave it."""
    match = WIDGET_END_USER.fullmatch(external_user)
    if match is None:
        return external_user
    return match.group(2) if match.group(1) == "user" else ""


def duration_ms(call: ToolCall | None) -> int | None:
    if call is None or call.finished_at is None:
        return None
    return int((call.finished_at - call.started_at).total_seconds() * 1000)


@dataclass
class ToolCallView:
    """One tool call of an assistant message, with its recorded status and its result."""

    call_id: str
    name: str
    arguments: str
    status: str
    duration_ms: int | None
    result: str | None
    result_seq: int | None


@dataclass
class ConversationItem:
    """A message as shown: a tool result is shown with its call, not on its own."""

    message: Message
    tool_calls: list[ToolCallView] = field(default_factory=list)

    @property
    def seq(self) -> int:
        return self.message.seq

    def changed_since(self, seq: int) -> bool:
        return self.seq > seq or any((tc.result_seq or 0) > seq for tc in self.tool_calls)


@dataclass
class Conversation:
    session: Session
    messages: list[Message]  # in seq order, tool results included
    items: list[ConversationItem]
    tool_calls: dict[str, ToolCall]  # the recorded calls of these messages, by the model's id
    run: Run | None  # the session's latest run
    handoff: Handoff | None  # the open or claimed handoff, if any

    @property
    def running(self) -> bool:
        return self.run is not None and self.run.status in ACTIVE_RUN_STATUSES


def message_serialise(message: Message) -> dict[str, Any]:
    """A stored message: the `message` live event and an entry of the conversation.
    `author` is who wrote it (the end user, an operator); `client` the account that sent it."""
    client = message.author.get_username() if message.author_id and message.author else None
    return {
        "id": message.pk,
        "seq": message.seq,
        "role": message.role,
        "content": message.content,
        "tool_calls": message.tool_calls,
        "tool_call_id": message.tool_call_id,
        "name": message.name,
        "run_id": str(message.run_id) if message.run_id else None,
        "author": message.end_user or client,
        "client": client,
        "created_at": message.created_at.isoformat() if message.created_at else None,
    }


def run_status_serialise(run: Run) -> dict[str, Any]:
    """A run's status: the `run.status` live event and the conversation's `run`."""
    return {
        "kind": "run.status",
        "run_id": str(run.pk),
        "session_id": str(run.session_id),
        "agent": run.agent.slug if run.agent_id else "",
        "status": run.status,
        "error_class": run.error_class,
        "error_message": run.error_message[:300],
        "wait_reason": run.wait_reason,
        "step": run.step,
    }


def tool_call_serialise(call: ToolCall) -> dict[str, Any]:
    return {"status": call.status, "duration_ms": duration_ms(call), "tool": call.tool_name}


def handoff_serialise(handoff: Handoff) -> dict[str, Any]:
    return {
        "id": handoff.pk,
        "status": handoff.status,
        "reason": handoff.reason,
        "team": handoff.team.slug if handoff.team else "",
        "priority": handoff.priority,
        "claimed_by": handoff.claimed_by.get_username() if handoff.claimed_by else None,
        "created_at": handoff.created_at.isoformat(),
    }


def conversation_serialise(conversation: Conversation) -> dict[str, Any]:
    """The one JSON shape of a conversation (the API's `MessagesOut`, the stream's snapshot)."""
    return {
        "session": str(conversation.session.pk),
        "status": conversation.session.status,
        "messages": [message_serialise(m) for m in conversation.messages],
        "tool_calls": {
            call_id: tool_call_serialise(call) for call_id, call in conversation.tool_calls.items()
        },
        "run": run_status_serialise(conversation.run) if conversation.run else None,
        "running": conversation.running,
        "handoff": handoff_serialise(conversation.handoff) if conversation.handoff else None,
    }
