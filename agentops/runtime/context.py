"""Short-term memory: the context window, assembled under the agent's token budget.

system prompt + pinned memories + running summary + working notes + recalled memories
+ as many recent messages as fit. Tokens are counted exactly and offline (bpe-openai);
each message's count is stored when it is written, so assembly only adds numbers.
Messages that no longer fit are folded into the running summary, never dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any

from agentops.models import Message, Role

PER_MESSAGE_OVERHEAD = 4
SUMMARY_PROMPT = (
    "Summarize the conversation so far for your own later use: keep names, facts the user gave, "
    "decisions, open questions and task progress. Be concise."
)


@cache
def _encoding() -> Any:
    import bpe_openai

    return bpe_openai.get_encoding("o200k_base")


def count_tokens(text: str) -> int:
    return len(_encoding().encode(text)) if text else 0


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

    def window(self, budget: int) -> tuple[list[Message], list[Message]]:
        """(older messages that do not fit, recent messages that fit in `budget`).

        The window never starts with a tool result or in the middle of a tool-call group.
        """
        used = 0
        start = len(self.messages)
        for index in range(len(self.messages) - 1, -1, -1):
            cost = self.messages[index].token_count
            if used + cost > budget:
                break
            used += cost
            start = index
        while start < len(self.messages) and self.messages[start].role == Role.TOOL:
            start += 1
        return self.messages[:start], self.messages[start:]


def transcript_load(*, session_id: Any, after_seq: int, limit: int = 400) -> Transcript:
    """The newest `limit` messages after the summary point: enough for any budget we allow."""
    rows = list(
        Message.objects.filter(session_id=session_id, seq__gt=after_seq).order_by("-seq")[:limit]
    )
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
    *, parts: ContextParts, transcript: Transcript, budget: int, tools_tokens: int = 0
) -> tuple[list[dict[str, Any]], int, list[Message]]:
    """The messages to send, their token count, and the older messages that did not fit."""
    fixed = parts.tokens() + tools_tokens
    older, recent = transcript.window(max(0, budget - fixed))
    messages = parts.system_messages() + [to_openai(m) for m in recent]
    return messages, fixed + sum(m.token_count for m in recent), older
