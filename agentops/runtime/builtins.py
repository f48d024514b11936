"""Built-in tools that cross apps (memory, handoff), registered by the runtime."""

from __future__ import annotations

from typing import Literal

from tools.executors import ToolContext, ToolResult
from tools.registry import python_tool


def _agent_id(context: ToolContext) -> int:
    if context.agent_id is None:
        raise ValueError("memory tools run only inside an agent run")
    return context.agent_id


@python_tool(
    description="Hand the conversation to a human operator. Give the reason; optionally a team "
    "and a priority from 1 (most urgent) to 3."
)
def handoff_to_human(
    reason: str, team: str = "", priority: int = 2, *, context: ToolContext
) -> ToolResult:
    priority = min(3, max(1, priority))
    return ToolResult(
        content="A human operator will take over this conversation.",
        control={"handoff": {"reason": reason[:1000], "team": team[:64], "priority": priority}},
    )


@python_tool(
    description="Store a long-term memory about the user or the task, to recall in later "
    "conversations."
)
def remember(
    text: str,
    kind: Literal["fact", "preference", "episode", "summary"] = "fact",
    *,
    context: ToolContext,
) -> str:
    from memory.services import memory_remember

    memory = memory_remember(
        agent_id=_agent_id(context),
        user_key=context.user_key,
        text=text,
        kind=kind,
        source_run_id=context.run_id,
        source_step=context.step,
        tracer=context.tracer,
    )
    return f"Remembered (memory {memory.pk})."


@python_tool(description="Search long-term memories relevant to a query.")
def recall(query: str, k: int = 5, *, context: ToolContext) -> str:
    from memory.services import memory_recall

    found = memory_recall(
        agent_id=_agent_id(context),
        user_key=context.user_key,
        query=query,
        k=max(1, min(k, 20)),
        run_id=context.run_id,
        tracer=context.tracer,
    )
    if not found:
        return "No memories found."
    return "\n".join(f"- [{m.kind}] {m.text}" for m in found)


@python_tool(
    description="Write a working note (task progress, an intermediate result) that stays in "
    "your context for the rest of this conversation."
)
def note(key: str, value: str, *, context: ToolContext) -> ToolResult:
    return ToolResult(content=f"Noted {key}.", control={"scratchpad": {key[:64]: value[:2000]}})
