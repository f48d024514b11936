"""Reads of assignment: who in a team may be given conversations."""

from __future__ import annotations

from agentops.auth import role_holders
from agentops.models import Team


def operator_user_ids(*, team: Team) -> list[int]:
    """The team's members who may be given conversations: active operators and admins."""
    members = team.members.filter(is_active=True).filter(role_holders("operator"))
    return sorted(set(members.values_list("pk", flat=True)))
