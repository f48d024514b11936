"""Which agents may call a tool.

The relation (Agent.tools) belongs to the app above (agentops), which registers a
`ToolAccess` here; the tool pages read and change it through that, so tools never touches
the agent table, not even through the relation's reverse side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ToolCaller:
    pk: int
    label: str


class ToolAccess(Protocol):
    def callers(self) -> list[ToolCaller]:
        """Everyone who could be given a tool, in display order."""
        ...

    def callers_of(self, *, tool_id: int) -> list[ToolCaller]: ...

    def callers_set(self, *, tool_id: int, caller_ids: list[int]) -> None: ...

    def counts(self) -> dict[int, int]:
        """Callers per tool id (tools nobody may call are left out)."""
        ...


_access: list[ToolAccess] = []


def tool_access_register(*, access: ToolAccess) -> None:
    _access[:] = [access]


def tool_access() -> ToolAccess | None:
    return _access[0] if _access else None
