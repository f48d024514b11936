"""Which agents may call a tool.

The relation (Agent.tools) belongs to the app above (agentops), which registers a
`ToolAccess` here; the tool pages read and change it through that, so tools never touches
the agent table, not even through the relation's reverse side. What an agent runs changes
only through a new version of it: `callers_set` saves one per agent it changes and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from tracing.platform.types import Actor


@dataclass(frozen=True)
class ToolCaller:
    pk: int
    label: str
    note: str = ""  # e.g. "v5, not published yet": the caller does not run it yet


class ToolAccess(Protocol):
    def callers(self) -> list[ToolCaller]:
        """Everyone who could be given a tool, in display order."""
        ...

    def callers_of(self, *, tool_id: int) -> list[ToolCaller]: ...

    def callers_set(self, *, tool_id: int, caller_ids: list[int], actor: Actor) -> list[str]:
        """Give the tool to exactly `caller_ids`; returns a sentence per caller changed."""
        ...

    def counts(self) -> dict[int, int]:
        """Callers per tool id (tools nobody may call are left out)."""
        ...


_access: list[ToolAccess] = []


def tool_access_register(*, access: ToolAccess) -> None:
    _access[:] = [access]


def tool_access() -> ToolAccess | None:
    return _access[0] if _access else None
