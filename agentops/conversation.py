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
from datetime import datetime
from typing import Any, TypedDict

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
        # Which agent spoke (a conversation may pass between agents); load with `agent`.
        "agent": {"slug": message.agent.slug, "name": message.agent.name}
        if message.agent_id and message.agent
        else None,
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


class HandoffBrief(TypedDict):
    """A handoff inside a conversation (the snapshot, `GET …/messages`, `/v1/`'s `handoff`)."""

    id: int
    status: str
    reason: str
    team: str
    priority: int
    claimed_by: str | None
    created_at: str


class HandoffJson(HandoffBrief):
    """A handoff on its own (the API's `HandoffOut`, the SSE snapshot): the brief shape and
    where it stands, with its context package."""

    session: str
    run: str | None
    agent: str
    claimed_at: str | None
    resolved_at: str | None
    resolution: str
    summary: str
    last_tool_calls: list[dict[str, Any]]
    suggested_reply: str
    snoozed_at: str | None
    snoozed_until: str | None
    labels: list[str]


class HandoffEventData(TypedDict):
    """A handoff in a `handoff.*` webhook's `data` and the `handoff.created` ops event: the
    webhook contract (docs/api.md) names ids `<entity>_id`, as every webhook payload does."""

    handoff_id: int
    session_id: str
    run_id: str | None
    reason: str
    team: str
    priority: int
    status: str


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def handoff_serialise(handoff: Handoff) -> HandoffBrief:
    """The one JSON shape of a handoff, which the other two extend or rename."""
    return {
        "id": handoff.pk,
        "status": handoff.status,
        "reason": handoff.reason,
        "team": handoff.team.slug if handoff.team else "",
        "priority": handoff.priority,
        "claimed_by": handoff.claimed_by.get_username() if handoff.claimed_by else None,
        "created_at": handoff.created_at.isoformat(),
    }


def handoff_detail_serialise(handoff: Handoff) -> HandoffJson:
    return {
        **handoff_serialise(handoff),
        "session": str(handoff.session_id),
        "run": str(handoff.run_id) if handoff.run_id else None,
        "agent": handoff.session.agent.slug,
        "claimed_at": _iso(handoff.claimed_at),
        "resolved_at": _iso(handoff.resolved_at),
        "resolution": handoff.resolution,
        "summary": handoff.summary,
        "last_tool_calls": handoff.last_tool_calls,
        "suggested_reply": handoff.suggested_reply,
        "snoozed_at": _iso(handoff.snoozed_at),
        "snoozed_until": _iso(handoff.snoozed_until),
        "labels": [label.name for label in handoff.session.labels.all()],
    }


def handoff_event_serialise(handoff: Handoff) -> HandoffEventData:
    brief = handoff_serialise(handoff)
    return {
        "handoff_id": brief["id"],
        "session_id": str(handoff.session_id),
        "run_id": str(handoff.run_id) if handoff.run_id else None,
        "reason": brief["reason"],
        "team": brief["team"],
        "priority": brief["priority"],
        "status": brief["status"],
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
