"""Short-term memory: the context window, assembled under the agent's token budget.

system prompt + pinned memories + running summary + working notes + recalled memories
+ as many recent messages as fit. Tokens are counted exactly and offline (bpe-openai);
each message's count is stored when it is written, so assembly only adds numbers.
Messages that no longer fit are folded into the running summary, never dropped; the
current turn (the run's user message and what the run added since) is never folded.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from django.db.models import Q

from agentops.models import Message, Role
from tracing.platform.tokens import count_tokens as count_tokens  # its callers import it here

PER_MESSAGE_OVERHEAD = 4
SUMMARY_PROMPT = (
    "Summarize the conversation so far for your own later use: keep names, facts the user gave, "
    "decisions, open questions and task progress. Be concise."
)


def message_tokens(*, content: str, tool_calls: list[dict[str, Any]] | None = None) -> int:
    total = PER_MESSAGE_OVERHEAD + count_tokens(content)
    if tool_calls:
        total += count_tokens(json.dumps(tool_calls))
    return total


@lru_cache(maxsize=64)
def _system_tokens(content: str) -> int:
    """The system block changes rarely within a run: count it once per distinct text."""
    return message_tokens(content=content)


def to_openai(message: Message) -> dict[str, Any]:
    """A stored message as the model sees it. Operator replies are the assistant's side of the talk."""
    if message.role == Role.TOOL:
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if message.role == Role.OPERATOR:
        return {"role": "assistant", "content": f"[Human operator] {message.content}"}
    item: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        item["tool_calls"] = message.tool_calls
    return item


@dataclass
class Transcript:
    """The session's messages after the summary point, oldest first, kept in memory for a run."""

    messages: list[Message] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(m.token_count for m in self.messages)

    def add(self, message: Message) -> None:
        self.messages.append(message)

    def window(
        self, budget: int, *, keep_from: int | None = None
    ) -> tuple[list[Message], list[Message]]:
        """(older messages that do not fit, recent messages that fit in `budget`).

        Messages from index `keep_from` on (the current turn) are always recent, even over
        budget: the caller decides what to do when they alone do not fit. The window never
        starts with a tool result or in the middle of a tool-call group.
        """
        start = len(self.messages) if keep_from is None else max(0, keep_from)
        used = sum(m.token_count for m in self.messages[start:])
        kept = start
        for index in range(start - 1, -1, -1):
            cost = self.messages[index].token_count
            if used + cost > budget:
                break
            used += cost
            start = index
        while start < kept and self.messages[start].role == Role.TOOL:
            start += 1
        return self.messages[:start], self.messages[start:]

    def turn_start(self, *, trigger_id: int | None = None, run_id: uuid.UUID | None = None) -> int:
        """Where the current turn begins: the run's user message (else the latest user
        message, else the run's first message). It is never folded away."""
        for index, message in enumerate(self.messages):
            if trigger_id is not None and message.pk == trigger_id:
                return index
        for index in range(len(self.messages) - 1, -1, -1):
            if self.messages[index].role == Role.USER:
                return index
        for index, message in enumerate(self.messages):
            if run_id is not None and message.run_id == run_id:
                return index
        return len(self.messages)


def transcript_load(
    *,
    session_id: uuid.UUID,
    after_seq: int,
    upto_seq: int | None = None,
    run_id: uuid.UUID | None = None,
    limit: int = 400,
) -> Transcript:
    """The newest `limit` messages after the summary point: enough for any budget we allow.

    With `upto_seq`, the conversation as it stood at that message plus the run's own
    messages: what a run retried after newer turns sees.
    """
    rows_qs = Message.objects.filter(session_id=session_id, seq__gt=after_seq)
    if upto_seq is not None:
        rows_qs = rows_qs.filter(Q(seq__lte=upto_seq) | Q(run_id=run_id))
    rows = list(rows_qs.order_by("-seq")[:limit])
    rows.reverse()
    return Transcript(messages=rows)


def system_block(title: str, lines: list[str]) -> str:
    return title + ":\n" + "\n".join(f"- {line}" for line in lines)


@dataclass
class ContextParts:
    system_prompt: str
    pinned: list[str]
    summary: str
    notes: dict[str, Any]
    recalled: list[str]

    def system_messages(self) -> list[dict[str, Any]]:
        parts = [self.system_prompt] if self.system_prompt else []
        if self.pinned:
            parts.append(system_block("Pinned memories", self.pinned))
        if self.summary:
            parts.append("Summary of the earlier conversation:\n" + self.summary)
        if self.notes:
            parts.append(
                system_block("Working notes", [f"{k}: {v}" for k, v in self.notes.items()])
            )
        if self.recalled:
            parts.append(system_block("Relevant memories", self.recalled))
        return [{"role": "system", "content": "\n\n".join(parts)}] if parts else []

    def tokens(self) -> int:
        return sum(_system_tokens(m["content"]) for m in self.system_messages())


def context_assemble(
    *,
    parts: ContextParts,
    transcript: Transcript,
    budget: int,
    tools_tokens: int = 0,
    keep_from: int | None = None,
) -> tuple[list[dict[str, Any]], int, list[Message]]:
    """The messages to send, their token count, and the older messages that did not fit.
    Messages from `keep_from` on are always sent (see `Transcript.window`)."""
    fixed = parts.tokens() + tools_tokens
    older, recent = transcript.window(max(0, budget - fixed), keep_from=keep_from)
    messages = parts.system_messages() + tool_calls_answered([to_openai(m) for m in recent])
    return messages, fixed + sum(m.token_count for m in recent), older


NOT_RUN = "Not run: the run that asked for this call ended first (cancelled or taken over)."


def tool_calls_answered(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every tool call is answered, as models require: a call left without a result (its run
    was cancelled or taken over while it awaited approval) gets one saying it was not run. A
    run never calls the model before answering its own calls, so only such calls are met."""
    out: list[dict[str, Any]] = []
    pending: list[str] = []

    def answer_pending() -> None:
        out.extend({"role": "tool", "tool_call_id": i, "content": NOT_RUN} for i in pending)
        pending.clear()

    for message in messages:
        if message["role"] != "tool":
            answer_pending()
        elif message.get("tool_call_id") in pending:
            pending.remove(message["tool_call_id"])
        out.append(message)
        if message["role"] == "assistant" and message.get("tool_calls"):
            pending.extend(call["id"] for call in message["tool_calls"] if call.get("id"))
    answer_pending()
    return out
