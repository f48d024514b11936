"""Placeholders of canned replies: `{{ user.name }}`, with an optional fallback for an empty
value, `{{ user.name | there }}`. The set is fixed (PLACEHOLDERS); an unknown name is refused
when the reply is saved. Values are filled in as plain text: the reply box holds text and every
page escapes a message where it renders it."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from agentops.conversation import end_user_name
from tracing.platform.types import RequestUser

if TYPE_CHECKING:
    from agentops.models import Session, Team

PLACEHOLDER = re.compile(r"\{\{\s*([^{}|]*?)\s*(?:\|\s*([^{}]*?)\s*)?\}\}")
PLACEHOLDERS = {
    "user.name": "the end user's name: a widget user's id as their site gave it "
    "(empty for an anonymous visitor)",
    "user.id": "the end user's id as the client gave it",
    "agent.name": "the agent's name",
    "operator.name": "your first name, else your username",
    "team.name": "the handoff's team (empty if none)",
}


def placeholders_unknown(*, text: str) -> list[str]:
    """The placeholder names in `text` that are not in PLACEHOLDERS, in order, once each."""
    unknown: list[str] = []
    for match in PLACEHOLDER.finditer(text):
        name = match.group(1)
        if name not in PLACEHOLDERS and name not in unknown:
            unknown.append(name)
    return unknown


def placeholder_values(
    *, session: Session, operator: RequestUser | None, team: Team | None = None
) -> dict[str, str]:
    external = session.external_user or ""
    name = end_user_name(external_user=external)
    return {
        "user.name": name,
        "user.id": external,
        "agent.name": session.agent.name,
        "operator.name": (getattr(operator, "first_name", "") or operator.get_username())
        if operator
        else "",
        "team.name": team.name if team is not None else "",
    }


def placeholders_fill(*, text: str, values: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name, fallback = match.group(1), match.group(2) or ""
        if name not in values:
            return match.group(0)
        return values[name] or fallback

    return PLACEHOLDER.sub(value, text)
