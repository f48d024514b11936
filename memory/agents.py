"""The agents memory belongs to, as memory sees them.

A memory row holds a plain `agent_id`; the agent table belongs to the app above (agentops),
which registers a directory here (`agent_directory_register`) so the memory pages can list
agents and find one by slug or id without memory knowing that table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class MemoryAgent:
    pk: int
    slug: str
    name: str
    memory_count: int = 0


class AgentDirectory(Protocol):
    def __call__(self, *, slug: str | None = None, pk: int | None = None) -> list[MemoryAgent]:
        """Agents by slug; only the one with `slug` or `pk` when given."""
        ...


_directory: list[AgentDirectory] = []


def agent_directory_register(*, directory: AgentDirectory) -> None:
    _directory[:] = [directory]


def agent_directory() -> AgentDirectory | None:
    return _directory[0] if _directory else None
