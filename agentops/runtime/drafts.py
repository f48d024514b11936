"""The runtime's side of the agent builder's draft chat: a conversation pinned to the
agent's latest saved version, and its context window as the runtime assembles it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q

from agentops.agent_config import agent_config_for
from agentops.agents.services import agent_version_create
from agentops.models import Agent, AgentVersion, Run, Session
from agentops.runtime.context import (
    ContextParts,
    context_assemble,
    count_tokens,
    message_tokens,
    transcript_load,
)
from agentops.runtime.model_client import tool_specs
from agentops.runtime.services import session_create
from memory.models import MemoryRecall
from memory.selectors import memory_pinned
from tools.models import ToolDefinition

if TYPE_CHECKING:
    from agentops.auth import Actor


@transaction.atomic
def draft_session_start(*, agent: Agent, author: Actor) -> Session:
    """A console session pinned to the agent's latest saved version (saved now if it has
    none), to chat with the draft before publishing it."""
    version = agent.versions.filter(derived_from=None).order_by(
        "-number"
    ).first() or agent_version_create(agent=agent, author=author, note="first saved version")
    user = author if isinstance(author, User) and author.is_authenticated else None
    session = session_create(
        agent=agent,
        external_user=f"draft:{user.get_username()}" if user else "draft",
        title=f"Draft chat · {agent.name}",
        created_by=user,
        sandbox=True,
        version=version,
    )
    return session


@dataclass
class ContextMessage:
    role: str
    content: str
    tokens: int


@dataclass
class DraftContext:
    """What the next model call of a draft chat is sent, and the memory beside it."""

    version: AgentVersion | None
    messages: list[ContextMessage]
    tokens: int
    tools_tokens: int
    budget: int
    summary: str
    notes: dict[str, Any]
    pinned: list[str]
    recalled: list[tuple[str, float]]
    run: Run | None


def draft_context(*, session: Session) -> DraftContext:
    """The session's context window as the runtime assembles it (agentops.runtime.context),
    with the memories its latest run recalled."""
    version = session.agent_version
    config = agent_config_for(agent=session.agent, version=version)
    run = session.runs.order_by("-created_at").first()
    recalled: list[tuple[str, float]] = []
    if run is not None and config.memory_enabled:
        recalled = [
            (r.memory.text, r.score)
            for r in MemoryRecall.objects.filter(run_id=run.pk)
            .select_related("memory")
            .order_by("-score")
        ]
    pinned = (
        [
            m.text
            for m in memory_pinned(
                agent_id=session.agent_id,
                user_key=session.memory_scope,
                also_user_key=session.memory_also_reads,
            )
        ]
        if config.memory_enabled
        else []
    )
    parts = ContextParts(
        system_prompt=config.system_prompt,
        pinned=pinned,
        summary=session.summary,
        notes=dict(session.scratchpad or {}),
        recalled=[text for text, _ in recalled if text not in pinned],
    )
    tools = (
        ToolDefinition.objects.filter(
            Q(pk__in=config.tool_ids) | Q(name__in=config.builtins), enabled=True
        )
        .exclude(name__in=config.builtins_off)
        .distinct()
    )
    specs = tool_specs(list(tools))
    tools_tokens = count_tokens(str(specs)) if specs else 0
    transcript = transcript_load(session_id=session.pk, after_seq=session.summary_upto_seq)
    sent, used, _ = context_assemble(
        parts=parts,
        transcript=transcript,
        budget=config.context_token_budget,
        tools_tokens=tools_tokens,
    )
    system = parts.system_messages()
    recent = transcript.messages[len(transcript.messages) - (len(sent) - len(system)) :]
    rows = [
        ContextMessage("system", m["content"], message_tokens(content=m["content"])) for m in system
    ]
    rows += [
        ContextMessage(
            m.role if m.role != "operator" else "assistant",
            m.content or (json.dumps(m.tool_calls) if m.tool_calls else ""),
            m.token_count,
        )
        for m in recent
    ]
    return DraftContext(
        version=version,
        messages=rows,
        tokens=used,
        tools_tokens=tools_tokens,
        budget=config.context_token_budget,
        summary=session.summary,
        notes=dict(session.scratchpad or {}),
        pinned=pinned,
        recalled=recalled,
        run=run,
    )
