"""What a guardrail is, as an agent version keeps it (a list of plain dicts, in order)."""

from __future__ import annotations

from typing import Any


def guardrail_describe(guardrail: dict[str, Any]) -> str:
    """One line for a diff or a list: its name, where it checks, what and what it does."""
    return (
        f"{guardrail.get('name', '?')} ({guardrail.get('stage', '?')}, "
        f"{guardrail.get('kind', '?')} → {guardrail.get('action', '?')})"
    )
